// The low-precision filter (semdedup/qfilter.hpp): quantisation, the bound, and the AVX2 integer
// kernel (vpmaddubsw: unsigned 7-bit rows times signed 7-bit columns, pairs summed in int16; two
// such results added in int16 without overflow since 4 * 127 * 64 < 2^15; vpmaddwd widens to int32,
// which holds every sum exactly).
// The kernel is compiled for AVX2 on its own and called only when the CPU reports AVX2.
#include "semdedup/qfilter.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "semdedup/common.hpp"
#include "semdedup/nearest.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SD_QFILTER_X86 1
#endif

namespace semdedup {
namespace qfilter {

namespace {

bool cpu_has_avx2() {
#ifdef SD_QFILTER_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

// Norms computed in float64 over at most kMaxDim terms err by far less than this factor.
inline double inflate(double v) { return v * (1 + 1e-9) + 1e-300; }

// Quantise one vector with `levels` (kRowLevels or kColLevels): q[j] = round(x[j] / s) clamped, s = max|x| / levels.
// Returns false when x holds NaN or Inf.
template <class Out>
bool quantise_one(const float* x, int64_t d, float levels, Out* q, int offset, float* scale, double* err, double* qnorm) {
  float mx = 0;
  for (int64_t j = 0; j < d; ++j) {
    const float a = std::fabs(x[j]);
    if (!(a <= 3.4028234663852886e38f)) return false;  // NaN or Inf
    mx = std::max(mx, a);
  }
  const float s = mx / levels;
  const float inv = mx > 0 ? levels / mx : 0.f;
  double e2 = 0, n2 = 0;
  for (int64_t j = 0; j < d; ++j) {
    float r = std::nearbyint(x[j] * inv);
    r = std::min(levels, std::max(-levels, r));
    const int qi = int(r);
    q[j] = Out(qi + offset);
    const double t = double(s) * double(qi);  // exact: 24 x 8 bits
    const double e = double(x[j]) - t;
    e2 += e * e;
    n2 += t * t;
  }
  *scale = s;
  *err = inflate(std::sqrt(e2));
  *qnorm = inflate(std::sqrt(n2));
  return true;
}

#ifdef SD_QFILTER_X86
// quantise_one with AVX2: the same bytes (vcvtps2dq rounds to nearest even, as nearbyint), the
// norms summed in another order (still within inflate()). kLevels kRowLevels with offset kRowOffset
// (rows, unsigned bytes) or kColLevels with offset 0 (columns, signed bytes).
template <int kLevels, int kOffset, class Out>
__attribute__((target("avx2,fma"))) bool quantise_row_avx2(const float* x, int64_t d, Out* q, float* scale,
                                                            double* err, double* qnorm) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 fmax = _mm256_set1_ps(3.4028234663852886e38f);
  __m256 mxv = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= d; j += 8) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + j), absmask);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, fmax, _CMP_NLE_UQ));  // NaN or Inf
    mxv = _mm256_max_ps(mxv, a);
  }
  if (_mm256_movemask_ps(bad) != 0) return false;
  float lanes[8];
  _mm256_storeu_ps(lanes, mxv);
  float mx = 0;
  for (float v : lanes) mx = std::max(mx, v);
  for (int64_t t = j; t < d; ++t) {
    const float a = std::fabs(x[t]);
    if (!(a <= 3.4028234663852886e38f)) return false;
    mx = std::max(mx, a);
  }
  const float lv = float(kLevels);
  const float s = mx / lv;
  const float inv = mx > 0 ? lv / mx : 0.f;
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i lo = _mm256_set1_epi32(-kLevels), hi = _mm256_set1_epi32(kLevels), off = _mm256_set1_epi32(kOffset);
  const __m256d vs = _mm256_set1_pd(double(s));
  __m256d e2a = _mm256_setzero_pd(), e2b = e2a, n2a = e2a, n2b = e2a;
  j = 0;
  for (; j + 8 <= d; j += 8) {
    const __m256 xv = _mm256_loadu_ps(x + j);
    __m256i qi = _mm256_cvtps_epi32(_mm256_mul_ps(xv, vinv));
    qi = _mm256_min_epi32(hi, _mm256_max_epi32(lo, qi));
    const __m256d t0 = _mm256_mul_pd(vs, _mm256_cvtepi32_pd(_mm256_castsi256_si128(qi)));
    const __m256d t1 = _mm256_mul_pd(vs, _mm256_cvtepi32_pd(_mm256_extracti128_si256(qi, 1)));
    const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(xv)), t0);
    const __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), t1);
    e2a = _mm256_fmadd_pd(d0, d0, e2a);
    e2b = _mm256_fmadd_pd(d1, d1, e2b);
    n2a = _mm256_fmadd_pd(t0, t0, n2a);
    n2b = _mm256_fmadd_pd(t1, t1, n2b);
    // 8 int32 -> 8 bytes (q + 64 in 1..127, or q in -64..64)
    const __m256i u = _mm256_add_epi32(qi, off);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
    const __m128i b = kOffset ? _mm_packus_epi16(w, w) : _mm_packs_epi16(w, w);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + j), b);
  }
  double a4[4], b4[4], c4[4], d4[4];
  _mm256_storeu_pd(a4, e2a);
  _mm256_storeu_pd(b4, e2b);
  _mm256_storeu_pd(c4, n2a);
  _mm256_storeu_pd(d4, n2b);
  double e2 = 0, n2 = 0;
  for (int l = 0; l < 4; ++l) e2 += a4[l] + b4[l], n2 += c4[l] + d4[l];
  for (; j < d; ++j) {
    float r = std::min(lv, std::max(-lv, std::nearbyint(x[j] * inv)));
    const int qi = int(r);
    q[j] = Out(qi + kOffset);
    const double t = double(s) * double(qi);
    const double e = double(x[j]) - t;
    e2 += e * e;
    n2 += t * t;
  }
  *scale = s;
  *err = inflate(std::sqrt(e2));
  *qnorm = inflate(std::sqrt(n2));
  return true;
}
#endif

}  // namespace

