// step 4 for one row block of a cluster (docs/algorithm.md): M[j] over all earlier members i < j,
// for the members j in [j0, j1) of a cluster given in keep order. Lets a cluster larger than one
// task's share of a planned run be split across tasks, each computing a block of positions.
#pragma once
#include <vector>

#include "semdedup/common.hpp"
#include "semdedup/maxsim.hpp"

namespace semdedup {

// How max_similarity_cpu decomposes a cluster of n members at dimension d: whether it splits the
// cluster into column items, and their width. A block [j0, j1) whose bounds are multiples of
// `width` (or j1 = n) is computed by max_similarity_block with exactly the same sgemm calls as the
// whole-cluster kernel, so its M and arg are bit for bit those of max_similarity_cpu.
struct BlockLayout {
  bool split = false;
  int64_t width = 0;
};
BlockLayout maxsim_block_layout(int64_t n, int64_t d);

// rows: the cluster's n rows in keep order. Writes M[j - j0], arg[j - j0] for
// j in [j0, j1), with the float64 re-check near opt.thresholds of max_similarity_cpu.
// Deterministic: results do not depend on the thread count.
MaxSimStats max_similarity_block(const EmbeddingView& x, const int64_t* rows, int64_t n, int64_t j0, int64_t j1, double* M,
                                 int64_t* arg, const MaxSimOptions& opt, const ProgressFn& progress = {},
                                 CancelFlag cancel = nullptr);

}  // namespace semdedup
