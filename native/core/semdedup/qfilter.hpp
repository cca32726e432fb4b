// The low-precision filter of the distance passes (docs/algorithm.md, "Low-precision filter"):
// rows and centroids (or columns) quantised to 7 bits, their products summed exactly in int32 by an
// integer kernel chosen at run time, and a proven per-row bound on how far the scaled integer
// product can lie from the float64 value of nearest.hpp. The bound decides which candidates are
// re-scored exactly, so every decision is the float64 rule's.
//
// Quantisation (any choice is valid: the bound is computed from what was stored):
//   row x (D values):    s_x = max|x_j| / 63 (float32), q_j = round(x_j / s_x) in [-63, 63],
//                        stored as the byte q_j + 64 (unsigned, 1..127);
//   column c:            s_c = max|c_j| / 64 (float32), q_j in [-64, 64], stored signed.
//   x~ = s_x q(x), c~ = s_c q(c) (real numbers). The kernel computes
//   v = sum_j (q_j(x) + 64) q_j(c) exactly in int32 (|v| < 2^31 for D <= 65536), and
//   x~ . c~ = s_x s_c (v - 64 sum_j q_j(c)). (With 7-bit rows, vpmaddubsw's pair sums, at most
//   2 * 127 * 64 in magnitude, can be added two at a time in int16 before widening: 4 * 127 * 64
//   < 2^15.)
// Bound: x.c - x~.c~ = (x - x~).c + x~.(c - c~), so |x.c - x~.c~| <= |x - x~| |c| + |x~| |c - c~|,
// with the norms computed in float64 (inflated for their own rounding); the scaled product is
// formed in float64 (s_x s_c exact, one rounding of the product).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace semdedup {
namespace qfilter {

// The filter the distance passes use: the float32 path (sgemm), or the AVX2 integer kernel.
enum class Isa { Fp32, Avx2Int8 };

// The filter to use now: SEMDEDUP_ISA (fp32 | avx2-int8; unset or "auto": the widest this CPU
// runs), read at each call so that one process can compare the paths. Throws InvalidArgument for
// an unknown value, Backend when the requested path needs an instruction set this CPU lacks.
Isa active_isa();
// The filter the CPU passes use for rows of d values: active_isa(), or Fp32 when d exceeds what the
// integer kernel accepts (kMaxDim). The one home of that rule.
Isa filter_for(int64_t d);
// The widest filter this CPU runs (ignores SEMDEDUP_ISA).
Isa best_isa();
const char* isa_name(Isa isa);

// Largest D the integer kernel accepts (int32 sums stay exact).
constexpr int64_t kMaxDim = 65536;

// Round d up to the kernel's step (4 bytes per column per step).
// Rows' quantisation (levels, and the offset that makes the bytes unsigned) and columns' levels.
constexpr int kRowLevels = 63, kRowOffset = 64, kColLevels = 64;

// Bytes per quantised vector: D padded to a multiple of 8 (the kernel takes 8 at a time).
inline int64_t padded_dim(int64_t d) { return (d + 7) / 8 * 8; }

// Quantised rows: m rows of dp = padded_dim(d) bytes (q + 64; padding 64), and per row the
// scale s_x, an upper bound of |x - x~| and of |x~|. finite[i] = 0 for a row holding NaN or Inf
// (its bytes are then meaningless: the caller scores it in float64).
struct QRows {
  int64_t m = 0, d = 0, dp = 0;
  std::vector<uint8_t> q;
  std::vector<float> scale;
  std::vector<double> err, qnorm;
  std::vector<uint8_t> finite;
  void quantise(const float* x, int64_t m, int64_t d);
  // Quantise rows [i0, i0 + cnt) of x into slots [i0, i0 + cnt) (storage must be sized by resize).
  void resize(int64_t m, int64_t d);
  void quantise_range(const float* x, int64_t i0, int64_t cnt);
  const uint8_t* row(int64_t i) const { return q.data() + size_t(i) * size_t(dp); }
};

// Quantised columns (centroids), packed for the kernel: panels of 16 columns, each panel dp / 4
// steps of 16 x 4 bytes. Per column: the scale, sum of q, upper bounds of |c - c~| and |c~|.
struct QCols {
  int64_t n = 0, np = 0, d = 0, dp = 0;
  std::vector<int8_t> packed;
  std::vector<float> scale;
  std::vector<int32_t> sum;
  std::vector<double> err, qnorm;
  std::vector<int32_t> bias;     // 64 sum[j] (the rows' offset, removed from the kernel's sums)
  std::vector<double> scale64;   // scale[j] as float64
  double err_max = 0, qnorm_max = 0;
  bool finite = true;  // every column finite
  void pack(const float* c, int64_t n, int64_t d);
};

// v[i * ldc + j] = sum_t a_t(row i) * q_t(column j) in int32 for i < m, j < cols.np (padding
// columns give 0). a: m quantised rows of dp bytes, stride lda. ldc >= cols.np. Requires Avx2Int8.
void qgemm(const uint8_t* a, int64_t m, int64_t lda, const QCols& cols, int32_t* v, int64_t ldc);
// The same for the columns of panels [panel0, panel1) only (columns 16 panel0 ..): column
// 16 panel0 + j at v[i * ldc + j].
void qgemm_panels(const uint8_t* a, int64_t m, int64_t lda, const QCols& cols, int64_t panel0, int64_t panel1,
                  int32_t* v, int64_t ldc);

// The integer filter's useful rate on this machine, GOP/s (2 m n d per product): every thread
// quantises its own 1024 rows and multiplies them with 1000 packed columns, D = 512, as the
// assignment does; the best of `repeats` rounds, all threads together. 0 without AVX2.
double measure_filter_gops(int repeats, int threads);

// A float32 dot product (16 lanes; any order is within nearest.hpp's eps_score), for the
// candidates the filter leaves.
float dot32(const float* a, const float* b, int64_t d);

// The float64 value of x~ . c~ from the kernel's sum (see the top of this file).
inline double scaled(int32_t v, float sx, const QCols& c, int64_t j) {
  return double(v - kRowOffset * c.sum[size_t(j)]) * (double(sx) * double(c.scale[size_t(j)]));
}

// The filter scores of one row against columns j0 .. j0 + n - 1: out[t] = scaled(v[t], sx, cols,
// j0 + t) for the inner product, 2 scaled(...) - cc[j0 + t] for L2 (cc non-null): the same float64
// values, computed four at a time when the CPU has AVX2. Returns the lowest t holding the largest
// score (-1 for n = 0).
int64_t row_scores(const int32_t* v, int64_t j0, int64_t n, float sx, const QCols& cols, const double* cc, double* out);

// The positions t of s[0..n) with s[t] >= floor, ascending, written to idx (room for n); returns
// how many.
int64_t list_at_least(const double* s, int64_t n, double floor, int32_t* idx);

// out[g] = the largest of s[j] over j in [g group, min(n, (g + 1) group)) other than j = skip
// (-inf when none), for every group g.
void group_max(const double* s, int64_t n, int64_t group, int64_t skip, double* out);

// The filter's bound for one row: every filter score lies within this distance of its float64
// score (nearest.hpp's score64; for L2 the fast score 2 x~.c~ - ip(c, c) against the float64
// score plus ip(x, x)). err/qnorm: the row's; xnorm: an upper bound of |x|; cmax: of every |c|.
double row_bound(bool ip, int64_t d, double err, double qnorm, double xnorm, double cmax, const QCols& c);

}  // namespace qfilter
}  // namespace semdedup
