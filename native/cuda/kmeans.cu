// step 2 (docs/algorithm.md) on the GPU: the engine's k-means (the shared Lloyd driver,
// semdedup::lloyd_kmeans) with its assignment and centroid sums on the GPU, and the final exact
// assignment of every row. The same definitions as the CPU backend (semdedup/nearest.hpp), so the
// same bytes:
//   - fast pass: a fused float32 tile product (the nt x k matrix is never written) keeping each
//     row's best and second-best fast score (IP: x.c; L2: 2 x.c - |c|^2), ties to the lower id;
//   - a row whose top-2 gap exceeds 2 eps (nearest.hpp's proven bound, which holds for any
//     summation order and FMA) takes the fast best; the others are re-scored in float64 over all
//     centroids, ties to the lower id;
//   - every row's value is the fixed-order float64 inner product of nearest.hpp (8 lanes, each in
//     ascending order, combined in a fixed tree: 8 threads hold the 8 lanes here, one thread each
//     in the CPU's loop, the same additions in the same order), rounded once to float32 for
//     dist_to_cent;
//   - centroid sums: float64, each cluster's members added in ascending training-row order (one
//     thread per (centroid, dimension)), the same additions as the host's.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <vector>

#include "cuda_util.cuh"
#include "semdedup/sampling.hpp"
#include "semdedup/cuda.hpp"
#include "semdedup/gpu_plan.hpp"
#include "semdedup/kmeans.hpp"
#include "semdedup/mapping.hpp"
#include "semdedup/nearest.hpp"
#include "stream.cuh"
#include "tile.cuh"

namespace semdedup {
namespace cuda {
namespace {

using namespace detail;
namespace nr = semdedup::nearest;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

// Fast pass: for rows [0, nrows) of x against k centroids (fp32, row stride dp), each row's best
// fast score (IP: x.c; L2: 2 x.c - |c|^2 with cn32 = |c|^2 as float32), its centroid (ties to the
// lower id) and the second-best fast score (equal to the best on a tie). One block per 128 rows,
// looping over centroid tiles.
template <class T>
__global__ void __launch_bounds__(kThreads, 1)
    top2_kernel(const T* __restrict__ x, int64_t nrows, int64_t dp, const float* __restrict__ cen, int k,
                const float* __restrict__ cn32, int inner_product, int32_t* __restrict__ best_idx,
                float* __restrict__ best_s, float* __restrict__ second_s) {
  __shared__ TileSmem sm;
  const int tid = threadIdx.x;
  const int lm = tid >> 1;
  const int tx = tid & 15, ty = tid >> 4;
  const int64_t row0 = int64_t(blockIdx.x) * kTile;
  const T* b_row = row0 + lm < nrows ? x + (row0 + lm) * dp : nullptr;
  // Running top-2 in shared memory, one private slot per (ty, row).
  __shared__ float s_best[kTile / 8][kTile];
  __shared__ float s_second[kTile / 8][kTile];
  __shared__ int s_idx[kTile / 8][kTile];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    s_best[ty][tile_col(tx, j)] = -INFINITY;
    s_second[ty][tile_col(tx, j)] = -INFINITY;
    s_idx[ty][tile_col(tx, j)] = -1;
  }
  for (int c0 = 0; c0 < k; c0 += kTile) {
    const float* a_row = c0 + lm < k ? cen + int64_t(c0 + lm) * dp : nullptr;
    float acc[8][8];
    tile_product(sm, a_row, b_row, dp, acc);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int r = tile_col(tx, j);
      float b = s_best[ty][r], s2 = s_second[ty][r];
      int bi = s_idx[ty][r];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int c = c0 + tile_row(ty, i);
        if (c < k) {
          const float s = inner_product ? acc[i][j] : __fsub_rn(__fmul_rn(2.f, acc[i][j]), cn32[c]);
          // centroids of one slot arrive in increasing id order: strict '>' keeps the lower id
          if (s > b) {
            s2 = b;
            b = s;
            bi = c;
          } else if (s > s2) {
            s2 = s;
          }
        }
      }
      s_best[ty][r] = b;
      s_second[ty][r] = s2;
      s_idx[ty][r] = bi;
    }
  }
  __syncthreads();
  if (tid < kTile && row0 + tid < nrows) {
    float b = -INFINITY, s2 = -INFINITY;
    int bi = -1;
    for (int t = 0; t < kTile / 8; ++t) {
      const float v = s_best[t][tid], w = s_second[t][tid];
      const int vi = s_idx[t][tid];
      if (vi < 0) continue;
      if (v > b || (v == b && vi < bi)) {
        s2 = fmaxf(b, w);
        b = v;
        bi = vi;
      } else {
        s2 = fmaxf(s2, v);
      }
    }
    best_idx[row0 + tid] = bi;
    best_s[row0 + tid] = b;
    second_s[row0 + tid] = s2;
  }
}

