// The fp32 tile engine shared by the fused kernels: a 256-thread block computes one
// 128 x 128 tile of A . B^T (A, B: row-major, rows of `dp` elements, dp a multiple of 8) with
// FFMA, each thread holding an 8 x 8 block of the tile in registers. The caller folds the tile
// into a running reduction (column max, row argmin, ...) and moves on: the tile never leaves
// the registers, so no Gram or distance matrix is ever written.
//
// Layout: thread t loads 4 consecutive k-values of tile row t / 2 (k offset (t % 2) * 4) of both
// operands per k-step of 8 and stores them transposed into shared memory (padded rows: no bank
// conflicts), double buffered with one barrier per k-step. Thread (tx, ty) = (t % 16, t / 16)
// owns A rows ty*4 + {0..3}, 64 + ty*4 + {0..3} and B rows tx*4 + {0..3}, 64 + tx*4 + {0..3}
// (tile_row(i) / tile_col(j) below), so its A rows are visited in increasing order as i grows.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace semdedup {
namespace cuda {
namespace detail {

constexpr int kTile = 128;    // rows of A and of B per tile
constexpr int kStepK = 8;     // k-values per pipeline step
constexpr int kThreads = 256; // threads per block
constexpr int kPadK = 4;      // shared-memory row padding (floats)
constexpr int kDimAlign = 8;  // device rows are padded with zeros to a multiple of this

struct __align__(16) TileSmem {
  float a[2][kStepK][kTile + kPadK];
  float b[2][kStepK][kTile + kPadK];
};

__device__ __forceinline__ int tile_row(int ty, int i) { return (i < 4 ? 0 : 64 - 4) + ty * 4 + i; }
__device__ __forceinline__ int tile_col(int tx, int j) { return (j < 4 ? 0 : 64 - 4) + tx * 4 + j; }

__device__ __forceinline__ float4 load4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }

__device__ __forceinline__ float4 load4(const __half* p) {
  const uint2 raw = __ldg(reinterpret_cast<const uint2*>(p));
  __half2 h0, h1;
  static_assert(sizeof(__half2) == 4, "half2");
  memcpy(&h0, &raw.x, 4);
  memcpy(&h1, &raw.y, 4);
  const float2 f0 = __half22float2(h0), f1 = __half22float2(h1);
  return make_float4(f0.x, f0.y, f1.x, f1.y);
}

template <class T>
__device__ __forceinline__ float4 load4_or_zero(const T* row, int64_t k) {
  return row ? load4(row + k) : make_float4(0.f, 0.f, 0.f, 0.f);
}

__device__ __forceinline__ void store4_t(float (*dst)[kTile + kPadK], int lk, int lm, float4 v) {
  dst[lk + 0][lm] = v.x;
  dst[lk + 1][lm] = v.y;
  dst[lk + 2][lm] = v.z;
  dst[lk + 3][lm] = v.w;
}

// acc[i][j] = A[tile_row(ty, i)] . B[tile_col(tx, j)] over dp elements. a_row / b_row: the row
// this thread loads (tile row threadIdx.x / 2), or nullptr for a row outside the operand (read
// as zeros). Starts and ends with all threads past a barrier, so calls can follow each other.
template <class TA, class TB>
__device__ __forceinline__ void tile_product(TileSmem& sm, const TA* a_row, const TB* b_row, int64_t dp,
                                             float (&acc)[8][8]) {
  const int tid = threadIdx.x;
  const int lm = tid >> 1;
  const int lk = (tid & 1) * 4;
  const int tx = tid & 15, ty = tid >> 4;
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

  float4 ra = load4_or_zero(a_row, lk);
  float4 rb = load4_or_zero(b_row, lk);
  store4_t(sm.a[0], lk, lm, ra);
  store4_t(sm.b[0], lk, lm, rb);
  __syncthreads();
  const int64_t nk = dp / kStepK;
  for (int64_t ks = 0; ks < nk; ++ks) {
    const int cur = int(ks & 1);
    const bool more = ks + 1 < nk;
    if (more) {
      ra = load4_or_zero(a_row, (ks + 1) * kStepK + lk);
      rb = load4_or_zero(b_row, (ks + 1) * kStepK + lk);
    }
#pragma unroll
    for (int kk = 0; kk < kStepK; ++kk) {
      const float4 a0 = *reinterpret_cast<const float4*>(&sm.a[cur][kk][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&sm.a[cur][kk][64 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&sm.b[cur][kk][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&sm.b[cur][kk][64 + tx * 4]);
      const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    if (more) {
      store4_t(sm.a[cur ^ 1], lk, lm, ra);
      store4_t(sm.b[cur ^ 1], lk, lm, rb);
    }
    __syncthreads();
  }
}

// Orders (value, index) pairs as one unsigned 64-bit key: a larger value wins, and between equal
// values the smaller index wins. Key 0 never encodes a real pair (it would be a NaN). -0 is
// folded onto +0 so that the two compare equal, as floats do.
__host__ __device__ __forceinline__ unsigned long long pack_key(float v, uint32_t index) {
  v = v + 0.0f;
  uint32_t u;
  memcpy(&u, &v, 4);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<unsigned long long>(u) << 32) | static_cast<unsigned long long>(0xFFFFFFFFu - index);
}
__host__ __device__ __forceinline__ float key_value(unsigned long long key) {
  uint32_t u = uint32_t(key >> 32);
  u = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
  float v;
  memcpy(&v, &u, 4);
  return v;
}
__host__ __device__ __forceinline__ uint32_t key_index(unsigned long long key) {
  return 0xFFFFFFFFu - uint32_t(key & 0xFFFFFFFFull);
}

}  // namespace detail
}  // namespace cuda
}  // namespace semdedup
