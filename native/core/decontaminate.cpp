// Decontamination against a reference set: for every row, the largest similarity to the
// reference rows of its group (all of them in the exact mode), tile by tile.
//
// The reference rows of every group are gathered once into one float32 copy, grouped. Work items
// are blocks of kRowBlock rows of one group; each worker gathers its block (pread), multiplies it
// with the group's reference rows kRefBlock at a time (single-threaded sgemm) and folds the row
// maxima with the runner-up. The float32 products are only a filter (as step 4's, docs/algorithm.md
// "Exact M"): the stored maximum is the fixed-order float64 value of nearest.hpp, for the earliest
// reference row reaching it; a row whose float32 runner-up is further than the filter's bound
// below its maximum needs one float64 dot product, the others are re-scanned over their group's
// reference rows in float64. The same bits on every machine and thread count.
#include "semdedup/decontaminate.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "semdedup/blas.hpp"
#include "semdedup/nearest.hpp"

namespace semdedup {
namespace {

constexpr int64_t kRowBlock = 1024;
constexpr int64_t kRefBlock = 2048;

}  // namespace

CrossStats max_similarity_to_reference(const EmbeddingView& x, const int64_t* x_rows, const int64_t* x_offsets,
                                       const EmbeddingView& r, const int64_t* r_rows, const int64_t* r_offsets,
                                       int64_t ngroups, double* best, int64_t* best_ref, const MaxSimOptions& opt,
                                       const ProgressFn& progress, CancelFlag cancel) {
  if (x.d != r.d)
    throw Error(ErrorCode::InvalidArgument, "the reference rows have " + std::to_string(r.d) + " dimensions, the embeddings " +
                                                std::to_string(x.d));
  if (ngroups < 0 || x_offsets[0] != 0 || r_offsets[0] != 0)
    throw Error(ErrorCode::InvalidArgument, "group offsets must start at 0");
  for (int64_t g = 0; g < ngroups; ++g)
    if (x_offsets[g + 1] < x_offsets[g] || r_offsets[g + 1] < r_offsets[g])
      throw Error(ErrorCode::InvalidArgument, "group offsets must be non-decreasing");
  const int64_t d = x.d;
  const int64_t nx = x_offsets[ngroups];
  const int64_t nr = r_offsets[ngroups];
  for (int64_t i = 0; i < nx; ++i)
    if (x_rows[i] < 0 || x_rows[i] >= x.n) throw Error(ErrorCode::InvalidArgument, "a row is outside the embeddings");
  for (int64_t i = 0; i < nr; ++i)
    if (r_rows[i] < 0 || r_rows[i] >= r.n) throw Error(ErrorCode::InvalidArgument, "a row is outside the reference rows");
  CrossStats st;
  st.rows = nx;
  st.reference_rows = nr;

  // The reference rows, grouped, as one float32 copy, and each group's largest norm.
  std::vector<float> ref(size_t(nr * d));
  r.gather(r_rows, nr, ref.data());
  check_cancel(cancel);
  std::vector<double> rmax(size_t(ngroups), 0);
  for (int64_t g = 0; g < ngroups; ++g)
    for (int64_t j = r_offsets[g]; j < r_offsets[g + 1]; ++j)
      rmax[size_t(g)] = std::max(rmax[size_t(g)], nearest::dot64_cpu(ref.data() + j * d, ref.data() + j * d, d));
  for (double& v : rmax) v = std::sqrt(v);

  struct Item {
    int64_t group, begin, end;  // positions in x_rows
  };
  std::vector<Item> items;
  double total = 0;
  for (int64_t g = 0; g < ngroups; ++g) {
    const int64_t nref = r_offsets[g + 1] - r_offsets[g];
    for (int64_t b = x_offsets[g]; b < x_offsets[g + 1]; b += kRowBlock) {
      const int64_t e = std::min(x_offsets[g + 1], b + kRowBlock);
      items.push_back({g, b, e});
      total += double(e - b) * double(std::max<int64_t>(nref, 1));
      st.computed_flops += 2.0 * double(e - b) * double(nref) * double(d);
    }
  }
  const int threads = resolve_threads(opt.threads);
  struct Scratch {
    std::vector<float> a, c, b1, b2;
    std::vector<int64_t> pos;
  };
  std::atomic<int64_t> rechecked{0};
  std::vector<Scratch> scratch(static_cast<size_t>(threads));
  std::atomic<int64_t> done{0};
  {
    BlasSingleThread blas1;
    parallel_for(threads, int64_t(items.size()), [&](int64_t idx, int w) {
      const Item& it = items[size_t(idx)];
      Scratch& s = scratch[size_t(w)];
      if (s.a.empty()) {
        s.a.resize(size_t(kRowBlock * d));
        s.c.resize(size_t(kRowBlock * kRefBlock));
        s.b1.resize(size_t(kRowBlock));
        s.b2.resize(size_t(kRowBlock));
        s.pos.resize(size_t(kRowBlock));
      }
      const int64_t rows = it.end - it.begin;
      const int64_t r0 = r_offsets[it.group];
      const int64_t nref = r_offsets[it.group + 1] - r0;
      const float ninf = -std::numeric_limits<float>::infinity();
      std::fill(s.b1.begin(), s.b1.end(), ninf);
      std::fill(s.b2.begin(), s.b2.end(), ninf);
      std::fill(s.pos.begin(), s.pos.end(), int64_t(-1));
      if (nref > 0) {
        x.gather(x_rows + it.begin, rows, s.a.data());
        for (int64_t c0 = 0; c0 < nref; c0 += kRefBlock) {
          check_cancel(cancel);
          const int64_t cols = std::min(kRefBlock, nref - c0);
          gemm_abt(s.a.data(), rows, ref.data() + (r0 + c0) * d, cols, d, s.c.data(), kRefBlock);
          for (int64_t i = 0; i < rows; ++i) {
            const float* line = s.c.data() + i * kRefBlock;
            float b = s.b1[size_t(i)], sec = s.b2[size_t(i)];
            int64_t who = s.pos[size_t(i)];
            for (int64_t j = 0; j < cols; ++j) {
              const float v = line[j];
              if (v > b) {  // strict: the earliest reference row on ties
                sec = b;
                b = v;
                who = c0 + j;
              } else if (v > sec) {
                sec = v;
              }
            }
            s.b1[size_t(i)] = b;
            s.b2[size_t(i)] = sec;
            s.pos[size_t(i)] = who;
          }
        }
      }
      // The exact maxima: float64 re-scoring of the candidates (filter bound from the row's and
      // the group's largest reference norm).
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t p = it.begin + i;
        if (nref == 0) {
          best[p] = -std::numeric_limits<double>::infinity();
          best_ref[p] = -1;
          continue;
        }
        const float* xp = s.a.data() + i * d;
        const double xn = nearest::norm_slack(std::sqrt(nearest::dot64_cpu(xp, xp, d)));
        const double eps = nearest::eps_score(true, d, xn, nearest::norm_slack(rmax[size_t(it.group)]));
        const int64_t who = s.pos[size_t(i)];
        if (who >= 0 && nearest::decided(s.b1[size_t(i)], s.b2[size_t(i)], eps)) {
          best[p] = nearest::dot64_cpu(xp, ref.data() + (r0 + who) * d, d);
          best_ref[p] = r0 + who;  // a position for now; rows below
          continue;
        }
        rechecked.fetch_add(1, std::memory_order_relaxed);
        double b = 0;
        int64_t at = -1;
        for (int64_t j = 0; j < nref; ++j) {
          const double v = nearest::dot64_cpu(xp, ref.data() + (r0 + j) * d, d);
          if (at < 0 || v > b) {
            b = v;
            at = j;
          }
        }
        best[p] = b;
        best_ref[p] = r0 + at;
      }
      const int64_t now = done.fetch_add(rows * std::max<int64_t>(nref, 1)) + rows * std::max<int64_t>(nref, 1);
      if (progress) progress(now, int64_t(total));
    }, cancel);
  }

  st.rechecked = rechecked.load();
  for (int64_t p = 0; p < nx; ++p)
    if (best_ref[p] >= 0) best_ref[p] = r_rows[best_ref[p]];
  return st;
}

}  // namespace semdedup
