// The engine's k-means (step 2 (docs/algorithm.md)): faiss::Clustering's algorithm, step for step, with the
// assignment as blocked single-threaded sgemm + fused argmax on our own workers, and optional
// pruning: a row whose bounds prove that its nearest centroid cannot have changed is not
// searched again. Needs no FAISS (it uses FAISS's norm routines when linked, for bit-equal L2).
//
// Bounds (Hamerly's, in "score" terms, higher is better): IP score = x . c; L2 score = -||x - c||.
// When centroid c moves by delta_c, any score changes by at most scale * delta_c (scale = ||x||
// for IP, 1 for L2). Per row we keep lo (a lower bound of the assigned centroid's score) and, for
// each group of 16 consecutive centroids, an upper bound of the group's best other score, which
// grows by the group's largest move (Yinyang-style groups on Hamerly's scheme). Each iteration
// the assigned score is recomputed exactly (one dot product) and lo tightened; if lo exceeds
// every group bound the argmax cannot have changed and the full search is skipped. Bounds carry a margin larger than the fp32 rounding of
// the scores, so a skipped row's assignment is the one the full fp32 search would give.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "semdedup/blas.hpp"
#include "semdedup/kmeans.hpp"
#include "semdedup/mapping.hpp"
#include "semdedup/sampling.hpp"

namespace semdedup {
namespace {

constexpr int64_t kSearchBlock = 256;   // rows per sgemm during training
constexpr int64_t kAssignBlock = 4096;  // rows per sgemm in the final assignment: FAISS's query block, so that
                                        // BLAS kernels whose rounding depends on the block see the same blocks
constexpr int kCentroidBlock = 1024;   // centroids per sgemm in the final assignment (FAISS's)
constexpr int kGroup = 16;              // centroids per group of the pruning bounds

struct BlockResult {
  int64_t idx;
  float dis;     // FAISS's value: inner product, or squared L2 (clamped at 0)
  float second;  // the runner-up's value (for bounds)
};

// The chosen centroid of one line of values (first index on ties), the runner-up's value, and
// with gsize > 0 each group's best value with the chosen centroid excluded. `better` orders two
// values (IP: larger, L2: smaller); `worst` is the value nothing is worse than.
template <class Better>
BlockResult pick(const float* line, int k, float worst, Better better, int gsize, float* gbest) {
  float best = worst, second = worst;
  int64_t bi = -1;
  for (int j = 0; j < k; ++j) {
    const float v = line[j];
    if (better(v, best)) {
      second = best;
      best = v;
      bi = j;
    } else if (better(v, second)) {
      second = v;
    }
  }
  if (gsize > 0) {
    const int ng = (k + gsize - 1) / gsize;
    for (int g = 0; g < ng; ++g) {
      float gb = worst;
      const int e = std::min(k, (g + 1) * gsize);
      for (int j = g * gsize; j < e; ++j)
        if (j != bi && better(line[j], gb)) gb = line[j];
      gbest[g] = gb;
    }
  }
  return {bi, best, second};
}

// Scores m rows (xb, m x d) against all k centroids and returns, per row, the best centroid as
// FAISS's exhaustive search with k = 1 picks it and the runner-up value; with gsize > 0 also the
// per-group best values (gbest, m x ngroups; see pick).
void search_rows(const float* xb, int64_t m, const float* xnorm, const float* cent, const float* cnorm, int k,
                 int64_t d, bool ip, float* cbuf, BlockResult* out, int gsize = 0, float* gbest = nullptr) {
  gemm_abt(xb, m, cent, k, d, cbuf, k);
  const int ng = gsize > 0 ? (k + gsize - 1) / gsize : 0;
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < m; ++i) {
    float* line = cbuf + i * k;
    float* g = gsize > 0 ? gbest + i * ng : nullptr;
    if (ip) {
      out[i] = pick(line, k, -inf, [](float a, float b) { return a > b; }, gsize, g);
    } else {
      for (int j = 0; j < k; ++j) {  // FAISS's squared L2: |x|^2 + |c|^2 - 2 x.c, clamped at 0
        const float v = xnorm[i] + cnorm[j] - 2 * line[j];
        line[j] = v < 0 ? 0 : v;
      }
      out[i] = pick(line, k, inf, [](float a, float b) { return a < b; }, gsize, g);
    }
  }
}

// Dot product in float32 with 16 independent partial sums (vectorised; its rounding is covered by
// the bounds' margin).
__attribute__((target_clones("avx512f", "avx2", "default")))
float dot_f32(const float* a, const float* b, int64_t d) {
  float acc[16] = {0};
  int64_t j = 0;
  for (; j + 16 <= d; j += 16)
    for (int t = 0; t < 16; ++t) acc[t] += a[j + t] * b[j + t];
  float s = 0;
  for (; j < d; ++j) s += a[j] * b[j];
  for (int t = 0; t < 16; ++t) s += acc[t];
  return s;
}

}  // namespace

