// Rates of the distance kernels against OpenBLAS sgemm of the same shape, in one process,
// interleaved, timed in process CPU time (the machine may be shared: read the ratios). Useful
// rate = 2 m n d / s; the passes' times are CPU seconds summed over their threads.
//   bench_filter [reps]
// Prints, per shape: sgemm GFLOP/s (single-threaded BLAS, as the engine calls it), the integer
// kernel's rate (quantisation of the rows included, as the passes pay it), and the ratio.
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bench_clock.hpp"
#include "semdedup/blas.hpp"
#include "semdedup/kmeans.hpp"
#include "semdedup/maxsim.hpp"
#include "semdedup/qfilter.hpp"

using namespace semdedup;

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 7;
  const qfilter::Isa isa = qfilter::best_isa();
  std::printf("filter ISA: %s; BLAS kernel: %s (single-threaded)\n", qfilter::isa_name(isa), blas_core_name().c_str());
  if (isa == qfilter::Isa::Fp32) {
    std::printf("no integer kernel on this CPU\n");
    return 0;
  }
  BlasSingleThread one;
  struct Shape {
    int64_t m, n, d;
    const char* what;
  };
  const Shape shapes[] = {{256, 1000, 512, "k-means search block, k=1000"},
                          {1024, 1000, 512, "assignment block, k=1000"},
                          {1024, 200, 512, "assignment block, k=200"},
                          {1024, 1000, 64, "assignment block, k=1000, D=64"},
                          {1024, 128, 512, "max-sim column tile 128, 1024 rows"}};
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (const Shape& s : shapes) {
    std::vector<float> a(size_t(s.m * s.d)), b(size_t(s.n * s.d)), c(size_t(s.m * s.n));
    for (auto& v : a) v = nd(rng);
    for (auto& v : b) v = nd(rng);
    qfilter::QCols qc;
    qc.pack(b.data(), s.n, s.d);
    qfilter::QRows qr;
    std::vector<int32_t> vi(size_t(s.m * qc.np));
    double best_f = 1e30, best_q = 1e30, best_k = 1e30;
    const double flops = 2.0 * double(s.m) * double(s.n) * double(s.d);
    // enough calls per timing for ~20 ms
    const int inner = std::max(1, int(2e9 / flops * 0.02 * 20));
    for (int r = 0; r < reps; ++r) {
      double t0 = bench::cpu_seconds();
      for (int i = 0; i < inner; ++i) gemm_abt(a.data(), s.m, b.data(), s.n, s.d, c.data(), s.n);
      best_f = std::min(best_f, (bench::cpu_seconds() - t0) / inner);
      t0 = bench::cpu_seconds();
      for (int i = 0; i < inner; ++i) {
        qr.quantise(a.data(), s.m, s.d);
        qfilter::qgemm(qr.q.data(), s.m, qr.dp, qc, vi.data(), qc.np);
      }
      best_q = std::min(best_q, (bench::cpu_seconds() - t0) / inner);
      t0 = bench::cpu_seconds();
      for (int i = 0; i < inner; ++i) qfilter::qgemm(qr.q.data(), s.m, qr.dp, qc, vi.data(), qc.np);
      best_k = std::min(best_k, (bench::cpu_seconds() - t0) / inner);
    }
    std::printf("%-40s m=%5lld n=%5lld d=%4lld  sgemm %6.1f GFLOP/s  int8 %6.1f GOP/s  ratio %.2f (kernel alone %.2f)\n", s.what,
                (long long)s.m, (long long)s.n, (long long)s.d, flops / best_f / 1e9, flops / best_q / 1e9,
                best_f / best_q, best_f / best_k);
  }
  // The passes themselves on clustered unit rows (tools/synth.js's model: centre + spread x noise,
  // normalised), each ISA in turn, interleaved: time, and rows the filter left to float64.
  const int64_t n = argc > 2 ? std::atoll(argv[2]) : 40000, d = 512;
  const int ncent = 200;
  std::vector<float> cent(size_t(ncent * d)), x(size_t(n * d));
  auto unit = [&](float* v) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(v[j]) * v[j];
    const float inv = float(1 / std::sqrt(s));
    for (int64_t j = 0; j < d; ++j) v[j] *= inv;
  };
  for (int c = 0; c < ncent; ++c) {
    for (int64_t j = 0; j < d; ++j) cent[size_t(c * d + j)] = nd(rng);
    unit(&cent[size_t(c * d)]);
  }
  const float spread = 0.75f / std::sqrt(float(d));
  for (int64_t i = 0; i < n; ++i) {
    const int c = int(rng() % ncent);
    for (int64_t j = 0; j < d; ++j) x[size_t(i * d + j)] = cent[size_t(c * d + j)] + spread * nd(rng);
    unit(&x[size_t(i * d)]);
  }
  EmbeddingView v{x.data(), n, d, DType::F32};
  const bool only_maxsim = argc > 3 && std::string(argv[3]) == "maxsim";
  for (int k : {200, 1000}) {
    if (only_maxsim) break;
    KMeansParams p;
    p.k = k;
    p.niter = 10;
    p.spherical = true;
    p.max_points_per_centroid = 64;
    double t[2][2] = {{1e30, 1e30}, {1e30, 1e30}};
    int64_t chk[2] = {0, 0}, res[2] = {0, 0}, searched[2] = {0, 0}, pruned[2] = {0, 0};
    std::vector<float> cents[2];
    for (int r = 0; r < 2; ++r)
      for (int pi = 0; pi < 2; ++pi) {
        const int path = (r + pi) % 2;  // alternate which path runs first
        setenv("SEMDEDUP_ISA", path ? "avx2-int8" : "fp32", 1);
        double t0 = bench::cpu_seconds();
        KMeansResult kr = train_kmeans(v, p);
        t[path][0] = std::min(t[path][0], bench::cpu_seconds() - t0);
        searched[path] = kr.searched_rows;
        pruned[path] = kr.pruned_rows;
        cents[path] = kr.centroids;
        std::vector<int64_t> nearest{}; nearest.resize(size_t(n));
        std::vector<float> dist{}; dist.resize(size_t(n));
        t0 = bench::cpu_seconds();
        assign_nearest(v, kr.centroids.data(), k, true, nearest.data(), dist.data(), 0, {}, nullptr, &res[path], &chk[path]);
        t[path][1] = std::min(t[path][1], bench::cpu_seconds() - t0);
      }
    unsetenv("SEMDEDUP_ISA");
    std::printf("k=%d n=%lld d=%lld: train fp32 %.3f s (searched %lld, pruned %lld) int8 %.3f s (searched %lld, pruned %lld): %.2fx%s\n",
                k, (long long)n, (long long)d, t[0][0], (long long)searched[0], (long long)pruned[0], t[1][0],
                (long long)searched[1], (long long)pruned[1], t[0][0] / t[1][0],
                cents[0] == cents[1] ? "" : " CENTROIDS DIFFER");
    std::printf("  assign fp32 %.3f s (rescored %lld) int8 %.3f s (rescored %lld, checked %lld): %.2fx\n", t[0][1], (long long)res[0],
                t[1][1], (long long)res[1], (long long)chk[1], t[0][1] / t[1][1]);
  }
  // Max similarity on clusters of ~1000 members (w1's size): the same model, rows grouped by centre.
  for (int chains = 0; chains < 2; ++chains) {
    // chains = 1: each member a noisy copy of the previous one (cosine ~0.8; a clear maximum)
    const int64_t per = 1000, nclu = 20, nm = per * nclu;
    std::vector<float> xm(size_t(nm * d));
    std::vector<int64_t> order(static_cast<size_t>(nm)), offsets{0};
    for (int64_t c = 0; c < nclu; ++c) {
      for (int64_t t = 0; t < per; ++t) {
        float* r = &xm[size_t((c * per + t) * d)];
        if (chains && t > 0 && rng() % 12 != 0) {
          const float* prev = r - d;
          for (int64_t j = 0; j < d; ++j) r[j] = prev[j] + spread * nd(rng);
        } else if (chains) {
          for (int64_t j = 0; j < d; ++j) r[j] = nd(rng);
        } else if (t > 0 && rng() % 10 == 0) {  // a near copy of an earlier member
          const int64_t src = c * per + int64_t(rng() % uint32_t(t));
          for (int64_t j = 0; j < d; ++j) r[j] = xm[size_t(src * d + j)] + 1e-3f * nd(rng) / std::sqrt(float(d));
        } else {
          for (int64_t j = 0; j < d; ++j) r[j] = cent[size_t(c * d + j)] + spread * nd(rng);
        }
        unit(r);
        order[size_t(c * per + t)] = c * per + t;
      }
      offsets.push_back((c + 1) * per);
    }
    EmbeddingView vm{xm.data(), nm, d, DType::F32};
    std::vector<double> M(static_cast<size_t>(nm));
    std::vector<int64_t> arg(static_cast<size_t>(nm));
    double tm[2] = {1e30, 1e30};
    MaxSimStats st[2];
    for (int r = 0; r < reps; ++r)
      for (int pi = 0; pi < 2; ++pi) {
        const int path = (r + pi) % 2;  // alternate which path runs first
        setenv("SEMDEDUP_ISA", path ? (argc > 4 ? argv[4] : "avx2-int8") : "fp32", 1);
        MaxSimOptions o;
        const double t0 = bench::cpu_seconds();
        st[path] = max_similarity_cpu(vm, order.data(), offsets.data(), nclu, M.data(), arg.data(), o);
        tm[path] = std::min(tm[path], bench::cpu_seconds() - t0);
      }
    unsetenv("SEMDEDUP_ISA");
    std::printf("max similarity (%s), %lld clusters x %lld members, d=%lld: fp32 %.3f s (%.1f GFLOP/s useful) int8 %.3f s "
                "(%.1f GOP/s useful; %lld of %lld members checked by float32, %lld in float64): %.2fx\n",
                chains ? "chains of near copies" : "spread 0.75", (long long)nclu, (long long)per, (long long)d, tm[0], st[0].useful_flops / tm[0] / 1e9, tm[1],
                st[1].useful_flops / tm[1] / 1e9, (long long)st[1].filter_checked, (long long)nm,
                (long long)st[1].rechecked, tm[0] / tm[1]);
  }
  return 0;
}
