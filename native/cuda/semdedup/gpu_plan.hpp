// Device and host memory plans of the CUDA backend's streamed passes, in plain C++ (no CUDA
// types), so that the CPU tests check them: what fits on the card, how many rows a batch holds,
// how large the pinned staging buffers are. Every plan stays within the budget it is given,
// whatever N is; host memory is bounded by the staging buffers, never by the dataset.
#pragma once
#include <algorithm>
#include <cstdint>

namespace semdedup {
namespace cuda {
namespace plan {

constexpr int64_t kTileRows = 128;  // rows per tile of the kernels (tile.cuh kTile)
constexpr int64_t kDimAlign = 8;    // device rows are padded to a multiple of this (tile.cuh)
constexpr int64_t kStagingBytes = int64_t(64) << 20;  // per pinned staging buffer (two of them)

inline int64_t padded_dim(int64_t d) { return (d + kDimAlign - 1) / kDimAlign * kDimAlign; }

// Device bytes a pass may use: 85% of the free memory (the rest for the runtime, the kernels'
// launches and other processes), or the given limit when it is smaller.
inline int64_t device_budget(int64_t free_bytes, int64_t limit) {
  const int64_t avail = std::max<int64_t>(0, int64_t(double(free_bytes) * 0.85));
  return limit > 0 ? std::min(limit, avail) : avail;
}

// Rows per pinned staging buffer: about kStagingBytes (at least 1024 rows), or `tuned` rows.
// Two such buffers are the host memory of a streamed pass.
inline int64_t staging_rows(int64_t row_bytes, int64_t tuned = 0) {
  if (tuned > 0) return tuned;
  return std::max<int64_t>(1024, kStagingBytes / std::max<int64_t>(row_bytes, 1));
}

struct MaxSimPlan {
  enum class Placement { Resident, Batched };
  Placement placement = Placement::Batched;
  // Batched: rows per device batch buffer (two of them, each with its keys). A cluster larger
  // than a batch is done in column chunks x row chunks of this many rows.
  int64_t batch_rows = 0;
  int64_t device_bytes = 0;  // what the plan allocates on the device (bounded by the budget)
};

// Max similarity: "resident" when the whole matrix (n rows of dp elements of elem_bytes), the
// order (members int64), the keys (members uint64) and the work list (work_bytes) fit the
// budget; else "batched": two batch buffers of G rows with their keys plus an index of G rows,
// G as large as 90% of the budget allows, at least one tile, at most the members (mode: 0 auto,
// 1 resident, 2 batched, as GpuLimits::maxsim_placement).
inline MaxSimPlan plan_maxsim(int64_t budget, int64_t n, int64_t d, int64_t elem_bytes, int64_t members,
                              int64_t work_bytes, int mode = 0) {
  MaxSimPlan p;
  const int64_t dp = padded_dim(d);
  const int64_t resident = n * dp * elem_bytes + members * 16 + work_bytes;
  if (mode == 1 || (mode == 0 && resident <= budget)) {
    p.placement = MaxSimPlan::Placement::Resident;
    p.device_bytes = resident;
    return p;
  }
  const int64_t per_row = 2 * (dp * elem_bytes + 8) + 8;
  int64_t g = std::max<int64_t>(kTileRows, budget / std::max<int64_t>(per_row, 1) * 9 / 10);
  g = std::min<int64_t>(g, std::max<int64_t>(members, kTileRows));
  g = std::min<int64_t>(g, int64_t(INT32_MAX) / 2);
  p.batch_rows = g;
  p.device_bytes = g * per_row;
  return p;
}

struct AssignPlan {
  int64_t rows_per_pass = 0;  // rows per device pass
  int64_t device_bytes = 0;
};

// The exact nearest-centroid pass streamed over N rows: one device buffer of R rows (rows of dp
// elements of elem_bytes, and per row the fast top two and their index, |x|^2 and the value in
// float64, the result and a re-score slot: 36 bytes) after the centroids (k x dp floats, |c|^2 in
// float64 and float32); R is the staging size, cut to what the budget leaves.
inline AssignPlan plan_assign(int64_t budget, int64_t n, int64_t d, int64_t elem_bytes, int64_t k,
                              int64_t staging) {
  AssignPlan p;
  const int64_t dp = padded_dim(d);
  const int64_t fixed = k * dp * 4 + k * 12;
  const int64_t per_row = dp * elem_bytes + 36;
  const int64_t fit = std::max<int64_t>(1, (budget - fixed) / std::max<int64_t>(per_row, 1));
  p.rows_per_pass = std::max<int64_t>(1, std::min({staging, n, fit}));
  p.device_bytes = fixed + p.rows_per_pass * per_row;
  return p;
}

}  // namespace plan
}  // namespace cuda
}  // namespace semdedup