void check_kmeans_args(const EmbeddingView& x, const KMeansParams& p) {
  if (p.k < 1) throw Error(ErrorCode::InvalidArgument, "k must be >= 1, got " + std::to_string(p.k));
  if (int64_t(p.k) > x.n)
    throw Error(ErrorCode::InvalidArgument,
                "k = " + std::to_string(p.k) + " is larger than the number of rows N = " + std::to_string(x.n));
  if (x.n > int64_t(INT32_MAX)) throw Error(ErrorCode::InvalidArgument, "k-means training supports at most 2^31-1 rows");
  if (x.d < 1) throw Error(ErrorCode::InvalidArgument, "embeddings have no columns");
}

std::vector<float> read_training_sample(const EmbeddingView& x, const std::vector<int64_t>& rows) {
  const int64_t d = x.d;
  std::vector<float> sample(rows.size() * size_t(d));
  std::vector<int64_t> slots(rows.size());
  std::iota(slots.begin(), slots.end(), 0);
  std::sort(slots.begin(), slots.end(), [&](int64_t a, int64_t b) { return rows[size_t(a)] < rows[size_t(b)]; });
  // Ascending rows in chunks, read with pread when the file is open (a row read through the mapping
  // would map the kernel's whole fault-around window), each chunk then placed at its slots.
  const int64_t chunk = 4096;
  std::vector<int64_t> idx(static_cast<size_t>(chunk));
  std::vector<float> buf(size_t(chunk) * size_t(d));
  int64_t released = 0;
  for (int64_t c0 = 0; c0 < int64_t(slots.size()); c0 += chunk) {
    const int64_t m = std::min<int64_t>(chunk, int64_t(slots.size()) - c0);
    for (int64_t t = 0; t < m; ++t) idx[size_t(t)] = rows[size_t(slots[size_t(c0 + t)])];
    x.gather(idx.data(), m, buf.data());
    for (int64_t t = 0; t < m; ++t)
      std::memcpy(sample.data() + size_t(slots[size_t(c0 + t)]) * size_t(d), buf.data() + size_t(t) * size_t(d),
                  size_t(d) * 4);
    if (!x.preads()) {  // read through the mapping: drop the pages behind the (ascending) reader
      const int64_t row = idx[size_t(m - 1)];
      x.release(released, row);
      released = row;
    }
  }
  x.release(0, x.n);
  return sample;
}

