// Device discovery and process-wide settings of the CUDA backend.
#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>

#include "cuda_util.cuh"
#include "semdedup/cuda.hpp"
#include "semdedup/gpu_plan.hpp"

namespace semdedup {
namespace cuda {
namespace {

// Loaded only to learn whether this binary carries code the GPU can run.
__global__ void probe_kernel(int* p) {
  if (p) *p = 1;
}

}  // namespace

DeviceInfo device_info() {
  DeviceInfo info;
  try {
    cudaDriverGetVersion(&info.driver_version);  // 0 when no driver is installed
    cudaRuntimeGetVersion(&info.runtime_version);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      cudaGetLastError();
      info.reason = std::string("no usable CUDA device: ") + cudaGetErrorString(e);
      if (info.driver_version == 0) info.reason += " (no NVIDIA driver found)";
      return info;
    }
    if (count == 0) {
      info.reason = "no CUDA device";
      return info;
    }
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, 0);
    if (e != cudaSuccess) {
      cudaGetLastError();
      info.reason = std::string("cannot query CUDA device 0: ") + cudaGetErrorString(e);
      return info;
    }
    info.name = prop.name;
    info.cc_major = prop.major;
    info.cc_minor = prop.minor;
    info.total_mem = int64_t(prop.totalGlobalMem);
    info.sm_count = prop.multiProcessorCount;
    if (prop.major < 8) {
      info.reason = "GPU " + info.name + " has compute capability " + std::to_string(prop.major) + "." +
                    std::to_string(prop.minor) + "; the CUDA backend needs 8.0 or newer";
      return info;
    }
    e = cudaSetDevice(0);
    size_t free_b = 0, total_b = 0;
    if (e == cudaSuccess) e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess) {
      cudaGetLastError();
      info.reason = std::string("cannot use CUDA device 0: ") + cudaGetErrorString(e);
      return info;
    }
    info.free_mem = int64_t(free_b);
    info.total_mem = int64_t(total_b);
    cudaFuncAttributes attr;
    e = cudaFuncGetAttributes(&attr, probe_kernel);
    if (e != cudaSuccess) {
      cudaGetLastError();
      info.reason = std::string("no kernel image for ") + info.name + ": " + cudaGetErrorString(e);
      return info;
    }
    info.available = true;
  } catch (...) {
    info.available = false;
    if (info.reason.empty()) info.reason = "unexpected error while querying the CUDA device";
  }
  return info;
}

namespace detail {

int prepare_device() {
  static std::once_flag once;
  static DeviceInfo cached;
  std::call_once(once, [] { cached = device_info(); });
  if (!cached.available) throw Error(ErrorCode::Backend, "CUDA backend unavailable: " + cached.reason);
  SD_CUDA(cudaSetDevice(0));
  return cached.sm_count;
}

int64_t memory_budget(const GpuLimits& gpu) {
  size_t free_b = 0, total_b = 0;
  SD_CUDA(cudaMemGetInfo(&free_b, &total_b));
  return plan::device_budget(int64_t(free_b), gpu.memory_limit);
}

int64_t staging_rows(size_t row_bytes, const GpuLimits& gpu) { return plan::staging_rows(int64_t(row_bytes), gpu.stream_rows); }

}  // namespace detail
}  // namespace cuda
}  // namespace semdedup
