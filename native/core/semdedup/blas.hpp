// BLAS facts and controls (OpenBLAS when linked against it).
#pragma once
#include <cstdint>
#include <string>

namespace semdedup {

std::string blas_core_name();  // e.g. "SkylakeX"; "unknown" when not OpenBLAS
int blas_threads();
void blas_set_threads(int n);
// Runs a square sgemm of size n a few times and returns GFLOP/s (for scale in benchmarks).
double measure_sgemm_gflops(int n, int repeats, int threads);

// C[i][j] = a_i . b_j for row-major a (m x d) and b (n x d); C has leading dimension ldc.
// Single-call sgemm through BLAS, or a portable loop in builds without BLAS.
void gemm_abt(const float* a, int64_t m, const float* b, int64_t n, int64_t d, float* c, int64_t ldc);

// Squared L2 norms of nx rows of d floats (FAISS's fvec_norms_L2sqr when FAISS is linked, so
// that L2 distances are computed bit for bit as FAISS computes them).
void row_norms_sqr(const float* x, int64_t nx, int64_t d, float* out);
// Re-normalises nx rows to unit L2 norm (FAISS's fvec_renorm_L2 when linked); zero rows stay.
void renorm_rows(float* x, int64_t nx, int64_t d);

// RAII: sets BLAS to single-thread inside our own parallel regions, restores afterwards. Nested
// and concurrent guards share one count: the last one out restores the thread count.
class BlasSingleThread {
 public:
  BlasSingleThread();
  ~BlasSingleThread();
 private:
  int prev_;
};

}  // namespace semdedup
