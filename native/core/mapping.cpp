#include "semdedup/mapping.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace semdedup {

static size_t page_size() {
  static const size_t ps = size_t(sysconf(_SC_PAGESIZE));
  return ps;
}

int64_t MappedFile::file_size(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    throw Error(ErrorCode::Io, path + ": cannot stat: " + std::strerror(errno));
  return int64_t(st.st_size);
}

MappedFile::MappedFile(const std::string& path, int64_t offset, int64_t length, bool writable, bool keep_fd)
    : path_(path), writable_(writable) {
  const int fd = ::open(path.c_str(), writable ? O_RDWR : O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorCode::Io, path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw Error(ErrorCode::Io, path + ": cannot stat: " + std::strerror(e));
  }
  const int64_t fsize = int64_t(st.st_size);
  if (offset < 0 || offset > fsize) {
    ::close(fd);
    throw Error(ErrorCode::Format, path + ": offset " + std::to_string(offset) + " is beyond the file size " +
                                       std::to_string(fsize));
  }
  if (length < 0) length = fsize - offset;
  if (offset + length > fsize) {
    ::close(fd);
    throw Error(ErrorCode::Format, path + ": expected " + std::to_string(offset + length) +
                                       " bytes, the file has " + std::to_string(fsize));
  }
  length_ = length;
  offset_ = offset;
  const size_t ps = page_size();
  const int64_t aligned = offset - offset % int64_t(ps);
  base_len_ = size_t(length + (offset - aligned));
  if (base_len_ == 0) {  // empty mapping: nothing to map
    ::close(fd);
    data_ = nullptr;
    return;
  }
  void* p = ::mmap(nullptr, base_len_, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, aligned);
  const int e = errno;
  if (p == MAP_FAILED) {
    ::close(fd);
    throw Error(ErrorCode::Io, path + ": mmap failed: " + std::strerror(e));
  }
  if (keep_fd) {
    fd_ = fd;
  } else {
    ::close(fd);
  }
  base_ = p;
  data_ = static_cast<char*>(p) + (offset - aligned);
  if (!writable) {
    // Streaming passes drop the pages behind them: keep them at 4 KB granularity.
    ::madvise(base_, base_len_, MADV_NOHUGEPAGE);
  }
}

MappedFile::~MappedFile() { close(); }

void MappedFile::close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (base_) {
    if (writable_) ::msync(base_, base_len_, MS_SYNC);
    ::munmap(base_, base_len_);
    base_ = nullptr;
    data_ = nullptr;
  }
}

void MappedFile::sync() const {
  if (base_ && writable_ && ::msync(base_, base_len_, MS_SYNC) != 0)
    throw Error(ErrorCode::Io, path_ + ": msync failed: " + std::strerror(errno));
}

void MappedFile::release(int64_t begin, int64_t end) const {
  if (!base_ || writable_) return;
  release_pages(static_cast<const char*>(data_) + begin, size_t(end - begin));
}

void release_pages(const void* p, size_t len) {
  const size_t ps = page_size();
  uintptr_t b = reinterpret_cast<uintptr_t>(p);
  uintptr_t e = b + len;
  b = (b + ps - 1) / ps * ps;  // only whole pages inside the range
  e = e / ps * ps;
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

ShardFiles::ShardFiles(std::vector<std::string> paths, int64_t slots)
    : paths_(std::move(paths)), slots_(size_t(std::max<int64_t>(1, slots))) {}

ShardFiles::~ShardFiles() {
  for (auto& s : slots_)
    if (s.fd >= 0) ::close(s.fd);
}

void ShardFiles::pread(int64_t shard, int64_t offset, void* dst, size_t len) const {
  Slot& s = slots_[size_t(shard) % slots_.size()];
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.shard != shard) {
    if (s.fd >= 0) ::close(s.fd);
    s.shard = -1;
    s.fd = ::open(paths_[size_t(shard)].c_str(), O_RDONLY | O_CLOEXEC);
    if (s.fd < 0) throw Error(ErrorCode::Io, paths_[size_t(shard)] + ": cannot open: " + std::strerror(errno));
    s.shard = shard;
  }
  size_t done = 0;
  char* out = static_cast<char*>(dst);
  while (done < len) {
    const ssize_t got = ::pread(s.fd, out + done, len - done, off_t(offset + int64_t(done)));
    if (got <= 0) {
      if (got < 0 && errno == EINTR) continue;
      throw Error(ErrorCode::Io, paths_[size_t(shard)] + ": reading at byte " + std::to_string(offset) + " failed: " +
                                     (got < 0 ? std::strerror(errno) : std::string("unexpected end of file")));
    }
    done += size_t(got);
  }
}

void pread_shard(const ShardFiles& files, int64_t shard, int64_t offset, void* dst, size_t len) {
  files.pread(shard, offset, dst, len);
}

int64_t shard_fd_budget() {
  struct rlimit rl;
  int64_t soft = 1024;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) soft = int64_t(rl.rlim_cur);
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur == RLIM_INFINITY) soft = 1 << 20;
  return std::min<int64_t>(1024, std::max<int64_t>(8, soft / 4));
}

MappedShards::MappedShards(const std::vector<ShardSpec>& shards, int64_t d, DType dtype) {
  view_.d = d;
  view_.dtype = dtype;
  view_.mapped = true;
  const int64_t rb = d * (dtype == DType::F32 ? 4 : 2);
  std::vector<std::string> paths;
  int64_t row0 = 0;
  for (const ShardSpec& sp : shards) {
    if (sp.n < 0) throw Error(ErrorCode::InvalidArgument, sp.path + ": negative row count");
    maps_.push_back(std::make_unique<MappedFile>(sp.path, sp.offset, sp.n * rb, false, false));
    EmbeddingShard s;
    s.data = static_cast<const char*>(maps_.back()->data());
    s.row0 = row0;
    s.n = sp.n;
    s.file_offset = sp.offset;
    shards_.push_back(s);
    paths.push_back(sp.path);
    row0 += sp.n;
  }
  view_.n = row0;
  view_.shards = shards_.data();
  view_.nshards = int64_t(shards_.size());
  files_ = std::make_unique<ShardFiles>(std::move(paths), std::min<int64_t>(int64_t(shards.size()), shard_fd_budget()));
  view_.files = files_.get();
}

}  // namespace semdedup