KMeansResult lloyd_kmeans(const EmbeddingView& x, const KMeansParams& p, KMeansAssigner& assigner,
                          const ProgressFn& progress, CancelFlag cancel) {
  check_kmeans_args(x, p);
  const int64_t d = x.d;
  const int k = p.k;
  const bool ip = p.spherical;  // faiss.Kmeans searches with IndexFlatIP when spherical, else IndexFlatL2
  const int threads = resolve_threads(p.threads);

  KMeansResult r;
  r.under_min_points = x.n < int64_t(k) * p.min_points_per_centroid;
  const std::vector<int64_t> rows = kmeans_training_sample(x.n, k, p.max_points_per_centroid, p.seed);
  std::vector<float> owned;
  const float* X;
  if (int64_t(rows.size()) == x.n && x.is_f32() && x.contiguous()) {
    X = x.f32_row(0);
  } else {
    owned = read_training_sample(x, rows);
    X = owned.data();
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
  std::vector<int64_t> assign(static_cast<size_t>(nt));
  std::vector<float> dis(static_cast<size_t>(nt)), hassign(static_cast<size_t>(k));
  std::vector<double> moved(static_cast<size_t>(k));
  // As faiss::Clustering::iteration_stats: the objectives of every iteration run so far (all redo
  // rounds), as they stood when the best round ended.
  std::vector<float> objective, best_objective;
  float best_obj = ip ? -HUGE_VALF : HUGE_VALF;
  const int64_t total = int64_t(p.niter) * p.nredo;

  for (int redo = 0; redo < p.nredo; ++redo) {
    const std::vector<int64_t> init = kmeans_init_rows(nt, k, p.seed, redo);
    for (int c = 0; c < k; ++c) std::memcpy(&cent[size_t(c) * size_t(d)], X + init[size_t(c)] * d, size_t(d) * 4);
    if (p.spherical) renorm_rows(cent.data(), k, d);
    float obj = 0;
    for (int it = 0; it < p.niter; ++it) {
      check_cancel(cancel);
      // 1. assignment (the backend's part)
      assigner.assign(cent.data(), k, it > 0 ? moved.data() : nullptr, assign.data(), dis.data(), cancel);
      double sum = 0;
      for (int64_t i = 0; i < nt; ++i) sum += dis[size_t(i)];
      obj = float(sum);
      objective.push_back(obj);

      // 2. centroids: ordered sums / counts (as faiss compute_centroids), splits, re-normalisation
      prev = cent;
      if (!assigner.centroids(assign.data(), k, cent.data(), hassign.data())) {
        std::fill(cent.begin(), cent.end(), 0.f);
        std::fill(hassign.begin(), hassign.end(), 0.f);
        parallel_for(threads, threads, [&](int64_t rank, int) {
          const int64_t c0 = int64_t(k) * rank / threads, c1 = int64_t(k) * (rank + 1) / threads;
          for (int64_t i = 0; i < nt; ++i) {
            const int64_t ci = assign[size_t(i)];
            if (ci < c0 || ci >= c1) continue;
            float* c = &cent[size_t(ci) * size_t(d)];
            const float* xi = X + i * d;
            hassign[size_t(ci)] += 1.0f;
            for (int64_t j = 0; j < d; ++j) c[j] += xi[j];
          }
          for (int64_t ci = c0; ci < c1; ++ci) {
            if (hassign[size_t(ci)] == 0) continue;
            const float norm = 1 / hassign[size_t(ci)];
            float* c = &cent[size_t(ci) * size_t(d)];
            for (int64_t j = 0; j < d; ++j) c[j] *= norm;
          }
        });
      }
      faiss_split_clusters(size_t(d), size_t(k), size_t(nt), hassign.data(), cent.data());
      if (p.spherical) renorm_rows(cent.data(), k, d);

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
    if (p.nredo == 1 || (ip ? obj > best_obj : obj < best_obj)) {
      best_centroids = cent;
      best_objective = objective;
      best_obj = obj;
    }
  }
  r.centroids = std::move(best_centroids);
  r.objective = std::move(best_objective);
  r.searched_rows = assigner.searched_rows;
  r.pruned_rows = assigner.pruned_rows;
  return r;
}

namespace {

// The CPU assignment step: blocked single-threaded sgemm + fused argmax on every core, and with
// `prune` the bounds that skip rows whose centroid provably cannot change (see the top of this file).
class CpuAssigner : public KMeansAssigner {
 public:
  CpuAssigner(int threads, bool prune) : threads_(resolve_threads(threads)), prune_(prune) {}

  void prepare(const float* X, int64_t nt, int64_t d, bool ip) override {
    X_ = X;
    nt_ = nt;
    d_ = d;
    ip_ = ip;
    xnorm_.resize(size_t(nt));
    xlen_.resize(size_t(nt));
    row_norms_sqr(X, nt, d, xnorm_.data());
    for (int64_t i = 0; i < nt; ++i) xlen_[size_t(i)] = std::sqrt(xnorm_[size_t(i)]);
    // Margin above the fp32 rounding of a score (|error| <= ~d ulp of ||x|| ||c||, generously).
    ulp_d_ = 8.0 * double(d) * std::ldexp(1.0, -24);
    xbuf_.assign(size_t(threads_), std::vector<float>(size_t(kSearchBlock) * size_t(d)));
    nbuf_.assign(size_t(threads_), std::vector<float>(size_t(kSearchBlock)));
    rbuf_.assign(size_t(threads_), std::vector<BlockResult>(size_t(kSearchBlock)));
  }

  void assign(const float* cent, int k, const double* moved, int64_t* assign, float* dis, CancelFlag cancel) override {
    const int64_t nt = nt_, d = d_;
    const bool ip = ip_;
    const float* X = X_;
    if (int64_t(cbuf_.size()) != threads_ || k_ != k) {
      k_ = k;
      ng_ = (k + kGroup - 1) / kGroup;
      cbuf_.assign(size_t(threads_), std::vector<float>(size_t(kSearchBlock) * size_t(k)));
      gbuf_.assign(size_t(threads_), std::vector<float>(size_t(kSearchBlock) * size_t(ng_)));
      cnorm_.resize(size_t(k));
      if (prune_) upg_.assign(size_t(nt) * size_t(ng_), 0.f);
    }
    const int ng = ng_;
    BlasSingleThread blas1;
    if (!ip) row_norms_sqr(cent, k, d, cnorm_.data());
    float cmax = 0;  // largest centroid norm (for the IP margin)
    for (int c = 0; c < k; ++c) {
      double s = 0;
      for (int64_t j = 0; j < d; ++j) s += double(cent[size_t(c) * size_t(d) + size_t(j)]) * cent[size_t(c) * size_t(d) + size_t(j)];
      cmax = std::max(cmax, float(std::sqrt(s)));
    }
    const bool bounded = prune_ && moved != nullptr;
    // 0. the bounds follow the centroids' movement: a group's bound grows by its largest move
    if (bounded) {
      std::vector<double> gdelta(size_t(ng), 0.0);
      for (int c = 0; c < k; ++c) gdelta[size_t(c / kGroup)] = std::max(gdelta[size_t(c / kGroup)], moved[c]);
      parallel_for(threads_, (nt + 4095) / 4096, [&](int64_t b, int) {
        const int64_t e = std::min(nt, (b + 1) * 4096);
        for (int64_t i = b * 4096; i < e; ++i) {
          const double scale = ip ? double(xlen_[size_t(i)]) * (1 + 1e-6) : 1.0;
          float* u = &upg_[size_t(i) * size_t(ng)];
          for (int g = 0; g < ng; ++g) u[g] = float(double(u[g]) + scale * gdelta[size_t(g)]);
        }
      });
    }
    // 1. rows that keep their centroid provably (bounds), the others to search
    std::vector<int64_t> todo;
    if (bounded) {
      std::vector<uint8_t> keep(static_cast<size_t>(nt));
      parallel_for(threads_, (nt + 4095) / 4096, [&](int64_t b, int) {
        const int64_t e = std::min(nt, (b + 1) * 4096);
        for (int64_t i = b * 4096; i < e; ++i) {
          const float* xi = X + i * d;
          const int64_t a = assign[size_t(i)];
          const double s = dot_f32(xi, cent + a * d, d);
          double score, tol;
          if (ip) {
            score = s;
            tol = 1e-6 + ulp_d_ * xlen_[size_t(i)] * cmax;
          } else {
            const double e2 = std::max(0.0, double(xnorm_[size_t(i)]) + cnorm_[size_t(a)] - 2 * s);
            score = -std::sqrt(e2);
            tol = std::sqrt(ulp_d_ * (double(xnorm_[size_t(i)]) + double(cmax) * cmax) * 4) + 1e-6;
          }
          const float l = float(score - tol);
          const float* u = &upg_[size_t(i) * size_t(ng)];
          float umax = -std::numeric_limits<float>::infinity();
          for (int g = 0; g < ng; ++g) umax = std::max(umax, u[g]);
          if (l > umax) {
            keep[size_t(i)] = 1;
            // FAISS's value for the objective
            dis[size_t(i)] = ip ? float(s) : float(std::max(0.0, double(xnorm_[size_t(i)]) + cnorm_[size_t(a)] - 2 * s));
          }
        }
      }, cancel);
      for (int64_t i = 0; i < nt; ++i)
        if (!keep[size_t(i)]) todo.push_back(i);
    } else {
      todo.resize(size_t(nt));
      std::iota(todo.begin(), todo.end(), 0);
    }
    searched_rows += int64_t(todo.size());
    pruned_rows += nt - int64_t(todo.size());
    // 2. full search of the others, in blocks; new bounds for the searched rows
    const int64_t nblocks = (int64_t(todo.size()) + kSearchBlock - 1) / kSearchBlock;
    parallel_for(threads_, nblocks, [&](int64_t b, int w) {
      const int64_t s0 = b * kSearchBlock, m = std::min<int64_t>(kSearchBlock, int64_t(todo.size()) - s0);
      float* xb = xbuf_[size_t(w)].data();
      float* nb = nbuf_[size_t(w)].data();
      for (int64_t t = 0; t < m; ++t) {
        const int64_t i = todo[size_t(s0 + t)];
        std::memcpy(xb + t * d, X + i * d, size_t(d) * 4);
        nb[t] = xnorm_[size_t(i)];
      }
      BlockResult* res = rbuf_[size_t(w)].data();
      float* gb = gbuf_[size_t(w)].data();
      search_rows(xb, m, nb, cent, cnorm_.data(), k, d, ip, cbuf_[size_t(w)].data(), res, prune_ ? kGroup : 0, gb);
      for (int64_t t = 0; t < m; ++t) {
        const int64_t i = todo[size_t(s0 + t)];
        assign[size_t(i)] = res[t].idx;
        dis[size_t(i)] = res[t].dis;
        if (!prune_) continue;
        float* u = &upg_[size_t(i) * size_t(ng)];
        const float* gbt = gb + t * ng;
        if (ip) {
          const double tol = 1e-6 + ulp_d_ * xlen_[size_t(i)] * cmax;
          for (int g = 0; g < ng; ++g) u[g] = float(double(gbt[g]) + tol);  // -inf stays -inf
        } else {
          const double tol = std::sqrt(ulp_d_ * (double(xnorm_[size_t(i)]) + double(cmax) * cmax) * 4) + 1e-6;
          for (int g = 0; g < ng; ++g) u[g] = float(-std::sqrt(double(gbt[g])) + tol);  // +inf -> -inf
        }
      }
    }, cancel);
  }

 private:
  int threads_;
  bool prune_;
  const float* X_ = nullptr;
  int64_t nt_ = 0, d_ = 0;
  bool ip_ = false;
  int k_ = 0, ng_ = 0;
  double ulp_d_ = 0;
  std::vector<float> xnorm_, xlen_, cnorm_, upg_;
  std::vector<std::vector<float>> cbuf_, gbuf_, xbuf_, nbuf_;
  std::vector<std::vector<BlockResult>> rbuf_;
};

}  // namespace

KMeansResult train_kmeans(const EmbeddingView& x, const KMeansParams& p, const ProgressFn& progress, CancelFlag cancel) {
  CpuAssigner assigner(p.threads, p.prune);
  return lloyd_kmeans(x, p, assigner, progress, cancel);
}

void assign_nearest(const EmbeddingView& x, const float* centroids, int k, bool inner_product, int64_t* nearest,
                    float* dist, int threads, const ProgressFn& progress, CancelFlag cancel) {
  const int64_t d = x.d;
  threads = resolve_threads(threads);
  std::vector<float> cnorm(static_cast<size_t>(k));
  if (!inner_product) row_norms_sqr(centroids, k, d, cnorm.data());
  const int64_t nblocks = (x.n + kAssignBlock - 1) / kAssignBlock;
  std::vector<std::vector<float>> cbuf(static_cast<size_t>(threads),
                                       std::vector<float>(size_t(kAssignBlock) * size_t(std::min(k, kCentroidBlock))));
  std::vector<std::vector<float>> xbuf(static_cast<size_t>(threads));
  std::vector<std::vector<float>> nbuf(static_cast<size_t>(threads), std::vector<float>(size_t(kAssignBlock)));
  std::vector<std::vector<BlockResult>> rbuf(static_cast<size_t>(threads), std::vector<BlockResult>(size_t(kAssignBlock)));
  std::atomic<int64_t> done{0};
  BlasSingleThread blas1;
  parallel_for(threads, nblocks, [&](int64_t b, int w) {
    const int64_t b0 = b * kAssignBlock, m = std::min(kAssignBlock, x.n - b0);
    if (!x.f32_in_place(b0, b0 + m)) xbuf[size_t(w)].resize(size_t(kAssignBlock) * size_t(d));
    const float* rows = x.f32_rows(b0, b0 + m, xbuf[size_t(w)].data());  // zero-copy from the mapping when it can
    if (!inner_product) row_norms_sqr(rows, m, d, nbuf[size_t(w)].data());
    BlockResult* res = rbuf[size_t(w)].data();
    // Centroids in blocks of kCentroidBlock, as FAISS's exhaustive search walks them; the first
    // block wins ties (FAISS keeps its heap top unless a later value is strictly better).
    for (int64_t t = 0; t < m; ++t) nearest[b0 + t] = -1;
    for (int c0 = 0; c0 < k; c0 += kCentroidBlock) {
      const int kc = std::min(kCentroidBlock, k - c0);
      search_rows(rows, m, nbuf[size_t(w)].data(), centroids + int64_t(c0) * d, cnorm.data() + c0, kc, d, inner_product,
                  cbuf[size_t(w)].data(), res);
      for (int64_t t = 0; t < m; ++t) {
        const bool better = nearest[b0 + t] < 0 || (inner_product ? res[t].dis > dist[b0 + t] : res[t].dis < dist[b0 + t]);
        if (res[t].idx >= 0 && better) {
          nearest[b0 + t] = c0 + res[t].idx;
          dist[b0 + t] = res[t].dis;
        }
      }
    }
    x.release(b0, b0 + m);
    const int64_t now = done.fetch_add(m) + m;
    if (progress) progress(now, x.n);
  }, cancel);
}

#ifndef SEMDEDUP_HAVE_FAISS
std::string faiss_version() { return "none"; }
#endif

}  // namespace semdedup