Isa best_isa() { return cpu_has_avx2() ? Isa::Avx2Int8 : Isa::Fp32; }

Isa active_isa() {
  const char* v = std::getenv("SEMDEDUP_ISA");
  if (v == nullptr || *v == 0 || std::strcmp(v, "auto") == 0) return best_isa();
  if (std::strcmp(v, "fp32") == 0) return Isa::Fp32;
  if (std::strcmp(v, "avx2-int8") == 0) {
    if (!cpu_has_avx2())
      throw Error(ErrorCode::Backend, "SEMDEDUP_ISA=avx2-int8 was requested, but this CPU has no AVX2");
    return Isa::Avx2Int8;
  }
  throw Error(ErrorCode::InvalidArgument,
              std::string("environment variable SEMDEDUP_ISA must be 'auto', 'fp32' or 'avx2-int8', got '") + v + "'");
}

Isa filter_for(int64_t d) { return d <= kMaxDim ? active_isa() : Isa::Fp32; }

const char* isa_name(Isa isa) { return isa == Isa::Avx2Int8 ? "avx2-int8" : "fp32"; }

void QRows::resize(int64_t mm, int64_t dd) {
  m = mm;
  d = dd;
  dp = padded_dim(dd);
  q.assign(size_t(m) * size_t(dp), uint8_t(kRowOffset));
  scale.assign(size_t(m), 0.f);
  err.assign(size_t(m), 0.0);
  qnorm.assign(size_t(m), 0.0);
  finite.assign(size_t(m), 1);
}

void QRows::quantise_range(const float* x, int64_t i0, int64_t cnt) {
  static const bool avx2 = cpu_has_avx2();
  for (int64_t i = i0; i < i0 + cnt; ++i) {
    uint8_t* out = q.data() + size_t(i) * size_t(dp);
#ifdef SD_QFILTER_X86
    if (avx2) {
      finite[size_t(i)] = quantise_row_avx2<kRowLevels, kRowOffset>(x + (i - i0) * d, d, out, &scale[size_t(i)], &err[size_t(i)], &qnorm[size_t(i)]);
    } else
#endif
    {
      finite[size_t(i)] = quantise_one(x + (i - i0) * d, d, float(kRowLevels), out, kRowOffset, &scale[size_t(i)], &err[size_t(i)],
                                       &qnorm[size_t(i)]);
    }
    for (int64_t j = d; j < dp; ++j) out[j] = kRowOffset;
  }
}

void QRows::quantise(const float* x, int64_t mm, int64_t dd) {
  if (mm > int64_t(scale.size()) || dd != d) {
    resize(mm, dd);
  } else {
    m = mm;
  }
  quantise_range(x, 0, mm);
}

