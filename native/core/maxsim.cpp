// step 4 (docs/algorithm.md) on the CPU: per-cluster max similarity to an earlier member, tile by tile.
//
// Work list: a cluster of up to kWholeMax members (and 16 MB) is one item: its rows are gathered once (keep
// order) and, for each column tile of kCols members, one sgemm computes the dots of every
// earlier-or-same member with the tile (a (c0 + cols) x cols block: only the upper-triangular
// part of the Gram matrix plus the small diagonal blocks), folded into the running column max
// masked to earlier members; on AVX2 + FMA CPUs without AVX-512 the fused filter (fused_fold:
// the cluster packed once, 6 x 16 blocks of dot products folded in registers, no score matrix)
// replaces those tiles (SEMDEDUP_MAXSIM_KERNEL, maxsim_filter_kernel). A larger cluster is split
// into one item per column tile, whose earlier rows are gathered (pread) block by block, kRowBlock
// rows at a time: memory per worker is bounded by the tiles, whatever the cluster size. Each BLAS call is single-threaded; the workers
// are the parallelism. Items write disjoint outputs, and each output depends only on the fixed
// decomposition (never on the thread count), so results are deterministic.
//
// Exactness (docs/algorithm.md, "Exact M"): the float32 tiles are only a filter. The fold keeps per
// column the float32 maximum, its earliest position and the runner-up (the largest other value).
// Every dot product is within eps of its float64 value (nearest.hpp's fixed-order dot64, bound
// eps_score for rows of norm at most the cluster's largest), so the member reaching the exact maximum
// lies among the earlier members whose float32 score is within 2 eps of the float32 maximum. When the
// runner-up is further than that, the float32 argmax is the only candidate and one float64 dot
// product gives M; otherwise the candidates are re-scored in float64 (whole-cluster items still hold
// the column's float32 scores; the fused filter computes them again), or, in split items, the
// member is re-scanned over all its earlier members in float64. Exact copies of a recent member
// (compact_copies, split_tile) skip the filter in both kinds of item. M is then the float64 value
// itself, the same bits on every machine.
#include "semdedup/maxsim.hpp"

#include <algorithm>
#include <utility>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <atomic>

#include "semdedup/blas.hpp"
#include "semdedup/mapping.hpp"
#include "semdedup/nearest.hpp"
#include "semdedup/qfilter.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SD_MAXSIM_X86 1
#endif


