// step 4 (docs/algorithm.md) on the GPU: per cluster, M[j] = max(0, max_{i<j} x_i . x_j) and the earliest row
// reaching it, for all clusters at once.
//
// Kernel: one block per work item = (cluster, column tile of 128 members, a range of earlier
// members). The block walks the row tiles of its range, computes each 128 x 128 tile of the
// cluster's Gram matrix with the fp32 tile engine (tile.cuh), masks it to row position < column
// position and folds it into per-column maxima held in registers; only tiles on or above the
// diagonal are ever computed, and the n x n matrix is never written. At the end each column's
// (max, earliest position) is merged into a 64-bit key per member with atomicMax (larger value
// first, then smaller position), so items of one column can run in any order, in any launch,
// and the result does not depend on the schedule. Items of all clusters form one work list,
// largest first, launched in a few big grids: many small clusters share one launch, and a large
// cluster's columns are split into bounded row ranges so that no block runs much longer than
// the others.
//
// Placement (documented in bench/GPU.md):
//   1. "resident": the whole matrix fits in the memory budget: it is copied once, contiguously
//      (sequential reads of the mapping, released behind), with its storage type (f16 stays
//      f16), and the kernel gathers the rows of each cluster through `order` on the device.
//   2. "batched": otherwise, the rows of consecutive clusters are gathered on the host (in keep
//      order) into pinned buffers and streamed into one of two device batch buffers while the
//      other is being computed. A cluster larger than a batch buffer is done in column chunks x
//      row chunks (each chunk pair uploaded and computed in turn), so memory stays bounded
//      whatever the cluster size.
// Exactness (docs/algorithm.md, "Exact M"): the fp32 tiles are only a filter. Besides the (max,
// earliest position) key, each column keeps the runner-up: every block's local second-largest
// value, and every key that atomicMax displaced or that lost to the current maximum, go into a
// second atomicMax array, whose final value is the largest score at another position. The host
// then computes M and the earliest member reaching it in float64 (exact_from_filter, maxsim.hpp,
// shared with the CPU backend): one fixed-order dot product when the runner-up is further than the
// filter's bound below the maximum, a float64 re-scan otherwise. The same bits as the CPU.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "cuda_util.cuh"
#include "semdedup/cuda.hpp"
#include "semdedup/gpu_plan.hpp"
#include "stream.cuh"
#include "tile.cuh"