// The lanes of nearest.hpp's dot64 for one (row, centroid) pair held by the 8 threads of a group:
// thread `lane` adds the products of j = lane, lane + 8, ... in ascending order; lanes[] (shared,
// 8 per group) then combined in the fixed order by every thread of the group.
template <class T, class U>
__device__ __forceinline__ double group_dot64(const T* a, const U* b, int64_t d, int lane, double* lanes) {
  double acc = 0;
  for (int64_t j = lane; j < d; j += nr::kLanes) acc += double(to_float(a[j])) * double(to_float(b[j]));
  lanes[lane] = acc;
  __syncwarp();
  const double v = nr::combine_lanes(lanes);
  __syncwarp();
  return v;
}

constexpr int kGroupsPerBlock = kThreads / nr::kLanes;  // 32 rows per block

// Per row (a group of 8 threads): ip(x, x), the decision of the fast pass, and for a decided row its
// centroid and float64 value (val: inner product, or squared L2 clamped at 0); an undecided row is
// appended to `todo` (count in *ntodo) for rescore_kernel.
template <class T>
__global__ void __launch_bounds__(kThreads)
    decide_kernel(const T* __restrict__ x, int64_t nrows, int64_t dp, int64_t d, const float* __restrict__ cen,
                  const double* __restrict__ cc, double cmax, int inner_product, const int32_t* __restrict__ best_idx,
                  const float* __restrict__ best_s, const float* __restrict__ second_s, double* __restrict__ xx_out,
                  int32_t* __restrict__ nearest, double* __restrict__ val, int32_t* __restrict__ todo,
                  int32_t* __restrict__ ntodo) {
  __shared__ double lanes[kThreads];
  const int g = threadIdx.x / nr::kLanes, lane = threadIdx.x % nr::kLanes;
  const int64_t row = int64_t(blockIdx.x) * kGroupsPerBlock + g;
  const bool valid = row < nrows;
  const T* xr = x + (valid ? row : 0) * dp;
  double* gl = lanes + g * nr::kLanes;
  const double xx = group_dot64(xr, xr, valid ? d : 0, lane, gl);
  const bool ip = inner_product != 0;
  const int32_t bi = valid ? best_idx[row] : -1;
  const double xnorm = nr::norm_slack(sqrt(xx));
  const double eps = nr::eps_score(ip, d, xnorm, cmax);
  const bool ok = valid && bi >= 0 && isfinite(best_s[row]) &&
                  nr::decided(double(best_s[row]), double(second_s[row]), eps);
  const double xc = group_dot64(xr, cen + int64_t(ok ? bi : 0) * dp, ok ? d : 0, lane, gl);
  if (!valid || lane != 0) return;
  xx_out[row] = xx;
  if (ok) {
    nearest[row] = bi;
    val[row] = nr::value_of_score(ip, nr::score64(ip, xx, cc[bi], xc));
  } else {
    nearest[row] = -1;
    todo[atomicAdd(ntodo, 1)] = int32_t(row);
  }
}

