// Shared types of the semdedup C++ core. No Node.js dependency: the core is usable from
// plain C++ (tests, GPU checks, benchmarks) and from the Node addon alike.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

namespace semdedup {

// The engine's kinds of failure (semdedup/errors.def, shared with the addon and TypeScript).
enum class ErrorCode {
#define SEMDEDUP_CAUSE(name, reason, pub) name,
#include "semdedup/errors.def"
#undef SEMDEDUP_CAUSE
};

// The codes a user can meet (SemDedupError.code in JavaScript), from the same list.
enum class PublicCode {
#define SEMDEDUP_PUBLIC(name, code, meaning) name,
#include "semdedup/errors.def"
#undef SEMDEDUP_PUBLIC
};

// "ERR_CONFIG", ...: the public code's name.
const char* public_code_name(PublicCode c);
// The public code a kind of failure reaches JavaScript as (errors.def).
PublicCode public_code(ErrorCode c);
// "io", "format", ...: the kind's reason string.
const char* reason_name(ErrorCode c);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  ErrorCode code() const { return code_; }
  // The public code this error reaches JavaScript as, e.g. "ERR_INPUT".
  const char* code_name() const { return public_code_name(public_code(code_)); }
  // Its kind, e.g. "io".
  const char* reason() const { return reason_name(code_); }

 private:
  ErrorCode code_;
};

// Progress: (done, total) in work units of the step. Called from worker threads, possibly
// concurrently; must be cheap and thread-safe. May be empty.
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

// Cancellation: a flag the long loops poll between blocks. May be null.
using CancelFlag = const std::atomic<bool>*;

inline void check_cancel(CancelFlag cancel) {
  if (cancel && cancel->load(std::memory_order_relaxed)) throw Error(ErrorCode::Cancelled, "cancelled");
}

enum class DType { F32, F16 };

// Limits of the GPU backend for one job; the CPU ignores them. The defaults are what production
// uses; tests and benchmarks set them to force a placement or a small memory budget.
struct GpuLimits {
  int64_t memory_limit = 0;  // device bytes the job may use (0: 85% of the free memory)
  int64_t stream_rows = 0;   // rows per staging buffer of the streamed passes (0: about 64 MiB each)
  int maxsim_placement = 0;  // max similarity: 0 auto, 1 all rows resident, 2 clusters streamed in batches
};

// One file of a sharded dataset: rows [row0, row0 + n) of the view live at `data` (a mapping of
// that file) and at byte `file_offset` of it.
struct EmbeddingShard {
  const char* data = nullptr;
  int64_t row0 = 0;
  int64_t n = 0;
  int64_t file_offset = 0;
};

// A bounded pool of read descriptors of a sharded dataset's files (mapping.hpp), for pread-based
// gathers without one open descriptor per shard.
class ShardFiles;
// Reads len bytes at byte `offset` of shard `shard`'s file into dst (mapping.cpp).
void pread_shard(const ShardFiles& files, int64_t shard, int64_t offset, void* dst, size_t len);

// Releases the resident pages of the byte range [p, p + len) of a read-only mapping (mapping.cpp).
void release_pages(const void* p, size_t len);

// A read-only view of N x D embeddings stored row-major, float32 or float16 (IEEE half): one
// mapped file (`data`, the fast path), or several files read as one dataset in order (`shards`,
// each mapped zero-copy). Rows are never copied unless converted or gathered. Every access to
// rows goes through the accessors below, which hide the difference.
struct EmbeddingView {
  // One file: all rows contiguous at `data`. Null when the view is sharded.
  const void* data = nullptr;
  int64_t n = 0;
  int64_t d = 0;
  DType dtype = DType::F32;
  // True when the rows are read-only file mappings: streaming passes then drop the pages they have
  // read from the resident set (MADV_DONTNEED), keeping RSS bounded. Never set it for heap
  // memory: the kernel would zero those pages.
  bool mapped = false;
  // Optional (one file): an open descriptor of the same file and the byte offset of row 0 in it.
  // Scattered row gathers then use pread() instead of touching the mapping: reading a row through
  // a mapping maps the kernel's whole fault-around window (64 KB), so gathers from all over a
  // large file would grow the resident set to the file's size.
  int fd = -1;
  int64_t fd_offset = 0;
  // Sharded: nshards shards in row order (shards[0].row0 == 0, contiguous row ranges), and
  // optionally their files for pread-based gathers.
  const EmbeddingShard* shards = nullptr;
  int64_t nshards = 0;
  const ShardFiles* files = nullptr;