namespace semdedup {
namespace cuda {
namespace {

using namespace detail;

struct MsItem {
  int64_t col_idx;   // index (into idx_cols) of the item's first column member
  int64_t row_idx;   // index (into idx_rows) of the item's first row member
  int64_t key_off;   // key of the first column member
  int32_t col_pos0;  // cluster position of the first column member
  int32_t ncols;     // columns in the item (<= 128)
  int32_t row_pos0;  // cluster position of the first row member
  int32_t nrows;     // rows in the item
};

template <class T>
__global__ void __launch_bounds__(kThreads, 2)
    maxsim_kernel(const T* __restrict__ rows_base, const int64_t* __restrict__ idx_rows,
                  const T* __restrict__ cols_base, const int64_t* __restrict__ idx_cols, int64_t dp,
                  const MsItem* __restrict__ items, unsigned long long* __restrict__ keys,
                  unsigned long long* __restrict__ seconds) {
  __shared__ TileSmem sm;
  const MsItem it = items[blockIdx.x];
  const int tid = threadIdx.x;
  const int lm = tid >> 1;
  const int tx = tid & 15, ty = tid >> 4;

  const T* b_row = lm < it.ncols ? cols_base + idx_cols[it.col_idx + lm] * dp : nullptr;
  // Running column maxima live in shared memory, one private slot per (ty, column): they are
  // touched once per tile, and keeping them out of registers leaves the FFMA loop spill-free.
  __shared__ float s_best[kTile / 8][kTile];
  __shared__ float s_second[kTile / 8][kTile];
  __shared__ int s_pos[kTile / 8][kTile];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    s_best[ty][tile_col(tx, j)] = -INFINITY;
    s_second[ty][tile_col(tx, j)] = -INFINITY;
    s_pos[ty][tile_col(tx, j)] = -1;
  }
  for (int r0 = 0; r0 < it.nrows; r0 += kTile) {
    const T* a_row = r0 + lm < it.nrows ? rows_base + idx_rows[it.row_idx + r0 + lm] * dp : nullptr;
    float acc[8][8];
    tile_product(sm, a_row, b_row, dp, acc);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int cpos = it.col_pos0 + tile_col(tx, j);
      float tb = -INFINITY, ts = -INFINITY;
      int tp = -1;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int rl = r0 + tile_row(ty, i);
        const int rpos = it.row_pos0 + rl;
        // rows in increasing position order: strict '>' keeps the earliest on ties
        if (rl < it.nrows && rpos < cpos) {
          if (acc[i][j] > tb) {
            ts = tb;
            tb = acc[i][j];
            tp = rpos;
          } else {
            ts = fmaxf(ts, acc[i][j]);
          }
        }
      }
      const int c = tile_col(tx, j);
      if (tp >= 0) {
        if (tb > s_best[ty][c]) {  // earlier tiles hold earlier rows
          s_second[ty][c] = fmaxf(s_best[ty][c], ts);
          s_best[ty][c] = tb;
          s_pos[ty][c] = tp;
        } else {
          s_second[ty][c] = fmaxf(s_second[ty][c], tb);
        }
      }
    }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int c = tile_col(tx, j);
    const int pos = s_pos[ty][c];
    if (c < it.ncols && pos >= 0) {
      // The runner-up: this slot's second value, and whichever of (its key, the current maximum)
      // loses: over all slots of all items the largest loser is the largest value at a position
      // other than the final maximum's (every other key loses once: on arrival, or when replaced).
      const unsigned long long k = pack_key(s_best[ty][c], uint32_t(pos));
      const unsigned long long old = atomicMax(keys + it.key_off + c, k);
      const unsigned long long lost = old < k ? old : k;
      if (lost) atomicMax(seconds + it.key_off + c, lost);
      if (s_second[ty][c] > -INFINITY) atomicMax(seconds + it.key_off + c, pack_key(s_second[ty][c], 0u));
    }
  }
}

// Splits the columns [col_pos_start, +ncols) of one cluster against its rows
// [row_pos_start, +nrows) into items (only rows before a column's position matter).
struct ItemList {
  int64_t split_rows = 1 << 30;
  std::vector<MsItem> items;
  double tiles = 0;  // 128 x 128 tile products

  void add(int64_t col_idx0, int64_t row_idx0, int64_t key_off0, int64_t col_pos_start, int64_t ncols,
           int64_t row_pos_start, int64_t nrows) {
    for (int64_t t = 0; t < ncols; t += kTile) {
      const int64_t cpos0 = col_pos_start + t;
      const int64_t nc = std::min<int64_t>(kTile, ncols - t);
      const int64_t r_end = std::min(row_pos_start + nrows, cpos0 + nc - 1);  // last column's earlier rows
      for (int64_t r = row_pos_start; r < r_end; r += split_rows) {
        const int64_t nr = std::min(split_rows, r_end - r);
        items.push_back({col_idx0 + t, row_idx0 + (r - row_pos_start), key_off0 + t, int32_t(cpos0), int32_t(nc),
                         int32_t(r), int32_t(nr)});
        tiles += double((nr + kTile - 1) / kTile);
      }
    }
  }
  void sort_largest_first() {
    std::stable_sort(items.begin(), items.end(), [](const MsItem& a, const MsItem& b) { return a.nrows > b.nrows; });
  }
};

// Launches item lists in grids of about `tiles_per_launch` tile products, keeping at most two
// grids in flight (across calls too), so that cancellation and progress follow the work while
// the host prepares the next batch.
class Launcher {
 public:
  Launcher(cudaStream_t s, double tiles_per_launch, std::function<void(double)> on_tiles, CancelFlag cancel)
      : s_(s), tiles_per_launch_(tiles_per_launch), on_tiles_(std::move(on_tiles)), cancel_(cancel) {}

