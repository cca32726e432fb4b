// The engine's k-means (step 2, docs/algorithm.md): FAISS's sampling and initialisation, Lloyd
// iterations whose every assignment is the exact nearest centroid (semdedup/nearest.hpp), float64
// centroid sums in a fixed order, and the final assignment of every row by the same rule.
//
// The fast pass is blocked single-threaded sgemm (float32, whatever kernel and blocking the BLAS
// uses) on our own workers. A row whose best fast score exceeds the runner-up's by more than twice
// the proven bound eps (nearest.hpp) is decided by it; the others are re-scored in float64 over the
// centroids whose fast score lies within 2 eps of the best. The chosen centroid's float64 value is
// computed for every row (dist_to_cent, the objective). So every decision, and every written value,
// is a function of the input bytes alone.
//
// Pruning bounds (Hamerly's, in "prune score" terms, higher is better: IP: the float64 score;
// L2: -sqrt(max(0, l2))). Per row and per group of 16 consecutive centroids we keep an upper bound
// of the best prune score of the group's centroids other than the assigned one. A search sets it
// from the fast scores plus eps (an upper bound of the float64 scores); when centroid c moves by
// delta_c, the exact score moves by at most scale * delta_c (scale = |x| for IP, 1 for L2) and the
// float64 value by at most twice its own error, so the bound grows by that much (rounded up to
// float32). Each iteration the assigned centroid's float64 score is recomputed; when it exceeds
// every group's bound strictly, no other centroid can be better or tie, and the search is skipped.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "semdedup/blas.hpp"
#include "semdedup/kmeans.hpp"
#include "semdedup/mapping.hpp"
#include "semdedup/nearest.hpp"
#include "semdedup/qfilter.hpp"
#include "semdedup/sampling.hpp"

namespace semdedup {
namespace {

namespace nr = nearest;
namespace qf = qfilter;

constexpr int64_t kSearchBlock = 256;   // rows per sgemm during training
constexpr int64_t kAssignBlock = 1024;  // rows per sgemm in the final assignment
constexpr int kGroup = 16;              // centroids per group of the pruning bounds (one kernel panel)
constexpr int64_t kPartBatch = 4;       // rows per kernel call of the partial search
constexpr double kInf = std::numeric_limits<double>::infinity();

// float32 at or above v (bounds must not shrink when stored as float32).
inline float round_up(double v) {
  float f = float(v);
  if (double(f) < v) {  // std::nextafter(f, +inf), inline: one step of the bits (from zero: the least subnormal)
    uint32_t b;
    std::memcpy(&b, &f, 4);
    b = f == 0 ? 1u : f > 0 ? b + 1 : b - 1;
    std::memcpy(&f, &b, 4);
  }
  return f;
}

#if defined(__x86_64__)
bool cpu_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}

// round_up of four float64 values (to nearest, then one step up where that fell below).
__attribute__((target("avx2"))) inline __m128i round_up4(__m256d t) {
  const __m128 f = _mm256_cvtpd_ps(t);
  const __m128 below = _mm256_cvtpd_ps(_mm256_cmp_pd(_mm256_cvtps_pd(f), t, _CMP_LT_OQ));  // all-ones lanes: NaN, nonzero
  const __m128i fi = _mm_castps_si128(f), one = _mm_set1_epi32(1);
  // the next float32 up: +1 ulp of the bits when positive, -1 when negative, the least subnormal from zero
  __m128i up = _mm_add_epi32(fi, _mm_or_si128(_mm_srai_epi32(fi, 31), one));
  up = _mm_blendv_epi8(up, one, _mm_castps_si128(_mm_cmpeq_ps(f, _mm_setzero_ps())));
  return _mm_blendv_epi8(fi, up, _mm_castps_si128(_mm_cmpneq_ps(below, _mm_setzero_ps())));
}

// Four bounds at once, the same operations as the scalar loop (a product and two sums in float64,
// no fused multiply-add).
__attribute__((target("avx2"))) int grow_bounds_avx2(float* u, const double* add, int n, double scale, double tau) {
  const __m256d vs = _mm256_set1_pd(scale), vt = _mm256_set1_pd(tau);
  int g = 0;
  for (; g + 4 <= n; g += 4) {
    const __m256d t = _mm256_add_pd(_mm256_add_pd(_mm256_cvtps_pd(_mm_loadu_ps(u + g)), _mm256_mul_pd(vs, _mm256_loadu_pd(add + g))), vt);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(u + g), round_up4(t));
  }
  return g;
}

// The number of g < n with !(l > u[g]) (NaN counts), four at a time; *done: how many it looked at.
__attribute__((target("avx2,popcnt"))) int open_groups_avx2(const float* u, int n, double l, int* done) {
  const __m256d vl = _mm256_set1_pd(l);
  int closed = 0, g = 0;
  for (; g + 4 <= n; g += 4)
    closed += __builtin_popcount(unsigned(_mm256_movemask_pd(_mm256_cmp_pd(vl, _mm256_cvtps_pd(_mm_loadu_ps(u + g)), _CMP_GT_OQ))));
  *done = g;
  return g - closed;
}
#endif

// fn(g0, g1) for each run [g0, g1) of consecutive values in the ascending list `groups`.
template <class Fn>
void for_each_run(const std::vector<int>& groups, Fn fn) {
  for (size_t r0 = 0; r0 < groups.size();) {
    size_t r1 = r0 + 1;
    while (r1 < groups.size() && groups[r1] == groups[r1 - 1] + 1) ++r1;
    fn(groups[r0], groups[r1 - 1] + 1);
    r0 = r1;
  }
}

// The centroids' facts the exact rule needs, computed once per set of centroids.
struct CentroidSet {
  const float* c = nullptr;
  int k = 0;
  int64_t d = 0;
  bool ip = true;
  std::vector<double> cc;  // ip(c, c) (nearest.hpp)
  double cmax = 0;         // upper bound of every centroid's norm
  std::vector<double> cd;  // the centroids widened to float64 (when at most kWideMax values), for dot()
  static constexpr int64_t kWideMax = int64_t(8) << 20;

  void set(const float* cent, int kk, int64_t dd, bool inner, int threads) {
    c = cent;
    k = kk;
    d = dd;
    ip = inner;
    cc.resize(size_t(k));
    parallel_for(threads, (k + 255) / 256, [&](int64_t b, int) {
      for (int64_t j = b * 256; j < std::min<int64_t>(k, (b + 1) * 256); ++j) cc[size_t(j)] = nr::dot64_cpu(cent + j * d, cent + j * d, d);
    });
    double m = 0;
    for (double v : cc) m = std::max(m, v);
    cmax = nr::norm_slack(std::sqrt(m));
    if (int64_t(k) * d <= kWideMax) {
      cd.resize(size_t(k) * size_t(d));
      for (int64_t t = 0; t < int64_t(k) * d; ++t) cd[size_t(t)] = double(cent[t]);
    } else {
      cd.clear();
    }
  }
  const float* row(int64_t j) const { return c + j * d; }
  // nr::dot64_cpu(x, row(j), d), the same bits (the float64 copy saves a conversion per product)
  double dot(const float* x, int64_t j) const {
    return cd.empty() ? nr::dot64_cpu(x, row(j), d) : nr::dot64_fd_cpu(x, cd.data() + j * d, d);
  }
};