namespace semdedup {
namespace {

constexpr int64_t kCols = 128;       // column tile width of whole-cluster items
constexpr int64_t kSplitCols = 2048;  // column tile width of items of a very large cluster (fewer re-reads)
constexpr int64_t kSplitColsMid = 512;  // ... of a cluster a little larger than a whole-cluster item
constexpr int64_t kSplitWide = 65536;  // from this size on, the wide tiles
constexpr int64_t kRowBlock = 2048;  // rows per sgemm for clusters split into column items
constexpr int64_t kWholeMax = 4096;  // clusters up to this size are one item (bounded by bytes too)

// Folds a block of dots into the column maxima. Row r of the block is the member at position
// row_pos0 + r, column j the member at col_pos0 + j (or at col_pos[j], increasing, when given);
// only pairs with row position < column position count. Strict '>' keeps the earliest row on ties, since rows are visited in
// ascending position order. second[j] is the largest value of the column other than best[j]'s
// (a tie with the maximum makes it equal to the maximum).
__attribute__((target_clones("avx512f", "avx2", "default")))
void fold_block(const float* c, int64_t ldc, int64_t rows, int64_t cols, int64_t row_pos0, int64_t col_pos0,
                float* best, float* second, int64_t* best_pos, const int64_t* col_pos = nullptr) {
  int64_t jp = 0;  // with col_pos: the first column after the current row
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t pos = row_pos0 + r;
    int64_t j0;
    if (col_pos) {
      while (jp < cols && col_pos[jp] <= pos) ++jp;
      j0 = jp;
    } else {
      j0 = pos < col_pos0 ? 0 : pos - col_pos0 + 1;
    }
    if (j0 >= cols) break;
    const float* line = c + r * ldc;
    for (int64_t j = j0; j < cols; ++j) {
      const float v = line[j];
      const float b = best[j];
      const bool better = v > b;
      second[j] = std::max(second[j], std::min(v, b));
      best[j] = better ? v : b;
      best_pos[j] = better ? pos : best_pos[j];
    }
  }
}


// The fused float32 filter of whole-cluster items (AVX2 + FMA): the dot products of a block of 6
// rows with a panel of 16 columns are computed in registers over the full D (each lane a plain
// FMA chain over j = 0 .. D - 1, within gamma_D of the exact value like any other order) and
// folded at once into the panel's per-column maximum, earliest position and runner-up, with the
// same rule as fold_block (rows visited in ascending position, strict '>', pairs with row
// position < column position only). No score matrix is written, and the cluster is packed once
// (rows in blocks of 6, columns in panels of 16) instead of once per BLAS tile.
constexpr int64_t kMr = 6;       // rows per register block
constexpr int64_t kNr = 16;      // columns per panel (two 8-lane vectors)
constexpr int64_t kNrBlock = 4;  // panels per column block (4 x 16 columns x D floats stay in L2; 8 measured 30% slower)
constexpr int64_t kUnroll = 8;   // steps of j per loop iteration (4 and 16 measured slower)

#ifdef SD_MAXSIM_X86
// Packs the n rows a (row-major, n x d) for the fused filter. Columns [c0, n) into panels of kNr:
// panel q holds, for each j in 0 .. d - 1, the values x_{c0 + 16 q + l}[j] for l = 0 .. 15 (zero
// past n). Rows into blocks of kMr: block m holds, for each j, x_{6 m + i}[j] for i = 0 .. 5 (the
// last row repeated past n: those pairs are masked). Full panels by 8 x 8 transposes.
__attribute__((target("avx2,fma"))) void pack_panels(const float* a, int64_t n, int64_t d, int64_t c0, float* cols,
                                                       float* rows) {
  const int64_t panels = (n - c0 + kNr - 1) / kNr;
  for (int64_t q = 0; q < panels; ++q) {
    float* o = cols + q * kNr * d;
    const int64_t first = c0 + q * kNr;
    int64_t j = 0;
    if (first + kNr <= n) {
      for (; j + 8 <= d; j += 8)
        for (int64_t h = 0; h < 2; ++h) {
          const float* r = a + (first + 8 * h) * d + j;
          const __m256 r0 = _mm256_loadu_ps(r), r1 = _mm256_loadu_ps(r + d), r2 = _mm256_loadu_ps(r + 2 * d),
                       r3 = _mm256_loadu_ps(r + 3 * d), r4 = _mm256_loadu_ps(r + 4 * d), r5 = _mm256_loadu_ps(r + 5 * d),
                       r6 = _mm256_loadu_ps(r + 6 * d), r7 = _mm256_loadu_ps(r + 7 * d);
          const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
                       t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                       t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
          const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                       u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                       u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                       u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
          float* w = o + j * kNr + 8 * h;
          _mm256_store_ps(w, _mm256_permute2f128_ps(u0, u4, 0x20));
          _mm256_store_ps(w + kNr, _mm256_permute2f128_ps(u1, u5, 0x20));
          _mm256_store_ps(w + 2 * kNr, _mm256_permute2f128_ps(u2, u6, 0x20));
          _mm256_store_ps(w + 3 * kNr, _mm256_permute2f128_ps(u3, u7, 0x20));
          _mm256_store_ps(w + 4 * kNr, _mm256_permute2f128_ps(u0, u4, 0x31));
          _mm256_store_ps(w + 5 * kNr, _mm256_permute2f128_ps(u1, u5, 0x31));
          _mm256_store_ps(w + 6 * kNr, _mm256_permute2f128_ps(u2, u6, 0x31));
          _mm256_store_ps(w + 7 * kNr, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
    for (; j < d; ++j)
      for (int64_t l = 0; l < kNr; ++l) o[j * kNr + l] = first + l < n ? a[(first + l) * d + j] : 0.f;
  }
  const int64_t blocks = (n + kMr - 1) / kMr;
  for (int64_t m = 0; m < blocks; ++m) {
    float* o = rows + m * kMr * d;
    const float* r[kMr];
    for (int64_t i = 0; i < kMr; ++i) r[i] = a + std::min(m * kMr + i, n - 1) * d;
    for (int64_t j = 0; j < d; ++j)
      for (int64_t i = 0; i < kMr; ++i) o[j * kMr + i] = r[i][j];
  }
}
#endif

bool cpu_has_fused() {
#ifdef SD_MAXSIM_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

#ifdef SD_MAXSIM_X86
// A float32 dot product in 32 lanes of FMA chains (any order is within gamma_D, nearest.hpp): the
// fused filter's norms and its undecided columns' scores.
__attribute__((target("avx2,fma"))) float dot32_fma(const float* a, const float* b, int64_t d) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t j = 0;
  for (; j + 32 <= d; j += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 16), _mm256_loadu_ps(b + j + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 24), _mm256_loadu_ps(b + j + 24), s3);
  }
  for (; j + 8 <= d; j += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float r = _mm_cvtss_f32(h);
  for (; j < d; ++j) r = std::fma(a[j], b[j], r);
  return r;
}

// Columns [c0, n) of a whole cluster of n rows (packed by pack_panels(.., c0, cols, rows)):
// best/second/pos[j] for column c0 + j over the rows before it (arrays of the panels' width; pos
// -1 where no row scored above -inf).
__attribute__((target("avx2,fma"))) void fused_fold(const float* rows, const float* cols, int64_t n, int64_t d,
                                                      int64_t c0, float* best, float* second, int32_t* pos) {
  const int64_t panels = (n - c0 + kNr - 1) / kNr;
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t q = 0; q < panels * kNr; q += 8) {
    _mm256_storeu_ps(best + q, ninf);
    _mm256_storeu_ps(second + q, ninf);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(pos + q), _mm256_set1_epi32(-1));
  }
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t q0 = 0; q0 < panels; q0 += kNrBlock) {
    const int64_t q1 = std::min(panels, q0 + kNrBlock);
    const int64_t rows_end = std::min(n, c0 + q1 * kNr) - 1;  // rows before the block's last column
    for (int64_t r0 = 0; r0 < rows_end; r0 += kMr) {
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t cq = c0 + q * kNr;  // the panel's first column position
        if (cq + kNr - 1 <= r0) continue;  // every pair of this block has row >= column
        const float* a = rows + r0 * d;
        const float* b = cols + q * kNr * d;
        __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
               c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
// one step j + u: the 16 column values at j times each of the 6 row values
#define SD_FUSED_STEP(u)                                                                     \
  do {                                                                                       \
    const __m256 b0 = _mm256_load_ps(b + kNr * (u)), b1 = _mm256_load_ps(b + kNr * (u) + 8); \
    __m256 x = _mm256_broadcast_ss(a + kMr * (u));                                           \
    c00 = _mm256_fmadd_ps(x, b0, c00);                                                       \
    c01 = _mm256_fmadd_ps(x, b1, c01);                                                       \
    x = _mm256_broadcast_ss(a + kMr * (u) + 1);                                              \
    c10 = _mm256_fmadd_ps(x, b0, c10);                                                       \
    c11 = _mm256_fmadd_ps(x, b1, c11);                                                       \
    x = _mm256_broadcast_ss(a + kMr * (u) + 2);                                              \
    c20 = _mm256_fmadd_ps(x, b0, c20);                                                       \
    c21 = _mm256_fmadd_ps(x, b1, c21);                                                       \
    x = _mm256_broadcast_ss(a + kMr * (u) + 3);                                              \
    c30 = _mm256_fmadd_ps(x, b0, c30);                                                       \
    c31 = _mm256_fmadd_ps(x, b1, c31);                                                       \
    x = _mm256_broadcast_ss(a + kMr * (u) + 4);                                              \
    c40 = _mm256_fmadd_ps(x, b0, c40);                                                       \
    c41 = _mm256_fmadd_ps(x, b1, c41);                                                       \
    x = _mm256_broadcast_ss(a + kMr * (u) + 5);                                              \
    c50 = _mm256_fmadd_ps(x, b0, c50);                                                       \
    c51 = _mm256_fmadd_ps(x, b1, c51);                                                       \
  } while (0)
        int64_t j = 0;
        for (; j + kUnroll <= d; j += kUnroll, a += kMr * kUnroll, b += kNr * kUnroll)
          for (int64_t u = 0; u < kUnroll; ++u) SD_FUSED_STEP(u);
        for (; j < d; ++j, a += kMr, b += kNr) SD_FUSED_STEP(0);
#undef SD_FUSED_STEP
        const __m256 acc[kMr][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
        float* bq = best + (cq - c0);
        float* sq = second + (cq - c0);
        int32_t* pq = pos + (cq - c0);
        for (int h = 0; h < 2; ++h) {
          const __m256i cpos = _mm256_add_epi32(_mm256_set1_epi32(int32_t(cq + 8 * h)), lane);
          __m256 bb = _mm256_loadu_ps(bq + 8 * h), s = _mm256_loadu_ps(sq + 8 * h);
          __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pq + 8 * h));
          for (int64_t i = 0; i < kMr; ++i) {
            const __m256i rpos = _mm256_set1_epi32(int32_t(r0 + i));
            const __m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(cpos, rpos));
            const __m256 v = _mm256_blendv_ps(ninf, acc[i][h], valid);
            const __m256 better = _mm256_cmp_ps(v, bb, _CMP_GT_OQ);
            // second = max(second, min(v, best)), a NaN v leaving it unchanged (as fold_block)
            s = _mm256_max_ps(_mm256_min_ps(bb, v), s);
            bb = _mm256_blendv_ps(bb, v, better);
            p = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(p), _mm256_castsi256_ps(rpos), better));
          }
          _mm256_storeu_ps(bq + 8 * h, bb);
          _mm256_storeu_ps(sq + 8 * h, s);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(pq + 8 * h), p);
        }
      }
    }
  }
}
#endif

// A float32 dot product for the filters' re-checks: the FMA lanes where the CPU has them.
inline float dot32_any(const float* a, const float* b, int64_t d) {
#ifdef SD_MAXSIM_X86
  static const bool fma = cpu_has_fused();
  if (fma) return dot32_fma(a, b, d);
#endif
  return qfilter::dot32(a, b, d);
}

// A worker's buffer: grows to what its tiles need, 64-byte aligned whatever its size (BLAS
// results must not depend on where a buffer happens to start, so that M is the same bits
// whichever worker computes an item).
template <class T>
class Buffer {
 public:
  T* need(int64_t n) {
    if (n > cap_) {
      raw_.assign(size_t(n) + 64 / sizeof(T), T());
      const auto addr = (reinterpret_cast<std::uintptr_t>(raw_.data()) + 63) & ~std::uintptr_t(63);
      p_ = reinterpret_cast<T*>(addr);
      cap_ = n;
    }
    return p_;
  }
  T* data() const { return p_; }
  T& operator[](size_t i) const { return p_[i]; }

