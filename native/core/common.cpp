#include "semdedup/common.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

namespace semdedup {

const char* public_code_name(PublicCode c) {
  switch (c) {
#define SEMDEDUP_PUBLIC(name, code, meaning) \
  case PublicCode::name:                     \
    return code;
#include "semdedup/errors.def"
#undef SEMDEDUP_PUBLIC
  }
  return "ERR_NATIVE";
}

PublicCode public_code(ErrorCode c) {
  switch (c) {
#define SEMDEDUP_CAUSE(name, reason, pub) \
  case ErrorCode::name:                   \
    return PublicCode::pub;
#include "semdedup/errors.def"
#undef SEMDEDUP_CAUSE
  }
  return PublicCode::Native;
}

const char* reason_name(ErrorCode c) {
  switch (c) {
#define SEMDEDUP_CAUSE(name, reason, pub) \
  case ErrorCode::name:                   \
    return reason;
#include "semdedup/errors.def"
#undef SEMDEDUP_CAUSE
  }
  return "internal";
}

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
  if (absx >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow -> inf
  if (absx < 0x38800000u) {                                   // subnormal or zero
    if (absx < 0x33000000u) return uint16_t(sign);
    const uint32_t e = absx >> 23;
    const uint32_t m = (absx & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14 + (112 - e) + 1 ... bits to drop
    uint32_t r = m >> (shift - 0);
    // round to nearest even on the dropped bits
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    r = m >> shift;
    if (rem > half || (rem == half && (r & 1))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = ((absx >> 13) - (112u << 10));
  const uint32_t rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) ++r;
  return uint16_t(sign | r);
}

void half_to_float_n(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(src[i]);
}

int64_t EmbeddingView::shard_of(int64_t i) const {
  // The last shard whose first row is <= i (shards are in row order; empty shards are skipped).
  int64_t lo = 0, hi = nshards - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (shards[mid].row0 <= i)
      lo = mid;
    else
      hi = mid - 1;
  }
  while (lo + 1 < nshards && shards[lo].n == 0) ++lo;
  return lo;
}

void EmbeddingView::row(int64_t i, float* dst) const {
  if (dtype == DType::F32)
    std::memcpy(dst, f32_row(i), size_t(d) * sizeof(float));
  else
    half_to_float_n(f16_row(i), dst, d);
}

void EmbeddingView::rows(int64_t begin, int64_t end, float* dst) const {
  while (begin < end) {
    const int64_t stop = run_end(begin, end);
    if (dtype == DType::F32)
      std::memcpy(dst, f32_row(begin), size_t(stop - begin) * size_t(d) * sizeof(float));
    else
      half_to_float_n(f16_row(begin), dst, (stop - begin) * d);
    dst += (stop - begin) * d;
    begin = stop;
  }
}

void EmbeddingView::release(int64_t begin, int64_t end) const {
  if (!mapped) return;
  while (begin < end) {
    const int64_t stop = run_end(begin, end);
    release_pages(row_ptr(begin), size_t(stop - begin) * row_bytes());
    begin = stop;
  }
}

static void pread_all(int fd, char* out, size_t len, int64_t offset, int64_t row) {
  size_t done = 0;
  while (done < len) {
    const ssize_t got = ::pread(fd, out + done, len - done, off_t(offset + int64_t(done)));
    if (got <= 0) {
      if (got < 0 && errno == EINTR) continue;
      throw Error(ErrorCode::Io, "reading row " + std::to_string(row) + " failed: " +
                                     (got < 0 ? std::strerror(errno) : std::string("unexpected end of file")));
    }
    done += size_t(got);
  }
}

void EmbeddingView::gather(const int64_t* idx, int64_t count, float* dst) const {
  if (!preads()) {
    for (int64_t i = 0; i < count; ++i) row(idx[i], dst + i * d);
    return;
  }
  const size_t rb = row_bytes();
  std::vector<uint16_t> half(dtype == DType::F16 ? size_t(d) : 0);
  for (int64_t i = 0; i < count; ++i) {
    char* out = dtype == DType::F32 ? reinterpret_cast<char*>(dst + i * d) : reinterpret_cast<char*>(half.data());
    if (shards) {
      const int64_t s = shard_of(idx[i]);
      pread_shard(*files, s, shards[s].file_offset + (idx[i] - shards[s].row0) * int64_t(rb), out, rb);
    } else {
      pread_all(fd, out, rb, fd_offset + idx[i] * int64_t(rb), idx[i]);
    }
    if (dtype == DType::F16) half_to_float_n(half.data(), dst + i * d, d);
  }
}

namespace {
constexpr size_t kHuge = size_t(2) << 20;
size_t round_huge(size_t b) { return (b + kHuge - 1) / kHuge * kHuge; }
}  // namespace

BigBuffer& BigBuffer::operator=(BigBuffer&& o) noexcept {
  if (this != &o) {
    free_mapping(p_, cap_);
    p_ = o.p_, size_ = o.size_, cap_ = o.cap_;
    o.p_ = nullptr, o.size_ = o.cap_ = 0;
  }
  return *this;
}

void BigBuffer::free_mapping(void* p, size_t capacity) {
  if (p) ::munmap(p, capacity);
}

void BigBuffer::reserve(size_t bytes) {
  if (bytes <= cap_) return;
  const size_t want = round_huge(std::max(bytes, cap_ + cap_ / 2));
  void* q = p_ ? ::mremap(p_, cap_, want, MREMAP_MAYMOVE)
               : ::mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (q == MAP_FAILED) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  ::madvise(q, want, MADV_HUGEPAGE);
#endif
  p_ = static_cast<char*>(q);
  cap_ = want;
}

void BigBuffer::append(const void* src, size_t n) {
  if (size_ + n > cap_) reserve(size_ + n);
  std::memcpy(p_ + size_, src, n);
  size_ += n;
}

int resolve_threads(int requested) {
  const unsigned hc = std::thread::hardware_concurrency();
  const int cores = hc ? int(hc) : 1;
  // More than 4 threads a core only costs memory and switching (the CLI caps and warns the same
  // way; this holds for every caller of the library).
  if (requested > 0) return std::min(requested, 4 * cores);
  return cores;
}

}  // namespace semdedup

#include <exception>
#include <mutex>
#include <vector>

namespace semdedup {

void parallel_for(int threads, int64_t count, const std::function<void(int64_t, int)>& fn, CancelFlag cancel) {
  threads = resolve_threads(threads);
  if (count <= 0) return;
  if (threads > count) threads = int(count);
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mu;
  auto work = [&](int worker) {
    try {
      for (;;) {
        if (failed.load(std::memory_order_relaxed)) return;
        check_cancel(cancel);
        const int64_t item = next.fetch_add(1);
        if (item >= count) return;
        fn(item, worker);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  if (threads == 1) {
    work(0);
  } else {
    std::vector<std::thread> pool;
    pool.reserve(size_t(threads - 1));
    for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace semdedup
