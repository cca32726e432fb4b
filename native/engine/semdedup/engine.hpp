// The engine facade: the one place where a heavy job chooses between the CPU and the CUDA backend.
//
//   device cpu:  the CPU runs the job.
//   device cuda: the GPU runs it; when it cannot (no CUDA in this build, no usable GPU, or the GPU
//                refuses this job, e.g. a training set that does not fit), an Error(Backend) says why.
//   device auto: the GPU when it can, else the CPU; the returned note says why the CPU ran.
//
// Every entry point returns which backend ran (Ran), so that callers record and show it.
#pragma once
#include <string>

#include "semdedup/common.hpp"
#include "semdedup/decontaminate.hpp"
#include "semdedup/kmeans.hpp"
#include "semdedup/maxsim.hpp"

namespace semdedup {
namespace engine {

enum class Device { Auto, Cpu, Cuda };
enum class Backend { Cpu, Cuda };
// k-means on the CPU: the engine's own Lloyd driver (default, the same bytes on every machine), or
// faiss::Clustering itself (its centroids depend on the CPU's BLAS kernel and thread count).
enum class KMeansImpl { Engine, Faiss };

// "auto" | "cpu" | "cuda"; "engine" | "faiss". Throw Error(InvalidArgument) otherwise.
Device parse_device(const std::string& s);
KMeansImpl parse_kmeans_impl(const std::string& s);
const char* backend_name(Backend b);

struct CudaStatus {
  bool compiled = false;   // this build carries the CUDA backend
  bool available = false;  // and a usable GPU was found
  std::string reason;      // why not, when !available
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int64_t total_mem = 0, free_mem = 0;
  int driver_version = 0, runtime_version = 0, sm_count = 0;
};

struct EngineInfo {
  std::string version;    // the engine's version (the package's)
  std::string faiss;      // FAISS linked, or "none"
  std::string blas_core;  // OpenBLAS kernel in use
  int blas_threads = 1;
  int hardware_threads = 1;
  bool faiss_kmeans = false;  // kmeans_impl faiss is available
  CudaStatus cuda;
};

// What this process runs on; computed once (the GPU is queried on the first call only).
const EngineInfo& engine_info();

// The backend that ran a job, and why it is not the GPU when the device was auto (empty otherwise).
struct Ran {
  Backend backend = Backend::Cpu;
  std::string note;
};

// A device choice resolved once (the addon's engine handle): cpu, or cuda when a usable GPU is
// there (auto: the GPU when it can, with the reason in `note` when not; cuda without a usable GPU
// is an Error(Backend) naming the reason). Jobs run with dispatch_device(): a job the GPU refuses
// still falls back to the CPU under auto, and its Ran says so.
struct Resolved {
  Device requested = Device::Auto;
  Backend device = Backend::Cpu;
  std::string note;
  // The choice to run jobs with: cpu when the device resolved to the CPU, else the request.
  Device dispatch_device() const { return device == Backend::Cpu ? Device::Cpu : requested; }
};
Resolved resolve_device(Device device);

Ran train_kmeans(Device device, KMeansImpl impl, const EmbeddingView& x, const KMeansParams& p, KMeansResult& out,
                 const ProgressFn& progress = {}, CancelFlag cancel = nullptr);

// The final assignment (nearest_cent, dist_to_cent): the exact nearest centroid and its float64
// value rounded once (nearest.hpp), on the GPU or the CPU by the rules above; both give the same
// bytes. With kmeans_impl faiss too (FAISS trains; every row is then assigned by the exact rule).
// *rescored: rows the fast pass left undecided (re-scored in float64), when given. skip (optional,
// n bytes): rows already holding their values (KMeansResult::final_*), not searched on the CPU.
// *rechecked: rows the CPU's integer filter left with several candidates (checked by their float32
// products; 0 on the GPU and with the fp32 filter), when given.
Ran assign_nearest(Device device, KMeansImpl impl, const EmbeddingView& x, const float* centroids, int k,
                   bool inner_product, int64_t* nearest, float* dist, int threads, const ProgressFn& progress = {},
                   CancelFlag cancel = nullptr, int64_t* rescored = nullptr, const uint8_t* skip = nullptr,
                   int64_t* rechecked = nullptr);

// The filter of the distance passes that ran on `backend` at dimension d (qfilter.hpp's names): on
// the CPU the integer filter when SEMDEDUP_ISA selects it and d is within its limit (the rule of
// kmeans.cpp's assignment and maxsim.cpp's whole-cluster items), else "fp32"; the GPU runs float32.
std::string filter_of(Backend backend, int64_t d);

Ran max_similarity(Device device, const EmbeddingView& x, const int64_t* order, const int64_t* offsets,
                   int64_t nclusters, double* M, int64_t* arg, const MaxSimOptions& opt, MaxSimStats& out,
                   const ProgressFn& progress = {}, CancelFlag cancel = nullptr);

// The jobs that run on the CPU only, through the facade all the same (the addon calls no kernel
// around it): a row block of a split cluster (planned runs), the float64 re-check of stored M near
// thresholds, the largest similarity to a reference set, and exact duplicates (semantics in
// maxsim.hpp and decontaminate.hpp).
MaxSimStats max_similarity_block(const EmbeddingView& x, const int64_t* rows, int64_t n, int64_t j0, int64_t j1,
                                 double* M, int64_t* arg, const MaxSimOptions& opt, const ProgressFn& progress = {},
                                 CancelFlag cancel = nullptr);
int64_t recheck_near_thresholds(const EmbeddingView& x, const int64_t* order, const int64_t* offsets, int64_t nclusters,
                                double* M, int64_t* arg, const MaxSimOptions& opt, CancelFlag cancel = nullptr);
CrossStats max_similarity_to_reference(const EmbeddingView& x, const int64_t* x_rows, const int64_t* x_offsets,
                                       const EmbeddingView& r, const int64_t* r_rows, const int64_t* r_offsets,
                                       int64_t ngroups, double* best, int64_t* best_ref, const MaxSimOptions& opt,
                                       const ProgressFn& progress = {}, CancelFlag cancel = nullptr);
ExactDuplicateStats exact_duplicates(const EmbeddingView& x, const int64_t* order, int64_t* first_of, int threads,
                                     const ProgressFn& progress = {}, CancelFlag cancel = nullptr);

}  // namespace engine
}  // namespace semdedup
