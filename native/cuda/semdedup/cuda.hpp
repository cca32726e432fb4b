// The CUDA backend of the two heavy steps (step 2 (docs/algorithm.md): k-means, step 4 (docs/algorithm.md): max similarity).
// Plain C++ header: no CUDA headers, so the addon and the tests include it without nvcc.
//
// Everything here runs on device 0 of the process (CUDA_VISIBLE_DEVICES picks it). Every entry
// point throws semdedup::Error(ErrorCode::Backend, ...) when the GPU cannot be used, so that the
// caller can fall back to the CPU; device_info() never throws and never crashes, also on a
// machine without a GPU or without a driver (the CUDA runtime is linked statically).
#pragma once
#include <cstdint>
#include <string>

#include "semdedup/common.hpp"
#include "semdedup/kmeans.hpp"
#include "semdedup/maxsim.hpp"

namespace semdedup {
namespace cuda {

struct DeviceInfo {
  bool available = false;  // a usable GPU (compute capability >= 8.0, our kernels load on it)
  std::string reason;      // why not, when !available
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int64_t total_mem = 0, free_mem = 0;  // bytes
  int driver_version = 0, runtime_version = 0;  // e.g. 13000
  int sm_count = 0;
};

DeviceInfo device_info();


// Same contract as semdedup::max_similarity_cpu (maxsim.hpp): per position p,
// M[p] = max(0, max over earlier members of the cluster of the dot product), arg[p] = the row
// of the earliest earlier member reaching it, or -1 when M[p] = 0 came from the clamp. fp32 on
// the GPU, then members whose M lies within the re-check margin of one of opt.thresholds are
// recomputed exactly in float64 on the host.
MaxSimStats max_similarity(const EmbeddingView& x, const int64_t* order, const int64_t* offsets, int64_t nclusters,
                           double* M, int64_t* arg, const MaxSimOptions& opt, const ProgressFn& progress = {},
                           CancelFlag cancel = nullptr);

// Same contract as semdedup::train_kmeans (kmeans.hpp): the shared Lloyd driver with the exact
// assignment and the float64 centroid sums on the GPU; the same bytes as the CPU backend.
KMeansResult train_kmeans(const EmbeddingView& x, const KMeansParams& p, const ProgressFn& progress = {},
                          CancelFlag cancel = nullptr);

// Same contract as semdedup::assign_nearest (kmeans.hpp): the exact nearest centroid of every row
// (nearest.hpp) and dist = its float64 value rounded once to float32, the same bytes as the CPU
// backend. The fast pass is a fused float32 tile product keeping each row's top two; rows within
// the proven bound are re-scored in float64 on the GPU. Rows are streamed from the host through
// pinned buffers (N may exceed GPU memory).
void assign_nearest(const EmbeddingView& x, const float* centroids, int k, bool inner_product, int64_t* nearest,
                    float* dist, const GpuLimits& gpu = {}, const ProgressFn& progress = {},
                    CancelFlag cancel = nullptr, int64_t* rescored = nullptr);

}  // namespace cuda
}  // namespace semdedup