void QCols::pack(const float* c, int64_t nn, int64_t dd) {
  static const bool avx2 = cpu_has_avx2();
  n = nn;
  d = dd;
  dp = padded_dim(dd);
  np = (n + 15) / 16 * 16;
  packed.assign(size_t(np) * size_t(dp), 0);
  scale.assign(size_t(np), 0.f);
  sum.assign(size_t(np), 0);
  err.assign(size_t(np), 0.0);
  qnorm.assign(size_t(np), 0.0);
  bias.assign(size_t(np), 0);
  scale64.assign(size_t(np), 0.0);
  finite = true;
  err_max = qnorm_max = 0;
  std::vector<int8_t> q(static_cast<size_t>(dp), 0);
  const int64_t steps = dp / 4;
  for (int64_t j = 0; j < n; ++j) {
    std::fill(q.begin(), q.end(), int8_t(0));
    bool ok;
#ifdef SD_QFILTER_X86
    if (avx2)
      ok = quantise_row_avx2<kColLevels, 0>(c + j * d, d, q.data(), &scale[size_t(j)], &err[size_t(j)], &qnorm[size_t(j)]);
    else
#endif
      ok = quantise_one(c + j * d, d, float(kColLevels), q.data(), 0, &scale[size_t(j)], &err[size_t(j)], &qnorm[size_t(j)]);
    if (!ok) {
      finite = false;
      std::fill(q.begin(), q.end(), int8_t(0));
    }
    int32_t s = 0;
    for (int64_t t = 0; t < d; ++t) s += q[size_t(t)];
    sum[size_t(j)] = s;
    bias[size_t(j)] = kRowOffset * s;
    scale64[size_t(j)] = double(scale[size_t(j)]);
    err_max = std::max(err_max, err[size_t(j)]);
    qnorm_max = std::max(qnorm_max, qnorm[size_t(j)]);
    const int64_t panel = j / 16, col = j % 16;
    int8_t* base = packed.data() + size_t(panel) * size_t(steps) * 64;
    for (int64_t t = 0; t < steps; ++t) std::memcpy(base + t * 64 + col * 4, q.data() + t * 4, 4);
  }
}

double row_bound(bool ip, int64_t d, double err, double qnorm, double xnorm, double cmax, const QCols& c) {
  const double u64 = 1.1102230246251565e-16;
  // |x~.c~ - x.c| for every column, and the float64 rounding of the scaled product
  const double q = err * cmax + qnorm * c.err_max + 2 * u64 * qnorm * c.qnorm_max;
  // the float64 values' own error (nearest.hpp), against which scores are compared
  const double g = nearest::gamma_n(double(d) + 4, u64) * (xnorm + cmax) * (xnorm + cmax);
  // L2: twice the product's error, the rounding of 2 x~.c~ - ip(c, c), four times the float64 error
  const double e = ip ? q + g : 2 * q + 2 * u64 * (2 * qnorm * c.qnorm_max + cmax * cmax) + 4 * g;
  return e * (1 + 1.0 / 1048576) + 1e-300;
}

#ifdef SD_QFILTER_X86
namespace {

__attribute__((target("avx2"))) int64_t row_scores_avx2(const int32_t* v, int64_t j0, int64_t n, float sx,
                                                         const QCols& c, const double* cc, double* out) {
  const __m256d vsx = _mm256_set1_pd(double(sx));
  // per lane: the largest score so far and its first position (strict '>')
  __m256d vmax = _mm256_set1_pd(-std::numeric_limits<double>::infinity());
  __m256d vpos = _mm256_set1_pd(-1), cur = _mm256_setr_pd(0, 1, 2, 3);
  const __m256d four = _mm256_set1_pd(4);
  const int32_t* bias = c.bias.data() + j0;
  const double* s64 = c.scale64.data() + j0;
  if (cc) cc += j0;
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) {
    const __m128i w = _mm_sub_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + t)),
                                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(bias + t)));
    // (sx scale_j) is exact in float64 (24 x 24 bits): one rounding, as scaled()
    __m256d sc = _mm256_mul_pd(_mm256_cvtepi32_pd(w), _mm256_mul_pd(vsx, _mm256_loadu_pd(s64 + t)));
    if (cc) sc = _mm256_sub_pd(_mm256_add_pd(sc, sc), _mm256_loadu_pd(cc + t));
    _mm256_storeu_pd(out + t, sc);
    const __m256d gt = _mm256_cmp_pd(sc, vmax, _CMP_GT_OQ);
    vmax = _mm256_blendv_pd(vmax, sc, gt);
    vpos = _mm256_blendv_pd(vpos, cur, gt);
    cur = _mm256_add_pd(cur, four);
  }
  double lanes[4], pos[4];
  _mm256_storeu_pd(lanes, vmax);
  _mm256_storeu_pd(pos, vpos);
  // the largest of the lanes, the lowest position on a tie; then the tail
  double best = -std::numeric_limits<double>::infinity();
  int64_t bi = -1;
  for (int l = 0; l < 4; ++l)
    if (pos[l] >= 0 && (bi < 0 || lanes[l] > best || (lanes[l] == best && int64_t(pos[l]) < bi))) {
      best = lanes[l];
      bi = int64_t(pos[l]);
    }
  for (; t < n; ++t) {
    const double p = scaled(v[t], sx, c, j0 + t);
    out[t] = cc ? 2 * p - cc[t] : p;
    if (bi < 0 || out[t] > best) {
      best = out[t];
      bi = t;
    }
  }
  return bi < 0 && n > 0 ? 0 : bi;  // NaN scores (non-finite inputs are refused before)
}

