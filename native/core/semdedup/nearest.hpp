// The exact nearest centroid (step 2, docs/algorithm.md "Exact nearest centroid"): the float64
// values that decide every assignment, the proven error bound of a fast float32 pass, and the
// decision rule that uses it. Plain inline code, shared by the CPU (kmeans.cpp, sort.cpp) and the
// CUDA kernels (native/cuda/kmeans.cu), so that both compute the same float64 values bit for bit.
//
// float64 value of a row x against a centroid c (both float32, D values):
//   ip(x, c)  = sum_j x_j c_j, each product exact in float64 (24 + 24 bits < 53), summed in 8 lanes:
//               lane l adds the products of j = l, l + 8, l + 16, ... in ascending j; the lanes are
//               then added as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)).
//               Every operation is an IEEE float64 addition in an order fixed by this definition
//               (a fused multiply-add gives the same bits, the product being exact), so any CPU,
//               compiler, vector width or GPU thread computes the same double.
//   l2(x, c)  = (ip(x, x) + ip(c, c)) - 2 ip(x, c); dist_to_cent holds max(0, l2) (round-off can
//               make it negative for a row equal to its centroid).
//   score     = ip(x, c) when spherical (larger is better), -l2(x, c) otherwise; the best centroid
//               has the largest score, ties to the lower centroid id.
//
// The fast pass's error bound. For a dot product of length D computed in float32 in ANY order,
// with or without FMA (as sgemm kernels and GPU tiles do), |fl(x.c) - x.c| <= gamma_D sum|x_j c_j|
// <= gamma_D |x| |c|, gamma_D = D u / (1 - D u), u = 2^-24 (Higham, Accuracy and Stability of
// Numerical Algorithms, 3.1); underflow adds at most D 2^-149. The float64 values above err by at
// most gamma'_(D+4) (|x| + |c|)^2 with u = 2^-53. eps_score() bounds the distance between the fast
// pass's score of a centroid (IP: the float32 product; L2: 2 x.c - |c|^2 from it, computed in float32
// or float64) and the float64 score above, minus a per-row constant, for every centroid of norm at
// most cmax. A row whose fast top-2 gap exceeds 2 eps is decided by the fast pass; otherwise the
// candidates within 2 eps of the fast best are re-scored in float64.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define SD_HD __host__ __device__ __forceinline__
#else
#define SD_HD inline
#endif

namespace semdedup {
namespace nearest {

constexpr int kLanes = 8;

// The fixed-order float64 inner product above. T, U: float (or a type that converts to float
// exactly, such as __half on the GPU).
template <class T, class U>
SD_HD double dot64(const T* a, const U* b, int64_t d) {
  double acc[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + kLanes <= d; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += double(float(a[j + l])) * double(float(b[j + l]));
  for (int l = 0; j < d; ++j, ++l) acc[l] += double(float(a[j])) * double(float(b[j]));
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

#ifndef __CUDACC__
// dot64 of float32 rows on the CPU, the same bits, with AVX2 + FMA where the CPU has them
// (nearest.cpp).
double dot64_cpu(const float* a, const float* b, int64_t d);
// dot64_cpu(a, b32, d) where b holds the float64 values of float32 b32: the same bits.
double dot64_fd_cpu(const float* a, const double* b, int64_t d);
#endif

// The lanes of dot64 combined in its fixed order (for implementations that hold the 8 lane sums
// in 8 threads; the GPU's).
SD_HD double combine_lanes(const double* acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// l2(x, c) from ip(x, x), ip(c, c) and ip(x, c) (not clamped).
SD_HD double l2_value(double xx, double cc, double xc) { return (xx + cc) - 2 * xc; }

// The score of the definition: IP value, or minus the L2 value.
SD_HD double score64(bool ip, double xx, double cc, double xc) { return ip ? xc : -l2_value(xx, cc, xc); }

// The value written as dist_to_cent (before its one rounding to float32): the inner product or the
// squared L2 distance clamped at 0.
SD_HD double value_of_score(bool ip, double s) { return ip ? s : (s < 0 ? -s : 0.0); }

// True when candidate (s, c) beats (best_s, best_c): larger score, ties to the lower id.
SD_HD bool better(double s, int64_t c, double best_s, int64_t best_c) {
  return s > best_s || (s == best_s && c < best_c);
}

// The largest value seen and the largest of the others (equal to it on a tie), and where the first
// largest was: the top two a fast pass's decision needs. Values arrive in ascending index order, so
// the strict '>' keeps the lowest index on ties.
template <class T>
struct Top2 {
  T best, second;
  int64_t at = -1;
  SD_HD explicit Top2(T lowest) : best(lowest), second(lowest) {}
  SD_HD void add(T v, int64_t i) {
    if (v > best) {
      second = best;
      best = v;
      at = i;
    } else if (v > second) {
      second = v;
    }
  }
};

SD_HD double gamma_n(double n, double u) { return n * u / (1 - n * u); }

// The bound eps of the file comment, for a row of norm at most xnorm and centroids of norm at most
// cmax, D values: |fast score - (float64 score + row constant)| <= eps. Norms are taken as upper
// bounds (callers inflate their computed norms by norm_slack()).
SD_HD double eps_score(bool ip, int64_t d, double xnorm, double cmax) {
  const double u32 = 5.9604644775390625e-08;   // 2^-24
  const double u64 = 1.1102230246251565e-16;   // 2^-53
  const double tiny = double(d) * 3.5032461608120427e-46 * 4;  // D 2^-149, four times
  const double e32 = gamma_n(double(d), u32) * xnorm * cmax + tiny;
  const double s2 = (xnorm + cmax) * (xnorm + cmax);
  const double e64 = gamma_n(double(d) + 4, u64) * s2;
  // L2: twice the product's error, the float32 roundings of 2 x.c - |c|^2 (and of |c|^2 itself when
  // a fast pass holds it as float32), and the float64 value's own error on |x|^2, |c|^2, x.c.
  const double e = ip ? e32 + e64 : 2 * e32 + 4 * u32 * s2 + 4 * e64;
  return e * (1 + 1.0 / 1048576) + 1e-300;
}

// Bound of |score64 - exact score| (the float64 value's own error), same arguments.
SD_HD double eps64(bool ip, int64_t d, double xnorm, double cmax) {
  const double u64 = 1.1102230246251565e-16;
  const double e = gamma_n(double(d) + 4, u64) * (xnorm + cmax) * (xnorm + cmax);
  return (ip ? e : 4 * e) * (1 + 1.0 / 1048576) + 1e-300;
}

// Upper bound of a norm computed as sqrt(ip(x, x)) in float64 (covers its rounding).
SD_HD double norm_slack(double norm) { return norm * (1 + 1e-12) + 1e-300; }

// The fast pass's score of a centroid (float64 arithmetic on the float32 product): IP: the product,
// L2: 2 x.c - |c|^2 (|x|^2, the same for every centroid, left out).
SD_HD double fast_score(bool ip, float xc32, double cc) { return ip ? double(xc32) : 2 * double(xc32) - cc; }

// Whether the fast pass decides a row: its best fast score exceeds the runner-up's by more than 2 eps.
SD_HD bool decided(double best, double second, double eps) { return best - second > 2 * eps; }

// Whether a centroid with fast score s can still be the exact best when the fast best is `best`.
SD_HD bool candidate(double s, double best, double eps) { return s >= best - 2 * eps; }

}  // namespace nearest
}  // namespace semdedup
