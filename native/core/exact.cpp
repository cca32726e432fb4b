// Exact duplicates: rows whose stored bytes are identical. One streaming pass hashes every row
// (64 bits, over its bytes); rows are then sorted by (hash, position in the given order) and
// compared byte for byte inside each run of equal hashes, so a hash collision never merges two
// different rows.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <numeric>

#include "semdedup/decontaminate.hpp"
#include "semdedup/mapping.hpp"

namespace semdedup {
namespace {

inline uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t hash_bytes(const unsigned char* p, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ mix(w + i)) * 0x100000001b3ull;
    h = (h << 29) | (h >> 35);
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p + i, n - i);
  return mix(h ^ mix(tail + n));
}

}  // namespace

ExactDuplicateStats exact_duplicates(const EmbeddingView& x, const int64_t* order, int64_t* first_of, int threads,
                                     const ProgressFn& progress, CancelFlag cancel) {
  const int64_t n = x.n;
  const size_t rb = x.row_bytes();
  ExactDuplicateStats st;
  st.rows = n;
  std::vector<int64_t> pos(static_cast<size_t>(n), -1);
  for (int64_t p = 0; p < n; ++p) {
    const int64_t row = order[p];
    if (row < 0 || row >= n || pos[size_t(row)] >= 0)
      throw Error(ErrorCode::InvalidArgument, "exact_duplicates: the order must list every row exactly once");
    pos[size_t(row)] = p;
  }
  std::vector<uint64_t> h(static_cast<size_t>(n));
  constexpr int64_t kBlock = 16384;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::atomic<int64_t> done{0};
  parallel_for(resolve_threads(threads), blocks, [&](int64_t b, int) {
    const int64_t begin = b * kBlock, end = std::min(n, begin + kBlock);
    for (int64_t i = begin; i < end; ++i) h[size_t(i)] = hash_bytes(reinterpret_cast<const unsigned char*>(x.row_ptr(i)), rb);
    x.release(begin, end);
    const int64_t now = done.fetch_add(end - begin) + (end - begin);
    if (progress) progress(now, n);
  }, cancel);
  // Rows by (hash, position): inside a run of equal hashes the first in the order comes first.
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), int64_t(0));
  std::sort(rows.begin(), rows.end(), [&](int64_t a, int64_t b) {
    return h[size_t(a)] != h[size_t(b)] ? h[size_t(a)] < h[size_t(b)] : pos[size_t(a)] < pos[size_t(b)];
  });
  for (int64_t i = 0; i < n; ++i) first_of[i] = -1;
  std::vector<int64_t> reps;  // first rows of the distinct contents met in this run
  for (int64_t s = 0; s < n;) {
    int64_t e = s + 1;
    while (e < n && h[size_t(rows[size_t(e)])] == h[size_t(rows[size_t(s)])]) ++e;
    if (e - s > 1) {
      check_cancel(cancel);
      reps.clear();
      std::vector<int64_t> counts;
      for (int64_t q = s; q < e; ++q) {
        const int64_t row = rows[size_t(q)];
        bool found = false;
        for (size_t k = 0; k < reps.size(); ++k) {
          if (std::memcmp(x.row_ptr(row), x.row_ptr(reps[k]), rb) == 0) {
            first_of[row] = reps[k];
            ++counts[k];
            found = true;
            break;
          }
        }
        if (!found) {
          reps.push_back(row);
          counts.push_back(0);
        }
      }
      for (int64_t k : counts)
        if (k > 0) {
          ++st.groups;
          st.copies += k;
        }
    }
    s = e;
  }
  return st;
}

}  // namespace semdedup
