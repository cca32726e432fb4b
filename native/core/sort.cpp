// step 3 (docs/algorithm.md): the distance that ranks each row, and the ranking itself.
#include "semdedup/sort.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "semdedup/mapping.hpp"

namespace semdedup {

void rank_clusters(const int64_t* nearest, const float* key, int64_t n, int64_t k, bool keep_hard,
                   int64_t* order, int64_t* offsets) {
  // Counting sort by cluster keeps ascending row order inside each cluster...
  std::vector<int64_t> count(static_cast<size_t>(k) + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = nearest[i];
    if (c < 0 || c >= k)
      throw Error(ErrorCode::InvalidArgument, "row " + std::to_string(i) + " is assigned to cluster " +
                                                  std::to_string(c) + ", outside [0, " + std::to_string(k) + ")");
    ++count[size_t(c) + 1];
  }
  for (int64_t c = 0; c < k; ++c) count[size_t(c) + 1] += count[size_t(c)];
  std::copy(count.begin(), count.end(), offsets);
  std::vector<int64_t> pos(count.begin(), count.end() - 1);
  for (int64_t i = 0; i < n; ++i) order[pos[size_t(nearest[i])]++] = i;
  // ...so a stable sort by key gives ties in ascending row order, as docs/algorithm.md says.
  for (int64_t c = 0; c < k; ++c) {
    int64_t* b = order + offsets[c];
    int64_t* e = order + offsets[c + 1];
    if (keep_hard)
      std::stable_sort(b, e, [key](int64_t a, int64_t b2) { return key[a] > key[b2]; });
    else
      std::stable_sort(b, e, [key](int64_t a, int64_t b2) { return key[a] < key[b2]; });
  }
}

void cosine_to_centroid(const EmbeddingView& x, const float* centroids, int k, const int64_t* nearest, float* out,
                        int threads, CancelFlag cancel) {
  std::vector<double> cnorm(static_cast<size_t>(k));
  for (int c = 0; c < k; ++c) {
    double s = 0;
    for (int64_t j = 0; j < x.d; ++j) s += double(centroids[c * x.d + j]) * centroids[c * x.d + j];
    cnorm[size_t(c)] = std::sqrt(s);
  }
  const int64_t block = 16384;
  const int64_t nblocks = (x.n + block - 1) / block;
  threads = resolve_threads(threads);
  std::vector<std::vector<float>> scratch(static_cast<size_t>(threads), std::vector<float>(size_t(x.d)));
  parallel_for(threads, nblocks, [&](int64_t b, int w) {
    const int64_t begin = b * block, end = std::min(x.n, begin + block);
    float* tmp = scratch[size_t(w)].data();
    for (int64_t i = begin; i < end; ++i) {
      const float* row = x.is_f32() ? x.f32_row(i) : (x.row(i, tmp), tmp);
      const int64_t c = nearest[i];
      if (c < 0 || c >= k) throw Error(ErrorCode::InvalidArgument, "row " + std::to_string(i) + ": bad cluster");
      const float* cen = centroids + c * x.d;
      double dot = 0, nx = 0;
      for (int64_t j = 0; j < x.d; ++j) {
        dot += double(row[j]) * cen[j];
        nx += double(row[j]) * row[j];
      }
      // torch.nn.CosineSimilarity clamps each norm at eps = 1e-8
      const double den = std::max(std::sqrt(nx), 1e-8) * std::max(cnorm[size_t(c)], 1e-8);
      out[i] = float(dot / den);
    }
    if (x.mapped) release_pages(static_cast<const char*>(x.data) + size_t(begin) * x.row_bytes(), size_t(end - begin) * x.row_bytes());
  }, cancel);
}

}  // namespace semdedup
