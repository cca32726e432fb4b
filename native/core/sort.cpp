// step 3 (docs/algorithm.md): the distance that ranks each row, and the ranking itself.
#include "semdedup/sort.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "semdedup/extract.hpp"
#include "semdedup/mapping.hpp"
#include "semdedup/nearest.hpp"

namespace semdedup {

namespace {

// Bits of a float that order as the float does (ascending), with -0 and +0 equal. NaN has no
// place in this order: a cluster holding one is ranked by the comparison sort instead.
inline uint32_t ordered_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (u == 0x80000000u) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Ranks one cluster in place: positions [0, m) of `rows` hold its rows in ascending row order.
void rank_one(int64_t* rows, int64_t m, const float* key, bool keep_hard, std::vector<uint64_t>& comp,
              std::vector<int64_t>& copy) {
  if (m < 2) return;
  bool nan = false;
  for (int64_t i = 0; i < m && !nan; ++i) nan = std::isnan(key[rows[i]]);
  if (nan || m > int64_t(UINT32_MAX)) {
    if (keep_hard)
      std::stable_sort(rows, rows + m, [key](int64_t a, int64_t b) { return key[a] > key[b]; });
    else
      std::stable_sort(rows, rows + m, [key](int64_t a, int64_t b) { return key[a] < key[b]; });
    return;
  }
  // (key order, position) is unique and ascending position breaks ties, so an unstable sort of
  // these 64-bit words is the stable sort by key.
  comp.resize(size_t(m));
  copy.assign(rows, rows + m);
  const uint32_t flip = keep_hard ? 0xFFFFFFFFu : 0u;
  for (int64_t i = 0; i < m; ++i) comp[size_t(i)] = (uint64_t(ordered_bits(key[rows[i]]) ^ flip) << 32) | uint64_t(i);
  std::sort(comp.begin(), comp.end());
  for (int64_t i = 0; i < m; ++i) rows[i] = copy[size_t(comp[size_t(i)] & 0xFFFFFFFFu)];
}

}  // namespace

void rank_clusters(const int64_t* nearest, const float* key, int64_t n, int64_t k, bool keep_hard,
                   int64_t* order, int64_t* offsets, int threads, float* sorted_key, CancelFlag cancel) {
  if (k < 0) throw Error(ErrorCode::InvalidArgument, "k must be >= 0");
  threads = resolve_threads(threads);
  // Counting sort by cluster over row ranges ("parts"): each part counts its rows per cluster,
  // then writes them from its own start in every cluster. Parts in row order give ascending row
  // order inside each cluster, whatever their number.
  const int64_t kk = k + 1;
  int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads, n / 65536));
  parts = std::max<int64_t>(1, std::min<int64_t>(parts, (int64_t(1) << 24) / kk));
  const int64_t per = parts > 0 ? (n + parts - 1) / std::max<int64_t>(parts, 1) : 0;
  std::vector<int64_t> count(size_t(parts * kk), 0);
  std::vector<int64_t> bad(size_t(parts), -1);
  parallel_for(threads, parts, [&](int64_t q, int) {
    int64_t* cnt = count.data() + q * kk;
    const int64_t b = q * per, e = std::min(n, b + per);
    for (int64_t i = b; i < e; ++i) {
      const int64_t c = nearest[i];
      if (c < 0 || c >= k) {
        bad[size_t(q)] = i;
        return;
      }
      ++cnt[c];
    }
  }, cancel);
  for (int64_t q = 0; q < parts; ++q)
    if (bad[size_t(q)] >= 0) {
      const int64_t i = bad[size_t(q)];
      throw Error(ErrorCode::InvalidArgument, "row " + std::to_string(i) + " is assigned to cluster " +
                                                  std::to_string(nearest[i]) + ", outside [0, " + std::to_string(k) + ")");
    }
  offsets[0] = 0;
  for (int64_t c = 0; c < k; ++c) {
    int64_t at = offsets[c];
    for (int64_t q = 0; q < parts; ++q) {
      const int64_t m = count[size_t(q * kk + c)];
      count[size_t(q * kk + c)] = at;
      at += m;
    }
    offsets[c + 1] = at;
  }
  parallel_for(threads, parts, [&](int64_t q, int) {
    int64_t* pos = count.data() + q * kk;
    const int64_t b = q * per, e = std::min(n, b + per);
    for (int64_t i = b; i < e; ++i) order[pos[nearest[i]]++] = i;
  }, cancel);
  // Rank every cluster, the largest first (dynamic schedule).
  std::vector<int64_t> by_size(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) by_size[size_t(c)] = c;
  std::stable_sort(by_size.begin(), by_size.end(), [offsets](int64_t a, int64_t b) {
    return offsets[a + 1] - offsets[a] > offsets[b + 1] - offsets[b];
  });
  // The keys are read in cluster order, scattered over the rows: a copy in huge pages keeps
  // them within the TLB's reach (see write_ids_text).
  BigBuffer key_copy;
  if (n >= (int64_t(1) << 22)) {
    key_copy.resize(size_t(n) * 4);
    const int64_t chunk = int64_t(1) << 22;
    parallel_for(threads, (n + chunk - 1) / chunk, [&](int64_t q, int) {
      const int64_t b = q * chunk, e = std::min(n, b + chunk);
      std::memcpy(key_copy.data() + b * 4, key + b, size_t(e - b) * 4);
    }, cancel);
    key = reinterpret_cast<const float*>(key_copy.data());
  }
  std::vector<std::vector<uint64_t>> comp(static_cast<size_t>(threads));
  std::vector<std::vector<int64_t>> copy(static_cast<size_t>(threads));
  parallel_for(threads, k, [&](int64_t i, int w) {
    const int64_t c = by_size[size_t(i)];
    const int64_t b = offsets[c], m = offsets[c + 1] - b;
    rank_one(order + b, m, key, keep_hard, comp[size_t(w)], copy[size_t(w)]);
    if (sorted_key)
      for (int64_t p = b; p < b + m; ++p) sorted_key[p] = key[order[p]];
  }, cancel);
}