 private:
  std::vector<T> raw_;
  T* p_ = nullptr;
  int64_t cap_ = 0;
};

struct Scratch {
  // the integer filter's copies of a whole cluster (as rows and as columns, 7-bit both) and its sums
  qfilter::QRows qr;
  qfilter::QCols qc;
  Buffer<int32_t> vi;
  Buffer<float> a, b, c, best, second, pbest;
  Buffer<int64_t> pos, idx, ppos;
  // the fused filter: the columns packed in panels, the rows in blocks, the fold's positions
  Buffer<float> packed, prows;
  Buffer<int32_t> pos32;
  // exact copies in a whole-cluster item: the rows as gathered (b), each position's source
  // position (-1: none, or not skipped), the kept positions' rows and results
  Buffer<int64_t> src, grp, kpos, krow, karg;
  Buffer<uint8_t> skip;
  Buffer<double> kM;
  // split items with copies: the kept columns, their positions, and the fold's results scattered
  // back to every position of the tile
  Buffer<float> kb, fbest, fsecond;
  Buffer<int64_t> cpos, fpos;
  // split items: per column, the candidates (position, float32 score) within 2 eps of the running
  // maximum, kept while the column is undecided; and which columns they settled
  std::vector<std::vector<std::pair<int64_t, float>>> cand;
  std::vector<uint8_t> settled;
  std::vector<float> rows;
};

// Counters of the exact step, shared by the workers.
struct ExactCounts {
  std::atomic<int64_t> rechecked{0}, rescanned{0}, filter_checked{0}, copies{0};
};

void reset_tile(Scratch& s, int64_t cols) {
  std::fill(s.best.data(), s.best.data() + cols, -std::numeric_limits<float>::infinity());
  std::fill(s.second.data(), s.second.data() + cols, -std::numeric_limits<float>::infinity());
  std::fill(s.pos.data(), s.pos.data() + cols, int64_t(-1));
}

// The stored pair of a member from its exact maximum s over earlier members, reached first by
// the member of row `row`: M = max(0, s), and the row only when s > 0 (-1 otherwise).
inline void settle(double s, int64_t row, double* M, int64_t* arg) {
  const bool pos = row >= 0 && s > 0;
  *M = pos ? s : 0;
  *arg = pos ? row : -1;
}


// Largest float64 norm of n rows held contiguously.
double max_norm(const float* a, int64_t n, int64_t d) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, nearest::dot64_cpu(a + i * d, a + i * d, d));
  return std::sqrt(m);
}

// An upper bound of |x|^2 from a float32 dot product v = fl(x . x) of D terms (in any order):
// |v - x.x| <= gamma_D x.x, so x.x <= v / (1 - gamma_D), plus underflow.
inline double diag_norm2_bound(double v, int64_t d) {
  const double g = nearest::gamma_n(double(d), 5.9604644775390625e-08);
  return std::max(0.0, v) / (1 - g) * (1 + 1e-12) + double(d) * 1.5e-45;
}

}  // namespace

double filter_bound(int64_t d, double cmax) {
  const double c = nearest::norm_slack(cmax);
  return nearest::eps_score(true, d, c, c);
}

FilterCounts exact_from_filter(const EmbeddingView& x, const int64_t* rows, int64_t p0, int64_t p1, const float* best,
                               const float* second, const int64_t* pos, double eps, double* M, int64_t* arg, int threads,
                               CancelFlag cancel, const uint8_t* skip) {
  constexpr int64_t kChunk = 1024;
  const int64_t d = x.d;
  const int64_t chunks = (p1 - p0 + kChunk - 1) / kChunk;
  const int workers = int(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(threads), chunks)));
  struct Work {
    std::vector<float> cand, cols, scan;
    std::vector<int64_t> idx, at;
    int64_t rechecked = 0, rescanned = 0;
  };
  std::vector<Work> work(static_cast<size_t>(workers));
  parallel_for(workers, chunks, [&](int64_t ch, int w) {
    Work& k = work[size_t(w)];
    const int64_t q0 = ch * kChunk, q1 = std::min(p1 - p0, q0 + kChunk);
    // Members decided by the filter: their one candidate row and their own row, gathered.
    k.idx.clear();
    k.at.clear();
    for (int64_t q = q0; q < q1; ++q)
      if ((!skip || !skip[q]) && pos[q] >= 0 && nearest::decided(best[q], second[q], eps)) {
        k.idx.push_back(rows[pos[q]]);
        k.at.push_back(q);
      }
    const int64_t m = int64_t(k.at.size());
    k.cand.resize(size_t(std::max<int64_t>(m, 1) * d));
    k.cols.resize(size_t(std::max<int64_t>(m, 1) * d));
    x.gather(k.idx.data(), m, k.cand.data());
    for (int64_t i = 0; i < m; ++i) k.idx[size_t(i)] = rows[p0 + k.at[size_t(i)]];
    x.gather(k.idx.data(), m, k.cols.data());
    for (int64_t i = 0; i < m; ++i) {
      const int64_t q = k.at[size_t(i)];
      settle(nearest::dot64_cpu(k.cand.data() + i * d, k.cols.data() + i * d, d), rows[pos[q]], M + q, arg + q);
    }
    // The others: no earlier member, or re-scanned over all earlier members.
    size_t next = 0;
    for (int64_t q = q0; q < q1; ++q) {
      if (next < k.at.size() && k.at[next] == q) {
        ++next;
        continue;
      }
      if (skip && skip[q]) continue;
      const int64_t p = p0 + q;
      if (p == 0) {
        settle(0, -1, M + q, arg + q);
        continue;
      }
      ++k.rechecked;
      ++k.rescanned;
      k.scan.resize(size_t((kScanChunk + 1) * d));
      const ExactMax e = exact_max_scan(x, rows, p, k.scan.data());
      settle(e.value, e.pos >= 0 ? rows[e.pos] : -1, M + q, arg + q);
    }
  }, cancel);
  FilterCounts out;
  for (const Work& k : work) {
    out.rechecked += k.rechecked;
    out.rescanned += k.rescanned;
  }
  return out;
}

double max_norm_of_rows(const EmbeddingView& x, const int64_t* rows, int64_t n, int threads, CancelFlag cancel) {
  constexpr int64_t kChunk = 1024;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const int workers = int(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(threads), chunks)));
  std::vector<std::vector<float>> buf(static_cast<size_t>(workers));
  std::vector<double> part(size_t(chunks), 0);
  parallel_for(workers, chunks, [&](int64_t q, int w) {
    const int64_t b = q * kChunk, m = std::min(kChunk, n - b);
    auto& a = buf[size_t(w)];
    a.resize(size_t(kChunk * x.d));
    x.gather(rows + b, m, a.data());
    part[size_t(q)] = max_norm(a.data(), m, x.d);
  }, cancel);
  double m = 0;
  for (double v : part) m = std::max(m, v);
  return m;
}

ExactMax exact_max_scan(const EmbeddingView& x, const int64_t* rows, int64_t p, float* buf) {
  // buf: (kScanChunk + 1) * d floats.
  const int64_t d = x.d;
  float* xj = buf;
  float* chunk = buf + d;
  x.gather(rows + p, 1, xj);
  ExactMax r;
  for (int64_t i0 = 0; i0 < p; i0 += kScanChunk) {
    const int64_t m = std::min(kScanChunk, p - i0);
    x.gather(rows + i0, m, chunk);
    for (int64_t i = 0; i < m; ++i) {
      const double s = nearest::dot64_cpu(chunk + i * d, xj, d);
      if (r.pos < 0 || s > r.value) {
        r.value = s;
        r.pos = i0 + i;
      }
    }
  }
  return r;
}

