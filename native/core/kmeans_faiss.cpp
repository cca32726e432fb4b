// The FAISS adapter (step 2 (docs/algorithm.md), kmeans_impl: faiss): faiss::Clustering and IndexFlat search fed from the mapping.
// FAISS does the training exactly as faiss.Kmeans does; this file only feeds it from the mapping without loading the whole matrix.
#include "semdedup/kmeans.hpp"

#include <faiss/Clustering.h>
#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/utils/random.h>
#include <faiss/impl/FaissException.h>

#include <memory>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "semdedup/mapping.hpp"
#include "semdedup/sampling.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace semdedup {
namespace {

// An index that reports each k-means iteration: faiss::Clustering calls search() once per
// iteration on the training set. Progress and cancellation hook in there.
template <class Base>
struct ReportingIndex : Base {
  ReportingIndex(int d, const ProgressFn& progress, CancelFlag cancel, int64_t total)
      : Base(d), progress_(progress), cancel_(cancel), total_(total) {}
  void search(faiss::Index::idx_t n, const float* x, faiss::Index::idx_t k, float* distances, faiss::Index::idx_t* labels,
              const faiss::SearchParameters* params = nullptr) const override {
    check_cancel(cancel_);
    Base::search(n, x, k, distances, labels, params);
    ++iterations_;
    if (progress_) progress_(std::min<int64_t>(iterations_, total_), total_);
  }
  const ProgressFn& progress_;
  CancelFlag cancel_;
  int64_t total_;
  mutable int64_t iterations_ = 0;
};

struct OmpThreads {
  explicit OmpThreads(int t) {
#ifdef _OPENMP
    prev_ = omp_get_max_threads();
    if (t > 0) omp_set_num_threads(resolve_threads(t));
#else
    (void)t;
#endif
  }
  ~OmpThreads() {
#ifdef _OPENMP
    omp_set_num_threads(prev_);
#endif
  }
  int prev_ = 1;
};

}  // namespace

KMeansResult train_kmeans_faiss(const EmbeddingView& x, const KMeansParams& p, const ProgressFn& progress,
                                CancelFlag cancel) {
  check_kmeans_args(x, p);
  OmpThreads omp(p.threads);
  const int64_t d = x.d;
  // FAISS's own subsampling done here (the same rows in the same order), so that only those
  // rows are read from the mapping; FAISS then sees exactly k * max rows and samples no more.
  BigBuffer sample;
  const float* train = nullptr;
  const std::vector<int64_t> rows = kmeans_training_sample(x.n, p.k, p.max_points_per_centroid, p.seed);
  const int64_t nt = int64_t(rows.size());
  if (nt == x.n && x.is_f32() && x.contiguous()) {
    train = x.f32_row(0);
  } else {
    sample = read_training_sample(x, rows, p.threads);
    train = sample.as<float>();
  }

  faiss::ClusteringParameters cp;
  cp.niter = p.niter;
  cp.nredo = p.nredo;
  cp.seed = int(p.seed);
  cp.spherical = p.spherical;
  cp.max_points_per_centroid = p.max_points_per_centroid;
  cp.min_points_per_centroid = p.min_points_per_centroid;
  cp.verbose = p.verbose;
  faiss::Clustering clus(int(d), p.k, cp);
  const int64_t total = int64_t(p.niter) * p.nredo;
  try {
    if (p.spherical) {
      ReportingIndex<faiss::IndexFlatIP> index(int(d), progress, cancel, total);
      clus.train(nt, train, index);
    } else {
      ReportingIndex<faiss::IndexFlatL2> index(int(d), progress, cancel, total);
      clus.train(nt, train, index);
    }
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorCode::Backend, std::string("FAISS k-means failed: ") + e.what());
  }
  KMeansResult r;
  r.centroids = clus.centroids;
  for (const auto& s : clus.iteration_stats) r.objective.push_back(s.obj);
  r.n_train = nt;
  r.under_min_points = x.n < int64_t(p.k) * p.min_points_per_centroid;
  return r;
}

void assign_nearest_faiss(const EmbeddingView& x, const float* centroids, int k, bool inner_product,
                          int64_t* nearest, float* dist, int threads, const ProgressFn& progress, CancelFlag cancel) {
  OmpThreads omp(threads);
  std::unique_ptr<faiss::IndexFlat> index;
  if (inner_product)
    index.reset(new faiss::IndexFlatIP(int(x.d)));
  else
    index.reset(new faiss::IndexFlatL2(int(x.d)));
  index->add(k, centroids);
  // A multiple of FAISS's query block (4096), so that the blocks FAISS computes are the same
  // as when the whole matrix is searched at once.
  const int64_t block = 65536;
  std::vector<float> buf;
  std::vector<faiss::Index::idx_t> labels(static_cast<size_t>(block));
  for (int64_t b = 0; b < x.n; b += block) {
    check_cancel(cancel);
    const int64_t m = std::min(block, x.n - b);
    if (!x.f32_in_place(b, b + m)) buf.resize(size_t(m) * size_t(x.d));
    const float* rows = x.f32_rows(b, b + m, buf.data());
    index->search(m, rows, 1, dist + b, labels.data());
    for (int64_t i = 0; i < m; ++i) nearest[b + i] = labels[size_t(i)];
    x.release(b, b + m);
    if (progress) progress(b + m, x.n);
  }
}

std::string faiss_version() {
#ifdef SEMDEDUP_HAVE_FAISS
#if defined(FAISS_VERSION_MAJOR)
  return std::to_string(FAISS_VERSION_MAJOR) + "." + std::to_string(FAISS_VERSION_MINOR) + "." +
         std::to_string(FAISS_VERSION_PATCH);
#else
  return "unknown";
#endif
#else
  return "none";
#endif
}

}  // namespace semdedup