  template <class T>
  void run(const ItemList& list, const T* rows_base, const int64_t* idx_rows, const T* cols_base,
           const int64_t* idx_cols, int64_t dp, unsigned long long* keys, unsigned long long* seconds) {
    const auto& it = list.items;
    if (it.empty()) return;
    const int slot_items = int(runs_ & 1);
    ++runs_;
    // Items go through pinned memory: the copy is truly asynchronous, and a buffer is refilled
    // only after the grids reading its previous contents are done.
    if (items_used_[slot_items]) items_done_[slot_items].sync();
    hitems_[slot_items].resize(it.size());
    std::copy(it.begin(), it.end(), hitems_[slot_items].get());
    if (ditems_[slot_items].size() < it.size()) ditems_[slot_items].resize(it.size());
    SD_CUDA(cudaMemcpyAsync(ditems_[slot_items].get(), hitems_[slot_items].get(), it.size() * sizeof(MsItem),
                            cudaMemcpyHostToDevice, s_));
    size_t begin = 0;
    while (begin < it.size()) {
      size_t end = begin;
      double tiles = 0;
      while (end < it.size() && (tiles < tiles_per_launch_ || end == begin)) {
        tiles += double((it[end].nrows + kTile - 1) / kTile);
        ++end;
      }
      const int slot = int(n_ & 1);
      if (n_ >= 2) retire(slot);
      maxsim_kernel<T><<<unsigned(end - begin), kThreads, 0, s_>>>(rows_base, idx_rows, cols_base, idx_cols, dp,
                                                                    ditems_[slot_items].get() + begin, keys, seconds);
      SD_CUDA_LAUNCH("maxsim_kernel");
      done_[slot].record(s_);
      pending_[slot] = tiles;
      ++n_;
      begin = end;
    }
    items_done_[slot_items].record(s_);
    items_used_[slot_items] = true;
  }

  // Waits for every grid launched so far.
  void drain() {
    for (int64_t m = std::max<int64_t>(0, n_ - 2); m < n_; ++m) retire(int(m & 1));
  }

 private:
  void retire(int slot) {
    if (pending_[slot] < 0) return;
    done_[slot].sync();
    if (on_tiles_) on_tiles_(pending_[slot]);
    pending_[slot] = -1;
    check_cancel(cancel_);
  }

  cudaStream_t s_;
  double tiles_per_launch_;
  std::function<void(double)> on_tiles_;
  CancelFlag cancel_;
  PinnedBuffer<MsItem> hitems_[2];
  DeviceBuffer<MsItem> ditems_[2];
  Event items_done_[2];
  bool items_used_[2] = {false, false};
  Event done_[2];
  double pending_[2] = {-1, -1};
  int64_t n_ = 0, runs_ = 0;
};


// The float32 filter's result of one position: the maximum, its earliest cluster position (-1:
// none) and the runner-up (-inf: none), as exact_from_filter (maxsim.hpp) takes them.
struct FilterOut {
  std::vector<float> best, second;
  std::vector<int64_t> pos;
  explicit FilterOut(int64_t n) : best(size_t(n)), second(size_t(n)), pos(size_t(n)) {}
};

// Decodes the keys (and runner-up keys) of positions [p_begin, p_end) (keys[0] is position
// p_begin) into f at index p - f_base.
void decode(const unsigned long long* keys, const unsigned long long* seconds, int64_t p_begin, int64_t p_end,
            int64_t f_base, FilterOut& f) {
  for (int64_t p = p_begin; p < p_end; ++p) {
    const unsigned long long k = keys[p - p_begin], s2 = seconds[p - p_begin];
    const size_t q = size_t(p - f_base);
    f.best[q] = k ? key_value(k) : -INFINITY;
    f.pos[q] = k ? int64_t(key_index(k)) : -1;
    f.second[q] = s2 ? key_value(s2) : -INFINITY;
  }
}

