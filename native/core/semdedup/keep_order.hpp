// step 4 (docs/algorithm.md)'s keep order: which member of a group of duplicates survives depends on the order
// in which the members of a cluster are compared.
#pragma once
#include "semdedup/common.hpp"

namespace semdedup {

enum class WhichToKeep { Hard, Easy, Random };

// For clusters given as order (step 3's ranking, n rows) and offsets (k + 1): keep_order[p] is the
// row at keep-order position p, keep_index[p] its place in the step-3 order of its cluster (the
// original's `indices` column). hard keeps the step-3 order, easy reverses it, random shuffles each
// cluster (Fisher-Yates driven by splitmix64 seeded with (seed << 32) ^ cluster, each draw
// (z >> 11) / 2^53 as a double), so a cluster's order does not depend on the others. Parallel over
// clusters; the bytes do not depend on the thread count.
void keep_order(const int64_t* order, const int64_t* offsets, int64_t k, WhichToKeep which, int64_t seed,
                int64_t* keep_order, int64_t* keep_index, int threads = 0);

}  // namespace semdedup
