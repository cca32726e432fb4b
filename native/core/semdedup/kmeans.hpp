// SPEC step 2: FAISS k-means with FAISS's defaults, and the nearest centroid of every row.
#pragma once
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
};

struct KMeansResult {
  std::vector<float> centroids;  // k x d
  std::vector<float> objective;  // one value per iteration
  int64_t n_train = 0;           // rows used for training after FAISS's subsampling
  bool under_min_points = false; // n < k * min_points_per_centroid (FAISS warns)
};

// Trains with faiss::Clustering on the FAISS subsample of x (rand_perm(n, seed), first
// k * max_points_per_centroid rows when n is larger), identical to faiss.Kmeans(d, k, niter=...,
// seed=..., spherical=...).train(x).
KMeansResult train_kmeans(const EmbeddingView& x, const KMeansParams& p, const ProgressFn& progress = {},
                          CancelFlag cancel = nullptr);

// index.search(x, 1) with IndexFlatIP (inner_product) or IndexFlatL2: nearest[i], dist[i].
// Streams over x in blocks, releasing mapped pages behind it.
void assign_nearest(const EmbeddingView& x, const float* centroids, int k, bool inner_product,
                    int64_t* nearest, float* dist, int threads = 0, const ProgressFn& progress = {},
                    CancelFlag cancel = nullptr);

// cos(x_i, centroid[nearest[i]]) for every row (both normalised), for sim_metric cosine with
// non-spherical k-means.
void cosine_to_centroid(const EmbeddingView& x, const float* centroids, int k, const int64_t* nearest,
                        float* out, int threads = 0, CancelFlag cancel = nullptr);

}  // namespace semdedup
