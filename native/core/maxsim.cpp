// step 4 (docs/algorithm.md) on the CPU: per-cluster max similarity to an earlier member, tile by tile.
//
// Work list: a cluster of up to kWholeMax members (and 16 MB) is one item: its rows are gathered once (keep
// order) and, for each column tile of kCols members, one sgemm computes the dots of every
// earlier-or-same member with the tile (a (c0 + cols) x cols block: only the upper-triangular
// part of the Gram matrix plus the small diagonal blocks), folded into the running column max
// masked to earlier members. A larger cluster is split into one item per column tile, whose
// earlier rows are gathered (pread) block by block, kRowBlock rows at a time: memory per worker is
// bounded by the tiles, whatever the cluster size. Each BLAS call is single-threaded; the workers
// are the parallelism. Items write disjoint outputs, and each output depends only on the fixed
// decomposition (never on the thread count), so results are deterministic.
#include "semdedup/maxsim.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <atomic>

#include "semdedup/blas.hpp"
#include "semdedup/mapping.hpp"


namespace semdedup {
namespace {

constexpr int64_t kCols = 128;       // column tile width of whole-cluster items
constexpr int64_t kSplitCols = 2048;  // column tile width of items of a very large cluster (fewer re-reads)
constexpr int64_t kSplitColsMid = 512;  // ... of a cluster a little larger than a whole-cluster item
constexpr int64_t kSplitWide = 65536;  // from this size on, the wide tiles
constexpr int64_t kRowBlock = 2048;  // rows per sgemm for clusters split into column items
constexpr int64_t kWholeMax = 4096;  // clusters up to this size are one item (bounded by bytes too)

// Folds a block of dots into the column maxima. Row r of the block is the member at position
// row_pos0 + r, column j the member at col_pos0 + j; only pairs with row position < column
// position count. Strict '>' keeps the earliest row on ties, since rows are visited in
// ascending position order.
__attribute__((target_clones("avx512f", "avx2", "default")))
void fold_block(const float* c, int64_t ldc, int64_t rows, int64_t cols, int64_t row_pos0, int64_t col_pos0,
                float* best, int64_t* best_pos) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t pos = row_pos0 + r;
    const int64_t j0 = pos < col_pos0 ? 0 : pos - col_pos0 + 1;
    if (j0 >= cols) break;
    const float* line = c + r * ldc;
    for (int64_t j = j0; j < cols; ++j) {
      const float v = line[j];
      const bool better = v > best[j];
      best[j] = better ? v : best[j];
      best_pos[j] = better ? pos : best_pos[j];
    }
  }
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
  Buffer<float> a, b, c, best;
  Buffer<int64_t> pos;
};

// Writes a tile's column maxima to M[out0 + j], arg[out0 + j]; `rows` are the cluster's rows in keep
// order (the positions in s.pos index them).
void write_tile(const int64_t* rows, int64_t out0, int64_t cols, const Scratch& s, double* M, int64_t* arg) {
  for (int64_t j = 0; j < cols; ++j) {
    const int64_t p = out0 + j;
    if (s.pos[size_t(j)] >= 0 && s.best[size_t(j)] > 0) {
      M[p] = double(s.best[size_t(j)]);
      arg[p] = rows[s.pos[size_t(j)]];
    } else {
      M[p] = 0;
      arg[p] = -1;
    }
  }
}

void reset_tile(Scratch& s, int64_t cols) {
  std::fill(s.best.data(), s.best.data() + cols, -std::numeric_limits<float>::infinity());
  std::fill(s.pos.data(), s.pos.data() + cols, int64_t(-1));
}