namespace {

// The exact pairs of a whole-cluster item's column tile [c0, c0 + cols) from the fold's (best,
// second, pos): `rows_held` holds the cluster's rows in keep order and `scores` the tile's float32
// scores (column j of row position i at scores[i * ldc + j]), or null (the fused filter keeps
// none: an undecided column's scores are computed again by qfilter::dot32, any float32 order
// being within the same eps). A column whose runner-up is further than 2 eps below the maximum
// has one candidate, re-scored in float64; otherwise every candidate within 2 eps of the maximum
// is. Writes M[c0 + j], arg[c0 + j].
void finish_whole_tile(int64_t d, const int64_t* rows, int64_t c0, int64_t cols, const float* rows_held,
                       const float* scores, int64_t ldc, double eps, const Scratch& s, ExactCounts& counts, double* M,
                       int64_t* arg) {
  for (int64_t j = 0; j < cols; ++j) {
    const int64_t p = c0 + j;
    const float* xj = rows_held + p * d;
    const int64_t bp = s.pos[size_t(j)];
    if (bp >= 0 && nearest::decided(s.best[size_t(j)], s.second[size_t(j)], eps)) {
      settle(nearest::dot64_cpu(rows_held + bp * d, xj, d), rows[bp], M + p, arg + p);
      continue;
    }
    if (p == 0) {
      settle(0, -1, M + p, arg + p);
      continue;
    }
    counts.rechecked.fetch_add(1, std::memory_order_relaxed);
    const double b = bp >= 0 ? double(s.best[size_t(j)]) : -std::numeric_limits<double>::infinity();
    double best = 0;
    int64_t who = -1;
    for (int64_t i = 0; i < p; ++i) {
      // every earlier member when the fold found no maximum (NaN scores)
      if (bp >= 0) {
        const float f = scores ? scores[i * ldc + j] : dot32_any(rows_held + i * d, xj, d);
        if (!nearest::candidate(double(f), b, eps)) continue;
      }
      const double v = nearest::dot64_cpu(rows_held + i * d, xj, d);
      if (who < 0 || v > best) {
        best = v;
        who = i;
      }
    }
    settle(best, who >= 0 ? rows[who] : -1, M + p, arg + p);
  }
}

// finish_whole_tile for the integer filter's scores (bound eps8): a column whose runner-up lies
// further than 2 eps8 below the maximum has one candidate; otherwise the candidates within 2 eps8
// of it are checked by their float32 products (bound eps32) as finish_whole_tile checks the
// float32 scores, and the float32 near ties re-scored in float64. Returns the number of columns
// checked by float32 products.
int64_t finish_whole_tile_int8(int64_t d, const int64_t* rows, int64_t c0, int64_t cols, const float* rows_held,
                            const float* scores, int64_t ldc, double eps8, double eps32, const Scratch& s,
                            ExactCounts& counts, std::vector<std::pair<int64_t, float>>& cand, double* M, int64_t* arg) {
  int64_t checked = 0;
  for (int64_t j = 0; j < cols; ++j) {
    const int64_t p = c0 + j;
    const float* xj = rows_held + p * d;
    const int64_t bp = s.pos[size_t(j)];
    if (bp >= 0 && nearest::decided(s.best[size_t(j)], s.second[size_t(j)], eps8)) {
      settle(nearest::dot64_cpu(rows_held + bp * d, xj, d), rows[bp], M + p, arg + p);
      continue;
    }
    if (p == 0) {
      settle(0, -1, M + p, arg + p);
      continue;
    }
    counts.filter_checked.fetch_add(1, std::memory_order_relaxed);
    ++checked;
    const double b = bp >= 0 ? double(s.best[size_t(j)]) : -std::numeric_limits<double>::infinity();
    // stage 2: float32 products of the candidates (every earlier member without a maximum)
    cand.clear();
    nearest::Top2<float> t32(-std::numeric_limits<float>::infinity());
    bool finite = true;
    for (int64_t i = 0; i < p; ++i) {
      if (bp >= 0 && !nearest::candidate(double(scores[i * ldc + j]), b, eps8)) continue;
      const float f = qfilter::dot32(rows_held + i * d, xj, d);
      finite = finite && std::isfinite(f);
      cand.emplace_back(i, f);
      t32.add(f, i);
    }
    const float b32 = t32.best, s32 = t32.second;
    const int64_t b32i = t32.at;
    if (finite && b32i >= 0 && nearest::decided(b32, s32, eps32)) {
      settle(nearest::dot64_cpu(rows_held + b32i * d, xj, d), rows[b32i], M + p, arg + p);
      continue;
    }
    counts.rechecked.fetch_add(1, std::memory_order_relaxed);
    double best = 0;
    int64_t who = -1;
    for (const auto& c : cand) {  // ascending positions: the earliest wins a tie
      if (finite && !nearest::candidate(double(c.second), double(b32), eps32)) continue;
      const double v = nearest::dot64_cpu(rows_held + c.first * d, xj, d);
      if (who < 0 || v > best) {
        best = v;
        who = c.first;
      }
    }
    settle(best, who >= 0 ? rows[who] : -1, M + p, arg + p);
  }
  return checked;
}

// A whole-cluster item through the integer filter: s.a holds the cluster's n rows in keep order.
// Settles the columns of the tiles it runs and returns where it stopped: 0 when a row is not
// finite, or the first tile at which more than a quarter of the columns so far would have several
// candidates (the filter is then too coarse for this cluster: float32 tiles do the rest). The
// first tile is a probe of kInt8Probe columns (its rows alone quantised), so that a cluster the
// filter cannot decide pays little for the attempt.
// *cmax_out: an upper bound of every row's norm.
int64_t whole_int8(int64_t d, int64_t n, Scratch& s, ExactCounts& counts, const int64_t* rows, double* M, int64_t* arg,
                   double* cmax_out) {
  // The first tile alone first (its rows quantised and packed), the whole cluster once it passes.
  double eps8 = 0, eps32 = 0;
  int64_t prepared = 0;
  *cmax_out = 0;
  auto prepare = [&](int64_t m) {
    s.qr.quantise(s.a.data(), m, d);
    for (int64_t i = 0; i < m; ++i)
      if (!s.qr.finite[size_t(i)]) return false;
    s.qc.pack(s.a.data(), m, d);
    double err_max = 0, qn_max = 0;
    for (int64_t i = 0; i < m; ++i) {
      err_max = std::max(err_max, s.qr.err[size_t(i)]);
      qn_max = std::max(qn_max, s.qr.qnorm[size_t(i)]);
    }
    const double cmax = nearest::norm_slack(max_norm(s.a.data(), m, d));
    *cmax_out = cmax;
    // the filter's bound (qfilter.hpp), plus the float32 rounding of the stored scores
    eps8 = qfilter::row_bound(true, d, err_max, qn_max, cmax, cmax, s.qc) + 1.2e-7 * qn_max * s.qc.qnorm_max + 1e-300;
    eps32 = filter_bound(d, cmax);
    prepared = m;
    return true;
  };
  constexpr int64_t kInt8Probe = 32;
  if (!prepare(std::min(n, kInt8Probe))) return 0;
  s.c.need(n * kCols);
  s.vi.need(n * kCols);
  s.best.need(kCols);
  s.second.need(kCols);
  s.pos.need(kCols);
  std::vector<std::pair<int64_t, float>> cand;
  int64_t checked = 0;
  for (int64_t c0 = 0, cols = 0; c0 < n; c0 += cols) {
    cols = std::min(c0 == 0 ? kInt8Probe : kCols, n - c0);
    const int64_t nrows = c0 + cols;
    if (nrows > prepared && !prepare(n)) return c0;
    reset_tile(s, cols);
    qfilter::qgemm_panels(s.qr.q.data(), nrows, s.qr.dp, s.qc, c0 / 16, (c0 + cols + 15) / 16, s.vi.data(), kCols);
    for (int64_t i = 0; i < nrows; ++i) {
      const float sx = s.qr.scale[size_t(i)];
      const int32_t* v = s.vi.data() + i * kCols;
      float* out = s.c.data() + i * kCols;
      for (int64_t j = 0; j < cols; ++j) out[j] = float(qfilter::scaled(v[j], sx, s.qc, c0 + j));
    }
    fold_block(s.c.data(), kCols, nrows, cols, 0, c0, s.best.data(), s.second.data(), s.pos.data());
    int64_t undecided = 0;
    for (int64_t j = 0; j < cols; ++j)
      undecided += c0 + j > 0 && !(s.pos[size_t(j)] >= 0 && nearest::decided(s.best[size_t(j)], s.second[size_t(j)], eps8));
    if (4 * (checked + undecided) > nrows) return c0;  // too coarse here: float32 tiles from this one on
    checked += finish_whole_tile_int8(d, rows, c0, cols, s.a.data(), s.c.data(), kCols, eps8, eps32, s, counts, cand, M, arg);
  }
  return n;
}

// Exact copies (docs/algorithm.md, "Exact copies"): member p whose bytes equal those of an earlier
// member r (the latest such), with at most kCopyGap members between them that are not copies of
// the same bytes, is decided without the kernel: every earlier member's dot product with p is its
// dot product with r, so M[p] = max(the exact maximum of r over the members before r, x_r . x_r
// when r is the first copy (a later copy's maximum already holds it), x_k . x_r over the members k
// between r and p), the earliest member reaching it winning. The members kept for the kernel lose
// nothing: a copy is never the earliest member reaching a maximum, its first copy coming before
// it with the same dot products.
constexpr int64_t kCopyGap = 64;

// Four independent lanes of 8 bytes (the hash only groups rows: equal rows are confirmed byte
// for byte, so any hash gives the same copies; independent lanes keep it off the critical path).
inline uint64_t row_hash(const float* r, int64_t d) {
  const unsigned char* b = reinterpret_cast<const unsigned char*>(r);
  const int64_t bytes = d * 4;
  uint64_t h[4] = {0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full, 0x165667b19e3779f9ull, 0x27d4eb2f165667c5ull};
  int64_t i = 0;
  for (; i + 32 <= bytes; i += 32)
    for (int l = 0; l < 4; ++l) {
      uint64_t w;
      std::memcpy(&w, b + i + 8 * l, 8);
      h[l] = (h[l] ^ w) * 0x100000001b3ull;
      h[l] ^= h[l] >> 29;
    }
  for (; i < bytes; i += 4) {
    uint32_t w;
    std::memcpy(&w, b + i, 4);
    h[0] = (h[0] ^ w) * 0x100000001b3ull;
    h[0] ^= h[0] >> 29;
  }
  uint64_t x = h[0];
  for (int l = 1; l < 4; ++l) {
    x = (x ^ h[l]) * 0x100000001b3ull;
    x ^= x >> 29;
  }
  return x;
}

// Finds the copies to skip among n consecutive members whose rows (keep order) are held in `held`:
// sets s.src, s.grp (positions relative to the first) and s.skip, returns the number skipped. The
// previous identical member is looked for among these n members only.
int64_t find_copies(const float* held, int64_t n, int64_t d, Scratch& s) {
  s.src.need(n);
  s.grp.need(n);
  s.skip.need(n);
  std::vector<std::pair<uint64_t, int64_t>> hp(static_cast<size_t>(n));
  for (int64_t p = 0; p < n; ++p) hp[size_t(p)] = {row_hash(held + p * d, d), p};
  std::sort(hp.begin(), hp.end());
  for (int64_t p = 0; p < n; ++p) s.src[size_t(p)] = -1, s.skip[size_t(p)] = 0;
  int64_t skipped = 0;
  for (size_t a = 0; a < hp.size();) {
    size_t b = a + 1;
    while (b < hp.size() && hp[b].first == hp[a].first) ++b;
    // within a run of equal hashes (ascending positions), each member's first identical member
    // (grp) and the latest identical member before it (src)
    for (size_t q = a + 1; q < b; ++q) {
      const int64_t p = hp[q].second;
      for (size_t r = q; r-- > a;) {
        const int64_t i = hp[r].second;
        if (std::memcmp(held + i * d, held + p * d, size_t(d) * 4) == 0) {
          s.src[size_t(p)] = i;
          s.grp[size_t(p)] = s.src[size_t(i)] >= 0 ? s.grp[size_t(i)] : i;
          break;
        }
      }
    }
    a = b;
  }
  // keep the copies too far from the previous identical member (kCopyGap other members between)
  for (int64_t p = 0; p < n; ++p) {
    const int64_t r = s.src[size_t(p)];
    if (r < 0) continue;
    const int64_t g = s.grp[size_t(p)];
    int64_t between = 0;
    for (int64_t k = r + 1; k < p && between <= kCopyGap; ++k) between += !(s.src[size_t(k)] >= 0 && s.grp[size_t(k)] == g);
    if (between > kCopyGap) s.skip[size_t(p)] = 0;
    else s.skip[size_t(p)] = 1, ++skipped;
  }
  return skipped;
}

// Finds the copies to skip in the n rows held in s.a (keep order), and when there are any, keeps
// the gathered rows in s.b, moves the kept rows to the front of s.a, their rows to s.krow.
// Returns the number of kept members (n when none is skipped).
int64_t compact_copies(int64_t n, int64_t d, Scratch& s, const int64_t* rows) {
  const int64_t skipped = find_copies(s.a.data(), n, d, s);
  if (skipped == 0) return n;
  std::swap(s.a, s.b);  // the gathered rows stay in s.b; the kept ones are copied to s.a
  s.a.need(n * d);
  s.kpos.need(n - skipped);
  s.krow.need(n - skipped);
  int64_t m = 0;
  for (int64_t p = 0; p < n; ++p) {
    if (s.skip[size_t(p)]) continue;
    std::memcpy(s.a.data() + m * d, s.b.data() + p * d, size_t(d) * 4);
    s.kpos[size_t(m)] = p;
    s.krow[size_t(m)] = rows[p];
    ++m;
  }
  return m;
}

// Settles the skipped copies among n consecutive members (find_copies) whose other members are
// settled: `held` their rows, `rows` their rows' indices, M and arg their results. Returns the
// number of copies settled.
int64_t settle_skipped(int64_t n, int64_t d, const Scratch& s, const float* held, const int64_t* rows, double* M,
                       int64_t* arg) {
  int64_t copies = 0;
  for (int64_t p = 0; p < n; ++p) {  // ascending: the previous identical member is settled before
    if (!s.skip[size_t(p)]) continue;
    const int64_t r = s.src[size_t(p)], g = s.grp[size_t(p)];
    const float* xr = held + r * d;
    // the members before r: r's own exact maximum (when positive: a clamped M is below x . x)
    double best = 0;
    int64_t who = -1;
    if (arg[r] >= 0) best = M[r], who = arg[r];
    if (r == g) {  // r itself (a later copy's maximum already holds the first copy's x . x)
      const double self = nearest::dot64_cpu(xr, xr, d);
      if (who < 0 || self > best) best = self, who = rows[r];
    }
    for (int64_t k = r + 1; k < p; ++k) {
      if (s.src[size_t(k)] >= 0 && s.grp[size_t(k)] == g) continue;  // a copy too: x . x again, later
      const double v = nearest::dot64_cpu(held + k * d, xr, d);
      if (v > best) best = v, who = rows[k];
    }
    settle(best, who, M + p, arg + p);
    ++copies;
  }
  return copies;
}

// Scatters the kept members' results (s.kM, s.karg) to their positions and settles the skipped
// copies (rows as gathered in s.b). Returns the number of copies settled.
int64_t settle_copies(int64_t n, int64_t d, const Scratch& s, const int64_t* rows, double* M, int64_t* arg) {
  int64_t m = 0;
  for (int64_t p = 0; p < n; ++p) {
    if (s.skip[size_t(p)]) continue;
    M[p] = s.kM[size_t(m)];
    arg[p] = s.karg[size_t(m)];
    ++m;
  }
  return settle_skipped(n, d, s, s.b.data(), rows, M, arg);
}

// The split path's item: the exact pairs of members [c0, c0 + cols) of a cluster (rows: its
// members in keep order) over every earlier member. The float32 filter gathers the earlier rows
// kRowBlock at a time; cmax bounds the norms of rows [0, c0 + cols). Writes M[out0 + j], arg[out0 + j].
// One code for the whole-cluster kernel and the row-block entry. With `copies`, the exact copies
// among the tile's members whose previous identical member lies in the tile too are left out of
// the filter's columns and settled from that member (settle_skipped), as in whole-cluster items.
void split_tile(const EmbeddingView& x, const int64_t* rows, int64_t c0, int64_t cols, double cmax, bool copies,
                Scratch& s, ExactCounts& counts, int64_t out0, double* M, int64_t* arg, CancelFlag cancel) {
  const int64_t d = x.d;
  const double eps = filter_bound(d, cmax);
  s.a.need(std::min(kRowBlock, c0 + cols) * d);
  s.b.need(cols * d);
  s.c.need(std::min(kRowBlock, c0 + cols) * kSplitCols);
  s.best.need(cols);
  s.second.need(cols);
  s.pos.need(cols);
  s.pbest.need(cols);
  s.ppos.need(cols);
  x.gather(rows + c0, cols, s.b.data());
  // The filter's columns: every member of the tile, or the members that are not skipped copies
  // (kc of them, member m at position cp[m], its row at colb + m d).
  const int64_t skipped = copies ? find_copies(s.b.data(), cols, d, s) : 0;
  const int64_t kc = cols - skipped;
  const float* colb = s.b.data();
  const int64_t* cp = nullptr;
  if (skipped > 0) {
    s.kb.need(std::max<int64_t>(kc, 1) * d);
    s.cpos.need(std::max<int64_t>(kc, 1));
    int64_t m = 0;
    for (int64_t q = 0; q < cols; ++q) {
      if (s.skip[size_t(q)]) continue;
      std::memcpy(s.kb.data() + m * d, s.b.data() + q * d, size_t(d) * 4);
      s.cpos[size_t(m)] = c0 + q;
      ++m;
    }
    colb = s.kb.data();
    cp = s.cpos.data();
  }
  auto position = [&](int64_t m) { return cp ? cp[m] : c0 + m; };
  if (int64_t(s.cand.size()) < kc) s.cand.resize(size_t(kc));
  for (int64_t j = 0; j < kc; ++j) s.cand[size_t(j)].clear();
  reset_tile(s, kc);
  const int64_t rows_end = c0 + cols;
  for (int64_t r0 = 0; r0 < rows_end && kc > 0; r0 += kRowBlock) {
    check_cancel(cancel);
    const int64_t nr = std::min(kRowBlock, rows_end - r0);
    x.gather(rows + r0, nr, s.a.data());
    gemm_abt(s.a.data(), nr, colb, kc, d, s.c.data(), kSplitCols);
    std::copy(s.best.data(), s.best.data() + kc, s.pbest.data());
    std::copy(s.pos.data(), s.pos.data() + kc, s.ppos.data());
    fold_block(s.c.data(), kSplitCols, nr, kc, r0, c0, s.best.data(), s.second.data(), s.pos.data(), cp);
    // Undecided columns keep their candidates: earlier blocks can only contribute the previous
    // maximum (a column decided before had every other score below it by more than 2 eps), this
    // block its scores within 2 eps of the new maximum.
    for (int64_t j = 0; j < kc; ++j) {
      auto& L = s.cand[size_t(j)];
      const double b = s.best[size_t(j)];
      if (s.pos[size_t(j)] < 0 || nearest::decided(b, s.second[size_t(j)], eps)) {
        L.clear();
        continue;
      }
      if (L.empty() && s.ppos[size_t(j)] >= 0) L.emplace_back(s.ppos[size_t(j)], s.pbest[size_t(j)]);
      L.erase(std::remove_if(L.begin(), L.end(), [&](const std::pair<int64_t, float>& e) { return !nearest::candidate(e.second, b, eps); }), L.end());
      const int64_t r_end = std::min(nr, position(j) - r0);  // rows before the column's member
      for (int64_t r = 0; r < r_end; ++r) {
        const float v = s.c[size_t(r * kSplitCols + j)];
        if (nearest::candidate(v, b, eps)) L.emplace_back(r0 + r, v);
      }
    }
  }
  // Columns with candidates: every candidate re-scored in float64 (ascending positions: the
  // earliest wins a tie). The others from the fold's maximum (exact_from_filter).
  s.settled.assign(size_t(cols), 0);
  for (int64_t j = 0; j < kc; ++j) {
    const auto& L = s.cand[size_t(j)];
    if (L.empty()) continue;
    const int64_t q = position(j) - c0;
    s.idx.need(int64_t(L.size()));
    for (size_t i = 0; i < L.size(); ++i) s.idx[i] = rows[L[i].first];
    s.rows.resize(L.size() * size_t(d));
    x.gather(s.idx.data(), int64_t(L.size()), s.rows.data());
    double best = 0;
    int64_t who = -1;
    for (size_t i = 0; i < L.size(); ++i) {
      const double v = nearest::dot64_cpu(s.rows.data() + i * size_t(d), colb + j * d, d);
      if (who < 0 || v > best) {
        best = v;
        who = L[i].first;
      }
    }
    settle(best, rows[who], M + out0 + q, arg + out0 + q);
    s.settled[size_t(q)] = 1;
    counts.rechecked.fetch_add(1, std::memory_order_relaxed);
  }
  const float* fb = s.best.data();
  const float* fs = s.second.data();
  const int64_t* fp = s.pos.data();
  if (skipped > 0) {  // the fold's results at every position of the tile, the copies marked settled
    s.fbest.need(cols);
    s.fsecond.need(cols);
    s.fpos.need(cols);
    for (int64_t q = 0; q < cols; ++q) {
      s.fbest[size_t(q)] = s.fsecond[size_t(q)] = -std::numeric_limits<float>::infinity();
      s.fpos[size_t(q)] = -1;
      if (s.skip[size_t(q)]) s.settled[size_t(q)] = 1;
    }
    for (int64_t j = 0; j < kc; ++j) {
      const int64_t q = position(j) - c0;
      s.fbest[size_t(q)] = s.best[size_t(j)];
      s.fsecond[size_t(q)] = s.second[size_t(j)];
      s.fpos[size_t(q)] = s.pos[size_t(j)];
    }
    fb = s.fbest.data();
    fs = s.fsecond.data();
    fp = s.fpos.data();
  }
  const FilterCounts fc = exact_from_filter(x, rows, c0, c0 + cols, fb, fs, fp, eps, M + out0, arg + out0, 1, cancel,
                                            s.settled.data());
  counts.rechecked.fetch_add(fc.rechecked, std::memory_order_relaxed);
  counts.rescanned.fetch_add(fc.rescanned, std::memory_order_relaxed);
  if (skipped > 0)
    counts.copies.fetch_add(settle_skipped(cols, d, s, s.b.data(), rows + c0, M + out0, arg + out0),
                            std::memory_order_relaxed);
}

// The pairs the fused filter computes for columns [0, n) of a whole cluster (6 x 16 blocks that
// hold at least one pair with row < column), for the stats.
double fused_pairs(int64_t n) {
  double pairs = 0;
  const int64_t panels = (n + kNr - 1) / kNr;
  for (int64_t q0 = 0; q0 < panels; q0 += kNrBlock) {
    const int64_t q1 = std::min(panels, q0 + kNrBlock);
    const int64_t rows_end = std::min(n, q1 * kNr) - 1;
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t r_end = std::min(rows_end, q * kNr + kNr - 1);  // row blocks starting before
      pairs += double((r_end + kMr - 1) / kMr) * double(kMr * kNr);
    }
  }
  return pairs;
}

}  // namespace

