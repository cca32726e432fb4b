// step 2 (docs/algorithm.md) on the GPU: FAISS's k-means algorithm (faiss::Clustering::train, FAISS 1.7.3)
// with its assignment step on the GPU, and the final nearest-centroid pass over all rows.
//
// Same algorithm as the CPU backend, step by step:
//   - training rows: FAISS's subsample (sampling.hpp: rand_perm(n, seed), first
//     k * max_points_per_centroid rows, in that order) or all rows;
//   - initial centroids: rows rand_perm(nt, seed + 1 + redo * 15486557)[0..k) of the training
//     set, re-normalised when spherical; FAISS's corner case nt == k copies the first k rows;
//   - each iteration: assignment (GPU, fused: the nt x k distance matrix is never written;
//     ties to the lowest centroid index, as FAISS's k = 1 search), objective = float sum of
//     the distances in row order, centroid update = float sums in training-row order then one
//     multiplication by 1 / count (GPU, the same operations in the same order as FAISS's
//     compute_centroids, so bit-identical given the same assignment), FAISS's empty-cluster
//     split (host, same random generator and rule), spherical re-normalisation (host);
//   - nredo > 1 keeps the run with the best final objective.
// Only the fp32 dot products of the assignment differ from FAISS's BLAS in rounding.
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
#include "stream.cuh"
#include "tile.cuh"

namespace semdedup {
namespace cuda {
namespace {

using namespace detail;

// nearest[r] / dist[r] for rows [0, nrows) of x against k centroids (fp32, row stride dp):
// inner product (largest wins), or squared L2 = |x|^2 + |c|^2 - 2 x.c clamped at 0 (smallest
// wins). One block per 128 rows, looping over centroid tiles.
template <class T>
__global__ void __launch_bounds__(kThreads, 2)
    assign_kernel(const T* __restrict__ x, int64_t nrows, int64_t dp, const float* __restrict__ cen, int k,
                  const float* __restrict__ cnorm, const float* __restrict__ xnorm, int inner_product,
                  int32_t* __restrict__ nearest, float* __restrict__ dist) {
  __shared__ TileSmem sm;
  __shared__ unsigned long long red[kTile];
  const int tid = threadIdx.x;
  const int lm = tid >> 1;
  const int tx = tid & 15, ty = tid >> 4;
  const int64_t row0 = int64_t(blockIdx.x) * kTile;
  const T* b_row = row0 + lm < nrows ? x + (row0 + lm) * dp : nullptr;
  if (tid < kTile) red[tid] = 0ull;
  // Running row minima in shared memory, one private slot per (ty, row): out of the registers
  // of the FFMA loop.
  __shared__ float s_best[kTile / 8][kTile];
  __shared__ int s_idx[kTile / 8][kTile];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    s_best[ty][tile_col(tx, j)] = -INFINITY;
    s_idx[ty][tile_col(tx, j)] = -1;
  }
  for (int c0 = 0; c0 < k; c0 += kTile) {
    const float* a_row = c0 + lm < k ? cen + int64_t(c0 + lm) * dp : nullptr;
    float acc[8][8];
    tile_product(sm, a_row, b_row, dp, acc);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t r = row0 + tile_col(tx, j);
      const float xn = (!inner_product && r < nrows) ? xnorm[r] : 0.f;
      float tb = -INFINITY;
      int ti = -1;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int c = c0 + tile_row(ty, i);
        if (c < k) {
          float s;
          if (inner_product) {
            s = acc[i][j];
          } else {
            // FAISS: dis = x_norm + y_norm - 2 * ip, negative values (round-off) set to 0
            float dis = __fsub_rn(__fadd_rn(xn, cnorm[c]), __fmul_rn(2.f, acc[i][j]));
            if (dis < 0.f) dis = 0.f;
            s = -dis;
          }
          if (s > tb) {  // centroids in increasing order: strict '>' keeps the lowest index
            tb = s;
            ti = c;
          }
        }
      }
      if (ti >= 0 && tb > s_best[ty][tile_col(tx, j)]) {
        s_best[ty][tile_col(tx, j)] = tb;
        s_idx[ty][tile_col(tx, j)] = ti;
      }
    }
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int r = tile_col(tx, j);
    const int ci = s_idx[ty][r];
    if (row0 + r < nrows && ci >= 0) atomicMax(&red[r], pack_key(s_best[ty][r], uint32_t(ci)));
  }
  __syncthreads();
  if (tid < kTile && row0 + tid < nrows) {
    const unsigned long long key = red[tid];
    if (key == 0ull) {
      nearest[row0 + tid] = -1;
      dist[row0 + tid] = inner_product ? -INFINITY : INFINITY;
    } else {
      const float v = key_value(key);
      nearest[row0 + tid] = int32_t(key_index(key));
      dist[row0 + tid] = inner_product ? v : 0.0f - v;
    }
  }
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

// Squared L2 norm of each row: one warp per row.
template <class T>
__global__ void row_norms_kernel(const T* __restrict__ x, int64_t nrows, int64_t dp, int d, float* __restrict__ out) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= nrows) return;
  const T* r = x + row * dp;
  float s = 0.f;
  for (int j = lane; j < d; j += 32) {
    const float v = to_float(r[j]);
    s = fmaf(v, v, s);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) out[row] = s;
}

