#include "semdedup/blas.hpp"

#include <chrono>
#include <mutex>
#include <vector>

#ifdef SEMDEDUP_HAVE_BLAS
#include <cblas.h>
#endif
#include <cmath>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef SEMDEDUP_HAVE_OPENBLAS
extern "C" {
char* openblas_get_corename(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int);
}
#endif

namespace semdedup {

std::string blas_core_name() {
#ifdef SEMDEDUP_HAVE_OPENBLAS
  return openblas_get_corename();
#elif defined(SEMDEDUP_HAVE_BLAS)
  return "unknown";
#else
  return "none";
#endif
}

int blas_threads() {
#ifdef SEMDEDUP_HAVE_OPENBLAS
  return openblas_get_num_threads();
#else
  return 1;
#endif
}

void blas_set_threads(int n) {
#ifdef SEMDEDUP_HAVE_OPENBLAS
  openblas_set_num_threads(n);
#else
  (void)n;
#endif
}

// BLAS's thread count is process-wide: guards of concurrent jobs share one count, so that the
// first sets one thread and the last restores what was there before (a job finishing first must
// not hand the other one a multi-threaded BLAS, whose rounding can differ).
namespace {
std::mutex g_blas_mu;
int g_blas_guards = 0;
int g_blas_saved = 1;
}  // namespace

BlasSingleThread::BlasSingleThread() : prev_(0) {
  std::lock_guard<std::mutex> lock(g_blas_mu);
  if (g_blas_guards++ == 0) {
    g_blas_saved = blas_threads();
    blas_set_threads(1);
  }
}
BlasSingleThread::~BlasSingleThread() {
  std::lock_guard<std::mutex> lock(g_blas_mu);
  if (--g_blas_guards == 0) blas_set_threads(g_blas_saved);
}

double measure_sgemm_gflops(int n, int repeats, int threads) {
#ifdef SEMDEDUP_HAVE_BLAS
  const int prev = blas_threads();
  if (threads > 0) blas_set_threads(threads);
  std::vector<float> a(static_cast<size_t>(n) * n), b(size_t(n) * n), c(size_t(n) * n);
  uint32_t s = 12345;
  for (auto& v : a) v = float((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
  for (auto& v : b) v = float((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double g = 2.0 * n * double(n) * n / dt / 1e9;
    if (g > best) best = g;
  }
  blas_set_threads(prev);
  return best;
#else
  (void)n; (void)repeats; (void)threads;
  return 0;
#endif
}

void gemm_abt(const float* a, int64_t m, const float* b, int64_t n, int64_t d, float* c, int64_t ldc) {
#ifdef SEMDEDUP_HAVE_BLAS
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(d), 1.0f, a, int(d), b, int(d), 0.0f, c,
              int(ldc));
#else
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const float* x = a + i * d;
      const float* y = b + j * d;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t t = 0;
      for (; t + 4 <= d; t += 4) {
        s0 += x[t] * y[t];
        s1 += x[t + 1] * y[t + 1];
        s2 += x[t + 2] * y[t + 2];
        s3 += x[t + 3] * y[t + 3];
      }
      for (; t < d; ++t) s0 += x[t] * y[t];
      c[i * ldc + j] = (s0 + s1) + (s2 + s3);
    }
#endif
}

}  // namespace semdedup