// The rows the fast pass left undecided, re-scored in float64 over all k centroids: one block per
// row, each group of 8 threads scores centroids g, g + 32, ...; the best score wins, ties to the
// lower id (the order of the merge does not matter: the rule is a total order).
template <class T>
__global__ void __launch_bounds__(kThreads)
    rescore_kernel(const T* __restrict__ x, int64_t dp, int64_t d, const float* __restrict__ cen,
                   const double* __restrict__ cc, int k, int inner_product, const int32_t* __restrict__ todo,
                   const double* __restrict__ xx_in, int32_t* __restrict__ nearest, double* __restrict__ val) {
  __shared__ double lanes[kThreads];
  __shared__ double gs[kGroupsPerBlock];
  __shared__ int gi[kGroupsPerBlock];
  const int g = threadIdx.x / nr::kLanes, lane = threadIdx.x % nr::kLanes;
  const int64_t row = todo[blockIdx.x];
  const T* xr = x + row * dp;
  const double xx = xx_in[row];
  const bool ip = inner_product != 0;
  double* gl = lanes + g * nr::kLanes;
  double bs = -INFINITY;
  int bj = -1;
  for (int c0 = 0; c0 < k; c0 += kGroupsPerBlock) {  // every group runs the same number of rounds
    const int c = c0 + g;
    const double xc = group_dot64(xr, cen + int64_t(c < k ? c : 0) * dp, c < k ? d : 0, lane, gl);
    if (c < k) {
      const double s = nr::score64(ip, xx, cc[c], xc);
      if (bj < 0 || nr::better(s, c, bs, bj)) {
        bs = s;
        bj = c;
      }
    }
  }
  if (lane == 0) {
    gs[g] = bs;
    gi[g] = bj;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double b = -INFINITY;
    int bi = -1;
    for (int t = 0; t < kGroupsPerBlock; ++t)
      if (gi[t] >= 0 && (bi < 0 || nr::better(gs[t], gi[t], b, bi))) {
        b = gs[t];
        bi = gi[t];
      }
    nearest[row] = bi;  // -1 only when every score was NaN
    val[row] = nr::value_of_score(ip, b);
  }
}

// Float64 sums of each centroid's members, one thread per (centroid, dimension): the members'
// values added in ascending training-row order (as the host driver adds them).
__global__ void centroid_sums_kernel(const float* __restrict__ x, int64_t dp, int d, const int32_t* __restrict__ members,
                                     const int32_t* __restrict__ moff, double* __restrict__ sums) {
  const int c = blockIdx.x;
  const int j = blockIdx.y * blockDim.x + threadIdx.x;
  if (j >= d) return;
  const int b = moff[c], e = moff[c + 1];
  double s = 0;
  int m = b;
  for (; m + 4 <= e; m += 4) {  // independent loads in flight, additions in order
    const float v0 = x[int64_t(members[m]) * dp + j];
    const float v1 = x[int64_t(members[m + 1]) * dp + j];
    const float v2 = x[int64_t(members[m + 2]) * dp + j];
    const float v3 = x[int64_t(members[m + 3]) * dp + j];
    s = __dadd_rn(s, double(v0));
    s = __dadd_rn(s, double(v1));
    s = __dadd_rn(s, double(v2));
    s = __dadd_rn(s, double(v3));
  }
  for (; m < e; ++m) s = __dadd_rn(s, double(x[int64_t(members[m]) * dp + j]));
  sums[int64_t(c) * d + j] = s;
}

// The centroids on the device: float32 rows (stride dp), ip(c, c) in float64 (host, nearest.hpp),
// its float32 rounding for the fast L2 score, and the bound of their norms.
struct DeviceCentroids {
  DeviceBuffer<float> cen, cn32;
  DeviceBuffer<double> cc;
  double cmax = 0;

  void upload(const float* host, int k, int64_t d, int64_t dp, cudaStream_t s) {
    if (int64_t(cen.size()) != int64_t(k) * dp) {
      cen.resize(size_t(k) * size_t(dp));
      cn32.resize(size_t(k));
      cc.resize(size_t(k));
      SD_CUDA(cudaMemsetAsync(cen.get(), 0, cen.size() * 4, s));
    }
    std::vector<double> hcc(static_cast<size_t>(k));
    std::vector<float> h32(static_cast<size_t>(k));
    double m = 0;
    for (int c = 0; c < k; ++c) {
      hcc[size_t(c)] = nr::dot64(host + int64_t(c) * d, host + int64_t(c) * d, d);
      h32[size_t(c)] = float(hcc[size_t(c)]);
      m = std::max(m, hcc[size_t(c)]);
    }
    cmax = nr::norm_slack(std::sqrt(m));
    SD_CUDA(cudaMemcpy2DAsync(cen.get(), size_t(dp) * 4, host, size_t(d) * 4, size_t(d) * 4, size_t(k),
                              cudaMemcpyHostToDevice, s));
    SD_CUDA(cudaMemcpyAsync(cc.get(), hcc.data(), size_t(k) * 8, cudaMemcpyHostToDevice, s));
    SD_CUDA(cudaMemcpyAsync(cn32.get(), h32.data(), size_t(k) * 4, cudaMemcpyHostToDevice, s));
    SD_CUDA(cudaStreamSynchronize(s));  // the host vectors are locals
  }
};

