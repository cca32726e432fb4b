// Shared types of the semdedup C++ core. No Node.js dependency: the core is usable from
// plain C++ (tests, GPU checks, benchmarks) and from the Node addon alike.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

namespace semdedup {

// Error kinds, mapped one to one onto the JavaScript error codes of the addon.
enum class ErrorCode { InvalidArgument, Io, Format, Numeric, Cancelled, Backend, Internal };

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  ErrorCode code() const { return code_; }
  const char* code_name() const;

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

// A read-only view of N x D embeddings stored row-major, float32 or float16 (IEEE half).
// `data` usually points into a memory mapping; rows are never copied unless converted.
struct EmbeddingView {
  const void* data = nullptr;
  int64_t n = 0;
  int64_t d = 0;
  DType dtype = DType::F32;
  // True when `data` is a read-only file mapping: streaming passes then drop the pages they have
  // read from the resident set (MADV_DONTNEED), keeping RSS bounded. Never set it for heap
  // memory: the kernel would zero those pages.
  bool mapped = false;
  // Optional: an open descriptor of the same file and the byte offset of row 0 in it. Scattered
  // row gathers then use pread() instead of touching the mapping: reading a row through a
  // mapping maps the kernel's whole fault-around window (64 KB), so gathers from all over a
  // large file would grow the resident set to the file's size.
  int fd = -1;
  int64_t fd_offset = 0;

  bool is_f32() const { return dtype == DType::F32; }
  const float* f32_row(int64_t i) const { return static_cast<const float*>(data) + i * d; }
  const uint16_t* f16_row(int64_t i) const { return static_cast<const uint16_t*>(data) + i * d; }
  // Writes row i as float32 into dst[0..d).
  void row(int64_t i, float* dst) const;
  // Writes rows [begin, end) contiguously as float32 into dst.
  void rows(int64_t begin, int64_t end, float* dst) const;
  // Writes the listed rows contiguously as float32 into dst (pread when fd >= 0).
  void gather(const int64_t* rows, int64_t count, float* dst) const;
  size_t row_bytes() const { return size_t(d) * (dtype == DType::F32 ? 4 : 2); }
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
}  // namespace semdedup