__attribute__((target("avx2,popcnt,bmi"))) int64_t list_at_least_avx2(const double* s, int64_t n, double floor, int32_t* idx) {
  const __m256d f = _mm256_set1_pd(floor);
  int64_t c = 0, j = 0;
  for (; j + 4 <= n; j += 4) {
    unsigned m = unsigned(_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(s + j), f, _CMP_GE_OQ)));
    while (m) {
      idx[c++] = int32_t(j + __builtin_ctz(m));
      m &= m - 1;
    }
  }
  for (; j < n; ++j)
    if (s[j] >= floor) idx[c++] = int32_t(j);
  return c;
}

__attribute__((target("avx2"))) void group_max_avx2(const double* s, int64_t n, int64_t group, double* out) {
  const int64_t ng = (n + group - 1) / group;
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t j0 = g * group, j1 = std::min(n, j0 + group);
    __m256d m = _mm256_set1_pd(-std::numeric_limits<double>::infinity());
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) m = _mm256_max_pd(m, _mm256_loadu_pd(s + j));
    double lanes[4];
    _mm256_storeu_pd(lanes, m);
    double b = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
    for (; j < j1; ++j) b = std::max(b, s[j]);
    out[g] = b;
  }
}

// MR rows x 16 columns (one panel): acc[r][h] holds columns 8h .. 8h + 7 of row r. Two steps (8
// bytes of depth) at a time: their vpmaddubsw pair sums added in int16 (no overflow with 7-bit
// rows, see the top of this file), then widened once. steps is even (padded_dim).
template <int MR>
__attribute__((target("avx2"))) void micro(const uint8_t* a, int64_t lda, const int8_t* bp, int64_t steps, int32_t* c,
                                           int64_t ldc) {
  __m256i acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t t = 0; t < steps; t += 2) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + t * 64));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + t * 64 + 32));
    const __m256i b2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + t * 64 + 64));
    const __m256i b3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + t * 64 + 96));
    for (int r = 0; r < MR; ++r) {
      int32_t av, aw;
      std::memcpy(&av, a + r * lda + t * 4, 4);
      std::memcpy(&aw, a + r * lda + t * 4 + 4, 4);
      const __m256i ar = _mm256_set1_epi32(av), as = _mm256_set1_epi32(aw);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(ar, b0), _mm256_maddubs_epi16(as, b2)), ones));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(ar, b1), _mm256_maddubs_epi16(as, b3)), ones));
    }
  }
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc), acc[r][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc + 8), acc[r][1]);
  }
}

}  // namespace
#endif

int64_t row_scores(const int32_t* v, int64_t j0, int64_t n, float sx, const QCols& cols, const double* cc, double* out) {
#ifdef SD_QFILTER_X86
  static const bool avx2 = cpu_has_avx2();
  if (avx2) return row_scores_avx2(v, j0, n, sx, cols, cc, out);
#endif
  int64_t bi = -1;
  for (int64_t t = 0; t < n; ++t) {
    const double p = scaled(v[t], sx, cols, j0 + t);
    out[t] = cc ? 2 * p - cc[j0 + t] : p;
    if (bi < 0 || out[t] > out[bi]) bi = t;
  }
  return bi;
}

int64_t list_at_least(const double* s, int64_t n, double floor, int32_t* idx) {
#ifdef SD_QFILTER_X86
  static const bool avx2 = cpu_has_avx2();
  if (avx2) return list_at_least_avx2(s, n, floor, idx);
#endif
  int64_t c = 0;
  for (int64_t j = 0; j < n; ++j)
    if (s[j] >= floor) idx[c++] = int32_t(j);
  return c;
}