// FAISS's compute_centroids for one (centroid, dimension) per thread: float sum of the
// members' values in training-row order, then times 1 / count (0 for an empty cluster).
__global__ void centroid_kernel(const float* __restrict__ x, int64_t dp, int d, const int32_t* __restrict__ members,
                                const int32_t* __restrict__ moff, float* __restrict__ cen) {
  const int c = blockIdx.x;
  const int j = blockIdx.y * blockDim.x + threadIdx.x;
  if (j >= d) return;
  const int b = moff[c], e = moff[c + 1];
  float s = 0.f;
  int m = b;
  for (; m + 4 <= e; m += 4) {  // independent loads in flight, additions in order
    const float v0 = x[int64_t(members[m]) * dp + j];
    const float v1 = x[int64_t(members[m + 1]) * dp + j];
    const float v2 = x[int64_t(members[m + 2]) * dp + j];
    const float v3 = x[int64_t(members[m + 3]) * dp + j];
    s = __fadd_rn(s, v0);
    s = __fadd_rn(s, v1);
    s = __fadd_rn(s, v2);
    s = __fadd_rn(s, v3);
  }
  for (; m < e; ++m) s = __fadd_rn(s, x[int64_t(members[m]) * dp + j]);
  if (e > b) s = __fmul_rn(s, __fdiv_rn(1.0f, float(e - b)));
  cen[int64_t(c) * dp + j] = s;
}

// faiss::fvec_renorm_L2 on k rows of d floats.
void renorm_rows(float* c, int k, int64_t d) {
  for (int i = 0; i < k; ++i) {
    float* r = c + int64_t(i) * d;
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(r[j]) * double(r[j]);
    const float nr = float(s);
    if (nr > 0) {
      const float inv = float(1.0 / double(std::sqrt(nr)));
      for (int64_t j = 0; j < d; ++j) r[j] *= inv;
    }
  }
}

void row_sqnorms(const float* c, int k, int64_t d, float* out) {
  for (int i = 0; i < k; ++i) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(c[int64_t(i) * d + j]) * double(c[int64_t(i) * d + j]);
    out[i] = float(s);
  }
}

template <class T>
void launch_assign(const T* x, int64_t nrows, int64_t dp, int d, const float* cen, int k, const float* cnorm,
                   float* xnorm, bool ip, bool norms_ready, int32_t* nearest, float* dist, cudaStream_t s) {
  if (nrows <= 0) return;
  if (!ip && !norms_ready) {
    const int warps = 8;
    row_norms_kernel<T><<<unsigned((nrows + warps - 1) / warps), warps * 32, 0, s>>>(x, nrows, dp, d, xnorm);
    SD_CUDA_LAUNCH("row_norms_kernel");
  }
  assign_kernel<T><<<unsigned((nrows + kTile - 1) / kTile), kThreads, 0, s>>>(x, nrows, dp, cen, k, cnorm, xnorm,
                                                                               ip ? 1 : 0, nearest, dist);
  SD_CUDA_LAUNCH("assign_kernel");
}

void upload_centroids(const float* host, int k, int64_t d, int64_t dp, float* dev, float* dcnorm, bool ip,
                      cudaStream_t s) {
  SD_CUDA(cudaMemcpy2DAsync(dev, size_t(dp) * 4, host, size_t(d) * 4, size_t(d) * 4, size_t(k),
                            cudaMemcpyHostToDevice, s));
  if (!ip) {
    std::vector<float> cn(static_cast<size_t>(k));
    row_sqnorms(host, k, d, cn.data());
    SD_CUDA(cudaMemcpyAsync(dcnorm, cn.data(), size_t(k) * 4, cudaMemcpyHostToDevice, s));
    SD_CUDA(cudaStreamSynchronize(s));  // cn is a local
  }
}

}  // namespace