template <class T>
void run_maxsim(const EmbeddingView& x, const int64_t* order, const int64_t* offsets, int64_t nclusters, double* M,
                int64_t* arg, const MaxSimOptions& opt, const ProgressFn& progress, CancelFlag cancel,
                MaxSimStats& st, int sm_count) {
  const int64_t d = x.d;
  const int64_t dp = round_up(d, kDimAlign);
  const size_t es = sizeof(T);
  const int64_t p0 = offsets[0], p1 = offsets[nclusters];
  const int64_t P = p1 - p0;
  const int host_threads = resolve_threads(opt.threads);
  const int64_t budget = memory_budget(opt.gpu);
  FilterOut filt(P);

  // Row ranges of one item: enough items to fill the GPU a few times over, but not so short
  // that the per-item merge dominates.
  double total_tiles = 0;
  for (int64_t c = 0; c < nclusters; ++c) {
    const double t = double((offsets[c + 1] - offsets[c] + kTile - 1) / kTile);
    total_tiles += t * (t + 1) / 2;
  }
  const double slots = double(sm_count) * 2;
  const int64_t split_tiles = std::max<int64_t>(8, int64_t(std::ceil(total_tiles / (slots * 16))));
  const double tiles_per_launch = std::max(8192.0, slots * double(split_tiles) * 4);

  std::atomic<int64_t> done_tiles{0};
  double computed_tiles = 0;
  auto on_tiles = [&](double t) {
    const int64_t now = done_tiles.fetch_add(int64_t(t)) + int64_t(t);
    if (progress) progress(std::min<int64_t>(now, int64_t(total_tiles)), int64_t(total_tiles));
  };

  Stream compute;
  RowUploader up(x, dp, host_threads, opt.gpu);
  Launcher launcher(compute.get(), tiles_per_launch, on_tiles, cancel);

  const double max_items = total_tiles / double(split_tiles) + double(P) / kTile + double(nclusters);
  const plan::MaxSimPlan mp = plan::plan_maxsim(budget, x.n, d, int64_t(es), P, int64_t(max_items * 2 * sizeof(MsItem)),
                                                opt.gpu.maxsim_placement);
  const bool resident = mp.placement == plan::MaxSimPlan::Placement::Resident;

  if (resident) {
    DeviceBuffer<T> mat(static_cast<size_t>(x.n * dp));
    DeviceBuffer<int64_t> dorder(static_cast<size_t>(P));
    DeviceBuffer<unsigned long long> keys(static_cast<size_t>(P)), seconds(static_cast<size_t>(P));
    SD_CUDA(cudaMemsetAsync(mat.get(), 0, mat.size() * es, compute.get()));
    SD_CUDA(cudaMemsetAsync(keys.get(), 0, keys.size() * 8, compute.get()));
    SD_CUDA(cudaMemsetAsync(seconds.get(), 0, seconds.size() * 8, compute.get()));
    SD_CUDA(cudaMemcpyAsync(dorder.get(), order + p0, size_t(P) * 8, cudaMemcpyHostToDevice, compute.get()));
    Event zeroed;
    zeroed.record(compute.get());
    up.upload(nullptr, 0, x.n, mat.get(), zeroed.get(), compute.get(), cancel);
    ItemList list;
    list.split_rows = split_tiles * kTile;
    for (int64_t c = 0; c < nclusters; ++c) {
      const int64_t base = offsets[c] - p0, n = offsets[c + 1] - offsets[c];
      list.add(base, base, base, 0, n, 0, n);
    }
    list.sort_largest_first();
    computed_tiles += list.tiles;
    launcher.run<T>(list, mat.get(), dorder.get(), mat.get(), dorder.get(), dp, keys.get(), seconds.get());
    launcher.drain();
    std::vector<unsigned long long> hkeys(static_cast<size_t>(P)), hsec(static_cast<size_t>(P));
    SD_CUDA(cudaMemcpyAsync(hkeys.data(), keys.get(), size_t(P) * 8, cudaMemcpyDeviceToHost, compute.get()));
    SD_CUDA(cudaMemcpyAsync(hsec.data(), seconds.get(), size_t(P) * 8, cudaMemcpyDeviceToHost, compute.get()));
    compute.sync();
    decode(hkeys.data(), hsec.data(), p0, p1, p0, filt);
  } else {
    // Batch rows G: two batch buffers (rows + keys) and the identity index, within the budget.
    const int64_t G = mp.batch_rows;
    DeviceBuffer<T> buf[2];
    buf[0].resize(size_t(G * dp));
    buf[1].resize(size_t(G * dp));
    DeviceBuffer<unsigned long long> keys[2], seconds[2];
    for (int i = 0; i < 2; ++i) {
      keys[i].resize(size_t(G));
      seconds[i].resize(size_t(G));
    }
    DeviceBuffer<int64_t> iota(static_cast<size_t>(G));
    {
      std::vector<int64_t> h(static_cast<size_t>(G));
      for (int64_t i = 0; i < G; ++i) h[size_t(i)] = i;
      SD_CUDA(cudaMemcpy(iota.get(), h.data(), size_t(G) * 8, cudaMemcpyHostToDevice));
    }
    SD_CUDA(cudaMemsetAsync(buf[0].get(), 0, buf[0].size() * es, compute.get()));
    SD_CUDA(cudaMemsetAsync(buf[1].get(), 0, buf[1].size() * es, compute.get()));
    Event used[2];  // after the last kernel reading buf[i]
    used[0].record(compute.get());
    used[1].record(compute.get());
    Event keys_ready[2];
    PinnedBuffer<unsigned long long> hkeys[2], hsec[2];
    for (int i = 0; i < 2; ++i) {
      hkeys[i].resize(size_t(G));
      hsec[i].resize(size_t(G));
    }

    struct Pending {
      bool active = false;
      int64_t c_begin = 0, c_end = 0;  // clusters
    } pending[2];
    auto finish = [&](int slot) {
      Pending& pd = pending[slot];
      if (!pd.active) return;
      keys_ready[slot].sync();
      decode(hkeys[slot].get(), hsec[slot].get(), offsets[pd.c_begin], offsets[pd.c_end], p0, filt);
      pd.active = false;
    };

    int slot = 0;
    int64_t c = 0;
    while (c < nclusters) {
      check_cancel(cancel);
      const int64_t n0 = offsets[c + 1] - offsets[c];
      if (n0 > G) {
        // A cluster larger than a batch: column chunks x row chunks through buf[0] (columns)
        // and buf[1] (earlier rows), keys of the whole cluster in a buffer of its own.
        finish(0);
        finish(1);
        const int64_t base = offsets[c];
        DeviceBuffer<unsigned long long> gkeys(static_cast<size_t>(n0)), gsec(static_cast<size_t>(n0));
        SD_CUDA(cudaMemsetAsync(gkeys.get(), 0, size_t(n0) * 8, compute.get()));
        SD_CUDA(cudaMemsetAsync(gsec.get(), 0, size_t(n0) * 8, compute.get()));
        for (int64_t c0 = 0; c0 < n0; c0 += G) {
          const int64_t nc = std::min(G, n0 - c0);
          up.upload(order + base + c0, 0, nc, buf[0].get(), used[0].get(), compute.get(), cancel);
          for (int64_t r0 = 0; r0 <= c0; r0 += G) {
            const bool same = r0 == c0;
            const int64_t nr = same ? nc : G;
            if (!same) up.upload(order + base + r0, 0, nr, buf[1].get(), used[1].get(), compute.get(), cancel);
            ItemList list;
            list.split_rows = split_tiles * kTile;
            list.add(0, 0, c0, c0, nc, r0, nr);
            list.sort_largest_first();
            computed_tiles += list.tiles;
            const T* rows_base = same ? buf[0].get() : buf[1].get();
            launcher.run<T>(list, rows_base, iota.get(), buf[0].get(), iota.get(), dp, gkeys.get(), gsec.get());
            if (!same) used[1].record(compute.get());
          }
          used[0].record(compute.get());
        }
        std::vector<unsigned long long> h(static_cast<size_t>(n0)), h2(static_cast<size_t>(n0));
        SD_CUDA(cudaMemcpyAsync(h.data(), gkeys.get(), size_t(n0) * 8, cudaMemcpyDeviceToHost, compute.get()));
        SD_CUDA(cudaMemcpyAsync(h2.data(), gsec.get(), size_t(n0) * 8, cudaMemcpyDeviceToHost, compute.get()));
        compute.sync();
        decode(h.data(), h2.data(), base, base + n0, p0, filt);
        ++c;
        continue;
      }
      // A batch of whole clusters [c, ce) with at most G rows.
      int64_t ce = c;
      while (ce < nclusters && offsets[ce + 1] - offsets[c] <= G) ++ce;
      finish(slot);  // its pinned keys are about to be reused
      const int64_t b0 = offsets[c], nb = offsets[ce] - b0;
      up.upload(order + b0, 0, nb, buf[slot].get(), used[slot].get(), compute.get(), cancel);
      SD_CUDA(cudaMemsetAsync(keys[slot].get(), 0, size_t(nb) * 8, compute.get()));
      SD_CUDA(cudaMemsetAsync(seconds[slot].get(), 0, size_t(nb) * 8, compute.get()));
      ItemList list;
      list.split_rows = split_tiles * kTile;
      for (int64_t q = c; q < ce; ++q) {
        const int64_t base = offsets[q] - b0, n = offsets[q + 1] - offsets[q];
        list.add(base, base, base, 0, n, 0, n);
      }
      list.sort_largest_first();
      computed_tiles += list.tiles;
      launcher.run<T>(list, buf[slot].get(), iota.get(), buf[slot].get(), iota.get(), dp, keys[slot].get(),
                      seconds[slot].get());
      used[slot].record(compute.get());
      SD_CUDA(cudaMemcpyAsync(hkeys[slot].get(), keys[slot].get(), size_t(nb) * 8, cudaMemcpyDeviceToHost,
                              compute.get()));
      SD_CUDA(cudaMemcpyAsync(hsec[slot].get(), seconds[slot].get(), size_t(nb) * 8, cudaMemcpyDeviceToHost,
                              compute.get()));
      keys_ready[slot].record(compute.get());
      pending[slot] = {true, c, ce};
      slot ^= 1;
      c = ce;
    }
    finish(0);
    finish(1);
    launcher.drain();
  }
  st.computed_flops = computed_tiles * 2.0 * kTile * kTile * double(dp);

  // The exact values on the host, shared with the CPU backend. The filter's bound: the tiles sum
  // dp terms (zero padding included), rows of norm at most the members' largest.
  const double eps = filter_bound(dp, max_norm_of_rows(x, order + p0, P, host_threads, cancel));
  struct Part {
    int64_t cluster, q0, q1;  // positions [q0, q1) within the cluster
  };
  std::vector<Part> parts;
  constexpr int64_t kPart = 4096;
  for (int64_t c = 0; c < nclusters; ++c)
    for (int64_t q = 0; q < offsets[c + 1] - offsets[c]; q += kPart)
      parts.push_back({c, q, std::min(offsets[c + 1] - offsets[c], q + kPart)});
  std::atomic<int64_t> rechecked{0}, rescanned{0};
  parallel_for(host_threads, int64_t(parts.size()), [&](int64_t i, int) {
    const Part& pt = parts[size_t(i)];
    const int64_t base = offsets[pt.cluster];
    const size_t f = size_t(base + pt.q0 - p0);
    const FilterCounts fc = exact_from_filter(x, order + base, pt.q0, pt.q1, filt.best.data() + f, filt.second.data() + f,
                                              filt.pos.data() + f, eps, M + base + pt.q0, arg + base + pt.q0, 1, cancel);
    rechecked += fc.rechecked;
    rescanned += fc.rescanned;
  }, cancel);
  st.rechecked = rechecked.load();
  st.rescanned = rescanned.load();
}



}  // namespace