// Device scratch of the exact assignment of up to `rows` rows.
struct AssignScratch {
  DeviceBuffer<int32_t> best_idx, nearest, todo, ntodo;
  DeviceBuffer<float> best_s, second_s;
  DeviceBuffer<double> xx, val;
  void resize(int64_t rows) {
    best_idx.resize(size_t(rows));
    nearest.resize(size_t(rows));
    todo.resize(size_t(rows));
    ntodo.resize(1);
    best_s.resize(size_t(rows));
    second_s.resize(size_t(rows));
    xx.resize(size_t(rows));
    val.resize(size_t(rows));
  }
};

// The exact assignment of m device rows (type T, stride dp) into sc.nearest / sc.val; returns the
// number of rows re-scored in float64. Synchronises the stream (the re-scored count sizes a launch).
template <class T>
int64_t exact_assign(const T* x, int64_t m, int64_t dp, int64_t d, const DeviceCentroids& dc, int k, bool ip,
                     AssignScratch& sc, int32_t* host_count, cudaStream_t s) {
  if (m <= 0) return 0;
  top2_kernel<T><<<unsigned((m + kTile - 1) / kTile), kThreads, 0, s>>>(x, m, dp, dc.cen.get(), k, dc.cn32.get(), ip ? 1 : 0,
                                                                        sc.best_idx.get(), sc.best_s.get(), sc.second_s.get());
  SD_CUDA_LAUNCH("top2_kernel");
  SD_CUDA(cudaMemsetAsync(sc.ntodo.get(), 0, 4, s));
  decide_kernel<T><<<unsigned((m + kGroupsPerBlock - 1) / kGroupsPerBlock), kThreads, 0, s>>>(
      x, m, dp, d, dc.cen.get(), dc.cc.get(), dc.cmax, ip ? 1 : 0, sc.best_idx.get(), sc.best_s.get(), sc.second_s.get(),
      sc.xx.get(), sc.nearest.get(), sc.val.get(), sc.todo.get(), sc.ntodo.get());
  SD_CUDA_LAUNCH("decide_kernel");
  SD_CUDA(cudaMemcpyAsync(host_count, sc.ntodo.get(), 4, cudaMemcpyDeviceToHost, s));
  SD_CUDA(cudaStreamSynchronize(s));
  const int32_t n = *host_count;
  if (n > 0) {
    rescore_kernel<T><<<unsigned(n), kThreads, 0, s>>>(x, dp, d, dc.cen.get(), dc.cc.get(), k, ip ? 1 : 0, sc.todo.get(),
                                                       sc.xx.get(), sc.nearest.get(), sc.val.get());
    SD_CUDA_LAUNCH("rescore_kernel");
  }
  return n;
}

// The CUDA assignment step of the shared Lloyd driver (semdedup::lloyd_kmeans): the training set
// resident on the device, the exact assignment, and the float64 centroid sums on the device.
class CudaAssigner : public KMeansAssigner {
 public:
  explicit CudaAssigner(const GpuLimits& gpu) : gpu_(gpu) {}

