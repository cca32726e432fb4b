// step 2 (docs/algorithm.md): k-means with FAISS's sampling, initialisation and defaults, every
// assignment the exact nearest centroid (nearest.hpp), and the nearest centroid of every row.
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
  // (bounds on centroid movement, safe under the fast pass's error bound). The result is the same
  // as without it.
  bool prune = true;
  // Keep the training rows' exact assignment to the final centroids in the result (final_*), so
  // that the assignment of every row need not search them again. Costs one bounded pass over the
  // training rows when training ends before converging (none when the last iteration changed no
  // assignment: its assignment is already the final centroids'). nredo 1 only.
  bool keep_assignment = false;
  GpuLimits gpu;  // the CUDA backend's limits (common.hpp)
};

struct KMeansResult {
  std::vector<float> centroids;  // k x d
  std::vector<float> objective;  // one value per iteration run (the float64 sum, rounded)
  int iterations = 0;            // iterations run in the kept round (< niter: stopped early, no change)
  int64_t n_train = 0;           // rows used for training after FAISS's subsampling
  bool under_min_points = false; // n < k * min_points_per_centroid (FAISS warns)
  int64_t searched_rows = 0;     // rows fully searched (against all k centroids), all iterations
  int64_t pruned_rows = 0;       // rows whose search the bounds skipped
  int64_t rescored_rows = 0;     // searched rows the fast pass left undecided, re-scored in float64
  // The low-precision filter (qfilter.hpp) used by the searches ("fp32" or "avx2-int8"), and the
  // searched rows it left with several candidates (checked by their float32 products).
  std::string filter = "fp32";
  int64_t filter_rechecked_rows = 0;
  // Searched rows that scored only the centroid groups their bounds left open (integer filter).
  int64_t partial_rows = 0;
  // Centroid scores the searches computed, all iterations (k per full search; the work issued).
  int64_t searched_columns = 0;
  // With KMeansParams::keep_assignment: the training rows (row numbers of the input), their
  // nearest centroid among the final centroids and dist_to_cent, by the exact rule (nearest.hpp);
  // empty otherwise.
  std::vector<int64_t> final_rows, final_nearest;
  std::vector<float> final_dist;
};

// The part of a Lloyd iteration that differs between backends: assigning the training rows to
// their exact nearest centroid (nearest.hpp), and optionally the centroid sums. The driver
// (lloyd_kmeans) owns everything else, so every backend runs the same algorithm through the same code.
class KMeansAssigner {
 public:
  virtual ~KMeansAssigner() = default;
  // The training set (nt x d float32, row-major, contiguous), once before the first iteration;
  // ip: inner product (spherical) rather than squared L2.
  virtual void prepare(const float* X, int64_t nt, int64_t d, bool ip) = 0;
  // assign[i]: the exact nearest centroid of training row i among the k centroids `cent` (k x d)
  // (the best float64 score, ties to the lower id), and dis[i] its float64 value (inner product,
  // or squared L2). `moved[c]` bounds how far centroid c moved since the previous call (nullptr on
  // the first iteration of a round); `assign` then still holds the previous assignment (for bounds).
  virtual void assign(const float* cent, int k, const double* moved, int64_t* assign, double* dis,
                      CancelFlag cancel) = 0;
  // Optionally forms the float64 sums of each centroid's members (sums, k x d), each added in
  // ascending training-row order, and the member counts. Returns false to let the driver do it on
  // the host (the same additions in the same order: the same bits).
  virtual bool centroid_sums(const int64_t* /*assign*/, int /*k*/, double* /*sums*/, int64_t* /*counts*/) { return false; }
  int64_t searched_rows = 0;  // rows searched against all centroids
  int64_t pruned_rows = 0;    // rows whose search bounds made unnecessary
  int64_t rescored_rows = 0;  // searched rows re-scored in float64 (fast top-2 gap within the bound)
  int64_t filter_rechecked_rows = 0;  // searched rows the integer filter left with several candidates
  int64_t partial_rows = 0;           // searched rows that scored only the groups their bounds left open
  int64_t searched_columns = 0;       // centroid scores computed by the searches (k per full search)
  std::string filter = "fp32";        // the filter the searches used (qfilter.hpp's isa_name)
};

