// FAISS-compatible random sampling (FAISS 1.7.3: faiss/utils/random.h and the sampling done in
// faiss::Clustering::train), reimplemented so that a backend without FAISS (the CUDA k-means)
// draws exactly the same training rows and initial centroids as faiss.Kmeans does.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace semdedup {

// Bit-compatible with faiss::RandomGenerator (1.7.3): a std::mt19937 seeded with the low 32 bits
// of the seed.
class FaissRandom {
 public:
  explicit FaissRandom(int64_t seed = 1234) : mt_(static_cast<unsigned int>(seed)) {}
  int rand_int() { return int(mt_() & 0x7fffffffu); }                           // in [0, 2^31)
  int64_t rand_int64() { return int64_t(rand_int()) | (int64_t(rand_int()) << 31); }
  int rand_int(int max) { return int(mt_() % unsigned(max)); }                 // in [0, max)
  float rand_float() { return float(mt_()) / float(std::mt19937::max()); }     // in [0, 1]
  double rand_double() { return double(mt_()) / double(std::mt19937::max()); }

 private:
  std::mt19937 mt_;
};

// faiss::rand_perm: perm = 0..n-1 shuffled by a forward Fisher-Yates with FaissRandom(seed).
void faiss_rand_perm(int* perm, size_t n, int64_t seed);

// The rows faiss::Clustering::train (1.7.3) trains on: when n > k * max_points_per_centroid,
// the first k * max_points_per_centroid entries of rand_perm(n, seed); otherwise 0..n-1.
// The order matters (the training set is built in this order).
std::vector<int64_t> kmeans_training_sample(int64_t n, int k, int max_points_per_centroid, int64_t seed);

// Indices into the training set (of nx rows) of the initial centroids of redo round `redo`:
// the first k entries of rand_perm(nx, seed + 1 + redo * 15486557).
std::vector<int64_t> kmeans_init_rows(int64_t nx, int k, int64_t seed, int redo = 0);

// Empty-cluster handling of faiss::Clustering (split_clusters in Clustering.cpp): for every
// empty cluster ci (hassign[ci] == 0), pick a cluster cj with probability proportional to
// (hassign[cj] - 1) / (n - k) by scanning with FaissRandom(1234), copy its centroid and apply
// the symmetric (1 +- 1/1024) perturbation, then split the counts. `centroids` is k x d float32
// (already divided by the counts). Returns the number of splits.
int faiss_split_clusters(size_t d, size_t k, size_t n, float* hassign, float* centroids);

}  // namespace semdedup