  void prepare(const float* X, int64_t nt, int64_t d, bool ip) override {
    prepare_device();
    nt_ = nt;
    d_ = d;
    dp_ = round_up(d, kDimAlign);
    ip_ = ip;
    const int64_t train_bytes = nt * dp_ * 4;
    if (train_bytes + nt * 48 > memory_budget(gpu_))
      throw Error(ErrorCode::Backend, "k-means training set (" + std::to_string(train_bytes >> 20) +
                                          " MiB) does not fit in GPU memory");
    dx_.resize(size_t(nt * dp_));
    sc_.resize(nt);
    dmembers_.resize(size_t(nt));
    hnear_.resize(size_t(nt));
    hval_.resize(size_t(nt));
    hmembers_.resize(size_t(nt));
    hcount_.resize(1);
    SD_CUDA(cudaMemset2DAsync(dx_.get(), size_t(dp_) * 4, 0, size_t(dp_) * 4, size_t(nt), s_.get()));
    SD_CUDA(cudaMemcpy2DAsync(dx_.get(), size_t(dp_) * 4, X, size_t(d) * 4, size_t(d) * 4, size_t(nt),
                              cudaMemcpyHostToDevice, s_.get()));
    s_.sync();
  }

  void assign(const float* cent, int k, const double* /*moved*/, int64_t* assign, double* dis, CancelFlag) override {
    if (k_ != k) {
      if (int64_t(k) * (dp_ * 4 + d_ * 8 + 12) + nt_ * (dp_ * 4 + 48) > memory_budget(gpu_))
        throw Error(ErrorCode::Backend, "k-means centroids do not fit in GPU memory");
      k_ = k;
      dsums_.resize(size_t(k) * size_t(d_));
      dmoff_.resize(size_t(k) + 1);
      hmoff_.resize(size_t(k) + 1);
    }
    dc_.upload(cent, k, d_, dp_, s_.get());
    rescored_rows += exact_assign<float>(dx_.get(), nt_, dp_, d_, dc_, k, ip_, sc_, hcount_.get(), s_.get());
    SD_CUDA(cudaMemcpyAsync(hnear_.get(), sc_.nearest.get(), size_t(nt_) * 4, cudaMemcpyDeviceToHost, s_.get()));
    SD_CUDA(cudaMemcpyAsync(hval_.get(), sc_.val.get(), size_t(nt_) * 8, cudaMemcpyDeviceToHost, s_.get()));
    s_.sync();
    for (int64_t i = 0; i < nt_; ++i) {
      const int32_t c = hnear_.get()[i];
      if (c < 0 || c >= k || std::isnan(hval_.get()[i]))
        throw Error(ErrorCode::Numeric, "k-means assignment failed (non-finite distances)");
      assign[i] = c;
      dis[i] = hval_.get()[i];
    }
    searched_rows += nt_;
  }

  bool centroid_sums(const int64_t* assign, int k, double* sums, int64_t* counts) override {
    // members of each centroid in training-row order (stable counting sort of the assignment)
    int32_t* moff = hmoff_.get();
    std::fill(moff, moff + k + 1, 0);
    for (int64_t i = 0; i < nt_; ++i) ++moff[assign[i] + 1];
    for (int c = 0; c < k; ++c) counts[c] = moff[c + 1];
    for (int c = 0; c < k; ++c) moff[c + 1] += moff[c];
    {
      std::vector<int32_t> fill(moff, moff + k);
      for (int64_t i = 0; i < nt_; ++i) hmembers_.get()[fill[size_t(assign[i])]++] = int32_t(i);
    }
    SD_CUDA(cudaMemcpyAsync(dmembers_.get(), hmembers_.get(), size_t(nt_) * 4, cudaMemcpyHostToDevice, s_.get()));
    SD_CUDA(cudaMemcpyAsync(dmoff_.get(), moff, size_t(k + 1) * 4, cudaMemcpyHostToDevice, s_.get()));
    const dim3 grid(unsigned(k), unsigned((d_ + 127) / 128));
    centroid_sums_kernel<<<grid, 128, 0, s_.get()>>>(dx_.get(), dp_, int(d_), dmembers_.get(), dmoff_.get(), dsums_.get());
    SD_CUDA_LAUNCH("centroid_sums_kernel");
    SD_CUDA(cudaMemcpyAsync(sums, dsums_.get(), size_t(k) * size_t(d_) * 8, cudaMemcpyDeviceToHost, s_.get()));
    s_.sync();
    return true;
  }