struct Pick {
  int64_t idx;
  double score;  // float64 score (nearest.hpp) of the chosen centroid
  bool rescored;
};

// The best float64 score (ties to the lower id) among the centroids j with keep(j).
template <class Keep>
Pick rescore(const float* x, double xx, const CentroidSet& cs, Keep keep) {
  double bs = -kInf;
  int64_t bj = -1;
  for (int j = 0; j < cs.k; ++j) {
    if (!keep(j)) continue;
    const double s = nr::score64(cs.ip, xx, cs.cc[size_t(j)], cs.dot(x, j));
    if (bj < 0 || nr::better(s, j, bs, bj)) {
      bs = s;
      bj = j;
    }
  }
  if (bj < 0 || std::isnan(bs)) throw Error(ErrorCode::Numeric, "nearest centroid: non-finite distances (NaN in the rows or centroids)");
  return {bj, bs, true};
}

// The exact nearest centroid of row x from its fast products line[0..k) (float32). xx = ip(x, x)
// (used for L2 only), xnorm an upper bound of |x|.
Pick pick_exact(const float* line, const float* x, double xx, double xnorm, const CentroidSet& cs) {
  const int k = cs.k;
  const bool ip = cs.ip;
  const double eps = nr::eps_score(ip, cs.d, xnorm, cs.cmax);
  double best, second;
  int64_t bi;
  if (ip) {  // the fast score is the product itself: compare in float32
    nr::Top2<float> t(-std::numeric_limits<float>::infinity());
    for (int j = 0; j < k; ++j) t.add(line[j], j);
    best = t.best, second = t.second, bi = t.at;
  } else {
    nr::Top2<double> t(-kInf);
    for (int j = 0; j < k; ++j) t.add(nr::fast_score(ip, line[j], cs.cc[size_t(j)]), j);
    best = t.best, second = t.second, bi = t.at;
  }
  if (bi >= 0 && nr::decided(best, second, eps))
    return {bi, nr::score64(ip, xx, cs.cc[size_t(bi)], cs.dot(x, bi)), false};
  // Re-score in float64 every centroid that can still be the best (all of them when a fast score
  // was not finite).
  const bool all = bi < 0 || !std::isfinite(best);
  return rescore(x, xx, cs, [&](int j) { return all || nr::candidate(nr::fast_score(ip, line[j], cs.cc[size_t(j)]), best, eps); });
}

// The exact nearest centroid of a row from its integer filter scores, by the same rule in two
// stages. upper[0..n) holds the filter scores of centroids col(0) < col(1) < ... < col(n - 1) on
// entry (every centroid, or those a partial search scored: see CpuAssigner::assign), and bi the
// lowest t holding the largest. (1) The filter's bound eps8 (qfilter.hpp): the centroids whose
// filter score lies within 2 eps8 of the best are the candidates; one candidate is the answer. (2)
// Several: each candidate's float32 product (bound eps32 of nearest.hpp) decides as in pick_exact
// among the candidates, and the float32 near ties are re-scored in float64. On return upper[t] is an
// upper bound of centroid col(t)'s fast score (a float64 score plus the row's constant; for the
// pruning bounds); xnorm and cmax are upper bounds of |x| and of every |c|; *checked is set when
// stage 2 ran, *ncand to the number of candidates it checked.
template <class Col>
Pick pick_from_scores(double* upper, int64_t n, Col col, int64_t bi, double eps8, const float* x, double xx, double xnorm,
                      double cmax, const CentroidSet& cs, bool* checked, int64_t* ncand) {
  const bool ip = cs.ip;
  const double best = upper[bi];
  const double floor8 = best - 2 * eps8;
  thread_local std::vector<int32_t> cand;
  if (int64_t(cand.size()) < n) cand.resize(size_t(n));
  *checked = true;
  *ncand = qf::list_at_least(upper, n, floor8, cand.data());
  for (int64_t t = 0; t < n; ++t) upper[t] += eps8;  // every bound from the filter; the candidates' below
  if (*ncand == 1) {
    *ncand = 0;
    *checked = false;
    const int64_t j = col(bi);
    return {j, nr::score64(ip, xx, cs.cc[size_t(j)], cs.dot(x, j)), false};
  }
  // Stage 2: float32 products of the candidates (ascending t); the others keep the filter's bound.
  // Only a candidate can be the best: every other centroid's float64 score lies below that of the
  // filter's best (bi, a candidate).
  const double eps32 = nr::eps_score(ip, cs.d, xnorm, cmax);
  nr::Top2<double> t32(-kInf);
  bool finite = true;
  for (int64_t c = 0; c < *ncand; ++c) {
    const int64_t t = cand[size_t(c)], j = col(t);
    const double f = nr::fast_score(ip, qf::dot32(x, cs.row(j), cs.d), cs.cc[size_t(j)]);
    finite = finite && std::isfinite(f);
    upper[t] = f + eps32;
    t32.add(f, j);
  }
  if (finite && t32.at >= 0 && nr::decided(t32.best, t32.second, eps32))
    return {t32.at, nr::score64(ip, xx, cs.cc[size_t(t32.at)], cs.dot(x, t32.at)), false};
  // float64 over the float32 near ties (every centroid when a product was not finite), in
  // ascending id: the lower id wins a tie
  if (!finite) return rescore(x, xx, cs, [](int) { return true; });
  const double floor32 = t32.best - 2 * eps32;
  double bs = -kInf;
  int64_t bj = -1;
  for (int64_t c = 0; c < *ncand; ++c) {
    const int64_t t = cand[size_t(c)];
    if (upper[t] - eps32 < floor32) continue;
    const int64_t j = col(t);
    const double sc = nr::score64(ip, xx, cs.cc[size_t(j)], cs.dot(x, j));
    if (bj < 0 || nr::better(sc, j, bs, bj)) {
      bs = sc;
      bj = j;
    }
  }
  if (bj < 0 || std::isnan(bs)) throw Error(ErrorCode::Numeric, "nearest centroid: non-finite distances (NaN in the rows or centroids)");
  return {bj, bs, true};
}

