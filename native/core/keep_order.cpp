#include "semdedup/keep_order.hpp"

#include <cmath>
#include <vector>

namespace semdedup {

void keep_order(const int64_t* order, const int64_t* offsets, int64_t k, WhichToKeep which, int64_t seed,
                int64_t* keep_order, int64_t* keep_index, int threads) {
  parallel_for(resolve_threads(threads), k, [&](int64_t c, int) {
    const int64_t b = offsets[c], m = offsets[c + 1] - b;
    int64_t* idx = keep_index + b;
    for (int64_t i = 0; i < m; ++i) idx[i] = which == WhichToKeep::Easy ? m - 1 - i : i;
    if (which == WhichToKeep::Random && m > 1) {
      uint64_t s = (uint64_t(seed) << 32) ^ uint64_t(c);
      auto next = [&s]() {
        s += 0x9e3779b97f4a7c15ull;
        uint64_t z = s;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        return double(z >> 11) / 9007199254740992.0;  // 2^53
      };
      for (int64_t i = m - 1; i > 0; --i) {
        const int64_t j = int64_t(std::floor(next() * double(i + 1)));
        std::swap(idx[i], idx[j]);
      }
    }
    for (int64_t i = 0; i < m; ++i) keep_order[b + i] = order[b + idx[i]];
  });
}

}  // namespace semdedup
