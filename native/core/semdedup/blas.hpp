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