namespace {

// The CUDA assignment step of the shared Lloyd driver (semdedup::lloyd_kmeans): the training set
// resident on the device, the fused assignment kernel, and the centroid update on the device (the
// same float operations in the same order as FAISS's compute_centroids).
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
    if (train_bytes + nt * 16 > memory_budget(gpu_))
      throw Error(ErrorCode::Backend, "k-means training set (" + std::to_string(train_bytes >> 20) +
                                          " MiB) does not fit in GPU memory");
    dx_.resize(size_t(nt * dp_));
    if (!ip) dxnorm_.resize(size_t(nt));
    ddist_.resize(size_t(nt));
    dnear_.resize(size_t(nt));
    dmembers_.resize(size_t(nt));
    hnear_.resize(size_t(nt));
    hdist_.resize(size_t(nt));
    hmembers_.resize(size_t(nt));
    SD_CUDA(cudaMemset2DAsync(dx_.get(), size_t(dp_) * 4, 0, size_t(dp_) * 4, size_t(nt), s_.get()));
    SD_CUDA(cudaMemcpy2DAsync(dx_.get(), size_t(dp_) * 4, X, size_t(d) * 4, size_t(d) * 4, size_t(nt),
                              cudaMemcpyHostToDevice, s_.get()));
    s_.sync();
    norms_ready_ = false;
  }

  void assign(const float* cent, int k, const double* /*moved*/, int64_t* assign, float* dis, CancelFlag) override {
    if (k_ != k) {
      if (int64_t(k) * dp_ * 8 + nt_ * dp_ * 4 + nt_ * 16 > memory_budget(gpu_))
        throw Error(ErrorCode::Backend, "k-means centroids do not fit in GPU memory");
      k_ = k;
      dcen_.resize(size_t(k) * size_t(dp_));
      dcnorm_.resize(size_t(k));
      dmoff_.resize(size_t(k) + 1);
      hmoff_.resize(size_t(k) + 1);
      SD_CUDA(cudaMemsetAsync(dcen_.get(), 0, dcen_.size() * 4, s_.get()));
    }
    upload_centroids(cent, k, d_, dp_, dcen_.get(), dcnorm_.get(), ip_, s_.get());
    launch_assign<float>(dx_.get(), nt_, dp_, int(d_), dcen_.get(), k, dcnorm_.get(), dxnorm_.get(), ip_, norms_ready_,
                         dnear_.get(), ddist_.get(), s_.get());
    norms_ready_ = true;
    SD_CUDA(cudaMemcpyAsync(hnear_.get(), dnear_.get(), size_t(nt_) * 4, cudaMemcpyDeviceToHost, s_.get()));
    SD_CUDA(cudaMemcpyAsync(hdist_.get(), ddist_.get(), size_t(nt_) * 4, cudaMemcpyDeviceToHost, s_.get()));
    s_.sync();
    for (int64_t i = 0; i < nt_; ++i) {
      const int32_t c = hnear_.get()[i];
      if (c < 0 || c >= k) throw Error(ErrorCode::Numeric, "k-means assignment failed (non-finite distances)");
      assign[i] = c;
      dis[i] = hdist_.get()[i];
    }
    searched_rows += nt_;
  }

  bool centroids(const int64_t* /*assign*/, int k, float* cent, float* hassign) override {
    // members of each centroid in training-row order (stable counting sort of the last assignment)
    int32_t* moff = hmoff_.get();
    std::fill(moff, moff + k + 1, 0);
    for (int64_t i = 0; i < nt_; ++i) ++moff[hnear_.get()[i] + 1];
    for (int c = 0; c < k; ++c) hassign[c] = float(moff[c + 1]);
    for (int c = 0; c < k; ++c) moff[c + 1] += moff[c];
    {
      std::vector<int32_t> fill(moff, moff + k);
      for (int64_t i = 0; i < nt_; ++i) hmembers_.get()[fill[size_t(hnear_.get()[i])]++] = int32_t(i);
    }
    SD_CUDA(cudaMemcpyAsync(dmembers_.get(), hmembers_.get(), size_t(nt_) * 4, cudaMemcpyHostToDevice, s_.get()));
    SD_CUDA(cudaMemcpyAsync(dmoff_.get(), moff, size_t(k + 1) * 4, cudaMemcpyHostToDevice, s_.get()));
    const dim3 grid(unsigned(k), unsigned((d_ + 127) / 128));
    centroid_kernel<<<grid, 128, 0, s_.get()>>>(dx_.get(), dp_, int(d_), dmembers_.get(), dmoff_.get(), dcen_.get());
    SD_CUDA_LAUNCH("centroid_kernel");
    SD_CUDA(cudaMemcpy2DAsync(cent, size_t(d_) * 4, dcen_.get(), size_t(dp_) * 4, size_t(d_) * 4, size_t(k),
                              cudaMemcpyDeviceToHost, s_.get()));
    s_.sync();
    return true;
  }

 private:
  GpuLimits gpu_;
  Stream s_;
  int64_t nt_ = 0, d_ = 0, dp_ = 0;
  int k_ = 0;
  bool ip_ = false, norms_ready_ = false;
  DeviceBuffer<float> dx_, dxnorm_, dcen_, dcnorm_, ddist_;
  DeviceBuffer<int32_t> dnear_, dmembers_, dmoff_;
  PinnedBuffer<int32_t> hnear_, hmembers_, hmoff_;
  PinnedBuffer<float> hdist_;
};

}  // namespace

