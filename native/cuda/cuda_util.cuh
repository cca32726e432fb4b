// Small CUDA helpers shared by the backend's translation units: error checks that throw
// semdedup::Error(Backend), RAII for device memory, pinned host memory, streams and events.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <utility>

#include "semdedup/common.hpp"

namespace semdedup {
namespace cuda {
namespace detail {

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* what, const char* file, int line) {
  throw Error(ErrorCode::Backend, std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                                      ") in " + what + " at " + file + ":" + std::to_string(line));
}

#define SD_CUDA(call)                                                                    \
  do {                                                                                   \
    cudaError_t sd_err_ = (call);                                                        \
    if (sd_err_ != cudaSuccess) ::semdedup::cuda::detail::throw_cuda(sd_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After every launch: configuration errors now, execution errors at the next synchronisation.
#define SD_CUDA_LAUNCH(what) SD_CUDA(cudaGetLastError())

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { resize(n); }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  void resize(size_t n) {
    if (n == n_) return;
    reset();
    if (n) SD_CUDA(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
    n_ = n;
  }
  void reset() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t n) { resize(n); }
  ~PinnedBuffer() { reset(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void resize(size_t n) {
    if (n <= n_) return;
    reset();
    SD_CUDA(cudaMallocHost(reinterpret_cast<void**>(&p_), n * sizeof(T)));
    n_ = n;
  }
  void reset() {
    if (p_) cudaFreeHost(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

class Stream {
 public:
  Stream() { SD_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() {
    if (s_) cudaStreamDestroy(s_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  void sync() const { SD_CUDA(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  Event() { SD_CUDA(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  ~Event() {
    if (e_) cudaEventDestroy(e_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }
  void record(cudaStream_t s) const { SD_CUDA(cudaEventRecord(e_, s)); }
  void sync() const { SD_CUDA(cudaEventSynchronize(e_)); }

 private:
  cudaEvent_t e_ = nullptr;
};

// Selects device 0 and checks that it is usable; throws Error(Backend) otherwise. Returns the
// number of multiprocessors.
int prepare_device();
// Device bytes a pass may use: gpu.memory_limit, or 85% of the free memory.
int64_t memory_budget(const GpuLimits& gpu);
// Rows per staging buffer for rows of `row_bytes` bytes (gpu.stream_rows when set).
int64_t staging_rows(size_t row_bytes, const GpuLimits& gpu);

constexpr int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

}  // namespace detail
}  // namespace cuda
}  // namespace semdedup