// pick_from_scores for row i of the integer filter's block (v: its kernel sums, one per centroid).
// A row or centroid that is not finite has no bound: every centroid is re-scored in float64.
Pick pick_filtered(const int32_t* v, const qf::QRows& qr, int64_t i, const float* x, double xx, double xnorm,
                   double cmax, const CentroidSet& cs, const qf::QCols& qc, double* upper, bool* checked,
                   int64_t* ncand) {
  const int k = cs.k;
  if (!qr.finite[size_t(i)] || !qc.finite) {
    *checked = true;
    *ncand = k;
    for (int j = 0; j < k; ++j) upper[j] = kInf;
    return rescore(x, xx, cs, [](int) { return true; });
  }
  const double eps8 = qf::row_bound(cs.ip, cs.d, qr.err[size_t(i)], qr.qnorm[size_t(i)], xnorm, cmax, qc);
  const int64_t bi = qf::row_scores(v, 0, k, qr.scale[size_t(i)], qc, cs.ip ? nullptr : cs.cc.data(), upper);
  return pick_from_scores(upper, k, [](int64_t t) { return t; }, bi, eps8, x, xx, xnorm, cmax, cs, checked, ncand);
}

// An upper bound of |x| from a float32 sum of squares (8 lanes): its error is at most gamma_D
// times the sum, plus underflow.
double norm_bound_f32(const float* x, int64_t d) {
  float acc[nr::kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + nr::kLanes <= d; j += nr::kLanes)
    for (int l = 0; l < nr::kLanes; ++l) acc[l] += x[j + l] * x[j + l];
  for (int l = 0; j < d; ++j, ++l) acc[l] += x[j] * x[j];
  double s = 0;
  for (float a : acc) s += double(a);
  const double g = nr::gamma_n(double(d + 8), 5.9604644775390625e-08);
  return nr::norm_slack(std::sqrt(s * (1 + 2 * g) + double(d) * 1e-44));
}

// The prune score (top of this file) of a float64 score.
inline double prune_score(bool ip, double s) { return ip ? s : -std::sqrt(std::max(0.0, -s)); }

// An upper bound of the prune score of a centroid whose fast score is s (from the bound eps).
inline double prune_upper(bool ip, double s, double xx, double eps) {
  if (ip) return s + eps;
  if (s == -kInf) return -kInf;
  return -std::sqrt(std::max(0.0, xx - s - eps));  // l2 >= xx - s - eps
}

// s[j] += double(x[j]) for j < d (a centroid's float64 sum takes one more row), four at a time
// with AVX2: the same additions.
#if defined(__x86_64__)
__attribute__((target("avx2"))) void add_row_avx2(double* s, const float* x, int64_t d) {
  int64_t j = 0;
  for (; j + 8 <= d; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    _mm256_storeu_pd(s + j, _mm256_add_pd(_mm256_loadu_pd(s + j), _mm256_cvtps_pd(_mm256_castps256_ps128(v))));
    _mm256_storeu_pd(s + j + 4, _mm256_add_pd(_mm256_loadu_pd(s + j + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
  }
  for (; j < d; ++j) s[j] += double(x[j]);
}
#endif
void add_row(double* s, const float* x, int64_t d) {
#if defined(__x86_64__)
  static const bool avx2 = cpu_avx2();
  if (avx2) return add_row_avx2(s, x, d);
#endif
  for (int64_t j = 0; j < d; ++j) s[j] += double(x[j]);
}

}  // namespace

// u[g] = round_up(u[g] + scale * add[g] + tau) for g < n: a row's group bounds follow the centroids.
void grow_bounds(float* u, const double* add, int n, double scale, double tau) {
  int g = 0;
#if defined(__x86_64__)
  static const bool avx2 = cpu_avx2();
  if (avx2) g = grow_bounds_avx2(u, add, n, scale, tau);
#endif
  for (; g < n; ++g) u[g] = round_up(double(u[g]) + scale * add[g] + tau);
}

// The number of groups whose bound does not exclude them: g < n with !(l > u[g]).
int open_groups(const float* u, int n, double l) {
  int g = 0, open = 0;
#if defined(__x86_64__)
  static const bool avx2 = cpu_avx2();
  if (avx2) open = open_groups_avx2(u, n, l, &g);
#endif
  for (; g < n; ++g) open += !(l > double(u[g]));
  return open;
}

void check_kmeans_args(const EmbeddingView& x, const KMeansParams& p) {
  if (p.k < 1) throw Error(ErrorCode::InvalidArgument, "k must be >= 1, got " + std::to_string(p.k));
  if (int64_t(p.k) > x.n)
    throw Error(ErrorCode::InvalidArgument,
                "k = " + std::to_string(p.k) + " is larger than the number of rows N = " + std::to_string(x.n));
  if (x.n > int64_t(INT32_MAX)) throw Error(ErrorCode::InvalidArgument, "k-means training supports at most 2^31-1 rows");
  if (x.d < 1) throw Error(ErrorCode::InvalidArgument, "embeddings have no columns");
}

BigBuffer read_training_sample(const EmbeddingView& x, const std::vector<int64_t>& rows, int threads) {
  const int64_t d = x.d;
  BigBuffer out(rows.size() * size_t(d) * 4, false);  // read by row blocks: 4 KiB pages (common.hpp)
  out.resize(rows.size() * size_t(d) * 4);
  float* sample = out.as<float>();
  std::vector<int64_t> slots(rows.size());
  std::iota(slots.begin(), slots.end(), 0);
  std::sort(slots.begin(), slots.end(), [&](int64_t a, int64_t b) { return rows[size_t(a)] < rows[size_t(b)]; });
  // Ascending rows in chunks, each row read straight into its slot: with pread when the file is
  // open (a row read through the mapping would map the kernel's whole fault-around window), chunks
  // on every worker; through the mapping in order, dropping the pages behind the reader.
  const int64_t chunk = 4096;
  const int64_t nchunks = (int64_t(slots.size()) + chunk - 1) / chunk;
  const bool parallel = x.preads();
  threads = parallel ? resolve_threads(threads) : 1;
  int64_t released = 0;
  parallel_for(threads, nchunks, [&](int64_t ci, int) {
    const int64_t c0 = ci * chunk;
    const int64_t m = std::min<int64_t>(chunk, int64_t(slots.size()) - c0);
    for (int64_t t = 0; t < m; ++t) {  // each row straight to its slot
      const int64_t slot = slots[size_t(c0 + t)];
      x.gather(&rows[size_t(slot)], 1, sample + size_t(slot) * size_t(d));
    }
    if (!parallel) {  // one reader, ascending: drop the pages behind it
      const int64_t last = rows[size_t(slots[size_t(c0 + m - 1)])];
      x.release(released, last);
      released = last;
    }
  });
  x.release(0, x.n);
  return out;
}

namespace {

// Rows normalised in float64 (the norm as ip(r, r) of nearest.hpp), each value rounded once.
void normalise_f64(const double* src, float* dst, int64_t d) {
  double acc[nr::kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t j = 0; j < d; ++j) {
    volatile double sq = src[j] * src[j];  // rounded on its own: no fused multiply-add on any target
    acc[j % nr::kLanes] += sq;
  }
  const double n2 = nr::combine_lanes(acc);
  const double inv = n2 > 0 ? 1 / std::sqrt(n2) : 1.0;
  for (int64_t j = 0; j < d; ++j) dst[j] = float(src[j] * inv);
}

void normalise_rows(float* rows, int64_t m, int64_t d) {
  std::vector<double> tmp(static_cast<size_t>(d));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < d; ++j) tmp[size_t(j)] = rows[i * d + j];
    normalise_f64(tmp.data(), rows + i * d, d);
  }
}

}  // namespace

