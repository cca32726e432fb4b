// SPEC step 4 on the CPU: per-cluster max similarity to an earlier member, tile by tile.
//
// Work list: one item per (cluster, column tile). An item gathers its column tile of members
// (T rows of the cluster, in keep order), then walks the row tiles 0..j of the same cluster,
// computing each T x T block of the Gram matrix with one single-threaded sgemm into a small
// buffer and folding it into the running column max (masked to earlier members on the diagonal
// tile). Only upper-triangular tiles are computed; memory is O(T * D) per worker, whatever the
// cluster size. Items are independent (disjoint outputs), so workers need no locks, and each
// output depends only on the fixed tile decomposition: results do not depend on the thread count.
#include "semdedup/maxsim.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "semdedup/blas.hpp"
#include "semdedup/mapping.hpp"

#ifdef SEMDEDUP_HAVE_BLAS
#include <cblas.h>
#endif

namespace semdedup {
namespace {

constexpr int64_t kTile = 256;

// C[i][j] = a_i . b_j for an (m x d) and an (n x d) row-major tile; C has leading dimension ldc.
void gram_tile(const float* a, int64_t m, const float* b, int64_t n, int64_t d, float* c, int64_t ldc) {
#ifdef SEMDEDUP_HAVE_BLAS
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(d), 1.0f, a, int(d), b, int(d), 0.0f, c,
              int(ldc));
#else
  // Portable fallback (builds without BLAS, e.g. a bare GPU machine): 4 x 4 register blocks.
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const float* x = a + i * d;
      const float* y = b + j * d;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t t = 0;
      for (; t + 4 <= d; t += 4) {
        s0 += x[t] * y[t];
        s1 += x[t + 1] * y[t + 1];
        s2 += x[t + 2] * y[t + 2];
        s3 += x[t + 3] * y[t + 3];
      }
      for (; t < d; ++t) s0 += x[t] * y[t];
      c[i * ldc + j] = (s0 + s1) + (s2 + s3);
    }
#endif
}

// Folds rows [r0, r1) of a tile into the column maxima. Row r of the tile is position
// row_pos0 + r; column c is position col_pos0 + c. Only pairs with row position < column
// position count (diagonal tile: r < c). Strict '>' keeps the earliest row on ties since rows
// are visited in ascending position order.
__attribute__((target_clones("avx512f", "avx2", "default")))
void fold_tile(const float* c, int64_t ldc, int64_t rows, int64_t cols, bool diagonal, int64_t row_pos0,
               float* best, int64_t* best_pos) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* line = c + r * ldc;
    const int64_t c0 = diagonal ? r + 1 : 0;
    const int64_t pos = row_pos0 + r;
    for (int64_t j = c0; j < cols; ++j) {
      const float v = line[j];
      const bool better = v > best[j];
      best[j] = better ? v : best[j];
      best_pos[j] = better ? pos : best_pos[j];
    }
  }
}

void gather(const EmbeddingView& x, const int64_t* rows, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) x.row(rows[i], dst + i * x.d);
}

double default_margin(int64_t d) {
  // fp32 dot products of unit vectors: |error| <= ~d * 2^-24 in the worst case; at least 1e-5.
  return std::max(1e-5, 4.0 * double(d) * std::ldexp(1.0, -24));
}

}  // namespace

