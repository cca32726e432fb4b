// step 2 (docs/algorithm.md): FAISS k-means with FAISS's defaults, and the nearest centroid of every row.
#pragma once
#include <string>
#include <vector>

#include "semdedup/common.hpp"

namespace semdedup {

struct KMeansParams {
  int k = 0;
  int niter = 20;
  int64_t seed = 1234;
  bool spherical = false;
  int max_points_per_centroid = 256;  // FAISS default
  int min_points_per_centroid = 39;   // FAISS default
  int nredo = 1;
  int threads = 0;
  bool verbose = false;
  // Engine k-means only: skip the full search of rows whose assignment provably cannot change
  // (bounds on centroid movement). The result is the same as without it.
  bool prune = true;
  GpuLimits gpu;  // the CUDA backend's limits (common.hpp)
};

struct KMeansResult {
  std::vector<float> centroids;  // k x d
  std::vector<float> objective;  // one value per iteration
  int64_t n_train = 0;           // rows used for training after FAISS's subsampling
  bool under_min_points = false; // n < k * min_points_per_centroid (FAISS warns)
  int64_t searched_rows = 0;     // rows fully searched (against all k centroids), all iterations
  int64_t pruned_rows = 0;       // rows whose search the bounds skipped
};

// The part of a Lloyd iteration that differs between backends: assigning the training rows to
// their nearest centroid (and, optionally, forming the new centroids). The driver (lloyd_kmeans)
// owns everything else, so every backend follows FAISS's algorithm through the same code.
class KMeansAssigner {
 public:
  virtual ~KMeansAssigner() = default;
  // The training set (nt x d float32, row-major, contiguous), once before the first iteration;
  // ip: inner product (spherical) rather than squared L2.
  virtual void prepare(const float* X, int64_t nt, int64_t d, bool ip) = 0;
  // assign[i] and dis[i] (FAISS's value: inner product, or squared L2 clamped at 0) of every
  // training row against the k centroids `cent` (k x d), ties to the lowest index. `moved[c]`
  // bounds how far centroid c moved since the previous call (nullptr on the first iteration of a
  // round); `assign` then still holds the previous assignment (for bounds).
  virtual void assign(const float* cent, int k, const double* moved, int64_t* assign, float* dis,
                      CancelFlag cancel) = 0;
  // Optionally forms the new centroids as faiss compute_centroids does (float sums in training-row
  // order, then one multiplication by 1 / count; hassign[c] = the count) into cent (k x d).
  // Returns false to let the driver do it on the host.
  virtual bool centroids(const int64_t* /*assign*/, int /*k*/, float* /*cent*/, float* /*hassign*/) { return false; }
  int64_t searched_rows = 0;  // rows searched against all centroids
  int64_t pruned_rows = 0;    // rows whose search bounds made unnecessary
};

// FAISS's Clustering::train (1.7.3) step for step, with the assignment delegated: FAISS's
// subsample read from the mapping, initialisation, Lloyd iterations, centroid update, empty-cluster
// split, spherical re-normalisation, nredo. Shared by the CPU and CUDA backends.
KMeansResult lloyd_kmeans(const EmbeddingView& x, const KMeansParams& p, KMeansAssigner& assigner,
                          const ProgressFn& progress = {}, CancelFlag cancel = nullptr);

// The engine's k-means: the algorithm of faiss::Clustering (1.7.3) step for step: FAISS's
// subsample (rand_perm(n, seed), first k * max_points_per_centroid rows when n is larger), FAISS's
// initialisation, exact fp32 Lloyd iterations (argmax inner product / argmin squared L2, first
// index on ties), centroids as ordered sums divided by counts, FAISS's empty-cluster split,
// spherical re-normalisation. Assignment runs as blocked single-threaded sgemm + fused argmax on
// our workers; with `prune`, rows whose assignment bounds prove it unchanged are not searched.
// Needs no FAISS. Gives the same centroids as faiss.Kmeans on the same data (tests check bits).
KMeansResult train_kmeans(const EmbeddingView& x, const KMeansParams& p, const ProgressFn& progress = {},
                          CancelFlag cancel = nullptr);

// Nearest centroid of every row, as index.search(x, 1) with IndexFlatIP (inner_product: dist =
// the inner product) or IndexFlatL2 (dist = squared L2) computes it. Streams over x in blocks,
// releasing mapped pages behind it. No FAISS needed.
void assign_nearest(const EmbeddingView& x, const float* centroids, int k, bool inner_product,
                    int64_t* nearest, float* dist, int threads = 0, const ProgressFn& progress = {},
                    CancelFlag cancel = nullptr);

// Throws InvalidArgument for k < 1, k > N, N >= 2^31, D < 1 (shared by every backend).
void check_kmeans_args(const EmbeddingView& x, const KMeansParams& p);

// The rows FAISS trains on (kmeans_training_sample), read into a contiguous float32 matrix in
// FAISS's order; reads ascend through the file (pread when the view has a descriptor, so the
// resident set does not grow with the file).
std::vector<float> read_training_sample(const EmbeddingView& x, const std::vector<int64_t>& rows);

// The same two steps through FAISS itself (faiss::Clustering and IndexFlat search), for
// comparison; only in builds with FAISS.
KMeansResult train_kmeans_faiss(const EmbeddingView& x, const KMeansParams& p, const ProgressFn& progress = {},
                                CancelFlag cancel = nullptr);
void assign_nearest_faiss(const EmbeddingView& x, const float* centroids, int k, bool inner_product,
                          int64_t* nearest, float* dist, int threads = 0, const ProgressFn& progress = {},
                          CancelFlag cancel = nullptr);

// The FAISS version linked ("none" in builds without FAISS).
std::string faiss_version();

}  // namespace semdedup