const char* maxsim_filter_kernel() {
  const char* v = std::getenv("SEMDEDUP_MAXSIM_KERNEL");
  const bool fused_ok = cpu_has_fused();
  if (v == nullptr || *v == 0 || std::strcmp(v, "auto") == 0) {
#ifdef SD_MAXSIM_X86
    // AVX-512 machines keep their BLAS kernels (twice the vector width of the fused kernel)
    if (fused_ok && !__builtin_cpu_supports("avx512f")) return "fused-avx2";
#endif
    return "blas";
  }
  if (std::strcmp(v, "blas") == 0) return "blas";
  if (std::strcmp(v, "fused-avx2") == 0) {
    if (!fused_ok)
      throw Error(ErrorCode::Backend, "SEMDEDUP_MAXSIM_KERNEL=fused-avx2 was requested, but this CPU has no AVX2 and FMA");
    return "fused-avx2";
  }
  throw Error(ErrorCode::InvalidArgument,
              std::string("environment variable SEMDEDUP_MAXSIM_KERNEL must be 'auto', 'blas' or 'fused-avx2', got '") + v + "'");
}

double default_recheck_margin(int64_t d) {
  // fp32 dot products of unit vectors: |error| <= ~d * 2^-24 in the worst case; at least 1e-5.
  return std::max(1e-5, 4.0 * double(d) * std::ldexp(1.0, -24));
}