  bool is_f32() const { return dtype == DType::F32; }
  size_t row_bytes() const { return size_t(d) * (dtype == DType::F32 ? 4 : 2); }
  // True when all rows are one contiguous block at `data`.
  bool contiguous() const { return shards == nullptr; }
  // True when gathers read with pread (not through the mapping).
  bool preads() const { return shards ? files != nullptr : fd >= 0; }
  // The shard holding row i (sharded views only).
  int64_t shard_of(int64_t i) const;
  // The stored bytes of row i (in the view's dtype).
  const char* row_ptr(int64_t i) const {
    if (!shards) return static_cast<const char*>(data) + size_t(i) * row_bytes();
    const EmbeddingShard& s = shards[shard_of(i)];
    return s.data + size_t(i - s.row0) * row_bytes();
  }
  // The end of the run of rows contiguous in storage from row i, at most `end`.
  int64_t run_end(int64_t i, int64_t end) const {
    if (!shards) return end;
    const EmbeddingShard& s = shards[shard_of(i)];
    return std::min(end, s.row0 + s.n);
  }
  // Row i in place (float32 views only, resp. float16 views only).
  const float* f32_row(int64_t i) const { return reinterpret_cast<const float*>(row_ptr(i)); }
  const uint16_t* f16_row(int64_t i) const { return reinterpret_cast<const uint16_t*>(row_ptr(i)); }
  // Writes row i as float32 into dst[0..d).
  void row(int64_t i, float* dst) const;
  // Writes rows [begin, end) contiguously as float32 into dst.
  void rows(int64_t begin, int64_t end, float* dst) const;
  // Rows [begin, end) as contiguous float32: in place when they are float32 in one run (zero
  // copy), else converted / copied into `scratch` ((end - begin) * d floats), which is returned.
  bool f32_in_place(int64_t begin, int64_t end) const { return is_f32() && run_end(begin, end) == end; }
  const float* f32_rows(int64_t begin, int64_t end, float* scratch) const {
    if (f32_in_place(begin, end)) return f32_row(begin);
    rows(begin, end, scratch);
    return scratch;
  }
  // Writes the listed rows contiguously as float32 into dst (pread when preads()).
  void gather(const int64_t* rows, int64_t count, float* dst) const;
  // Drops the resident pages of rows [begin, end) when the view is mapped (streaming passes call
  // it behind them); no-op otherwise.
  void release(int64_t begin, int64_t end) const;
};

float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
void half_to_float_n(const uint16_t* src, float* dst, int64_t n);

// Number of worker threads: `requested` if > 0, else the hardware concurrency.
int resolve_threads(int requested);

}  // namespace semdedup

namespace semdedup {
// Runs fn(item, worker) for item in [0, count) on `threads` workers pulling items from a shared
// counter (dynamic schedule). The first exception thrown by any worker stops the others and is
// rethrown on the calling thread.
void parallel_for(int threads, int64_t count, const std::function<void(int64_t item, int worker)>& fn,
                  CancelFlag cancel = nullptr);
// Anonymous memory for large arrays, advised for transparent huge pages: first touching fresh
// memory costs one page fault per page, and 2 MiB pages need 512 times fewer than 4 KiB ones
// (on virtual machines a fault can cost tens of microseconds). Grows in place or moves (mremap).
class BigBuffer {
 public:
  BigBuffer() = default;
  explicit BigBuffer(size_t bytes) { reserve(bytes); }
  ~BigBuffer() { free_mapping(p_, cap_); }
  BigBuffer(BigBuffer&& o) noexcept : p_(o.p_), size_(o.size_), cap_(o.cap_) { o.p_ = nullptr, o.size_ = o.cap_ = 0; }
  BigBuffer& operator=(BigBuffer&& o) noexcept;
  BigBuffer(const BigBuffer&) = delete;
  BigBuffer& operator=(const BigBuffer&) = delete;

  char* data() const { return p_; }
  template <class T>
  T* as() const { return reinterpret_cast<T*>(p_); }
  size_t size() const { return size_; }
  void clear() { size_ = 0; }
  void reserve(size_t bytes);
  void resize(size_t bytes) {
    reserve(bytes);
    size_ = bytes;
  }
  void push(char c) {
    if (size_ == cap_) reserve(size_ + 1);
    p_[size_++] = c;
  }
  void append(const void* src, size_t n);
  // Hands the mapping to the caller: free it with free_mapping(p, capacity).
  char* release(size_t& capacity) {
    char* p = p_;
    capacity = cap_;
    p_ = nullptr;
    size_ = cap_ = 0;
    return p;
  }
  static void free_mapping(void* p, size_t capacity);

 private:
  char* p_ = nullptr;
  size_t size_ = 0, cap_ = 0;
};

}  // namespace semdedup