MaxSimStats max_similarity(const EmbeddingView& x, const int64_t* order, const int64_t* offsets, int64_t nclusters,
                           double* M, int64_t* arg, const MaxSimOptions& opt, const ProgressFn& progress,
                           CancelFlag cancel) {
  MaxSimStats st;
  st.clusters = nclusters;
  if (nclusters <= 0) return st;
  st.members = offsets[nclusters] - offsets[0];
  if (offsets[0] < 0) throw Error(ErrorCode::InvalidArgument, "offsets must be non-negative");
  for (int64_t c = 0; c < nclusters; ++c) {
    const int64_t n = offsets[c + 1] - offsets[c];
    if (n < 0) throw Error(ErrorCode::InvalidArgument, "offsets must be non-decreasing");
    if (n >= int64_t(INT32_MAX) / 2) throw Error(ErrorCode::InvalidArgument, "cluster too large for the CUDA backend");
    st.useful_flops += double(n) * double(n - 1) * double(x.d);
  }
  for (int64_t p = offsets[0]; p < offsets[nclusters]; ++p)
    if (order[p] < 0 || order[p] >= x.n)
      throw Error(ErrorCode::InvalidArgument, "order[" + std::to_string(p) + "] is not a row index");
  if (st.members == 0) return st;
  if (x.d <= 0) throw Error(ErrorCode::InvalidArgument, "embeddings have no columns");
  const int sm_count = prepare_device();
  if (x.is_f32())
    run_maxsim<float>(x, order, offsets, nclusters, M, arg, opt, progress, cancel, st, sm_count);
  else
    run_maxsim<__half>(x, order, offsets, nclusters, M, arg, opt, progress, cancel, st, sm_count);
  return st;
}

}  // namespace cuda
}  // namespace semdedup