KMeansResult lloyd_kmeans(const EmbeddingView& x, const KMeansParams& p, KMeansAssigner& assigner,
                          const ProgressFn& progress, CancelFlag cancel) {
  check_kmeans_args(x, p);
  const int64_t d = x.d;
  const int k = p.k;
  const bool ip = p.spherical;  // spherical: inner product, else squared L2 (as faiss.Kmeans)
  const int threads = resolve_threads(p.threads);

  KMeansResult r;
  r.under_min_points = x.n < int64_t(k) * p.min_points_per_centroid;
  const std::vector<int64_t> rows = kmeans_training_sample(x.n, k, p.max_points_per_centroid, p.seed);
  BigBuffer owned;
  const float* X;
  if (int64_t(rows.size()) == x.n && x.is_f32() && x.contiguous()) {
    X = x.f32_row(0);
  } else {
    owned = read_training_sample(x, rows, p.threads);
    X = owned.as<float>();
  }
  const int64_t nt = int64_t(rows.size());
  r.n_train = nt;
  if (nt == k) {  // FAISS: as many points as clusters: the points are the centroids
    r.centroids.assign(X, X + nt * d);
    return r;
  }
  {  // FAISS refuses NaN/Inf in the training set
    std::atomic<bool> bad{false};
    parallel_for(threads, (nt + 4095) / 4096, [&](int64_t b, int) {
      const int64_t e = std::min(nt, (b + 1) * 4096);
      for (int64_t i = b * 4096 * d; i < e * d; ++i)
        if (!std::isfinite(X[i])) bad = true;
    }, cancel);
    if (bad) throw Error(ErrorCode::Numeric, "k-means input contains NaN's or Inf's");
  }
  assigner.prepare(X, nt, d, ip);

  std::vector<float> cent(size_t(k) * size_t(d)), prev(size_t(k) * size_t(d)), best_centroids;
  std::vector<int64_t> assign(static_cast<size_t>(nt)), last(static_cast<size_t>(nt)), counts(static_cast<size_t>(k));
  std::vector<double> dis(static_cast<size_t>(nt)), sums(size_t(k) * size_t(d));
  std::vector<float> hassign(static_cast<size_t>(k));
  std::vector<double> moved(static_cast<size_t>(k));
  std::vector<int64_t> start(size_t(k) + 1), fill(static_cast<size_t>(k)), members(static_cast<size_t>(nt));
  // whether `sums` holds the sums of the previous iteration's assignment (`last`), and the
  // centroids to sum again
  std::vector<uint8_t> resum(static_cast<size_t>(k));
  bool summed_valid = false;
  // As faiss::Clustering::iteration_stats: the objectives of every iteration run so far (all redo
  // rounds), as they stood when the best round ended.
  std::vector<float> objective, best_objective;
  double best_obj = ip ? -HUGE_VAL : HUGE_VAL;
  int best_iterations = 0;
  bool converged = false;
  const int64_t total = int64_t(p.niter) * p.nredo;

  for (int redo = 0; redo < p.nredo; ++redo) {
    const std::vector<int64_t> init = kmeans_init_rows(nt, k, p.seed, redo);
    for (int c = 0; c < k; ++c) std::memcpy(&cent[size_t(c) * size_t(d)], X + init[size_t(c)] * d, size_t(d) * 4);
    if (p.spherical) normalise_rows(cent.data(), k, d);
    double obj = 0;
    int it = 0;
    converged = false;
    summed_valid = false;
    for (; it < p.niter; ++it) {
      check_cancel(cancel);
      // 1. assignment (the backend's part): the exact nearest centroid of every training row
      if (it > 0) last = assign;
      assigner.assign(cent.data(), k, it > 0 ? moved.data() : nullptr, assign.data(), dis.data(), cancel);
      obj = 0;
      for (int64_t i = 0; i < nt; ++i) obj += dis[size_t(i)];
      objective.push_back(float(obj));
      // No assignment changed: the centroids below would be the current ones again, and so would
      // every later iteration's; stop (the same bytes as running all niter iterations).
      if (it > 0 && assign == last) {
        ++it;
        converged = true;
        break;
      }

      // 2. centroids: float64 sums in training-row order / counts, normalised in float64 when
      //    spherical, rounded once; FAISS's empty-cluster split
      prev = cent;
      if (assigner.centroid_sums(assign.data(), k, sums.data(), counts.data())) {
        summed_valid = false;
      } else {
        // A centroid whose rows are those its sum already holds keeps that sum (the same rows in
        // the same order: the same bits); the others are summed again.
        std::fill(resum.begin(), resum.end(), uint8_t(!summed_valid));
        if (summed_valid)
          for (int64_t i = 0; i < nt; ++i)
            if (assign[size_t(i)] != last[size_t(i)]) resum[size_t(assign[size_t(i)])] = resum[size_t(last[size_t(i)])] = 1;
        std::fill(counts.begin(), counts.end(), 0);
        // each centroid's rows in ascending order (a counting sort), so that every row is read
        // once and each sum adds its rows in training-row order, whatever the worker
        for (int64_t i = 0; i < nt; ++i) ++counts[size_t(assign[size_t(i)])];
        start[0] = 0;
        for (int c = 0; c < k; ++c) start[size_t(c) + 1] = start[size_t(c)] + counts[size_t(c)];
        std::copy(start.begin(), start.end() - 1, fill.begin());
        for (int64_t i = 0; i < nt; ++i) members[size_t(fill[size_t(assign[size_t(i)])]++)] = i;
        parallel_for(threads, (k + 7) / 8, [&](int64_t b, int) {
          for (int64_t c = b * 8; c < std::min<int64_t>(k, (b + 1) * 8); ++c) {
            if (!resum[size_t(c)]) continue;
            double* s = &sums[size_t(c) * size_t(d)];
            std::fill(s, s + d, 0.0);
            for (int64_t t = start[size_t(c)]; t < start[size_t(c) + 1]; ++t) add_row(s, X + members[size_t(t)] * d, d);
          }
        }, cancel);
        summed_valid = true;  // the next iteration's `last`
      }
      parallel_for(threads, (k + 63) / 64, [&](int64_t b, int) {
        std::vector<double> mean(static_cast<size_t>(d));
        for (int64_t c = b * 64; c < std::min<int64_t>(k, (b + 1) * 64); ++c) {
          float* out = &cent[size_t(c) * size_t(d)];
          const int64_t m = counts[size_t(c)];
          if (m == 0) {
            std::fill(out, out + d, 0.f);  // replaced by the split below
            continue;
          }
          const double* s = &sums[size_t(c) * size_t(d)];
          for (int64_t j = 0; j < d; ++j) mean[size_t(j)] = s[j] / double(m);
          if (p.spherical)
            normalise_f64(mean.data(), out, d);
          else
            for (int64_t j = 0; j < d; ++j) out[j] = float(mean[size_t(j)]);
        }
      });
      for (int c = 0; c < k; ++c) hassign[size_t(c)] = float(counts[size_t(c)]);
      if (faiss_split_clusters(size_t(d), size_t(k), size_t(nt), hassign.data(), cent.data()) > 0 && p.spherical) {
        // the split centroids (both halves) normalised again
        for (int c = 0; c < k; ++c)
          if (counts[size_t(c)] == 0 || float(counts[size_t(c)]) != hassign[size_t(c)])
            normalise_rows(&cent[size_t(c) * size_t(d)], 1, d);
      }

      // 3. how far each centroid moved (rounded up), for assigners that keep bounds
      for (int c = 0; c < k; ++c) {
        double s2 = 0;
        for (int64_t j = 0; j < d; ++j) {
          const double t = double(cent[size_t(c) * size_t(d) + size_t(j)]) - prev[size_t(c) * size_t(d) + size_t(j)];
          s2 += t * t;
        }
        moved[size_t(c)] = std::sqrt(s2) * (1 + 1e-6) + 1e-9;
      }
      if (progress) progress(int64_t(redo) * p.niter + it + 1, total);
    }
    if (progress) progress(int64_t(redo + 1) * p.niter, total);
    if (p.nredo == 1 || (ip ? obj > best_obj : obj < best_obj)) {
      best_centroids = cent;
      best_objective = objective;
      best_obj = obj;
      best_iterations = it;
    }
  }
  if (p.keep_assignment && p.nredo == 1) {
    if (!converged) {
      // one more (bounded) assignment: the training rows against the final centroids; its work
      // is not Lloyd's, so the counters stay those of the iterations
      const int64_t s0 = assigner.searched_rows, p0 = assigner.pruned_rows, r0 = assigner.rescored_rows,
                    f0 = assigner.filter_rechecked_rows, q0 = assigner.partial_rows, c0 = assigner.searched_columns;
      assigner.assign(cent.data(), k, moved.data(), assign.data(), dis.data(), cancel);
      assigner.searched_rows = s0, assigner.pruned_rows = p0, assigner.rescored_rows = r0, assigner.filter_rechecked_rows = f0;
      assigner.partial_rows = q0, assigner.searched_columns = c0;
    }
    r.final_rows = rows;
    r.final_nearest = assign;
    r.final_dist.resize(size_t(nt));
    for (int64_t i = 0; i < nt; ++i) r.final_dist[size_t(i)] = float(dis[size_t(i)]);
  }
  r.centroids = std::move(best_centroids);
  r.objective = std::move(best_objective);
  r.iterations = best_iterations;
  r.searched_rows = assigner.searched_rows;
  r.pruned_rows = assigner.pruned_rows;
  r.rescored_rows = assigner.rescored_rows;
  r.filter_rechecked_rows = assigner.filter_rechecked_rows;
  r.partial_rows = assigner.partial_rows;
  r.searched_columns = assigner.searched_columns;
  r.filter = assigner.filter;
  return r;
}

