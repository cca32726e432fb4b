// Beyond the original: the largest similarity of each row to a reference set (decontamination),
// and exact duplicates by their bytes.
#pragma once
#include <vector>

#include "semdedup/common.hpp"
#include "semdedup/maxsim.hpp"

namespace semdedup {


struct CrossStats {
  int64_t rows = 0;
  int64_t reference_rows = 0;
  double computed_flops = 0;
  int64_t rechecked = 0;  // rows the float32 filter did not decide (re-scanned in float64)
};

// For every group g, every listed row of x (x_rows[x_offsets[g] .. x_offsets[g+1])) is compared
// with every listed reference row of the same group (r_rows[r_offsets[g] .. r_offsets[g+1])):
//   best[p] = max_r x_p . r,   best_ref[p] = the reference row reaching it (earliest in the
//   group's list on ties), or -1 and best = -inf when the group has no reference rows.
// each x_p . r being the fixed-order float64 value nearest::dot64, so best and best_ref are exact
// (the same bits on every machine). Outputs are per position p of x_rows. Tiled fp32 sgemm as a
// filter (top-2 per row), then float64 re-scoring (rechecked: the rows whose float32 runner-up lay
// within the filter's bound, re-scanned over their group in float64; opt.threads as for max
// similarity, opt.thresholds, opt.recheck_margin and opt.gpu are not used). Exact mode: one group of
// all rows against all reference rows. The reference rows are held in memory (one float32 copy).
// Deterministic: results do not depend on the thread count.
CrossStats max_similarity_to_reference(const EmbeddingView& x, const int64_t* x_rows, const int64_t* x_offsets,
                                       const EmbeddingView& r, const int64_t* r_rows, const int64_t* r_offsets,
                                       int64_t ngroups, double* best, int64_t* best_ref, const MaxSimOptions& opt,
                                       const ProgressFn& progress = {}, CancelFlag cancel = nullptr);

struct ExactDuplicateStats {
  int64_t rows = 0;
  int64_t groups = 0;  // sets of at least two identical rows
  int64_t copies = 0;  // rows identical to an earlier row (in the given order)
};

// Rows whose bytes are identical: hashed (64-bit, over the stored bytes), then compared byte for
// byte within each hash bucket. `order` lists every row once (rows are visited in this order; the
// first of a set of identical rows in it is the one kept); first_of[row] receives the first row
// of its set in that order, or -1 when the row is the first (or unique). Streams over the file in
// row order, dropping mapped pages behind it.
ExactDuplicateStats exact_duplicates(const EmbeddingView& x, const int64_t* order, int64_t* first_of, int threads = 0,
                                     const ProgressFn& progress = {}, CancelFlag cancel = nullptr);

}  // namespace semdedup
