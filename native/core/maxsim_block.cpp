// step 4 for a row block of one cluster: the column items of max_similarity_cpu's split path
// (maxsim.cpp), restricted to the columns [j0, j1). The tile widths and the row blocks are those of
// maxsim.cpp, so every dot product comes from the same sgemm call shape and the results match the
// whole-cluster kernel bit for bit; the constants below must follow maxsim.cpp's.
#include "semdedup/maxsim_block.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "semdedup/blas.hpp"

namespace semdedup {
namespace {

constexpr int64_t kCols = 128;          // maxsim.cpp: column tile of whole-cluster items
constexpr int64_t kSplitCols = 2048;    // maxsim.cpp: tile width of items of a very large cluster
constexpr int64_t kSplitColsMid = 512;  // maxsim.cpp: ... of a cluster a little larger than a whole item
constexpr int64_t kSplitWide = 65536;   // maxsim.cpp: from this size on, the wide tiles
constexpr int64_t kRowBlock = 2048;     // maxsim.cpp: rows per sgemm of split items
constexpr int64_t kWholeMax = 4096;     // maxsim.cpp: clusters up to this size are one item

// maxsim.cpp's fold: strict '>' over ascending row positions keeps the earliest row on ties.
void fold(const float* c, int64_t ldc, int64_t rows, int64_t cols, int64_t row_pos0, int64_t col_pos0, float* best,
          int64_t* best_pos) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t pos = row_pos0 + r;
    const int64_t j0 = pos < col_pos0 ? 0 : pos - col_pos0 + 1;
    if (j0 >= cols) break;
    const float* line = c + r * ldc;
    for (int64_t j = j0; j < cols; ++j) {
      const float v = line[j];
      if (v > best[j]) {
        best[j] = v;
        best_pos[j] = pos;
      }
    }
  }
}

}  // namespace

BlockLayout maxsim_block_layout(int64_t n, int64_t d) {
  const int64_t whole_max = std::max<int64_t>(kCols, std::min<int64_t>(kWholeMax, (int64_t(16) << 20) / (d * 4)));
  BlockLayout b;
  b.split = n > whole_max;
  b.width = !b.split ? kCols : n >= kSplitWide ? kSplitCols : kSplitColsMid;
  return b;
}

MaxSimStats max_similarity_block(const EmbeddingView& x, const int64_t* rows, int64_t n, int64_t j0, int64_t j1, double* M,
                                 int64_t* arg, const MaxSimOptions& opt, const ProgressFn& progress,
                                 CancelFlag cancel) {
  if (j0 < 0 || j1 < j0 || j1 > n) throw Error(ErrorCode::InvalidArgument, "max_similarity_block: need 0 <= j0 <= j1 <= n");
  MaxSimStats st;
  st.members = j1 - j0;
  st.clusters = 0;
  if (j1 == j0) return st;
  const int64_t d = x.d;
  // The split path's tile width for a cluster of n members (blocks are only planned for clusters
  // that the kernel splits, maxsim_block_layout).
  const int64_t width = n >= kSplitWide ? kSplitCols : kSplitColsMid;
  const int64_t t0 = j0 / width;
  const int64_t t1 = (j1 + width - 1) / width;
  if (j0 % width != 0 || (j1 % width != 0 && j1 != n))
    throw Error(ErrorCode::InvalidArgument, "max_similarity_block: j0 and j1 must be multiples of the tile width (or j1 = n)");
  struct Scratch {
    std::vector<float> a, b, c, best;
    std::vector<int64_t> pos;
  };
  const int threads = resolve_threads(opt.threads);
  std::vector<Scratch> scratch(static_cast<size_t>(threads));
  for (auto& s : scratch) {
    s.a.resize(size_t(kRowBlock * d));
    s.b.resize(size_t(kSplitCols * d));
    s.c.resize(size_t(kRowBlock * kSplitCols));
    s.best.resize(size_t(kSplitCols));
    s.pos.resize(size_t(kSplitCols));
  }
  double total = 0;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t cols = std::min(width, j1 - t * width);
    total += double(t * width + cols) * double(cols);
    st.useful_flops += double(cols) * double(2 * t * width + cols - 1) * double(d);
    st.computed_flops += 2.0 * double(t * width + cols) * double(cols) * double(d);
  }
  std::atomic<int64_t> done{0};
  BlasSingleThread blas1;
  parallel_for(threads, t1 - t0, [&](int64_t idx, int w) {
    Scratch& s = scratch[size_t(w)];
    const int64_t c0 = (t0 + idx) * width;
    const int64_t cols = std::min(width, j1 - c0);
    x.gather(rows + c0, cols, s.b.data());
    std::fill(s.best.begin(), s.best.begin() + cols, -std::numeric_limits<float>::infinity());
    std::fill(s.pos.begin(), s.pos.begin() + cols, int64_t(-1));
    const int64_t rows_end = c0 + cols;
    for (int64_t r0 = 0; r0 < rows_end; r0 += kRowBlock) {
      check_cancel(cancel);
      const int64_t nr = std::min(kRowBlock, rows_end - r0);
      x.gather(rows + r0, nr, s.a.data());
      gemm_abt(s.a.data(), nr, s.b.data(), cols, d, s.c.data(), kSplitCols);
      fold(s.c.data(), kSplitCols, nr, cols, r0, c0, s.best.data(), s.pos.data());
    }
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t p = c0 + j - j0;
      if (s.pos[size_t(j)] >= 0 && s.best[size_t(j)] > 0) {
        M[p] = double(s.best[size_t(j)]);
        arg[p] = rows[s.pos[size_t(j)]];
      } else {
        M[p] = 0;
        arg[p] = -1;
      }
    }
    const int64_t cost = int64_t(double(c0 + cols) * double(cols));
    const int64_t now = done.fetch_add(cost) + cost;
    if (progress) progress(now, int64_t(total));
  }, cancel);
  // The float64 re-check of maxsim.hpp over the cluster's first j1 members; positions before the
  // block hold NaN, which is near no threshold, so only the block's members are re-checked.
  if (!opt.thresholds.empty()) {
    std::vector<double> m(size_t(j1), std::numeric_limits<double>::quiet_NaN());
    std::vector<int64_t> a(size_t(j1), -1);
    std::copy(M, M + (j1 - j0), m.begin() + j0);
    std::copy(arg, arg + (j1 - j0), a.begin() + j0);
    const int64_t offsets[2] = {0, j1};
    st.rechecked = recheck_near_thresholds(x, rows, offsets, 1, m.data(), a.data(), opt, cancel);
    std::copy(m.begin() + j0, m.end(), M);
    std::copy(a.begin() + j0, a.end(), arg);
  }
  return st;
}

}  // namespace semdedup
