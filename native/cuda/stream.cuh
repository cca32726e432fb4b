// Host -> device row streaming through two pinned staging buffers on two copy streams: while
// the GPU copies one buffer, host threads fill the other (gathering rows by index, or a
// contiguous range of a possibly memory-mapped matrix). Rows keep their storage type (float32
// or float16) and land on the device with a padded row stride (dp elements; the padding is
// zero if the destination was zeroed once).
#pragma once
#include <cuda_runtime.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "cuda_util.cuh"
#include "semdedup/common.hpp"
#include "semdedup/mapping.hpp"

namespace semdedup {
namespace cuda {
namespace detail {

class RowUploader {
 public:
  RowUploader(const EmbeddingView& x, int64_t dp, int threads, const GpuLimits& gpu)
      : x_(x), dp_(dp), threads_(std::max(1, std::min(threads, 8))) {
    rows_ = std::max<int64_t>(1, std::min(staging_rows(x.row_bytes(), gpu), x.n));
    for (auto& p : pin_) p.resize(size_t(rows_) * x.row_bytes());
  }

  int64_t staging_rows_per_buffer() const { return rows_; }

  // Copies host rows into dst (device, row stride dp elements of the view's type): rows[i] for
  // i in [0, n) when rows != nullptr, else the contiguous rows first .. first + n - 1. The copies
  // start after `wait_for` (an event recorded after the last kernel reading dst; may be null)
  // and `consumer` waits for them. Returns when every host-side copy is done.
  void upload(const int64_t* rows, int64_t first, int64_t n, void* dst, cudaEvent_t wait_for, cudaStream_t consumer,
              CancelFlag cancel) {
    const size_t rb = x_.row_bytes();
    const size_t dpitch = size_t(dp_) * (x_.is_f32() ? 4 : 2);
    if (wait_for) {
      SD_CUDA(cudaStreamWaitEvent(st_[0].get(), wait_for, 0));
      SD_CUDA(cudaStreamWaitEvent(st_[1].get(), wait_for, 0));
    }
    for (int64_t b = 0; b < n; b += rows_) {
      check_cancel(cancel);
      const int64_t m = std::min(rows_, n - b);
      const int s = next_;
      next_ ^= 1;
      if (used_[s]) ev_[s].sync();
      char* pin = pin_[s].get();
      const int64_t piece = 2048;
      const int64_t pieces = (m + piece - 1) / piece;
      parallel_for(threads_, pieces, [&](int64_t q, int) {
        const int64_t i0 = q * piece, i1 = std::min(m, i0 + piece);
        if (rows && x_.preads()) {
          // Scattered rows by pread: touching them through the mapping would map the kernel's
          // fault-around window (64 KB) per row, and the resident set would grow to the file.
          for (int64_t i = i0; i < i1; ++i) pread_row(rows[b + i], pin + size_t(i) * rb, rb);
        } else if (rows) {
          for (int64_t i = i0; i < i1; ++i) std::memcpy(pin + size_t(i) * rb, x_.row_ptr(rows[b + i]), rb);
        } else {
          for (int64_t r = first + b + i0, end = first + b + i1; r < end;) {  // runs contiguous in storage
            const int64_t stop = x_.run_end(r, end);
            std::memcpy(pin + size_t(r - first - b) * rb, x_.row_ptr(r), size_t(stop - r) * rb);
            r = stop;
          }
        }
      });
      if (!rows) x_.release(first + b, first + b + m);
      SD_CUDA(cudaMemcpy2DAsync(static_cast<char*>(dst) + size_t(b) * dpitch, dpitch, pin, rb, rb, size_t(m),
                                cudaMemcpyHostToDevice, st_[s].get()));
      ev_[s].record(st_[s].get());
      used_[s] = true;
    }
    for (int s = 0; s < 2; ++s)
      if (used_[s]) SD_CUDA(cudaStreamWaitEvent(consumer, ev_[s].get(), 0));
  }

 private:
  void pread_row(int64_t row, char* dst, size_t rb) const {
    if (x_.shards) {
      const int64_t s = x_.shard_of(row);
      pread_shard(*x_.files, s, x_.shards[s].file_offset + (row - x_.shards[s].row0) * int64_t(rb), dst, rb);
      return;
    }
    size_t done = 0;
    while (done < rb) {
      const ssize_t got = ::pread(x_.fd, dst + done, rb - done, off_t(x_.fd_offset + row * int64_t(rb) + int64_t(done)));
      if (got <= 0) {
        if (got < 0 && errno == EINTR) continue;
        throw Error(ErrorCode::Io, "reading row " + std::to_string(row) + " failed: " +
                                       (got < 0 ? std::strerror(errno) : std::string("unexpected end of file")));
      }
      done += size_t(got);
    }
  }

  EmbeddingView x_;
  int64_t dp_;
  int threads_;
  int64_t rows_ = 0;
  PinnedBuffer<char> pin_[2];
  Stream st_[2];
  Event ev_[2];
  bool used_[2] = {false, false};
  int next_ = 0;
};

}  // namespace detail
}  // namespace cuda
}  // namespace semdedup
