// nearest.hpp's dot64 on the CPU with AVX2 and FMA where the CPU has them: the same lanes, the same
// order of additions and the same products (exact in float64, so a fused multiply-add rounds as the
// addition does), hence the same bits as the portable definition.
#include "semdedup/nearest.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SD_NEAREST_X86 1
#endif

namespace semdedup {
namespace nearest {

namespace {

#ifdef SD_NEAREST_X86
bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// Four values of b from position j as float64: converted from float32, or loaded as they are.
__attribute__((target("avx2,fma"))) inline __m256d widen4(const float* b, int64_t j) { return _mm256_cvtps_pd(_mm_loadu_ps(b + j)); }
__attribute__((target("avx2,fma"))) inline __m256d widen4(const double* b, int64_t j) { return _mm256_loadu_pd(b + j); }

// lanes 0..3 and 4..7 of the definition; b float32, or float32 values already widened to float64
// (one conversion per product instead of two)
template <class B>
__attribute__((target("avx2,fma"))) double dot64_avx2(const float* a, const B* b, int64_t d) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int64_t j = 0;
  for (; j + kLanes <= d; j += kLanes) {
    const __m256 va = _mm256_loadu_ps(a + j);
    lo = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(va)), widen4(b, j), lo);
    hi = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(va, 1)), widen4(b, j + 4), hi);
  }
  double acc[kLanes];
  _mm256_storeu_pd(acc, lo);
  _mm256_storeu_pd(acc + 4, hi);
  for (int l = 0; j < d; ++j, ++l) acc[l] += double(a[j]) * double(b[j]);
  return combine_lanes(acc);
}
#endif

template <class B>
double dot64_dispatch(const float* a, const B* b, int64_t d) {
#ifdef SD_NEAREST_X86
  static const bool fast = cpu_has_avx2_fma();
  if (fast) return dot64_avx2(a, b, d);
#endif
  return dot64(a, b, d);
}

}  // namespace

double dot64_cpu(const float* a, const float* b, int64_t d) { return dot64_dispatch(a, b, d); }
double dot64_fd_cpu(const float* a, const double* b, int64_t d) { return dot64_dispatch(a, b, d); }

}  // namespace nearest
}  // namespace semdedup
