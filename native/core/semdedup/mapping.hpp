// Memory-mapped files: the embeddings are mapped, never loaded.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "semdedup/common.hpp"

namespace semdedup {

class MappedFile {
 public:
  // Maps `length` bytes of `path` from byte `offset` (length < 0: to the end of the file).
  // writable: MAP_SHARED read-write; the file must exist with enough bytes.
  // keep_fd: keep the descriptor open after mapping (for pread-based gathers through fd()).
  MappedFile(const std::string& path, int64_t offset, int64_t length, bool writable, bool keep_fd = true);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  void* data() const { return data_; }
  int64_t size() const { return length_; }
  bool writable() const { return writable_; }
  const std::string& path() const { return path_; }
  // Drops the pages of [begin, end) (bytes from data()) from this process's resident set.
  // Read-only mappings only; no-op otherwise.
  void release(int64_t begin, int64_t end) const;
  void sync() const;  // msync for writable mappings
  void close();

  static int64_t file_size(const std::string& path);
  // An open read descriptor of the file (kept for pread-based gathers); -1 once closed.
  int fd() const { return fd_; }
  // Byte offset in the file of data()[0].
  int64_t offset() const { return offset_; }

 private:
  std::string path_;
  void* base_ = nullptr;  // page-aligned mapping start
  size_t base_len_ = 0;
  void* data_ = nullptr;
  int64_t length_ = 0;
  bool writable_ = false;
  int fd_ = -1;
  int64_t offset_ = 0;
};

// One file of a sharded dataset: `n` rows from byte `offset` of `path`.
struct ShardSpec {
  std::string path;
  int64_t offset = 0;
  int64_t n = 0;
};

// Read descriptors of a sharded dataset's files for pread-based gathers, opened on demand, at most
// `slots` open at once (a file maps to slot shard % slots; a slot holds one open file and is
// locked while it reads), so thousands of shards never hold thousands of descriptors.
class ShardFiles {
 public:
  ShardFiles(std::vector<std::string> paths, int64_t slots);
  ~ShardFiles();
  ShardFiles(const ShardFiles&) = delete;
  ShardFiles& operator=(const ShardFiles&) = delete;
  void pread(int64_t shard, int64_t offset, void* dst, size_t len) const;
  int64_t open_limit() const { return int64_t(slots_.size()); }

 private:
  struct Slot {
    std::mutex mu;
    int64_t shard = -1;
    int fd = -1;
  };
  std::vector<std::string> paths_;
  mutable std::vector<Slot> slots_;
};

// The files of a sharded dataset, each mapped read-only (zero copy; no descriptor kept open
// after mapping), read as one N x D matrix in order through view().
class MappedShards {
 public:
  MappedShards(const std::vector<ShardSpec>& shards, int64_t d, DType dtype);
  const EmbeddingView& view() const { return view_; }
  int64_t count() const { return int64_t(maps_.size()); }
  const std::string& path(int64_t i) const { return maps_[size_t(i)]->path(); }

 private:
  std::vector<std::unique_ptr<MappedFile>> maps_;
  std::vector<EmbeddingShard> shards_;
  std::unique_ptr<ShardFiles> files_;
  EmbeddingView view_;
};

// How many descriptors a sharded view may keep open for its gathers: a quarter of the soft
// RLIMIT_NOFILE, between 8 and 1024.
int64_t shard_fd_budget();

}  // namespace semdedup