MaxSimLayout maxsim_layout(int64_t n, int64_t d) {
  // Whole-cluster items hold the cluster's rows: at most kWholeMax rows and 16 MB.
  const int64_t whole_max = std::max<int64_t>(kCols, std::min<int64_t>(kWholeMax, (int64_t(16) << 20) / (d * 4)));
  MaxSimLayout b;
  b.split = n > whole_max;
  b.width = !b.split ? kCols : n >= kSplitWide ? kSplitCols : kSplitColsMid;
  return b;
}

void max_similarity_reference(const EmbeddingView& x, const int64_t* rows, int64_t n, double* M, int64_t* arg) {
  std::vector<float> buf(size_t((kScanChunk + 1) * x.d));
  for (int64_t j = 0; j < n; ++j) {
    const ExactMax e = exact_max_scan(x, rows, j, buf.data());
    settle(e.value, e.pos >= 0 ? rows[e.pos] : -1, M + j, arg + j);
  }
}

int64_t recheck_near_thresholds(const EmbeddingView& x, const int64_t* order, const int64_t* offsets,
                                int64_t nclusters, double* M, int64_t* arg, const MaxSimOptions& opt,
                                CancelFlag cancel) {
  if (opt.thresholds.empty()) return 0;
  const int64_t d = x.d;
  const int threads = resolve_threads(opt.threads);
  const double margin = opt.recheck_margin > 0 ? opt.recheck_margin : default_recheck_margin(d);
  std::vector<int64_t> near;  // positions
  std::vector<int64_t> cluster_of;
  for (int64_t c = 0; c < nclusters; ++c)
    for (int64_t p = offsets[c]; p < offsets[c + 1]; ++p)
      for (double t : opt.thresholds)
        if (std::fabs(M[p] - t) <= margin) {
          near.push_back(p);
          cluster_of.push_back(c);
          break;
        }
  std::vector<std::vector<float>> buf(static_cast<size_t>(threads), std::vector<float>(size_t((kScanChunk + 1) * d)));
  parallel_for(threads, int64_t(near.size()), [&](int64_t q, int w) {
    const int64_t p = near[size_t(q)];
    const int64_t base = offsets[cluster_of[size_t(q)]];
    const ExactMax e = exact_max_scan(x, order + base, p - base, buf[size_t(w)].data());
    settle(e.value, e.pos >= 0 ? order[base + e.pos] : -1, M + p, arg + p);
  }, cancel);
  return int64_t(near.size());
}