void group_max(const double* s, int64_t n, int64_t group, int64_t skip, double* out) {
  const int64_t ng = (n + group - 1) / group;
#ifdef SD_QFILTER_X86
  static const bool avx2 = cpu_has_avx2();
  if (avx2) {
    group_max_avx2(s, n, group, out);
    // the group of `skip`: again without it
    if (skip >= 0 && skip < n) {
      const int64_t g = skip / group, j1 = std::min(n, (g + 1) * group);
      double b = -std::numeric_limits<double>::infinity();
      for (int64_t j = g * group; j < j1; ++j)
        if (j != skip) b = std::max(b, s[j]);
      out[g] = b;
    }
    return;
  }
#endif
  for (int64_t g = 0; g < ng; ++g) {
    double b = -std::numeric_limits<double>::infinity();
    for (int64_t j = g * group; j < std::min(n, (g + 1) * group); ++j)
      if (j != skip) b = std::max(b, s[j]);
    out[g] = b;
  }
}

double measure_filter_gops(int repeats, int threads) {
  if (best_isa() != Isa::Avx2Int8) return 0;
  threads = resolve_threads(threads);
  const int64_t m = 1024, n = 1000, d = 512;
  uint32_t seed = 12345;
  auto next = [&seed] { return float((seed = seed * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f; };
  std::vector<float> c(size_t(n * d));
  for (auto& v : c) v = next();
  QCols cols;
  cols.pack(c.data(), n, d);
  std::vector<std::vector<float>> rows(static_cast<size_t>(threads), std::vector<float>(size_t(m * d)));
  for (auto& r : rows)
    for (auto& v : r) v = next();
  std::vector<QRows> q(static_cast<size_t>(threads));
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(threads), std::vector<int32_t>(size_t(m * cols.np)));
  double best = 0;
  for (int r = 0; r <= repeats; ++r) {  // the first round warms up
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(threads, threads, [&](int64_t t, int) {
      q[size_t(t)].quantise(rows[size_t(t)].data(), m, d);
      qgemm(q[size_t(t)].q.data(), m, q[size_t(t)].dp, cols, out[size_t(t)].data(), cols.np);
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) best = std::max(best, 2.0 * double(m) * double(n) * double(d) * threads / dt / 1e9);
  }
  return best;
}

void qgemm(const uint8_t* a, int64_t m, int64_t lda, const QCols& cols, int32_t* v, int64_t ldc) {
  qgemm_panels(a, m, lda, cols, 0, cols.np / 16, v, ldc);
}

__attribute__((target_clones("avx2", "default"))) float dot32(const float* a, const float* b, int64_t d) {
  float acc[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 16 <= d; j += 16)
    for (int l = 0; l < 16; ++l) acc[l] += a[j + l] * b[j + l];
  for (int l = 0; j < d; ++j, ++l) acc[l] += a[j] * b[j];
  float s = 0;
  for (float x : acc) s += x;
  return s;
}

void qgemm_panels(const uint8_t* a, int64_t m, int64_t lda, const QCols& cols, int64_t panel0, int64_t panel1,
                  int32_t* v, int64_t ldc) {
#ifdef SD_QFILTER_X86
  constexpr int MR = 4;
  const int64_t steps = cols.dp / 4;
  v -= panel0 * 16;
  // Rows in chunks of about 128 KB, which stay in L2 while every panel passes; one panel (16
  // columns x dp bytes) stays in L1 while the chunk's rows stream past it.
  const int64_t chunk = std::max<int64_t>(MR, (int64_t(128) << 10) / std::max<int64_t>(1, lda) / MR * MR);
  for (int64_t r0 = 0; r0 < m; r0 += chunk) {
    const int64_t r1 = std::min(m, r0 + chunk);
    for (int64_t p = panel0; p < panel1; ++p) {
      const int8_t* bp = cols.packed.data() + size_t(p) * size_t(steps) * 64;
      int64_t i = r0;
      for (; i + MR <= r1; i += MR) micro<MR>(a + i * lda, lda, bp, steps, v + i * ldc + p * 16, ldc);
      switch (r1 - i) {
        case 3: micro<3>(a + i * lda, lda, bp, steps, v + i * ldc + p * 16, ldc); break;
        case 2: micro<2>(a + i * lda, lda, bp, steps, v + i * ldc + p * 16, ldc); break;
        case 1: micro<1>(a + i * lda, lda, bp, steps, v + i * ldc + p * 16, ldc); break;
        default: break;
      }
    }
  }
#else
  (void)a, (void)m, (void)lda, (void)cols, (void)v, (void)ldc, (void)panel0, (void)panel1;
  throw Error(ErrorCode::Backend, "the integer filter needs an x86-64 build");
#endif
}

}  // namespace qfilter
}  // namespace semdedup
