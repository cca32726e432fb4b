// Step 2 on a real file, the integer filter against float32, in one process: training and the
// final assignment timed (wall and process CPU), with the counters that explain the time.
//   bench_kmeans FILE N D K [niter] [rounds] [fp32|avx2-int8]
// FILE: N x D float32 rows (raw). Each round runs fp32 then avx2-int8 (SEMDEDUP_ISA), and checks
// that both give the same centroids, nearest centroids and distances, byte for byte.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <ctime>
#include <vector>

#include "bench_clock.hpp"
#include "semdedup/kmeans.hpp"
#include "semdedup/mapping.hpp"

using namespace semdedup;


int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: bench_kmeans FILE N D K [niter] [rounds]\n");
    return 2;
  }
  const int64_t n = std::atoll(argv[2]), d = std::atoll(argv[3]);
  const int k = std::atoi(argv[4]);
  const int niter = argc > 5 ? std::atoi(argv[5]) : 20;
  const int rounds = argc > 6 ? std::atoi(argv[6]) : 1;
  const std::string only = argc > 7 ? argv[7] : "";
  MappedFile f(argv[1], 0, n * d * 4, false);
  EmbeddingView v;
  v.data = f.data();
  v.n = n;
  v.d = d;
  v.mapped = true;
  v.fd = f.fd();
  KMeansParams p;
  p.k = k;
  p.niter = niter;
  p.spherical = true;
  for (int r = 0; r < rounds; ++r) {
    std::vector<float> cent[2], dist[2];
    std::vector<int64_t> near[2];
    for (int path = 0; path < 2; ++path) {
      if (!only.empty() && only != (path == 0 ? "fp32" : "avx2-int8")) continue;
      setenv("SEMDEDUP_ISA", path == 0 ? "fp32" : "avx2-int8", 1);
      double w0 = bench::wall_seconds(), c0 = bench::cpu_seconds();
      KMeansResult res = train_kmeans(v, p);
      double w1 = bench::wall_seconds(), c1 = bench::cpu_seconds();
      near[path].resize(size_t(n));
      dist[path].resize(size_t(n));
      int64_t rs = 0, rc = 0;
      assign_nearest(v, res.centroids.data(), k, true, near[path].data(), dist[path].data(), 0, nullptr, nullptr, &rs, &rc);
      double w2 = bench::wall_seconds(), c2 = bench::cpu_seconds();
      cent[path] = res.centroids;
      {  // the training rows' kept assignment, the others searched: the same bytes
        KMeansParams pk = p;
        pk.keep_assignment = true;
        KMeansResult rk = train_kmeans(v, pk);
        std::vector<int64_t> n2(size_t(n), -1);
        std::vector<float> d2(size_t(n), -1.f);
        std::vector<uint8_t> skip(size_t(n), 0);
        for (size_t t = 0; t < rk.final_rows.size(); ++t) {
          n2[size_t(rk.final_rows[t])] = rk.final_nearest[t];
          d2[size_t(rk.final_rows[t])] = rk.final_dist[t];
          skip[size_t(rk.final_rows[t])] = 1;
        }
        const double w3 = bench::wall_seconds();
        assign_nearest(v, rk.centroids.data(), k, true, n2.data(), d2.data(), 0, nullptr, nullptr, nullptr, nullptr, skip.data());
        const bool same = rk.centroids == res.centroids && n2 == near[path] &&
                          std::memcmp(d2.data(), dist[path].data(), d2.size() * 4) == 0;
        std::printf("  kept training assignment (%zu rows): assign %.3f s; same bytes: %s\n", rk.final_rows.size(), bench::wall_seconds() - w3,
                    same ? "yes" : "NO");
        if (!same) return 1;
      }
      std::printf("%-9s train %.3f s (cpu %.3f) it %d searched %lld (partial %lld) pruned %lld rescored %lld checked %lld | assign %.3f s (cpu %.3f) rescored %lld checked %lld\n",
                  path == 0 ? "fp32" : "avx2-int8", w1 - w0, c1 - c0, res.iterations, (long long)res.searched_rows,
                  (long long)res.partial_rows, (long long)res.pruned_rows, (long long)res.rescored_rows, (long long)res.filter_rechecked_rows, w2 - w1,
                  c2 - c1, (long long)rs, (long long)rc);
    }
    if (!only.empty()) continue;
    const bool same = cent[0] == cent[1] && near[0] == near[1] &&
                      std::memcmp(dist[0].data(), dist[1].data(), dist[0].size() * 4) == 0;
    std::printf("round %d: same bytes on both paths: %s\n", r + 1, same ? "yes" : "NO");
    if (!same) return 1;
  }
  return 0;
}