namespace {

// The CPU assignment step: blocked single-threaded sgemm (the fast pass) + the exact rule on every
// core, and with `prune` the bounds that skip rows whose centroid provably cannot change (top of
// this file).
class CpuAssigner : public KMeansAssigner {
 public:
  CpuAssigner(int threads, bool prune) : threads_(resolve_threads(threads)), prune_(prune) {
    filter = qf::isa_name(qf::Isa::Fp32);
  }

  void prepare(const float* X, int64_t nt, int64_t d, bool ip) override {
    X_ = X;
    nt_ = nt;
    d_ = d;
    ip_ = ip;
    xx_.resize(size_t(nt));
    xnorm_.resize(size_t(nt));
    parallel_for(threads_, (nt + 4095) / 4096, [&](int64_t b, int) {
      for (int64_t i = b * 4096; i < std::min(nt, (b + 1) * 4096); ++i) {
        xx_[size_t(i)] = nr::dot64_cpu(X + i * d, X + i * d, d);
        xnorm_[size_t(i)] = nr::norm_slack(std::sqrt(xx_[size_t(i)]));
      }
    });
    xbuf_.assign(size_t(threads_), std::vector<float>(size_t(kSearchBlock) * size_t(d)));
    int8_ = qf::filter_for(d) == qf::Isa::Avx2Int8;
    if (int8_) {
      filter = qf::isa_name(qf::Isa::Avx2Int8);  // the training rows quantised once (qfilter.hpp)
      qx_.resize(nt, d);
      parallel_for(threads_, (nt + 4095) / 4096, [&](int64_t b, int) {
        const int64_t i0 = b * 4096, cnt = std::min<int64_t>(4096, nt - i0);
        qx_.quantise_range(X + i0 * d, i0, cnt);
      });
      qbuf_.assign(size_t(threads_), qf::QRows());
      for (auto& q : qbuf_) q.resize(kSearchBlock, d);
    }
  }

