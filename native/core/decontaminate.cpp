// Decontamination against a reference set: for every row, the largest similarity to the
// reference rows of its group (all of them in the exact mode), tile by tile.
//
// The reference rows of every group are gathered once into one float32 copy, grouped. Work items
// are blocks of kRowBlock rows of one group; each worker gathers its block (pread), multiplies it
// with the group's reference rows kRefBlock at a time (single-threaded sgemm) and folds the row
// maxima. Rows whose fp32 maximum lies within the margin of a threshold are then recomputed in
// float64 over the same reference rows. Items write disjoint outputs and the decomposition does
// not depend on the thread count, so the results are deterministic.
#include "semdedup/decontaminate.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "semdedup/blas.hpp"

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

  // The reference rows, grouped, as one float32 copy.
  std::vector<float> ref(size_t(nr * d));
  r.gather(r_rows, nr, ref.data());
  check_cancel(cancel);

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
    std::vector<float> a, c;
  };
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
      }
      const int64_t rows = it.end - it.begin;
      const int64_t r0 = r_offsets[it.group];
      const int64_t nref = r_offsets[it.group + 1] - r0;
      for (int64_t i = 0; i < rows; ++i) {
        best[it.begin + i] = -std::numeric_limits<double>::infinity();
        best_ref[it.begin + i] = -1;
      }
      if (nref > 0) {
        x.gather(x_rows + it.begin, rows, s.a.data());
        for (int64_t c0 = 0; c0 < nref; c0 += kRefBlock) {
          check_cancel(cancel);
          const int64_t cols = std::min(kRefBlock, nref - c0);
          gemm_abt(s.a.data(), rows, ref.data() + (r0 + c0) * d, cols, d, s.c.data(), kRefBlock);
          for (int64_t i = 0; i < rows; ++i) {
            const float* line = s.c.data() + i * kRefBlock;
            float b = -std::numeric_limits<float>::infinity();
            int64_t who = -1;
            for (int64_t j = 0; j < cols; ++j)
              if (line[j] > b) {  // strict: the earliest reference row on ties
                b = line[j];
                who = j;
              }
            if (who >= 0 && double(b) > best[it.begin + i]) {
              best[it.begin + i] = double(b);
              best_ref[it.begin + i] = r0 + c0 + who;  // a position for now; rows below
            }
          }
        }
      }
      const int64_t now = done.fetch_add(rows * std::max<int64_t>(nref, 1)) + rows * std::max<int64_t>(nref, 1);
      if (progress) progress(now, int64_t(total));
    }, cancel);
  }

  // The float64 re-check of the rows near a threshold.
  if (!opt.thresholds.empty()) {
    const double margin = opt.recheck_margin > 0 ? opt.recheck_margin : default_recheck_margin(d);
    std::vector<std::pair<int64_t, int64_t>> near;  // (position, group)
    for (int64_t g = 0; g < ngroups; ++g)
      for (int64_t p = x_offsets[g]; p < x_offsets[g + 1]; ++p) {
        if (best_ref[p] < 0) continue;
        for (double t : opt.thresholds)
          if (std::fabs(best[p] - t) <= margin) {
            near.emplace_back(p, g);
            break;
          }
      }
    std::vector<std::vector<float>> rowbuf(static_cast<size_t>(threads), std::vector<float>(size_t(d)));
    parallel_for(threads, int64_t(near.size()), [&](int64_t q, int w) {
      const int64_t p = near[size_t(q)].first;
      const int64_t g = near[size_t(q)].second;
      float* xp = rowbuf[size_t(w)].data();
      x.gather(x_rows + p, 1, xp);
      double b = -std::numeric_limits<double>::infinity();
      int64_t who = -1;
      for (int64_t j = r_offsets[g]; j < r_offsets[g + 1]; ++j) {
        const float* rj = ref.data() + j * d;
        double s = 0;
        for (int64_t t = 0; t < d; ++t) s += double(xp[t]) * double(rj[t]);
        if (s > b) {
          b = s;
          who = j;
        }
      }
      best[p] = b;
      best_ref[p] = who;
    }, cancel);
    st.rechecked = int64_t(near.size());
  }
  for (int64_t p = 0; p < nx; ++p)
    if (best_ref[p] >= 0) best_ref[p] = r_rows[best_ref[p]];
  return st;
}

}  // namespace semdedup