void max_similarity_reference(const EmbeddingView& x, const int64_t* rows, int64_t n, double* M, int64_t* arg) {
  std::vector<float> a(static_cast<size_t>(x.d)), b(size_t(x.d));
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

MaxSimStats max_similarity_cpu(const EmbeddingView& x, const int64_t* order, const int64_t* offsets,
                               int64_t nclusters, double* M, int64_t* arg, const MaxSimOptions& opt,
                               const ProgressFn& progress, CancelFlag cancel) {
  MaxSimStats st;
  st.clusters = nclusters;
  st.members = offsets[nclusters] - offsets[0];
  const int64_t d = x.d;

  struct Item {
    int64_t cluster, tile;
    double cost;
  };
  std::vector<Item> items;
  for (int64_t c = 0; c < nclusters; ++c) {
    const int64_t n = offsets[c + 1] - offsets[c];
    if (n < 0) throw Error(ErrorCode::InvalidArgument, "offsets must be non-decreasing");
    st.useful_flops += double(n) * double(n - 1) * double(d);
    const int64_t tiles = (n + kTile - 1) / kTile;
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t cols = std::min(kTile, n - t * kTile);
      const double rows_total = double(t * kTile + cols);
      items.push_back({c, t, rows_total * double(cols)});
      st.computed_flops += 2.0 * double(t * kTile + cols) * double(cols) * double(d);
    }
  }
  // Largest items first: keeps the workers busy to the end. Ties by (cluster, tile) for a fixed order.
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.cost > b.cost; });
  const double total_cost = std::accumulate(items.begin(), items.end(), 0.0, [](double s, const Item& i) { return s + i.cost; });

  const int threads = resolve_threads(opt.threads);
  struct Scratch {
    std::vector<float> a, b, c, best;
    std::vector<int64_t> pos;
  };
  std::vector<Scratch> scratch(static_cast<size_t>(threads));
  for (auto& s : scratch) {
    s.a.resize(size_t(kTile * d));
    s.b.resize(size_t(kTile * d));
    s.c.resize(size_t(kTile * kTile));
    s.best.resize(size_t(kTile));
    s.pos.resize(size_t(kTile));
  }
  std::atomic<int64_t> done_cost{0};
  // Rows are gathered from all over a mapped file: drop the mapped pages from the resident set
  // every ~256 MB gathered, so RSS stays bounded by the tiles, not by the file.
  std::atomic<int64_t> gathered{0};
  const int64_t release_every = int64_t(256) << 20;
  BlasSingleThread blas1;  // our workers are the parallelism; BLAS runs one thread each
  parallel_for(threads, int64_t(items.size()), [&](int64_t idx, int w) {
    const Item& it = items[size_t(idx)];
    Scratch& s = scratch[size_t(w)];
    const int64_t base = offsets[it.cluster];
    const int64_t n = offsets[it.cluster + 1] - base;
    const int64_t col0 = it.tile * kTile;
    const int64_t cols = std::min(kTile, n - col0);
    gather(x, order + base + col0, cols, s.b.data());
    std::fill(s.best.begin(), s.best.begin() + cols, -std::numeric_limits<float>::infinity());
    std::fill(s.pos.begin(), s.pos.begin() + cols, int64_t(-1));
    for (int64_t rt = 0; rt <= it.tile; ++rt) {
      const int64_t row0 = rt * kTile;
      const int64_t rows = std::min(kTile, n - row0);
      const bool diagonal = rt == it.tile;
      const float* a = s.b.data();
      if (!diagonal) {
        gather(x, order + base + row0, rows, s.a.data());
        a = s.a.data();
      }
      gram_tile(a, rows, s.b.data(), cols, d, s.c.data(), kTile);
      fold_tile(s.c.data(), kTile, rows, cols, diagonal, row0, s.best.data(), s.pos.data());
    }
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t p = base + col0 + j;
      if (s.pos[size_t(j)] >= 0 && s.best[size_t(j)] > 0) {
        M[p] = double(s.best[size_t(j)]);
        arg[p] = order[base + s.pos[size_t(j)]];
      } else {
        M[p] = 0;
        arg[p] = -1;
      }
    }
    if (x.mapped) {
      const int64_t bytes = (it.tile + 2) * kTile * int64_t(x.row_bytes());
      const int64_t before = gathered.fetch_add(bytes);
      if (before / release_every != (before + bytes) / release_every) release_pages(x.data, size_t(x.n) * x.row_bytes());
    }
    const int64_t now = done_cost.fetch_add(int64_t(it.cost)) + int64_t(it.cost);
    if (progress) progress(now, int64_t(total_cost));
  }, cancel);

  // Exact re-check: members whose fp32 M lies near a threshold get M recomputed in float64.
  if (!opt.thresholds.empty()) {
    const double margin = opt.recheck_margin > 0 ? opt.recheck_margin : default_margin(d);
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
    std::vector<std::vector<float>> rowbuf(static_cast<size_t>(threads), std::vector<float>(size_t(2 * d)));
    parallel_for(threads, int64_t(near.size()), [&](int64_t q, int w) {
      const int64_t p = near[size_t(q)];
      const int64_t base = offsets[cluster_of[size_t(q)]];
      float* xj = rowbuf[size_t(w)].data();
      float* xi = xj + d;
      x.row(order[p], xj);
      double best = 0;
      int64_t who = -1;
      for (int64_t i = base; i < p; ++i) {
        x.row(order[i], xi);
        double s = 0;
        for (int64_t t = 0; t < d; ++t) s += double(xi[t]) * double(xj[t]);
        if (s > best) {
          best = s;
          who = order[i];
        }
      }
      M[p] = best;
      arg[p] = who;
    }, cancel);
    st.rechecked = int64_t(near.size());
  }
  return st;
}

}  // namespace semdedup
