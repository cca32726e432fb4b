// FAISS-compatible sampling (native/core/sampling.hpp) against FAISS itself: the random
// generator, rand_perm, the training subsample and initial centroids of faiss::Clustering, and
// the empty-cluster split. Last line: "N passed, N failed".
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "semdedup/sampling.hpp"
#ifdef SEMDEDUP_HAVE_FAISS
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/utils/random.h>
#endif

using namespace semdedup;

using check::run;

int main() {
  run("training sample without subsampling is 0..n-1", [] {
    auto rows = kmeans_training_sample(1000, 4, 256, 1234);
    CHECK(rows.size() == 1000, "size %zu", rows.size());
    for (size_t i = 0; i < rows.size(); ++i) CHECK(rows[i] == int64_t(i), "row %zu", i);
  });
  run("rand_perm is a permutation", [] {
    std::vector<int> p(10007);
    faiss_rand_perm(p.data(), p.size(), 42);
    std::vector<char> seen(p.size(), 0);
    for (int v : p) {
      CHECK(v >= 0 && size_t(v) < p.size() && !seen[size_t(v)], "value %d", v);
      seen[size_t(v)] = 1;
    }
  });
  run("split_clusters fills every empty cluster", [] {
    const size_t d = 4, k = 5, n = 100;
    std::vector<float> h = {0, 60, 0, 40, 0};
    std::vector<float> c(k * d, 1.0f);
    const int ns = faiss_split_clusters(d, k, n, h.data(), c.data());
    CHECK(ns == 3, "nsplit %d", ns);
    float tot = 0;
    for (float v : h) {
      CHECK(v > 0, "count %g", double(v));
      tot += v;
    }
    CHECK(tot == 100.0f, "total %g", double(tot));
  });
#ifdef SEMDEDUP_HAVE_FAISS
  run("RandomGenerator equals faiss::RandomGenerator", [] {
    for (int64_t seed : {int64_t(0), int64_t(1), int64_t(1234), int64_t(1235), int64_t(-7), int64_t(1) << 40}) {
      faiss::RandomGenerator a(seed);
      FaissRandom b(seed);
      for (int i = 0; i < 200; ++i) {
        CHECK(a.rand_int() == b.rand_int(), "rand_int seed %lld i %d", (long long)seed, i);
        CHECK(a.rand_int(1 + i * 37) == b.rand_int(1 + i * 37), "rand_int(max) seed %lld i %d", (long long)seed, i);
        CHECK(a.rand_int64() == b.rand_int64(), "rand_int64 seed %lld i %d", (long long)seed, i);
        const float fa = a.rand_float(), fb = b.rand_float();
        CHECK(std::memcmp(&fa, &fb, 4) == 0, "rand_float seed %lld i %d", (long long)seed, i);
        const double da = a.rand_double(), db = b.rand_double();
        CHECK(std::memcmp(&da, &db, 8) == 0, "rand_double seed %lld i %d", (long long)seed, i);
      }
    }
  });
  run("rand_perm equals faiss::rand_perm", [] {
    for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(3), size_t(17), size_t(1000), size_t(65537), size_t(300001)})
      for (int64_t seed : {int64_t(0), int64_t(1234), int64_t(1235), int64_t(99), int64_t(1234 + 1 + 15486557)}) {
        std::vector<int> a(n), b(n);
        faiss::rand_perm(a.data(), n, seed);
        faiss_rand_perm(b.data(), n, seed);
        CHECK(a == b, "n %zu seed %lld", n, (long long)seed);
      }
  });
  // faiss::Clustering with niter = 0 leaves the initial centroids: x[sample[init[i]]] (then
  // re-normalised when spherical). This pins both the subsample seed and the init seed.
  run("training sample and init rows equal faiss::Clustering's", [] {
    struct Case { int64_t n; int d, k, maxp; int64_t seed; bool spherical; };
    for (const Case& cs : {Case{5000, 8, 10, 256, 1234, false}, Case{5000, 8, 10, 100, 1234, false},
                           Case{20000, 16, 50, 39, 7, true}, Case{3000, 4, 3000 / 20, 10, 99, false},
                           Case{777, 3, 777, 256, 5, false}}) {
      std::mt19937 rng(uint32_t(cs.n + cs.k));
      std::normal_distribution<float> nd;
      std::vector<float> x(size_t(cs.n) * size_t(cs.d));
      for (auto& v : x) v = nd(rng);
      faiss::ClusteringParameters cp;
      cp.niter = 0;
      cp.seed = int(cs.seed);
      cp.spherical = cs.spherical;
      cp.max_points_per_centroid = cs.maxp;
      cp.min_points_per_centroid = 1;  // no warning on stderr
      faiss::Clustering clus(cs.d, cs.k, cp);
      faiss::IndexFlatL2 index(cs.d);
      clus.train(cs.n, x.data(), index);
      const auto sample = kmeans_training_sample(cs.n, cs.k, cs.maxp, cs.seed);
      const int64_t nx = int64_t(sample.size());
      CHECK(nx == std::min<int64_t>(cs.n, int64_t(cs.k) * cs.maxp), "nx %lld", (long long)nx);
      std::vector<int64_t> init;
      if (nx == cs.k) {
        // FAISS's corner case copies the first k input rows (x_in, not the sample)
        for (int i = 0; i < cs.k; ++i) init.push_back(i);
      } else {
        for (int64_t r : kmeans_init_rows(nx, cs.k, cs.seed, 0)) init.push_back(sample[size_t(r)]);
      }
      for (int c = 0; c < cs.k; ++c) {
        std::vector<float> ref(x.begin() + init[size_t(c)] * cs.d, x.begin() + (init[size_t(c)] + 1) * cs.d);
        if (cs.spherical && nx != cs.k) {
          float s = 0;  // fvec_renorm_L2: float sum of squares, then multiply by 1/sqrt
          for (float v : ref) s += v * v;
          const float inv = 1.0f / std::sqrt(s);
          for (float& v : ref) v *= inv;
          for (int j = 0; j < cs.d; ++j)
            CHECK(std::fabs(ref[size_t(j)] - clus.centroids[size_t(c) * cs.d + j]) <= 1e-6f, "n %lld k %d centroid %d",
                  (long long)cs.n, cs.k, c);
        } else {
          CHECK(std::memcmp(ref.data(), clus.centroids.data() + size_t(c) * cs.d, sizeof(float) * cs.d) == 0,
                "n %lld k %d centroid %d (row %lld)", (long long)cs.n, cs.k, c, (long long)init[size_t(c)]);
        }
      }
    }
  });
  // One Lloyd iteration with planted empty clusters (duplicate initial centroids: the later
  // copy never wins a tie), replayed with FAISS's float arithmetic and our split.
  run("one iteration with empty clusters equals faiss::Clustering's", [] {
    const int d = 6, k = 12;
    const int64_t n = 600;
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    std::vector<float> x(size_t(n) * d);
    for (auto& v : x) v = nd(rng);
    // make the init rows collide: every init row r of odd index copies init row of index i - 1
    const auto init = kmeans_init_rows(n, k, 1234, 0);
    for (int i = 1; i < k; i += 2)
      std::memcpy(&x[size_t(init[size_t(i)]) * d], &x[size_t(init[size_t(i - 1)]) * d], sizeof(float) * d);
    faiss::ClusteringParameters cp;
    cp.niter = 1;
    cp.seed = 1234;
    faiss::Clustering clus(d, k, cp);
    faiss::IndexFlatL2 index(d);
    clus.train(n, x.data(), index);
    CHECK(clus.iteration_stats.size() == 1, "stats");
    CHECK(clus.iteration_stats[0].nsplit > 0, "no split happened");
    // replay
    std::vector<float> c0(size_t(k) * d);
    for (int i = 0; i < k; ++i) std::memcpy(&c0[size_t(i) * d], &x[size_t(init[size_t(i)]) * d], sizeof(float) * d);
    faiss::IndexFlatL2 idx2(d);
    idx2.add(k, c0.data());
    std::vector<float> dis(static_cast<size_t>(n));
    std::vector<faiss::Index::idx_t> lab(static_cast<size_t>(n));
    idx2.search(n, x.data(), 1, dis.data(), lab.data());
    std::vector<float> cen(size_t(k) * d, 0.0f), h(size_t(k), 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = lab[size_t(i)];
      h[size_t(c)] += 1.0f;
      for (int j = 0; j < d; ++j) cen[size_t(c) * d + j] += x[size_t(i) * d + j];
    }
    for (int c = 0; c < k; ++c) {
      if (h[size_t(c)] == 0) continue;
      const float norm = 1 / h[size_t(c)];
      for (int j = 0; j < d; ++j) cen[size_t(c) * d + j] *= norm;
    }
    const int ns = faiss_split_clusters(size_t(d), size_t(k), size_t(n), h.data(), cen.data());
    CHECK(ns == clus.iteration_stats[0].nsplit, "nsplit %d vs %d", ns, clus.iteration_stats[0].nsplit);
    CHECK(std::memcmp(cen.data(), clus.centroids.data(), sizeof(float) * size_t(k) * d) == 0, "centroids differ");
  });
#endif
  return check::summary();
}
