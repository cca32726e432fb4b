#include "semdedup/rank.hpp"

#include <algorithm>
#include <vector>

namespace semdedup {

void rank_clusters(const int64_t* nearest, const float* key, int64_t n, int64_t k, bool keep_hard,
                   int64_t* order, int64_t* offsets) {
  // Counting sort by cluster keeps ascending row order inside each cluster...
  std::vector<int64_t> count(static_cast<size_t>(k) + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = nearest[i];
    if (c < 0 || c >= k)
      throw Error(ErrorCode::InvalidArgument, "row " + std::to_string(i) + " is assigned to cluster " +
                                                  std::to_string(c) + ", outside [0, " + std::to_string(k) + ")");
    ++count[size_t(c) + 1];
  }
  for (int64_t c = 0; c < k; ++c) count[size_t(c) + 1] += count[size_t(c)];
  std::copy(count.begin(), count.end(), offsets);
  std::vector<int64_t> pos(count.begin(), count.end() - 1);
  for (int64_t i = 0; i < n; ++i) order[pos[size_t(nearest[i])]++] = i;
  // ...so a stable sort by key gives ties in ascending row order, as SPEC asks.
  for (int64_t c = 0; c < k; ++c) {
    int64_t* b = order + offsets[c];
    int64_t* e = order + offsets[c + 1];
    if (keep_hard)
      std::stable_sort(b, e, [key](int64_t a, int64_t b2) { return key[a] > key[b2]; });
    else
      std::stable_sort(b, e, [key](int64_t a, int64_t b2) { return key[a] < key[b2]; });
  }
}

}  // namespace semdedup