MaxSimStats max_similarity_cpu(const EmbeddingView& x, const int64_t* order, const int64_t* offsets,
                               int64_t nclusters, double* M, int64_t* arg, const MaxSimOptions& opt,
                               const ProgressFn& progress, CancelFlag cancel) {
  MaxSimStats st;
  st.clusters = nclusters;
  st.members = offsets[nclusters] - offsets[0];
  const int64_t d = x.d;
  st.kernel = maxsim_filter_kernel();
  const bool fused = std::strcmp(st.kernel.c_str(), "fused-avx2") == 0;

  struct Item {
    int64_t cluster, tile;  // tile < 0: the whole cluster
    double cost;
  };
  std::vector<Item> items;
  std::vector<int64_t> split_clusters;
  for (int64_t c = 0; c < nclusters; ++c) {
    const int64_t n = offsets[c + 1] - offsets[c];
    if (n < 0) throw Error(ErrorCode::InvalidArgument, "offsets must be non-decreasing");
    if (n == 0) continue;
    st.useful_flops += double(n) * double(n - 1) * double(d);
    const MaxSimLayout lay = maxsim_layout(n, d);
    const bool split = lay.split;
    const int64_t width = lay.width;
    const int64_t tiles = (n + width - 1) / width;
    double cost = 0;
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t cols = std::min(width, n - t * width);
      const double w = double(t * width + cols) * double(cols);
      if (split || !fused) st.computed_flops += 2.0 * w * double(d);
      if (split) items.push_back({c, t, w});
      cost += w;
    }
    if (!split && fused) st.computed_flops += 2.0 * fused_pairs(n) * double(d);
    if (!split) items.push_back({c, -1, cost});
    else split_clusters.push_back(c);
  }
  // Norm bounds of the split clusters (whole-cluster items compute theirs from the rows they hold).
  std::vector<double> cmax(size_t(nclusters), 0);
  for (int64_t c : split_clusters)
    cmax[size_t(c)] = max_norm_of_rows(x, order + offsets[c], offsets[c + 1] - offsets[c], opt.threads, cancel);
  // Largest items first: keeps the workers busy to the end.
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.cost > b.cost; });
  double total_cost = 0;
  for (const auto& it : items) total_cost += it.cost;

  // At most one worker per item; each worker's scratch grows to the tiles it is handed (a few
  // hundred KB for small clusters, at most ~40 MB for the widest tiles), never more.
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(opt.threads), int64_t(items.size()))));
  std::vector<Scratch> scratch(static_cast<size_t>(threads));
  ExactCounts counts;
  std::atomic<int64_t> done_cost{0};
  BlasSingleThread blas1;  // our workers are the parallelism; BLAS runs one thread each
  const bool int8 = qfilter::filter_for(d) == qfilter::Isa::Avx2Int8;
  st.filter = qfilter::isa_name(int8 ? qfilter::Isa::Avx2Int8 : qfilter::Isa::Fp32);
  parallel_for(threads, int64_t(items.size()), [&](int64_t idx, int w) {
    const Item& it = items[size_t(idx)];
    Scratch& s = scratch[size_t(w)];
    const int64_t base = offsets[it.cluster];
    const int64_t n = offsets[it.cluster + 1] - base;
    if (it.tile < 0) {
      s.a.need(n * d);
      x.gather(order + base, n, s.a.data());
      // Exact copies of an earlier member close behind it are decided without the kernel.
      const int64_t nk = opt.skip_copies ? compact_copies(n, d, s, order + base) : n;
      const int64_t* krows = nk < n ? s.krow.data() : order + base;
      double* kM = M + base;
      int64_t* karg = arg + base;
      if (nk < n) {
        s.kM.need(nk);
        s.karg.need(nk);
        kM = s.kM.data();
        karg = s.karg.data();
      }
      if (!fused) s.c.need(nk * kCols);
      s.best.need(kCols);
      s.second.need(kCols);
      s.pos.need(kCols);
      // The integer filter first (columns [0, done) settled), float32 tiles for the rest.
      double cmax8 = 0;
      const int64_t done = int8 && nk > 1 ? whole_int8(x.d, nk, s, counts, krows, kM, karg, &cmax8) : 0;
      // The norm bound from the tiles' own diagonals (float32 |x_i|^2, within gamma_D of the
      // float64 value): by tile c0 every row a candidate can come from has been on a diagonal
      // (or, after the integer filter, the float64 bound of every row's norm).
      double norm2 = done > 0 ? cmax8 * cmax8 : 0;
#ifdef SD_MAXSIM_X86
      if (fused && done < nk) {
        // The fused filter over the remaining columns at once (no tile keeps scores: undecided
        // columns are scored again by finish_whole_tile).
        const int64_t cols = nk - done;
        const int64_t w = (cols + kNr - 1) / kNr * kNr;
        s.packed.need(w * d);
        s.prows.need((nk + kMr - 1) / kMr * kMr * d);
        s.best.need(w);
        s.second.need(w);
        s.pos32.need(w);
        s.pos.need(w);
        pack_panels(s.a.data(), nk, d, done, s.packed.data(), s.prows.data());
        fused_fold(s.prows.data(), s.packed.data(), nk, d, done, s.best.data(), s.second.data(), s.pos32.data());
        for (int64_t j = 0; j < cols; ++j) s.pos[size_t(j)] = s.pos32[size_t(j)];
        // the norm bound from every row's float32 |x|^2 (within gamma_D of the float64 value, as
        // the BLAS tiles' diagonals below)
        float n2 = 0;
        for (int64_t i = 0; i < nk; ++i) n2 = std::max(n2, dot32_fma(s.a.data() + i * d, s.a.data() + i * d, d));
        norm2 = std::max(norm2, double(n2));
        const double eps = filter_bound(d, std::sqrt(diag_norm2_bound(norm2, d)));
        finish_whole_tile(d, krows, done, cols, s.a.data(), nullptr, 0, eps, s, counts, kM, karg);
      }
#endif
      for (int64_t c0 = fused ? nk : done; c0 < nk; c0 += kCols) {
        const int64_t cols = std::min(kCols, nk - c0);
        const int64_t rows = c0 + cols;
        reset_tile(s, cols);
        if (rows > 1) {
          gemm_abt(s.a.data(), rows, s.a.data() + c0 * d, cols, d, s.c.data(), kCols);
          fold_block(s.c.data(), kCols, rows, cols, 0, c0, s.best.data(), s.second.data(), s.pos.data());
          for (int64_t j = 0; j < cols; ++j) norm2 = std::max(norm2, double(s.c[size_t((c0 + j) * kCols + j)]));
        }
        const double eps = filter_bound(d, std::sqrt(diag_norm2_bound(norm2, d)));
        finish_whole_tile(d, krows, c0, cols, s.a.data(), s.c.data(), kCols, eps, s, counts, kM, karg);
      }
      if (nk < n) counts.copies.fetch_add(settle_copies(n, d, s, order + base, M + base, arg + base), std::memory_order_relaxed);
    } else {
      const int64_t width = maxsim_layout(n, d).width;
      const int64_t c0 = it.tile * width;
      const int64_t cols = std::min(width, n - c0);
      split_tile(x, order + base, c0, cols, cmax[size_t(it.cluster)], opt.skip_copies, s, counts, c0, M + base, arg + base,
                 cancel);
    }
    const int64_t now = done_cost.fetch_add(int64_t(it.cost)) + int64_t(it.cost);
    if (progress) progress(now, int64_t(total_cost));
  }, cancel);
  st.rechecked = counts.rechecked.load();
  st.rescanned = counts.rescanned.load();
  st.filter_checked = counts.filter_checked.load();
  st.copies = counts.copies.load();
  return st;
}