void cosine_to_centroid(const EmbeddingView& x, const float* centroids, int k, const int64_t* nearest, float* out,
                        int threads, CancelFlag cancel) {
  // Every inner product is nearest.hpp's float64 one (exact products in a fixed order): the same
  // bits on every machine.
  std::vector<double> cnorm(static_cast<size_t>(k));
  for (int c = 0; c < k; ++c) cnorm[size_t(c)] = std::sqrt(nearest::dot64_cpu(centroids + c * x.d, centroids + c * x.d, x.d));
  const int64_t block = 16384;
  const int64_t nblocks = (x.n + block - 1) / block;
  threads = resolve_threads(threads);
  std::vector<std::vector<float>> scratch(static_cast<size_t>(threads), std::vector<float>(size_t(x.d)));
  parallel_for(threads, nblocks, [&](int64_t b, int w) {
    const int64_t begin = b * block, end = std::min(x.n, begin + block);
    float* tmp = scratch[size_t(w)].data();
    for (int64_t i = begin; i < end; ++i) {
      const float* row = x.is_f32() ? x.f32_row(i) : (x.row(i, tmp), tmp);
      const int64_t c = nearest[i];
      if (c < 0 || c >= k) throw Error(ErrorCode::InvalidArgument, "row " + std::to_string(i) + ": bad cluster");
      const float* cen = centroids + c * x.d;
      const double dot = nearest::dot64_cpu(row, cen, x.d), nx = nearest::dot64_cpu(row, row, x.d);
      // torch.nn.CosineSimilarity clamps each norm at eps = 1e-8
      const double den = std::max(std::sqrt(nx), 1e-8) * std::max(cnorm[size_t(c)], 1e-8);
      out[i] = float(dot / den);
    }
    x.release(begin, end);
  }, cancel);
}

}  // namespace semdedup