  void assign(const float* cent, int k, const double* moved, int64_t* assign, double* dis, CancelFlag cancel) override {
    const int64_t nt = nt_, d = d_;
    const bool ip = ip_;
    const float* X = X_;
    if (int64_t(cbuf_.size()) != threads_ || k_ != k) {
      k_ = k;
      ng_ = (k + kGroup - 1) / kGroup;
      cbuf_.assign(size_t(threads_), std::vector<float>(size_t(kSearchBlock) * size_t(k)));
      if (prune_) upg_.resize(size_t(nt) * size_t(ng_) * sizeof(float));  // written by the first (full) search
    }
    const int ng = ng_;
    BlasSingleThread blas1;
    cs_.set(cent, k, d, ip, threads_);
    const double cmax_prev = cmax_run_;
    cmax_run_ = std::max(cmax_run_, cs_.cmax);  // bounds hold for the centroids of every iteration so far
    const bool bounded = prune_ && moved != nullptr;
    // 0. the bounds follow the centroids' movement: a group's bound grows by its largest move, and
    //    by the float64 values' error (old and new)
    if (bounded) {
      std::vector<double> gdelta(size_t(ng), 0.0);
      for (int c = 0; c < k; ++c) gdelta[size_t(c / kGroup)] = std::max(gdelta[size_t(c / kGroup)], moved[c]);
      parallel_for(threads_, (nt + 4095) / 4096, [&](int64_t b, int) {
        const int64_t e = std::min(nt, (b + 1) * 4096);
        for (int64_t i = b * 4096; i < e; ++i) {
          const double xn = xnorm_[size_t(i)];
          const double e64 = nr::eps64(ip, d, xn, std::max(cmax_prev, cs_.cmax));
          const double tau = ip ? 2 * e64 : 2 * std::sqrt(e64);
          const double scale = ip ? xn : 1.0;
          grow_bounds(upg_.as<float>() + size_t(i) * size_t(ng), gdelta.data(), ng, scale, tau);
        }
      });
    }
    const bool use8 = int8_ && filter_pays(k);
    if (int8_ && !use8) cand_per_row_ /= 4;  // no count from a float32 iteration: assume the usual decline
    // 1. rows that keep their centroid provably (bounds), the others to search: in full, or (with
    //    the integer filter) only the groups whose bound does not exclude them, when those are at
    //    most half (partial search, below)
    if (use8) qc_.pack(cent, k, d);
    // rows and centroids with no filter bound (not finite) are searched in full (pick_filtered)
    const bool partial_ok = use8 && qc_.finite;
    std::vector<int64_t> todo, part;
    if (bounded) {
      std::vector<uint8_t> keep(static_cast<size_t>(nt));
      if (use8) lval_.resize(size_t(nt));
      parallel_for(threads_, (nt + 4095) / 4096, [&](int64_t b, int) {
        const int64_t e = std::min(nt, (b + 1) * 4096);
        for (int64_t i = b * 4096; i < e; ++i) {
          const int64_t a = assign[size_t(i)];
          const double s = nr::score64(ip, xx_[size_t(i)], cs_.cc[size_t(a)], cs_.dot(X + i * d, a));
          const double l = prune_score(ip, s);
          const int open = open_groups(upg_.as<float>() + size_t(i) * size_t(ng), ng, l);
          if (open == 0) {
            keep[size_t(i)] = 1;
            dis[size_t(i)] = nr::value_of_score(ip, s);
          } else if (partial_ok && 2 * open <= ng && qx_.finite[size_t(i)]) {
            keep[size_t(i)] = 2;
            lval_[size_t(i)] = l;
          }
        }
      }, cancel);
      for (int64_t i = 0; i < nt; ++i) {
        if (keep[size_t(i)] == 0) todo.push_back(i);
        if (keep[size_t(i)] == 2) part.push_back(i);
      }
    } else {
      todo.resize(size_t(nt));
      std::iota(todo.begin(), todo.end(), 0);
    }
    searched_rows += int64_t(todo.size() + part.size());
    searched_columns += int64_t(todo.size()) * k;
    pruned_rows += nt - int64_t(todo.size() + part.size());
    // 2. search of the others, in blocks; new bounds for the searched rows
    const int64_t nblocks = (int64_t(todo.size()) + kSearchBlock - 1) / kSearchBlock;
    std::atomic<int64_t> rescored{0}, rechecked{0}, candidates{0}, columns{0};
    if (use8) {
      if (int64_t(vbuf_.size()) != threads_) {
        vbuf_.assign(size_t(threads_), std::vector<int32_t>());
        sbuf_.assign(size_t(threads_), std::vector<double>());
      }
      parallel_for(threads_, nblocks, [&](int64_t b, int w) {
        const int64_t s0 = b * kSearchBlock, m = std::min<int64_t>(kSearchBlock, int64_t(todo.size()) - s0);
        qf::QRows& qb = qbuf_[size_t(w)];
        for (int64_t t = 0; t < m; ++t) {  // the block's quantised rows and their facts
          const int64_t i = todo[size_t(s0 + t)];
          std::memcpy(qb.q.data() + t * qb.dp, qx_.row(i), size_t(qb.dp));
          qb.scale[size_t(t)] = qx_.scale[size_t(i)];
          qb.err[size_t(t)] = qx_.err[size_t(i)];
          qb.qnorm[size_t(t)] = qx_.qnorm[size_t(i)];
          qb.finite[size_t(t)] = qx_.finite[size_t(i)];
        }
        auto& v = vbuf_[size_t(w)];
        auto& sc = sbuf_[size_t(w)];
        v.resize(size_t(kSearchBlock) * size_t(qc_.np));
        sc.resize(size_t(k));
        qf::qgemm(qb.q.data(), m, qb.dp, qc_, v.data(), qc_.np);
        std::vector<double> gmax(static_cast<size_t>(ng));
        int64_t nres = 0, nchk = 0, ncand = 0;
        for (int64_t t = 0; t < m; ++t) {
          const int64_t i = todo[size_t(s0 + t)];
          bool checked;
          int64_t nc;
          const Pick pk = pick_filtered(v.data() + t * qc_.np, qb, t, X + i * d, xx_[size_t(i)], xnorm_[size_t(i)],
                                        cmax_run_, cs_, qc_, sc.data(), &checked, &nc);
          nres += pk.rescored;
          nchk += checked;
          ncand += nc;
          assign[size_t(i)] = pk.idx;
          dis[size_t(i)] = nr::value_of_score(ip, pk.score);
          if (!prune_) continue;
          float* u = upg_.as<float>() + size_t(i) * size_t(ng);
          qf::group_max(sc.data(), k, kGroup, pk.idx, gmax.data());
          for (int g = 0; g < ng; ++g) u[g] = round_up(prune_upper(ip, gmax[size_t(g)], xx_[size_t(i)], 0.0));
        }
        rescored += nres;
        rechecked += nchk;
        candidates += ncand;
      }, cancel);
      // Partial search: a row scores only the groups its bounds leave open, and its centroid's group.
      // The exact best is among them: every other centroid's prune score is below its group's
      // bound, which is below the assigned centroid's score. Those groups' bounds stay as they are.
      // Rows go in order of their assigned centroid, kPartBatch at a time: one kernel call computes
      // the union of their open groups for all of them (rows of one cluster leave much the same
      // groups open), and each row reads only its own groups' sums, so every decision, bound and
      // count is that of the row alone.
      std::stable_sort(part.begin(), part.end(), [&](int64_t a, int64_t b) { return assign[size_t(a)] < assign[size_t(b)]; });
      parallel_for(threads_, (int64_t(part.size()) + 63) / 64, [&](int64_t b, int w) {
        auto& vu = vbuf_[size_t(w)];
        auto& sc = sbuf_[size_t(w)];
        qf::QRows& qb = qbuf_[size_t(w)];
        sc.resize(std::max(sc.size(), size_t(k)));
        std::vector<int32_t> col(static_cast<size_t>(k));
        std::vector<int> groups[kPartBatch], uni;
        std::vector<int64_t> upos(static_cast<size_t>(ng));
        std::vector<uint8_t> in(static_cast<size_t>(ng));
        int64_t nres = 0, nchk = 0, ncand = 0, ncols = 0;
        const int64_t e = std::min<int64_t>(int64_t(part.size()), (b + 1) * 64);
        for (int64_t t0 = b * 64; t0 < e; t0 += kPartBatch) {
          const int64_t m = std::min<int64_t>(kPartBatch, e - t0);
          // each row's open groups (and its own), their union, the rows' quantised bytes
          std::fill(in.begin(), in.end(), 0);
          for (int64_t r = 0; r < m; ++r) {
            const int64_t i = part[size_t(t0 + r)];
            const double l = lval_[size_t(i)];
            const float* u = upg_.as<float>() + size_t(i) * size_t(ng);
            const int ga = int(assign[size_t(i)] / kGroup);
            groups[r].clear();
            for (int g = 0; g < ng; ++g)
              if (g == ga || !(l > double(u[g]))) groups[r].push_back(g), in[size_t(g)] = 1;
            std::memcpy(qb.q.data() + r * qb.dp, qx_.row(i), size_t(qb.dp));
          }
          uni.clear();
          int64_t width = 0;
          for (int g = 0; g < ng; ++g)
            if (in[size_t(g)]) {
              uni.push_back(g);
              upos[size_t(g)] = width;
              width += kGroup;  // the kernel writes whole panels
            }
          const int64_t ldu = width;
          vu.resize(std::max(vu.size(), size_t(m * ldu)));
          for_each_run(uni, [&](int g0, int g1) {  // one kernel call per run of consecutive groups
            qf::qgemm_panels(qb.q.data(), m, qb.dp, qc_, g0, g1, vu.data() + upos[size_t(g0)], ldu);
          });
          for (int64_t r = 0; r < m; ++r) {
            const int64_t i = part[size_t(t0 + r)];
            float* u = upg_.as<float>() + size_t(i) * size_t(ng);
            const float sx = qx_.scale[size_t(i)];
            const int32_t* vr = vu.data() + r * ldu;
            int64_t n = 0, bi = -1;
            for_each_run(groups[r], [&](int g0, int g1) {  // the row's own runs of consecutive groups
              const int64_t j0 = int64_t(g0) * kGroup, cnt = std::min<int64_t>(k, int64_t(g1) * kGroup) - j0;
              const int64_t bt = qf::row_scores(vr + upos[size_t(g0)], j0, cnt, sx, qc_, ip ? nullptr : cs_.cc.data(), sc.data() + n);
              if (bi < 0 || sc[size_t(n + bt)] > sc[size_t(bi)]) bi = n + bt;
              for (int64_t c = 0; c < cnt; ++c) col[size_t(n + c)] = int32_t(j0 + c);
              n += cnt;
            });
            ncols += n;
            bool checked;
            int64_t nc;
            const double eps8 = qf::row_bound(ip, d, qx_.err[size_t(i)], qx_.qnorm[size_t(i)], xnorm_[size_t(i)], cmax_run_, qc_);
            const Pick pk = pick_from_scores(sc.data(), n, [&](int64_t c) { return int64_t(col[size_t(c)]); }, bi, eps8, X + i * d,
                                             xx_[size_t(i)], xnorm_[size_t(i)], cmax_run_, cs_, &checked, &nc);
            nres += pk.rescored;
            nchk += checked;
            ncand += nc;
            assign[size_t(i)] = pk.idx;
            dis[size_t(i)] = nr::value_of_score(ip, pk.score);
            // the open groups' bounds from this search; the others keep theirs
            int64_t c = 0;
            for (int g : groups[r]) {
              const int64_t ge = std::min<int64_t>(k, int64_t(g + 1) * kGroup);
              double gb = -kInf;
              for (int64_t j = int64_t(g) * kGroup; j < ge; ++j, ++c)
                if (j != pk.idx) gb = std::max(gb, sc[size_t(c)]);
              u[g] = round_up(prune_upper(ip, gb, xx_[size_t(i)], 0.0));
            }
          }
        }
        rescored += nres;
        rechecked += nchk;
        candidates += ncand;
        columns += ncols;
      }, cancel);
      rescored_rows += rescored.load();
      filter_rechecked_rows += rechecked.load();
      partial_rows += int64_t(part.size());
      searched_columns += columns.load();
      const size_t searched = todo.size() + part.size();
      cand_per_row_ = searched == 0 ? 0.0 : double(candidates.load()) / double(searched);
      return;
    }
    parallel_for(threads_, nblocks, [&](int64_t b, int w) {
      const int64_t s0 = b * kSearchBlock, m = std::min<int64_t>(kSearchBlock, int64_t(todo.size()) - s0);
      float* xb = xbuf_[size_t(w)].data();
      for (int64_t t = 0; t < m; ++t) std::memcpy(xb + t * d, X + todo[size_t(s0 + t)] * d, size_t(d) * 4);
      float* cb = cbuf_[size_t(w)].data();
      gemm_abt(xb, m, cent, k, d, cb, k);
      int64_t nres = 0;
      for (int64_t t = 0; t < m; ++t) {
        const int64_t i = todo[size_t(s0 + t)];
        const Pick pk = pick_exact(cb + t * k, X + i * d, xx_[size_t(i)], xnorm_[size_t(i)], cs_);
        nres += pk.rescored;
        assign[size_t(i)] = pk.idx;
        dis[size_t(i)] = nr::value_of_score(ip, pk.score);
        if (!prune_) continue;
        const double eps = nr::eps_score(ip, d, xnorm_[size_t(i)], cmax_run_);
        float* u = upg_.as<float>() + size_t(i) * size_t(ng);
        const float* line = cb + t * k;
        for (int g = 0; g < ng; ++g) {
          double gb = -kInf;
          const int e = std::min(k, (g + 1) * kGroup);
          for (int j = g * kGroup; j < e; ++j)
            if (j != pk.idx) gb = std::max(gb, nr::fast_score(ip, line[j], cs_.cc[size_t(j)]));
          u[g] = round_up(prune_upper(ip, gb, xx_[size_t(i)], eps));
        }
      }
      rescored += nres;
    }, cancel);
    rescored_rows += rescored.load();
  }

