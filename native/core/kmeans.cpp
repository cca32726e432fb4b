// k-means through FAISS (SPEC step 2). FAISS does the training exactly as faiss.Kmeans does;
// this file only feeds it from the memory map without loading the whole matrix.
#include "semdedup/kmeans.hpp"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/utils/random.h>
#include <faiss/impl/FaissException.h>

#include <memory>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "semdedup/mapping.hpp"

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
    if (t > 0) omp_set_num_threads(t);
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
  if (p.k < 1) throw Error(ErrorCode::InvalidArgument, "k must be >= 1, got " + std::to_string(p.k));
  if (int64_t(p.k) > x.n)
    throw Error(ErrorCode::InvalidArgument,
                "k = " + std::to_string(p.k) + " is larger than the number of rows N = " + std::to_string(x.n));
  if (x.n > int64_t(INT32_MAX))
    throw Error(ErrorCode::InvalidArgument, "k-means training supports at most 2^31-1 rows");
  OmpThreads omp(p.threads);
  const int64_t d = x.d;

  // FAISS's own subsampling (Clustering.cpp, subsample_training_set): rand_perm(n, seed), the
  // first k * max_points_per_centroid rows. Done here so that only those rows are read from
  // the mapping; FAISS then sees exactly max rows and does not sample again.
  const int64_t max_train = int64_t(p.k) * p.max_points_per_centroid;
  std::vector<float> sample;
  const float* train = nullptr;
  int64_t nt = x.n;
  if (x.n > max_train) {
    std::vector<int> perm(static_cast<size_t>(x.n));
    faiss::rand_perm(perm.data(), size_t(x.n), p.seed);
    nt = max_train;
    sample.resize(size_t(nt) * size_t(d));
    // Read in ascending row order (sequential-ish I/O), write to the sample's slot.
    std::vector<int64_t> slots(static_cast<size_t>(nt));
    std::iota(slots.begin(), slots.end(), 0);
    std::sort(slots.begin(), slots.end(), [&](int64_t a, int64_t b) { return perm[size_t(a)] < perm[size_t(b)]; });
    // Rows are read in ascending order: drop the pages behind the reader as it goes, so the
    // resident set holds the sample, not the file.
    int64_t released = 0, count = 0;
    for (int64_t s : slots) {
      const int64_t row = perm[size_t(s)];
      x.row(row, sample.data() + size_t(s) * size_t(d));
      if (x.mapped && ++count % 8192 == 0) {
        release_pages(static_cast<const char*>(x.data) + size_t(released) * x.row_bytes(), size_t(row - released) * x.row_bytes());
        released = row;
      }
    }
    if (x.mapped) release_pages(x.data, size_t(x.n) * x.row_bytes());
    train = sample.data();
  } else if (x.is_f32()) {
    train = static_cast<const float*>(x.data);
  } else {
    sample.resize(size_t(x.n) * size_t(d));
    x.rows(0, x.n, sample.data());
    train = sample.data();
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
    const float* rows;
    if (x.is_f32()) {
      rows = x.f32_row(b);
    } else {
      buf.resize(size_t(m) * size_t(x.d));
      x.rows(b, b + m, buf.data());
      rows = buf.data();
    }
    index->search(m, rows, 1, dist + b, labels.data());
    for (int64_t i = 0; i < m; ++i) nearest[b + i] = labels[size_t(i)];
    if (x.mapped)
      release_pages(static_cast<const char*>(x.data) + size_t(b) * x.row_bytes(), size_t(m) * x.row_bytes());
    if (progress) progress(b + m, x.n);
  }
}

}  // namespace semdedup