// The pruning bounds' upkeep (kmeans.cpp), with AVX2 where the CPU has it and the same bits as
// the plain loops: grow_bounds sets u[g] to the float32 at or above u[g] + scale * add[g] + tau
// (float64, no fused multiply-add) for g < n; open_groups counts the g < n with !(l > u[g]).
void grow_bounds(float* u, const double* add, int n, double scale, double tau);
int open_groups(const float* u, int n, double l);

// The Lloyd driver, shared by the CPU and CUDA backends: FAISS's subsample read from the mapping
// and FAISS's initialisation (faiss::Clustering::train, 1.7.3), then per iteration the exact
// assignment (the backend's), float64 centroid sums in training-row order divided by the counts
// (spherical: normalised in float64), rounded once to float32, FAISS's empty-cluster split; it stops
// when an iteration changes no assignment (the centroids are then those of every later iteration).
KMeansResult lloyd_kmeans(const EmbeddingView& x, const KMeansParams& p, KMeansAssigner& assigner,
                          const ProgressFn& progress = {}, CancelFlag cancel = nullptr);

// The engine's k-means on the CPU: lloyd_kmeans with the assignment as blocked single-threaded
// sgemm (the fast pass) on our workers, each row decided by its top-2 gap or re-scored in float64;
// with `prune`, rows whose bounds prove their nearest centroid unchanged are not searched. Needs no
// FAISS. Same bytes on every machine, BLAS kernel and thread count.
KMeansResult train_kmeans(const EmbeddingView& x, const KMeansParams& p, const ProgressFn& progress = {},
                          CancelFlag cancel = nullptr);

// The exact nearest centroid of every row (nearest.hpp: the best float64 score, ties to the lower
// id) and dist = the float32 rounding of its float64 value (inner product when inner_product, else
// squared L2). The fast pass is the integer filter (qfilter.hpp: SEMDEDUP_ISA, the widest this CPU
// runs) or blocked sgemm; rows it leaves undecided are re-scored in float64 (their number in
// *rescored when given; *rechecked: rows the integer filter left with several candidates, checked
// by their float32 products). Same bytes whatever the filter. Streams over x in blocks, releasing
// mapped pages behind it.
// skip (optional, n bytes): rows with skip[i] != 0 already hold their values in nearest and dist
// (from KMeansResult::final_*) and are not searched.
void assign_nearest(const EmbeddingView& x, const float* centroids, int k, bool inner_product,
                    int64_t* nearest, float* dist, int threads = 0, const ProgressFn& progress = {},
                    CancelFlag cancel = nullptr, int64_t* rescored = nullptr, int64_t* rechecked = nullptr,
                    const uint8_t* skip = nullptr);

// Throws InvalidArgument for k < 1, k > N, N >= 2^31, D < 1 (shared by every backend).
void check_kmeans_args(const EmbeddingView& x, const KMeansParams& p);

// The rows FAISS trains on (kmeans_training_sample), read into a contiguous float32 matrix in
// FAISS's order; reads ascend through the file (pread when the view has a descriptor, so the
// resident set does not grow with the file).
BigBuffer read_training_sample(const EmbeddingView& x, const std::vector<int64_t>& rows, int threads = 1);

// The same two steps through FAISS itself (faiss::Clustering and IndexFlat search), for
// comparison; only in builds with FAISS. Not deterministic across machines (FAISS's fp32 sums and
// BLAS rounding decide its assignments); the pipeline's kmeans_impl faiss trains with it and then
// assigns every row with the exact assign_nearest.
KMeansResult train_kmeans_faiss(const EmbeddingView& x, const KMeansParams& p, const ProgressFn& progress = {},
                                CancelFlag cancel = nullptr);
void assign_nearest_faiss(const EmbeddingView& x, const float* centroids, int k, bool inner_product,
                          int64_t* nearest, float* dist, int threads = 0, const ProgressFn& progress = {},
                          CancelFlag cancel = nullptr);

// The FAISS version linked ("none" in builds without FAISS).
std::string faiss_version();

}  // namespace semdedup