 private:
  int threads_;
  bool prune_;
  const float* X_ = nullptr;
  int64_t nt_ = 0, d_ = 0;
  bool ip_ = false;
  int k_ = 0, ng_ = 0;
  double cmax_run_ = 0;
  CentroidSet cs_;
  std::vector<double> xx_, xnorm_;
  BigBuffer upg_{0, false};  // per row, the groups' bounds (nt x ng float32)
  std::vector<std::vector<float>> cbuf_, xbuf_;
  // Whether the integer filter pays this iteration. Its second stage re-checks the candidates of
  // undecided rows by float32 products one at a time, each costing about kDotCost of the kernel's
  // products per value; the filter halves the kernel's cost, so it pays while those re-checks stay
  // under kMaxExtra of a float32 search (k products per row). The estimate is the last filtered
  // iteration's candidates per searched row (cut by 4 per float32 iteration between, as the counts
  // fall while k-means settles); the first iteration's (random initial centroids) starts at
  // kFirstCandidates. The choice changes speed and the counters only: both paths decide exactly.
  static constexpr double kDotCost = 8, kMaxExtra = 0.4, kFirstCandidates = 16;
  bool filter_pays(int k) const { return cand_per_row_ * kDotCost < kMaxExtra * double(k); }
  double cand_per_row_ = kFirstCandidates;
  std::vector<double> lval_;  // per row, the assigned centroid's prune score (rows searched partially)
  // the integer filter: the training rows quantised, the centroids packed, per-worker buffers
  bool int8_ = false;
  qf::QRows qx_;
  qf::QCols qc_;
  std::vector<qf::QRows> qbuf_;
  std::vector<std::vector<int32_t>> vbuf_;
  std::vector<std::vector<double>> sbuf_;
};

}  // namespace

