#include "semdedup/mapping.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

MappedFile::MappedFile(const std::string& path, int64_t offset, int64_t length, bool writable)
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
  fd_ = fd;
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

}  // namespace semdedup
