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

// Same contract as semdedup::train_kmeans (kmeans.hpp): FAISS's Clustering algorithm (its
// subsample, initialisation, Lloyd iterations, centroid update, empty-cluster split and
// spherical re-normalisation), with the assignment step on the GPU.
KMeansResult train_kmeans(const EmbeddingView& x, const KMeansParams& p, const ProgressFn& progress = {},
                          CancelFlag cancel = nullptr);

// The GPU kernel of the assignment: nearest[i] and dist[i] (inner product, or squared L2 computed
// as |x|^2 + |c|^2 - 2 x.c clamped at 0, as FAISS does), ties to the lowest centroid index, fp32,
// streamed from the host through pinned buffers (N may exceed GPU memory).
// The pipeline's final assignment does NOT use it: step 3 ranks every cluster by dist_to_cent,
// and one ulp between two near-equal distances swaps two members (and moves their M by up to 1),
// so the values must be the same bits on every backend, the CPU's, which are FAISS's (its sgemm
// blocks of 4096 rows x 1024 centroids). The GPU's fp32 dot products round differently (902,363
// of 1M rows differed in the last bits on an H200), so the engine facade runs the final
// assignment on the CPU code path on every device (engine.hpp). Benchmarks and kernel tests call
// this kernel directly.
void assign_nearest(const EmbeddingView& x, const float* centroids, int k, bool inner_product, int64_t* nearest,
                    float* dist, const GpuLimits& gpu = {}, const ProgressFn& progress = {},
                    CancelFlag cancel = nullptr);

}  // namespace cuda
}  // namespace semdedup
