// Tests of the tensor-core error bounds and re-check selection (tc_bounds.hpp) on the CPU: the
// low-precision dot products are emulated exactly (inputs rounded to TF32 / BF16 / FP16 or split
// into two parts, exact products, fp32 sums in random orders, rounded to nearest or truncated),
// and every error must lie within dot_error_bound(); decisions outside the re-check sets must
// equal float64's.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "../cuda/semdedup/tc_bounds.hpp"
#include "check.hpp"

using namespace semdedup::cuda::tc;
using check::run;

namespace {

// Round a float to `bits` mantissa bits (round to nearest, ties to even), as TF32 (10), BF16 (7).
float round_mantissa(float x, int bits) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const int drop = 23 - bits;
  const uint32_t half = 1u << (drop - 1), mask = (1u << drop) - 1;
  const uint32_t rest = u & mask;
  u &= ~mask;
  if (rest > half || (rest == half && (u >> drop) & 1)) u += 1u << drop;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

float to_format(float x, Precision p) {
  switch (p) {
    case Precision::TF32:
    case Precision::TF32x3:
      return round_mantissa(x, 10);
    case Precision::BF16:
    case Precision::BF16x3:
      return round_mantissa(x, 7);
    case Precision::FP16:
      return round_mantissa(x, 10);  // normal range only: |x| in [2^-14, 65504] for these rows
    case Precision::FP32:
      return x;
  }
  return x;
}

// fp32 addition, rounded to nearest or truncated toward zero.
float add(float a, float b, bool truncate) {
  const double exact = double(a) + double(b);
  float r = float(exact);
  if (truncate && std::fabs(double(r)) > std::fabs(exact)) r = std::nextafter(r, 0.0f);
  return r;
}

float lowp_dot(const std::vector<float>& a, const std::vector<float>& b, Precision p, std::mt19937_64& rng,
               bool truncate) {
  std::vector<float> terms;
  const size_t d = a.size();
  for (size_t i = 0; i < d; ++i) {
    const float ah = to_format(a[i], p), bh = to_format(b[i], p);
    if (p == Precision::TF32x3 || p == Precision::BF16x3) {
      const float al = to_format(a[i] - ah, p), bl = to_format(b[i] - bh, p);
      terms.push_back(float(double(ah) * double(bh)));  // exact: short mantissas
      terms.push_back(float(double(ah) * double(bl)));
      terms.push_back(float(double(al) * double(bh)));
    } else if (p == Precision::FP32) {
      terms.push_back(a[i] * b[i]);
    } else {
      terms.push_back(float(double(ah) * double(bh)));
    }
  }
  std::shuffle(terms.begin(), terms.end(), rng);
  float s = 0;
  for (float t : terms) s = add(s, t, truncate);
  return s;
}

std::vector<float> unit_row(int64_t d, std::mt19937_64& rng) {
  std::normal_distribution<float> nd;
  std::vector<float> r(static_cast<size_t>(d));
  double s = 0;
  for (auto& v : r) {
    v = nd(rng);
    s += double(v) * v;
  }
  for (auto& v : r) v = float(v / std::sqrt(s));
  return r;
}

double dot64(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

}  // namespace

int main() {
  std::mt19937_64 rng(8);

  run("bounds hold for every format, dimension and summation order (round to nearest and truncation)", [&] {
    for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16, Precision::FP16, Precision::TF32x3,
                        Precision::BF16x3}) {
      for (int64_t d : {int64_t(16), int64_t(512), int64_t(1024)}) {
        const double bound = dot_error_bound(p, d);
        double worst = 0;
        for (int t = 0; t < 300; ++t) {
          std::vector<float> a = unit_row(d, rng), b = unit_row(d, rng);
          if (t % 3 == 0) b = a;  // exact duplicates: the largest products
          if (t % 3 == 1)
            for (size_t i = 0; i < b.size(); ++i) b[i] = 0.7f * a[i] + 0.3f * b[i];  // near duplicates
          const double exact = dot64(a, b);
          for (bool trunc : {false, true}) {
            const double err = std::fabs(double(lowp_dot(a, b, p, rng, trunc)) - exact);
            worst = std::max(worst, err);
            CHECK(err <= bound, "precision %d d %lld: error %.3g over the bound %.3g", int(p), (long long)d, err, bound);
          }
        }
        std::printf("     precision %d d %4lld: bound %.3g, worst error seen %.3g\n", int(p), (long long)d, bound, worst);
      }
    }
    // the split forms are close to fp32, the plain ones far from it
    CHECK(dot_error_bound(Precision::TF32x3, 512) < 4 * dot_error_bound(Precision::FP32, 512), "3xTF32 ~ fp32 (3d terms)");
    CHECK(dot_error_bound(Precision::BF16, 512) > 0.005, "bf16 is coarse");
  });

  run("re-check sets: outside them, low-precision decisions equal float64's (M and nearest centroid)", [&] {
    const int64_t d = 256, n = 1500;
    const std::vector<double> thresholds = {0.99, 0.95, 0.9};
    for (Precision p : {Precision::BF16, Precision::TF32, Precision::BF16x3}) {
      const double bound = dot_error_bound(p, d);
      std::vector<float> M(static_cast<size_t>(n));
      std::vector<double> M64(static_cast<size_t>(n));
      std::uniform_real_distribution<float> u(0, 1);
      for (int64_t j = 0; j < n; ++j) {
        std::vector<float> a = unit_row(d, rng), b = unit_row(d, rng);
        const float mix = 0.85f + 0.15f * u(rng);  // similarities around the thresholds
        for (int64_t i = 0; i < d; ++i) b[size_t(i)] = mix * a[size_t(i)] + std::sqrt(1 - mix * mix) * b[size_t(i)];
        M64[size_t(j)] = dot64(a, b);
        M[size_t(j)] = lowp_dot(a, b, p, rng, j % 2 == 1);
      }
      const std::vector<int64_t> near = near_thresholds(M.data(), n, thresholds, bound);
      std::vector<char> in(static_cast<size_t>(n), 0);
      for (int64_t q : near) in[size_t(q)] = 1;
      for (int64_t j = 0; j < n; ++j)
        for (double t : thresholds)
          if (!in[size_t(j)]) CHECK((double(M[size_t(j)]) > t) == (M64[size_t(j)] > t), "precision %d member %lld", int(p), (long long)j);
      std::printf("     precision %d: %zu of %lld members re-checked\n", int(p), near.size(), (long long)n);

      // nearest of 8 centroids
      const int k = 8;
      std::vector<std::vector<float>> cen;
      for (int c = 0; c < k; ++c) cen.push_back(unit_row(d, rng));
      std::vector<float> best(static_cast<size_t>(n)), second(static_cast<size_t>(n));
      std::vector<int> bi(static_cast<size_t>(n)), bi64(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        std::vector<float> x = unit_row(d, rng);
        const int c0 = int(i % k), c1 = int((i + 1) % k);
        const float w = (i % 3 == 0) ? 0.5f : 0.6f;  // a third on exact midpoints, the rest nearer one centroid
        for (int64_t t = 0; t < d; ++t) x[size_t(t)] = w * cen[size_t(c0)][size_t(t)] + (1 - w) * cen[size_t(c1)][size_t(t)] + 0.01f * x[size_t(t)];
        float b1 = -INFINITY, b2 = -INFINITY;
        double e1 = -INFINITY;
        for (int c = 0; c < k; ++c) {
          const float s = lowp_dot(x, cen[size_t(c)], p, rng, false);
          if (s > b1) {
            b2 = b1, b1 = s, bi[size_t(i)] = c;
          } else if (s > b2) {
            b2 = s;
          }
          const double e = dot64(x, cen[size_t(c)]);
          if (e > e1) e1 = e, bi64[size_t(i)] = c;
        }
        best[size_t(i)] = b1;
        second[size_t(i)] = b2;
      }
      const std::vector<int64_t> ties = near_ties(best.data(), second.data(), n, bound);
      std::vector<char> tie(static_cast<size_t>(n), 0);
      for (int64_t q : ties) tie[size_t(q)] = 1;
      for (int64_t i = 0; i < n; ++i)
        if (!tie[size_t(i)]) CHECK(bi[size_t(i)] == bi64[size_t(i)], "precision %d row %lld: nearest differs outside the re-score set", int(p), (long long)i);
      std::printf("     precision %d: %zu of %lld rows re-scored\n", int(p), ties.size(), (long long)n);
    }
  });

  return check::summary();
}
