#include "semdedup/engine.hpp"

#include "semdedup/blas.hpp"
#include "semdedup/qfilter.hpp"
#ifdef SEMDEDUP_HAVE_CUDA
#include "semdedup/cuda.hpp"
#endif

namespace semdedup {
namespace engine {

Device parse_device(const std::string& s) {
  if (s == "auto") return Device::Auto;
  if (s == "cpu") return Device::Cpu;
  if (s == "cuda") return Device::Cuda;
  throw Error(ErrorCode::InvalidArgument, "device must be 'auto', 'cpu' or 'cuda', got '" + s + "'");
}

KMeansImpl parse_kmeans_impl(const std::string& s) {
  if (s == "engine") return KMeansImpl::Engine;
  if (s == "faiss") return KMeansImpl::Faiss;
  throw Error(ErrorCode::InvalidArgument, "kmeans_impl must be 'engine' or 'faiss', got '" + s + "'");
}

const char* backend_name(Backend b) { return b == Backend::Cuda ? "cuda" : "cpu"; }

namespace {

CudaStatus query_cuda() {
  CudaStatus s;
#ifdef SEMDEDUP_HAVE_CUDA
  s.compiled = true;
  const cuda::DeviceInfo di = cuda::device_info();
  s.available = di.available;
  s.reason = di.reason;
  s.name = di.name;
  s.cc_major = di.cc_major;
  s.cc_minor = di.cc_minor;
  s.total_mem = di.total_mem;
  s.free_mem = di.free_mem;
  s.driver_version = di.driver_version;
  s.runtime_version = di.runtime_version;
  s.sm_count = di.sm_count;
#else
  s.reason = "this build has no CUDA backend";
#endif
  return s;
}

// Runs `gpu` or `cpu` by the rules at the top of engine.hpp. `job` names the job in messages.
template <class Gpu, class Cpu>
Ran dispatch(Device device, const char* job, Gpu&& gpu, Cpu&& cpu) {
  Ran ran;
  if (device == Device::Cpu) {
    cpu();
    return ran;
  }
  const CudaStatus& cs = engine_info().cuda;
  if (!cs.available) {
    if (device == Device::Cuda)
      throw Error(ErrorCode::Backend, std::string("device 'cuda' was requested for ") + job + ", but " + cs.reason);
    ran.note = cs.reason;
    cpu();
    return ran;
  }
#ifdef SEMDEDUP_HAVE_CUDA
  try {
    gpu();
    ran.backend = Backend::Cuda;
    return ran;
  } catch (const Error& e) {
    if (e.code() != ErrorCode::Backend) throw;
    if (device == Device::Cuda)
      throw Error(ErrorCode::Backend, std::string(job) + " on the GPU (device 'cuda') failed: " + e.what());
    ran.note = std::string("the GPU refused ") + job + ": " + e.what();
  }
#else
  (void)gpu;
#endif
  cpu();
  return ran;
}

}  // namespace

const EngineInfo& engine_info() {
  static const EngineInfo info = [] {
    EngineInfo i;
    i.version = SEMDEDUP_VERSION;
    i.faiss = faiss_version();
    i.blas_core = blas_core_name();
    i.blas_threads = blas_threads();
    i.hardware_threads = resolve_threads(0);
#ifdef SEMDEDUP_HAVE_FAISS
    i.faiss_kmeans = true;
#endif
    i.cuda = query_cuda();
    return i;
  }();
  return info;
}

Resolved resolve_device(Device device) {
  Resolved r;
  r.requested = device;
  if (device == Device::Cpu) return r;
  const CudaStatus& cs = engine_info().cuda;
  if (!cs.available) {
    if (device == Device::Cuda)
      throw Error(ErrorCode::Backend, "device 'cuda' was requested, but no usable GPU is available: " + cs.reason);
    r.note = cs.reason;
    return r;
  }
  r.device = Backend::Cuda;
  return r;
}

static void check_impl(KMeansImpl impl) {
  if (impl == KMeansImpl::Faiss && !engine_info().faiss_kmeans)
    throw Error(ErrorCode::InvalidArgument, "kmeans_impl 'faiss' needs a build with FAISS (this one has none)");
}

Ran train_kmeans(Device device, KMeansImpl impl, const EmbeddingView& x, const KMeansParams& p, KMeansResult& out,
                 const ProgressFn& progress, CancelFlag cancel) {
  check_impl(impl);
  return dispatch(
      device, "k-means training",
      [&] {
#ifdef SEMDEDUP_HAVE_CUDA
        out = cuda::train_kmeans(x, p, progress, cancel);
#endif
      },
      [&] {
#ifdef SEMDEDUP_HAVE_FAISS
        if (impl == KMeansImpl::Faiss) {
          out = train_kmeans_faiss(x, p, progress, cancel);
          return;
        }
#endif
        out = semdedup::train_kmeans(x, p, progress, cancel);
      });
}

Ran assign_nearest(Device device, KMeansImpl impl, const EmbeddingView& x, const float* centroids, int k,
                   bool inner_product, int64_t* nearest, float* dist, int threads, const ProgressFn& progress,
                   CancelFlag cancel, int64_t* rescored, const uint8_t* skip, int64_t* rechecked) {
  check_impl(impl);  // both implementations assign by the exact rule
  return dispatch(
      device, "the assignment to centroids",
      [&] {
#ifdef SEMDEDUP_HAVE_CUDA
        GpuLimits gpu;
        cuda::assign_nearest(x, centroids, k, inner_product, nearest, dist, gpu, progress, cancel, rescored);
#endif
      },
      // the GPU searches every row (rows in skip get the values they hold again)
      [&] { semdedup::assign_nearest(x, centroids, k, inner_product, nearest, dist, threads, progress, cancel, rescored, rechecked, skip); });
}

std::string filter_of(Backend backend, int64_t d) {
  if (backend == Backend::Cuda) return qfilter::isa_name(qfilter::Isa::Fp32);
  return qfilter::isa_name(qfilter::filter_for(d));
}

Ran max_similarity(Device device, const EmbeddingView& x, const int64_t* order, const int64_t* offsets,
                   int64_t nclusters, double* M, int64_t* arg, const MaxSimOptions& opt, MaxSimStats& out,
                   const ProgressFn& progress, CancelFlag cancel) {
  return dispatch(
      device, "max similarity",
      [&] {
#ifdef SEMDEDUP_HAVE_CUDA
        out = cuda::max_similarity(x, order, offsets, nclusters, M, arg, opt, progress, cancel);
#endif
      },
      [&] { out = max_similarity_cpu(x, order, offsets, nclusters, M, arg, opt, progress, cancel); });
}

MaxSimStats max_similarity_block(const EmbeddingView& x, const int64_t* rows, int64_t n, int64_t j0, int64_t j1,
                                 double* M, int64_t* arg, const MaxSimOptions& opt, const ProgressFn& progress,
                                 CancelFlag cancel) {
  return semdedup::max_similarity_block(x, rows, n, j0, j1, M, arg, opt, progress, cancel);
}

int64_t recheck_near_thresholds(const EmbeddingView& x, const int64_t* order, const int64_t* offsets, int64_t nclusters,
                                double* M, int64_t* arg, const MaxSimOptions& opt, CancelFlag cancel) {
  return semdedup::recheck_near_thresholds(x, order, offsets, nclusters, M, arg, opt, cancel);
}

CrossStats max_similarity_to_reference(const EmbeddingView& x, const int64_t* x_rows, const int64_t* x_offsets,
                                       const EmbeddingView& r, const int64_t* r_rows, const int64_t* r_offsets,
                                       int64_t ngroups, double* best, int64_t* best_ref, const MaxSimOptions& opt,
                                       const ProgressFn& progress, CancelFlag cancel) {
  return semdedup::max_similarity_to_reference(x, x_rows, x_offsets, r, r_rows, r_offsets, ngroups, best, best_ref, opt,
                                               progress, cancel);
}

ExactDuplicateStats exact_duplicates(const EmbeddingView& x, const int64_t* order, int64_t* first_of, int threads,
                                     const ProgressFn& progress, CancelFlag cancel) {
  return semdedup::exact_duplicates(x, order, first_of, threads, progress, cancel);
}

}  // namespace engine
}  // namespace semdedup