 private:
  GpuLimits gpu_;
  Stream s_;
  int64_t nt_ = 0, d_ = 0, dp_ = 0;
  int k_ = 0;
  bool ip_ = false;
  DeviceBuffer<float> dx_;
  DeviceBuffer<double> dsums_;
  DeviceBuffer<int32_t> dmembers_, dmoff_;
  DeviceCentroids dc_;
  AssignScratch sc_;
  PinnedBuffer<int32_t> hnear_, hmembers_, hmoff_, hcount_;
  PinnedBuffer<double> hval_;
};

}  // namespace

KMeansResult train_kmeans(const EmbeddingView& x, const KMeansParams& p, const ProgressFn& progress,
                          CancelFlag cancel) {
  prepare_device();
  CudaAssigner assigner(p.gpu);
  return lloyd_kmeans(x, p, assigner, progress, cancel);
}

void assign_nearest(const EmbeddingView& x, const float* centroids, int k, bool inner_product, int64_t* nearest,
                    float* dist, const GpuLimits& gpu, const ProgressFn& progress, CancelFlag cancel,
                    int64_t* rescored) {
  if (k < 1) throw Error(ErrorCode::InvalidArgument, "k must be >= 1");
  if (rescored) *rescored = 0;
  if (x.n <= 0) return;
  if (x.d <= 0) throw Error(ErrorCode::InvalidArgument, "embeddings have no columns");
  prepare_device();
  const int64_t d = x.d, dp = round_up(d, kDimAlign);
  const size_t es = x.is_f32() ? 4 : 2;

  Stream s;
  RowUploader up(x, dp, resolve_threads(0), gpu);
  const int64_t rows =
      plan::plan_assign(memory_budget(gpu), x.n, d, int64_t(es), k, up.staging_rows_per_buffer()).rows_per_pass;
  DeviceCentroids dc;
  dc.upload(centroids, k, d, dp, s.get());

  // One buffer of rows: exact_assign synchronises each pass (the re-scored count sizes a launch),
  // so the upload of the next pass overlaps only the host's copy-out of this one.
  DeviceBuffer<char> dbuf;
  dbuf.resize(size_t(rows * dp) * es);
  SD_CUDA(cudaMemsetAsync(dbuf.get(), 0, dbuf.size(), s.get()));
  AssignScratch sc;
  sc.resize(rows);
  PinnedBuffer<int32_t> hnear, hcount;
  PinnedBuffer<double> hval;
  hnear.resize(size_t(rows));
  hval.resize(size_t(rows));
  hcount.resize(1);
  Event used;
  used.record(s.get());
  int64_t total = 0;
  for (int64_t r0 = 0; r0 < x.n; r0 += rows) {
    check_cancel(cancel);
    const int64_t m = std::min(rows, x.n - r0);
    up.upload(nullptr, r0, m, dbuf.get(), used.get(), s.get(), cancel);
    if (x.is_f32())
      total += exact_assign<float>(reinterpret_cast<const float*>(dbuf.get()), m, dp, d, dc, k, inner_product, sc,
                                   hcount.get(), s.get());
    else
      total += exact_assign<__half>(reinterpret_cast<const __half*>(dbuf.get()), m, dp, d, dc, k, inner_product, sc,
                                    hcount.get(), s.get());
    used.record(s.get());
    SD_CUDA(cudaMemcpyAsync(hnear.get(), sc.nearest.get(), size_t(m) * 4, cudaMemcpyDeviceToHost, s.get()));
    SD_CUDA(cudaMemcpyAsync(hval.get(), sc.val.get(), size_t(m) * 8, cudaMemcpyDeviceToHost, s.get()));
    s.sync();
    for (int64_t i = 0; i < m; ++i) {
      const int32_t c = hnear.get()[i];
      if (c < 0 || c >= k || std::isnan(hval.get()[i]))
        throw Error(ErrorCode::Numeric, "nearest centroid: non-finite distances (NaN in the rows or centroids)");
      nearest[r0 + i] = c;
      dist[r0 + i] = float(hval.get()[i]);
    }
    if (progress) progress(r0 + m, x.n);
  }
  if (rescored) *rescored = total;
}

}  // namespace cuda
}  // namespace semdedup
