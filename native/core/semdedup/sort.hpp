// step 3 (docs/algorithm.md): group rows by cluster and rank each cluster by its distance to the centroid.
#pragma once
#include "semdedup/common.hpp"

namespace semdedup {

// key[i]: the distance of row i to its centroid. Produces order (n rows, grouped by cluster
// 0..k-1, each group stably sorted by key: descending when keep_hard, else ascending; equal
// keys keep ascending row order) and offsets (k + 1). When sorted_key is given, it receives
// key[order[p]] for every position p.
// Parallel over rows (the grouping) and over clusters (the ranking); the result does not depend
// on the thread count. Throws if nearest[i] is outside [0, k) (naming the first such row).
void rank_clusters(const int64_t* nearest, const float* key, int64_t n, int64_t k, bool keep_hard,
                   int64_t* order, int64_t* offsets, int threads = 0, float* sorted_key = nullptr,
                   CancelFlag cancel = nullptr);

// cos(x_i, centroid[nearest[i]]) for every row (both normalised), for sim_metric cosine with
// non-spherical k-means: float64 inner products and norms (nearest.hpp's fixed order), the
// quotient rounded once to float32.
void cosine_to_centroid(const EmbeddingView& x, const float* centroids, int k, const int64_t* nearest,
                        float* out, int threads = 0, CancelFlag cancel = nullptr);

}  // namespace semdedup