MaxSimStats max_similarity_block(const EmbeddingView& x, const int64_t* rows, int64_t n, int64_t j0, int64_t j1, double* M,
                                 int64_t* arg, const MaxSimOptions& opt, const ProgressFn& progress,
                                 CancelFlag cancel) {
  if (j0 < 0 || j1 < j0 || j1 > n) throw Error(ErrorCode::InvalidArgument, "max_similarity_block: need 0 <= j0 <= j1 <= n");
  MaxSimStats st;
  st.members = j1 - j0;
  if (j1 == j0) return st;
  const int64_t d = x.d;
  const MaxSimLayout lay = maxsim_layout(n, d);
  if (!lay.split) throw Error(ErrorCode::InvalidArgument, "max_similarity_block: the kernel keeps a cluster of this size whole");
  const int64_t width = lay.width;
  if (j0 % width != 0 || (j1 % width != 0 && j1 != n))
    throw Error(ErrorCode::InvalidArgument, "max_similarity_block: j0 and j1 must be multiples of the tile width (or j1 = n)");
  const int64_t t0 = j0 / width, t1 = (j1 + width - 1) / width;
  double total = 0;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t cols = std::min(width, j1 - t * width);
    total += double(t * width + cols) * double(cols);
    st.useful_flops += double(cols) * double(2 * t * width + cols - 1) * double(d);
    st.computed_flops += 2.0 * double(t * width + cols) * double(cols) * double(d);
  }
  // The filter's bound from the rows the block reads (M does not depend on it, only the work).
  const double cmax = max_norm_of_rows(x, rows, j1, opt.threads, cancel);
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(opt.threads), t1 - t0)));
  std::vector<Scratch> scratch(static_cast<size_t>(threads));
  ExactCounts counts;
  std::atomic<int64_t> done{0};
  BlasSingleThread blas1;
  parallel_for(threads, t1 - t0, [&](int64_t idx, int w) {
    Scratch& s = scratch[size_t(w)];
    const int64_t c0 = (t0 + idx) * width;
    const int64_t cols = std::min(width, j1 - c0);
    split_tile(x, rows, c0, cols, cmax, opt.skip_copies, s, counts, c0 - j0, M, arg, cancel);
    const int64_t cost = int64_t(double(c0 + cols) * double(cols));
    const int64_t now = done.fetch_add(cost) + cost;
    if (progress) progress(now, int64_t(total));
  }, cancel);
  st.rechecked = counts.rechecked.load();
  st.rescanned = counts.rescanned.load();
  st.copies = counts.copies.load();
  return st;
}

}  // namespace semdedup
