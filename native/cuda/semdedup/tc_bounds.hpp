// Exactness of the tensor-core passes by bounds (plain C++, no CUDA types, tested on the CPU):
// a dot product of two rows computed with inputs rounded to a low-precision format (TF32, BF16,
// FP16, or a split of each fp32 value into hi + lo parts, "3x") and products accumulated in fp32
// differs from the exact dot product by at most dot_error_bound(). Decisions are then made
// exact by re-checking what lies within that bound of a boundary:
//   - max similarity: every member whose low-precision M lies within the bound (plus the fp32
//     pass's own error) of a threshold is recomputed in fp32, then by the float64 re-check;
//   - nearest centroid: every row whose best and runner-up scores are within twice the bound is
//     re-scored in fp32 against all centroids, so the assignment equals the fp32 pass's.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace semdedup {
namespace cuda {
namespace tc {

enum class Precision {
  FP32,     // fp32 products and sums (the SIMT path)
  TF32,     // inputs rounded to TF32 (10-bit mantissa), fp32 accumulation
  BF16,     // inputs rounded to BF16 (7-bit mantissa), fp32 accumulation
  FP16,     // inputs rounded to FP16 (10-bit mantissa), fp32 accumulation; |x| < 65504
  TF32x3,   // split: a = a_hi + a_lo (TF32 each), a.b ~ hi.hi + hi.lo + lo.hi, fp32 accumulation
  BF16x3,   // the same with BF16 parts
};

// Unit roundoff of the input format (round to nearest: half an ulp of 1).
inline double input_unit_roundoff(Precision p) {
  switch (p) {
    case Precision::FP32: return 0.0;
    case Precision::TF32: return std::ldexp(1.0, -11);
    case Precision::BF16: return std::ldexp(1.0, -8);
    case Precision::FP16: return std::ldexp(1.0, -11);
    case Precision::TF32x3: return std::ldexp(1.0, -11);
    case Precision::BF16x3: return std::ldexp(1.0, -8);
  }
  return 0.0;
}

// gamma_n = n u / (1 - n u): the classic bound of a sum of n terms in any order (Higham,
// Accuracy and Stability of Numerical Algorithms, 3.1), here with u = 2^-23, one fp32 ulp of 1,
// not half: tensor cores may truncate instead of rounding to nearest when they add.
inline double gamma_fp32(int64_t n) {
  const double u = std::ldexp(1.0, -23);
  const double nu = double(n) * u;
  return nu / (1.0 - nu);
}

// A bound on |computed a.b - exact a.b| for rows of d values with L2 norms na and nb (the sum of
// |a_i b_i| is at most na nb), whatever the order of the fp32 accumulation (the tensor cores' own
// order included: their products are exact and their sums at least as accurate as fp32).
inline double dot_error_bound(Precision p, int64_t d, double na = 1.0, double nb = 1.0) {
  const double s = na * nb;
  const double ui = input_unit_roundoff(p);
  double rel;  // |rounded products - exact products| / sum |a_i b_i|
  switch (p) {
    case Precision::FP32:
      rel = 0.0;
      break;
    case Precision::TF32x3:
    case Precision::BF16x3:
      // a = hi + lo + e with |lo| <= ui (1 + ui) |a| and |e| <= ui^2 |a|; the dropped lo.lo term
      // and the two e terms: at most 3 ui^2 + 3 ui^3 of |a b| (products of parts are exact).
      rel = 3 * ui * ui + 3 * ui * ui * ui;
      break;
    default:
      rel = 2 * ui + ui * ui;  // (1 + ui)^2 - 1
      break;
  }
  // Three products per term in the split forms: 3d terms to accumulate.
  const int64_t terms = (p == Precision::TF32x3 || p == Precision::BF16x3) ? 3 * d : d;
  return (rel + gamma_fp32(terms) * (1 + rel)) * s;
}

// Positions p whose low-precision M[p] lies within `bound` of one of the thresholds (inclusive):
// only they can decide differently from the exact M; every other decision is already exact.
inline std::vector<int64_t> near_thresholds(const float* M, int64_t n, const std::vector<double>& thresholds,
                                            double bound) {
  std::vector<int64_t> out;
  for (int64_t p = 0; p < n; ++p)
    for (double t : thresholds)
      if (std::fabs(double(M[p]) - t) <= bound) {
        out.push_back(p);
        break;
      }
  return out;
}

// Rows whose best and runner-up scores (low precision) are within 2 * bound: the exact best may be
// another centroid only for them (each score is within bound of its exact value).
inline std::vector<int64_t> near_ties(const float* best, const float* second, int64_t n, double bound) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i)
    if (!(std::fabs(double(best[i]) - double(second[i])) > 2 * bound)) out.push_back(i);
  return out;
}

}  // namespace tc
}  // namespace cuda
}  // namespace semdedup
