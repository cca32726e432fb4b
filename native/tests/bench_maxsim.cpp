// Step 4's whole-cluster kernel against OpenBLAS sgemm, in one process, interleaved, timed in
// process CPU time (the machine may be shared: read the ratios and the medians).
//   bench_maxsim [rounds]
// Per cluster size (200, 1000, 4000 members x 512, one cluster, one thread, the whole exact step:
// gather, filter, float64 re-scoring): the time of each whole-cluster filter (SEMDEDUP_MAXSIM_KERNEL
// = blas, the sgemm column tiles; fused-avx2, the fused kernel where the CPU has it), median and
// range over the rounds, useful GFLOP/s (n (n - 1) D / s) and its ratio to the single-threaded
// sgemm rate measured in the same rounds (1024 x 1024 x 512). SEMDEDUP_ISA is left as the run's
// default (the integer filter tries the first tile and gives up on this data). Each timing is one
// call over the same cluster repeated (~20 GFLOP), divided by the repeats. Checks that both
// filters give the same M and M_row bytes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "bench_clock.hpp"
#include "semdedup/blas.hpp"
#include "semdedup/maxsim.hpp"

using namespace semdedup;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const int64_t d = 512;
  std::vector<const char*> kernels{"blas"};
  {
    setenv("SEMDEDUP_MAXSIM_KERNEL", "auto", 1);
    if (std::strcmp(maxsim_filter_kernel(), "blas") != 0) kernels.push_back(maxsim_filter_kernel());
    else {
      try {
        setenv("SEMDEDUP_MAXSIM_KERNEL", "fused-avx2", 1);
        kernels.push_back(maxsim_filter_kernel());
      } catch (const std::exception&) {
      }
    }
  }
  std::printf("BLAS kernel: %s (single-threaded); whole-cluster filters:", blas_core_name().c_str());
  for (const char* k : kernels) std::printf(" %s", k);
  std::printf("; %d rounds, CPU seconds\n", rounds);
  BlasSingleThread one;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  auto unit = [&](float* v) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(v[j]) * v[j];
    const float inv = float(1 / std::sqrt(s));
    for (int64_t j = 0; j < d; ++j) v[j] *= inv;
  };
  // sgemm of the reference shape
  const int64_t gm = 1024;
  std::vector<float> ga(size_t(gm * d)), gc(size_t(gm * gm));
  for (auto& v : ga) v = nd(rng);
  for (int64_t n : {200, 1000, 4000}) {
    // One cluster like a spherical k-means cluster of w1: a centre plus noise, normalised (cosine
    // ~0.6 between members; M ~0.65-0.7), and a few near copies of earlier members.
    std::vector<float> cent(static_cast<size_t>(d)), x(static_cast<size_t>(n * d));
    for (auto& v : cent) v = nd(rng);
    unit(cent.data());
    const float spread = 0.9f / std::sqrt(float(d));
    for (int64_t i = 0; i < n; ++i) {
      float* r = &x[size_t(i * d)];
      if (i > 0 && rng() % 20 == 0) {
        const float* src = &x[size_t(int64_t(rng() % uint32_t(i)) * d)];
        for (int64_t j = 0; j < d; ++j) r[j] = src[j] + 1e-2f * nd(rng) / std::sqrt(float(d));
      } else {
        for (int64_t j = 0; j < d; ++j) r[j] = cent[size_t(j)] + spread * nd(rng);
      }
      unit(r);
    }
    EmbeddingView v{x.data(), n, d, DType::F32};
    // enough clusters per timing for ~0.2 s of sgemm-rate work: the same rows `inner` times, in
    // one call (a worker's buffers are reused from one cluster to the next, as in a run)
    const double useful = double(n) * double(n - 1) * double(d);
    const int64_t inner = std::max<int64_t>(1, int64_t(2e10 / useful));
    std::vector<int64_t> order(static_cast<size_t>(n * inner)), offsets{0};
    for (int64_t c = 0; c < inner; ++c) {
      for (int64_t i = 0; i < n; ++i) order[size_t(c * n + i)] = i;
      offsets.push_back((c + 1) * n);
    }
    std::vector<std::vector<double>> t(kernels.size());
    std::vector<double> tg;
    std::vector<std::vector<double>> Ms(kernels.size());
    std::vector<std::vector<int64_t>> args(kernels.size());
    std::vector<MaxSimStats> st(kernels.size());
    for (int r = 0; r < rounds; ++r) {
      double t0 = bench::cpu_seconds();
      const int ginner = std::max(1, int(2e10 / (2.0 * gm * gm * d)));
      for (int i = 0; i < ginner; ++i) gemm_abt(ga.data(), gm, ga.data(), gm, d, gc.data(), gm);
      tg.push_back((bench::cpu_seconds() - t0) / ginner);
      for (size_t pi = 0; pi < kernels.size(); ++pi) {
        const size_t k = (size_t(r) + pi) % kernels.size();  // alternate which runs first
        setenv("SEMDEDUP_MAXSIM_KERNEL", kernels[k], 1);
        Ms[k].assign(size_t(n * inner), 0);
        args[k].assign(size_t(n * inner), 0);
        MaxSimOptions o;
        o.threads = 1;
        t0 = bench::cpu_seconds();
        st[k] = max_similarity_cpu(v, order.data(), offsets.data(), inner, Ms[k].data(), args[k].data(), o);
        t[k].push_back((bench::cpu_seconds() - t0) / double(inner));
      }
    }
    unsetenv("SEMDEDUP_MAXSIM_KERNEL");
    const double g = 2.0 * gm * gm * d / median(tg) / 1e9;
    std::printf("n = %5lld x %lld: sgemm %.1f GFLOP/s (median; %.1f-%.1f)\n", (long long)n, (long long)d, g,
                2.0 * gm * gm * d / *std::max_element(tg.begin(), tg.end()) / 1e9,
                2.0 * gm * gm * d / *std::min_element(tg.begin(), tg.end()) / 1e9);
    for (size_t k = 0; k < kernels.size(); ++k) {
      const double m = median(t[k]);
      std::printf("  %-10s %8.2f ms (%.2f-%.2f)  %6.1f GFLOP/s useful = %3.0f%% of sgemm  (%.2fx blas; rechecked %lld%s)\n",
                  kernels[k], 1e3 * m, 1e3 * *std::min_element(t[k].begin(), t[k].end()),
                  1e3 * *std::max_element(t[k].begin(), t[k].end()), useful / m / 1e9, 100 * useful / m / 1e9 / g,
                  median(t[0]) / m, (long long)(st[k].rechecked / inner),
                  std::memcmp(Ms[k].data(), Ms[0].data(), size_t(n * inner) * 8) == 0 && args[k] == args[0] ? "" : "; M DIFFERS");
    }
  }
  return 0;
}
