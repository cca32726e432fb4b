#include "semdedup/sampling.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <stdexcept>

namespace semdedup {

void faiss_rand_perm(int* perm, size_t n, int64_t seed) {
  for (size_t i = 0; i < n; ++i) perm[i] = int(i);
  FaissRandom rng(seed);
  for (size_t i = 0; i + 1 < n; ++i) {
    const size_t j = i + size_t(rng.rand_int(int(n - i)));
    std::swap(perm[i], perm[j]);
  }
}

std::vector<int64_t> kmeans_training_sample(int64_t n, int k, int max_points_per_centroid, int64_t seed) {
  if (n < 0 || k < 1) throw std::invalid_argument("kmeans_training_sample: bad n or k");
  const int64_t max_train = int64_t(k) * int64_t(max_points_per_centroid);
  std::vector<int64_t> rows;
  if (n > max_train) {
    std::vector<int> perm(static_cast<size_t>(n));
    faiss_rand_perm(perm.data(), size_t(n), seed);
    rows.assign(perm.begin(), perm.begin() + max_train);
  } else {
    rows.resize(size_t(n));
    std::iota(rows.begin(), rows.end(), int64_t(0));
  }
  return rows;
}

std::vector<int64_t> kmeans_init_rows(int64_t nx, int k, int64_t seed, int redo) {
  if (nx < k || k < 1) throw std::invalid_argument("kmeans_init_rows: need nx >= k >= 1");
  std::vector<int> perm(static_cast<size_t>(nx));
  faiss_rand_perm(perm.data(), size_t(nx), seed + 1 + int64_t(redo) * 15486557LL);
  return std::vector<int64_t>(perm.begin(), perm.begin() + k);
}

int faiss_split_clusters(size_t d, size_t k, size_t n, float* hassign, float* centroids) {
  const double kEps = 1.0 / 1024.0;
  int nsplit = 0;
  FaissRandom rng(1234);
  for (size_t ci = 0; ci < k; ++ci) {
    if (hassign[ci] != 0) continue;
    size_t cj = 0;
    for (;; cj = (cj + 1) % k) {
      const float p = float((double(hassign[cj]) - 1.0) / double(float(n - k)));
      const float r = rng.rand_float();
      if (r < p) break;
    }
    std::memcpy(centroids + ci * d, centroids + cj * d, sizeof(float) * d);
    for (size_t j = 0; j < d; ++j) {
      // float *= double: promoted to double, rounded back to float (as in FAISS)
      if (j % 2 == 0) {
        centroids[ci * d + j] = float(centroids[ci * d + j] * (1 + kEps));
        centroids[cj * d + j] = float(centroids[cj * d + j] * (1 - kEps));
      } else {
        centroids[ci * d + j] = float(centroids[ci * d + j] * (1 - kEps));
        centroids[cj * d + j] = float(centroids[cj * d + j] * (1 + kEps));
      }
    }
    hassign[ci] = hassign[cj] / 2;
    hassign[cj] -= hassign[ci];
    ++nsplit;
  }
  return nsplit;
}

}  // namespace semdedup
