// Memory-mapped files: the embeddings are mapped, never loaded.
#pragma once
#include <string>

#include "semdedup/common.hpp"

namespace semdedup {

class MappedFile {
 public:
  // Maps `length` bytes of `path` from byte `offset` (length < 0: to the end of the file).
  // writable: MAP_SHARED read-write; the file must exist with enough bytes.
  MappedFile(const std::string& path, int64_t offset, int64_t length, bool writable);
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

// Releases the resident pages of the byte range [p, p + len) of a read-only mapping.
void release_pages(const void* p, size_t len);

}  // namespace semdedup