KMeansResult train_kmeans(const EmbeddingView& x, const KMeansParams& p, const ProgressFn& progress, CancelFlag cancel) {
  CpuAssigner assigner(p.threads, p.prune);
  return lloyd_kmeans(x, p, assigner, progress, cancel);
}

namespace {

// The rows of block [b0, b0 + m) that the assignment searches (those `skip` does not mark), held
// contiguously: the mapping's own rows when none is skipped and they lie in place, else a copy.
// pos[t] is the row of slot t.
struct BlockRows {
  std::vector<float> all, sel;
  std::vector<int64_t> pos;
  const float* take(const EmbeddingView& x, int64_t b0, int64_t m, const uint8_t* skip) {
    const int64_t d = x.d;
    pos.clear();
    for (int64_t t = 0; t < m; ++t)
      if (!skip || !skip[b0 + t]) pos.push_back(b0 + t);
    if (!x.f32_in_place(b0, b0 + m)) all.resize(size_t(m) * size_t(d));
    const float* rows = pos.empty() ? nullptr : x.f32_rows(b0, b0 + m, all.data());  // zero-copy when it can
    if (int64_t(pos.size()) == m) return rows;
    sel.resize(pos.size() * size_t(d));
    for (size_t t = 0; t < pos.size(); ++t) std::memcpy(sel.data() + t * size_t(d), rows + (pos[t] - b0) * d, size_t(d) * 4);
    return sel.data();
  }
};

}  // namespace

void assign_nearest(const EmbeddingView& x, const float* centroids, int k, bool inner_product, int64_t* nearest,
                    float* dist, int threads, const ProgressFn& progress, CancelFlag cancel, int64_t* rescored,
                    int64_t* rechecked, const uint8_t* skip) {
  if (k < 1) throw Error(ErrorCode::InvalidArgument, "k must be >= 1");
  const int64_t d = x.d;
  threads = resolve_threads(threads);
  CentroidSet cs;
  cs.set(centroids, k, d, inner_product, threads);
  const int64_t nblocks = (x.n + kAssignBlock - 1) / kAssignBlock;
  std::vector<BlockRows> blocks(static_cast<size_t>(threads));
  std::atomic<int64_t> done{0}, nres{0}, nchk{0};
  if (rechecked) *rechecked = 0;
  if (qf::filter_for(d) == qf::Isa::Avx2Int8) {
    // The integer filter (qfilter.hpp): the same decisions, hence the same bytes.
    qf::QCols qc;
    qc.pack(centroids, k, d);
    struct Work {
      qf::QRows qr;
      std::vector<int32_t> v;
      std::vector<double> scores;
    };
    std::vector<Work> work(static_cast<size_t>(threads));
    parallel_for(threads, nblocks, [&](int64_t b, int w) {
      Work& wk = work[size_t(w)];
      const int64_t b0 = b * kAssignBlock, m = std::min(kAssignBlock, x.n - b0);
      BlockRows& br = blocks[size_t(w)];
      const float* rows = br.take(x, b0, m, skip);
      const int64_t ms = int64_t(br.pos.size());
      int64_t r = 0, rc = 0;
      if (ms > 0) {
        wk.qr.quantise(rows, ms, d);
        wk.v.resize(size_t(kAssignBlock) * size_t(qc.np));
        wk.scores.resize(size_t(k));
        qf::qgemm(wk.qr.q.data(), ms, wk.qr.dp, qc, wk.v.data(), qc.np);
      }
      for (int64_t t = 0; t < ms; ++t) {
        const float* xr = rows + t * d;
        const double xx = inner_product ? 0.0 : nr::dot64_cpu(xr, xr, d);
        const double xn = inner_product ? norm_bound_f32(xr, d) : nr::norm_slack(std::sqrt(xx));
        bool checked;
        int64_t nc;
        const Pick pk = pick_filtered(wk.v.data() + t * qc.np, wk.qr, t, xr, xx, xn, cs.cmax, cs, qc, wk.scores.data(), &checked, &nc);
        r += pk.rescored;
        rc += checked;
        nearest[br.pos[size_t(t)]] = pk.idx;
        dist[br.pos[size_t(t)]] = float(nr::value_of_score(inner_product, pk.score));
      }
      nres += r;
      nchk += rc;
      x.release(b0, b0 + m);
      const int64_t now = done.fetch_add(m) + m;
      if (progress) progress(now, x.n);
    }, cancel);
    if (rescored) *rescored = nres.load();
    if (rechecked) *rechecked = nchk.load();
    return;
  }
  BlasSingleThread blas1;
  std::vector<std::vector<float>> cbuf(static_cast<size_t>(threads), std::vector<float>(size_t(kAssignBlock) * size_t(k)));
  parallel_for(threads, nblocks, [&](int64_t b, int w) {
    const int64_t b0 = b * kAssignBlock, m = std::min(kAssignBlock, x.n - b0);
    BlockRows& br = blocks[size_t(w)];
    const float* rows = br.take(x, b0, m, skip);
    const int64_t ms = int64_t(br.pos.size());
    float* cb = cbuf[size_t(w)].data();
    if (ms > 0) gemm_abt(rows, ms, centroids, k, d, cb, k);
    int64_t r = 0;
    for (int64_t t = 0; t < ms; ++t) {
      const float* xr = rows + t * d;
      // IP needs |x| only for the bound (a float32 one will do); L2's values need ip(x, x)
      const double xx = inner_product ? 0.0 : nr::dot64_cpu(xr, xr, d);
      const double xn = inner_product ? norm_bound_f32(xr, d) : nr::norm_slack(std::sqrt(xx));
      const Pick pk = pick_exact(cb + t * k, xr, xx, xn, cs);
      r += pk.rescored;
      nearest[br.pos[size_t(t)]] = pk.idx;
      dist[br.pos[size_t(t)]] = float(nr::value_of_score(inner_product, pk.score));
    }
    nres += r;
    x.release(b0, b0 + m);
    const int64_t now = done.fetch_add(m) + m;
    if (progress) progress(now, x.n);
  }, cancel);
  if (rescored) *rescored = nres.load();
}

#ifndef SEMDEDUP_HAVE_FAISS
std::string faiss_version() { return "none"; }
#endif

}  // namespace semdedup