KMeansResult train_kmeans(const EmbeddingView& x, const KMeansParams& p, const ProgressFn& progress,
                          CancelFlag cancel) {
  prepare_device();
  CudaAssigner assigner(p.gpu);
  return lloyd_kmeans(x, p, assigner, progress, cancel);
}

void assign_nearest(const EmbeddingView& x, const float* centroids, int k, bool inner_product, int64_t* nearest,
                    float* dist, const GpuLimits& gpu, const ProgressFn& progress, CancelFlag cancel) {
  if (k < 1) throw Error(ErrorCode::InvalidArgument, "k must be >= 1");
  if (x.n <= 0) return;
  if (x.d <= 0) throw Error(ErrorCode::InvalidArgument, "embeddings have no columns");
  prepare_device();
  const int64_t d = x.d, dp = round_up(d, kDimAlign);
  const size_t es = x.is_f32() ? 4 : 2;

  Stream s;
  RowUploader up(x, dp, resolve_threads(0), gpu);
  const int64_t rows =
      plan::plan_assign(memory_budget(gpu), x.n, d, int64_t(es), k, up.staging_rows_per_buffer()).rows_per_pass;
  DeviceBuffer<float> dcen(static_cast<size_t>(k) * size_t(dp)), dcnorm(static_cast<size_t>(k));
  SD_CUDA(cudaMemsetAsync(dcen.get(), 0, dcen.size() * 4, s.get()));
  upload_centroids(centroids, k, d, dp, dcen.get(), dcnorm.get(), inner_product, s.get());

  DeviceBuffer<char> dbuf[2];
  DeviceBuffer<float> dxnorm[2], ddist[2];
  DeviceBuffer<int32_t> dnear[2];
  PinnedBuffer<float> hdist[2];
  PinnedBuffer<int32_t> hnear[2];
  Event used[2], ready[2];
  for (int b = 0; b < 2; ++b) {
    dbuf[b].resize(size_t(rows * dp) * es);
    SD_CUDA(cudaMemsetAsync(dbuf[b].get(), 0, dbuf[b].size(), s.get()));
    if (!inner_product) dxnorm[b].resize(size_t(rows));
    ddist[b].resize(size_t(rows));
    dnear[b].resize(size_t(rows));
    hdist[b].resize(size_t(rows));
    hnear[b].resize(size_t(rows));
    used[b].record(s.get());
  }
  struct Pending {
    bool active = false;
    int64_t begin = 0, n = 0;
  } pending[2];
  auto finish = [&](int b) {
    if (!pending[b].active) return;
    ready[b].sync();
    for (int64_t i = 0; i < pending[b].n; ++i) {
      nearest[pending[b].begin + i] = hnear[b].get()[i];
      dist[pending[b].begin + i] = hdist[b].get()[i];
    }
    pending[b].active = false;
    if (progress) progress(pending[b].begin + pending[b].n, x.n);
  };
  int b = 0;
  for (int64_t r0 = 0; r0 < x.n; r0 += rows) {
    check_cancel(cancel);
    const int64_t m = std::min(rows, x.n - r0);
    finish(b);
    up.upload(nullptr, r0, m, dbuf[b].get(), used[b].get(), s.get(), cancel);
    if (x.is_f32())
      launch_assign<float>(reinterpret_cast<const float*>(dbuf[b].get()), m, dp, int(d), dcen.get(), k, dcnorm.get(),
                           dxnorm[b].get(), inner_product, false, dnear[b].get(), ddist[b].get(), s.get());
    else
      launch_assign<__half>(reinterpret_cast<const __half*>(dbuf[b].get()), m, dp, int(d), dcen.get(), k,
                            dcnorm.get(), dxnorm[b].get(), inner_product, false, dnear[b].get(), ddist[b].get(), s.get());
    used[b].record(s.get());
    SD_CUDA(cudaMemcpyAsync(hnear[b].get(), dnear[b].get(), size_t(m) * 4, cudaMemcpyDeviceToHost, s.get()));
    SD_CUDA(cudaMemcpyAsync(hdist[b].get(), ddist[b].get(), size_t(m) * 4, cudaMemcpyDeviceToHost, s.get()));
    ready[b].record(s.get());
    pending[b] = {true, r0, m};
    b ^= 1;
  }
  finish(b);
  finish(b ^ 1);
}

}  // namespace cuda
}  // namespace semdedup
