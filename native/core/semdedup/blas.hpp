// BLAS facts and controls (OpenBLAS when linked against it).
#pragma once
#include <string>

namespace semdedup {

std::string blas_core_name();  // e.g. "SkylakeX"; "unknown" when not OpenBLAS
int blas_threads();
void blas_set_threads(int n);
// Runs a square sgemm of size n a few times and returns GFLOP/s (for scale in benchmarks).
double measure_sgemm_gflops(int n, int repeats, int threads);
std::string faiss_version();

// RAII: sets BLAS to single-thread inside our own parallel regions, restores afterwards.
class BlasSingleThread {
 public:
  BlasSingleThread();
  ~BlasSingleThread();
 private:
  int prev_;
};

}  // namespace semdedup