// The split path's item: the column maxima of members [c0, c0 + cols) of a cluster (rows: its
// members in keep order) over every earlier-or-same member, whose rows are gathered kRowBlock at a
// time. Leaves them in s.best, s.pos. One code for the whole-cluster kernel and the row-block entry,
// so both issue the same sgemm calls on the same aligned buffers and give the same bits.
void split_tile(const EmbeddingView& x, const int64_t* rows, int64_t c0, int64_t cols, Scratch& s, CancelFlag cancel) {
  const int64_t d = x.d;
  s.a.need(std::min(kRowBlock, c0 + cols) * d);
  s.b.need(cols * d);
  s.c.need(std::min(kRowBlock, c0 + cols) * kSplitCols);
  s.best.need(cols);
  s.pos.need(cols);
  x.gather(rows + c0, cols, s.b.data());
  reset_tile(s, cols);
  const int64_t rows_end = c0 + cols;
  for (int64_t r0 = 0; r0 < rows_end; r0 += kRowBlock) {
    check_cancel(cancel);
    const int64_t nr = std::min(kRowBlock, rows_end - r0);
    x.gather(rows + r0, nr, s.a.data());
    gemm_abt(s.a.data(), nr, s.b.data(), cols, d, s.c.data(), kSplitCols);
    fold_block(s.c.data(), kSplitCols, nr, cols, r0, c0, s.best.data(), s.pos.data());
  }
}

}  // namespace

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
  std::vector<float> a(static_cast<size_t>(x.d)), b(static_cast<size_t>(x.d));
  for (int64_t j = 0; j < n; ++j) {
    double best = 0;
    int64_t who = -1;
    x.row(rows[j], b.data());
    for (int64_t i = 0; i < j; ++i) {
      x.row(rows[i], a.data());
      double s = 0;
      for (int64_t t = 0; t < x.d; ++t) s += double(a[size_t(t)]) * double(b[size_t(t)]);
      if (s > best) {
        best = s;
        who = rows[i];
      }
    }
    M[j] = best;
    arg[j] = who;
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
  constexpr int64_t kChunk = 256;
  std::vector<std::vector<float>> rowbuf(static_cast<size_t>(threads), std::vector<float>(size_t((kChunk + 1) * d)));
  parallel_for(threads, int64_t(near.size()), [&](int64_t q, int w) {
    const int64_t p = near[size_t(q)];
    const int64_t base = offsets[cluster_of[size_t(q)]];
    float* xj = rowbuf[size_t(w)].data();
    float* chunk = xj + d;
    x.gather(order + p, 1, xj);
    double best = 0;
    int64_t who = -1;
    for (int64_t i0 = base; i0 < p; i0 += kChunk) {
      const int64_t m = std::min(kChunk, p - i0);
      x.gather(order + i0, m, chunk);
      for (int64_t i = 0; i < m; ++i) {
        const float* xi = chunk + i * d;
        double s = 0;
        for (int64_t t = 0; t < d; ++t) s += double(xi[t]) * double(xj[t]);
        if (s > best) {
          best = s;
          who = order[i0 + i];
        }
      }
    }
    M[p] = best;
    arg[p] = who;
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

  struct Item {
    int64_t cluster, tile;  // tile < 0: the whole cluster
    double cost;
  };
  std::vector<Item> items;
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
      st.computed_flops += 2.0 * w * double(d);
      if (split) items.push_back({c, t, w});
      cost += w;
    }
    if (!split) items.push_back({c, -1, cost});
  }
  // Largest items first: keeps the workers busy to the end.
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.cost > b.cost; });
  double total_cost = 0;
  for (const auto& it : items) total_cost += it.cost;

  // At most one worker per item; each worker's scratch grows to the tiles it is handed (a few
  // hundred KB for small clusters, at most ~40 MB for the widest tiles), never more.
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(opt.threads), int64_t(items.size()))));
  std::vector<Scratch> scratch(static_cast<size_t>(threads));
  std::atomic<int64_t> done_cost{0};
  BlasSingleThread blas1;  // our workers are the parallelism; BLAS runs one thread each
  parallel_for(threads, int64_t(items.size()), [&](int64_t idx, int w) {
    const Item& it = items[size_t(idx)];
    Scratch& s = scratch[size_t(w)];
    const int64_t base = offsets[it.cluster];
    const int64_t n = offsets[it.cluster + 1] - base;
    if (it.tile < 0) {
      s.a.need(n * d);
      s.c.need(n * kCols);
      s.best.need(kCols);
      s.pos.need(kCols);
      x.gather(order + base, n, s.a.data());
      for (int64_t c0 = 0; c0 < n; c0 += kCols) {
        const int64_t cols = std::min(kCols, n - c0);
        const int64_t rows = c0 + cols;
        reset_tile(s, cols);
        if (rows > 1) {
          gemm_abt(s.a.data(), rows, s.a.data() + c0 * d, cols, d, s.c.data(), kCols);
          fold_block(s.c.data(), kCols, rows, cols, 0, c0, s.best.data(), s.pos.data());
        }
        write_tile(order + base, c0, cols, s, M + base, arg + base);
      }
    } else {
      const int64_t width = maxsim_layout(n, d).width;
      const int64_t c0 = it.tile * width;
      const int64_t cols = std::min(width, n - c0);
      split_tile(x, order + base, c0, cols, s, cancel);
      write_tile(order + base, c0, cols, s, M + base, arg + base);
    }
    const int64_t now = done_cost.fetch_add(int64_t(it.cost)) + int64_t(it.cost);
    if (progress) progress(now, int64_t(total_cost));
  }, cancel);
  // A single-member cluster has no earlier member: M = 0 and no row reached it (its item computed nothing useful).
  for (int64_t c = 0; c < nclusters; ++c)
    if (offsets[c + 1] - offsets[c] == 1) {
      M[offsets[c]] = 0;
      arg[offsets[c]] = -1;
    }
  st.rechecked = recheck_near_thresholds(x, order, offsets, nclusters, M, arg, opt, cancel);
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
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(opt.threads), t1 - t0)));
  std::vector<Scratch> scratch(static_cast<size_t>(threads));
  std::atomic<int64_t> done{0};
  BlasSingleThread blas1;
  parallel_for(threads, t1 - t0, [&](int64_t idx, int w) {
    Scratch& s = scratch[size_t(w)];
    const int64_t c0 = (t0 + idx) * width;
    const int64_t cols = std::min(width, j1 - c0);
    split_tile(x, rows, c0, cols, s, cancel);
    write_tile(rows, c0 - j0, cols, s, M, arg);
    const int64_t cost = int64_t(double(c0 + cols) * double(cols));
    const int64_t now = done.fetch_add(cost) + cost;
    if (progress) progress(now, int64_t(total));
  }, cancel);
  // The float64 re-check over the cluster's first j1 members; positions before the block hold
  // NaN, which is near no threshold, so only the block's members are re-checked.
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
