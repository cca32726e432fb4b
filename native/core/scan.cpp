#include "semdedup/scan.hpp"

#include "semdedup/mapping.hpp"
#include "semdedup/nearest.hpp"

#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>
#include <vector>

namespace semdedup {

ScanResult scan_embeddings(const EmbeddingView& x, double norm_tol, int threads, CancelFlag cancel) {
  const int64_t block = 16384;
  const int64_t nblocks = (x.n + block - 1) / block;
  std::vector<ScanResult> parts(static_cast<size_t>(nblocks));
  threads = resolve_threads(threads);
  std::vector<std::vector<float>> scratch(static_cast<size_t>(threads), std::vector<float>(size_t(x.d)));
  parallel_for(threads, nblocks, [&](int64_t b, int w) {
    ScanResult& r = parts[size_t(b)];
    r.min_norm = std::numeric_limits<double>::infinity();
    r.max_norm = 0;
    const int64_t begin = b * block, end = std::min(x.n, begin + block);
    float* tmp = scratch[size_t(w)].data();
    for (int64_t i = begin; i < end; ++i) {
      const float* row;
      if (x.is_f32()) {
        row = x.f32_row(i);
      } else {
        x.row(i, tmp);
        row = tmp;
      }
      // ip(x, x) of nearest.hpp (8 lanes, fixed order); finite exactly when every value is: a
      // float32's square cannot overflow float64, and a NaN or Inf value makes the sum NaN or Inf
      const double s = nearest::dot64_cpu(row, row, x.d);
      if (!std::isfinite(s)) {
        if (r.first_nonfinite < 0) r.first_nonfinite = i;
        ++r.nonfinite_rows;
        continue;
      }
      const double nrm = std::sqrt(s);
      if (nrm == 0) {
        if (r.first_zero < 0) r.first_zero = i;
        ++r.zero_rows;
        continue;
      }
      if (nrm < r.min_norm) r.min_norm = nrm;
      if (nrm > r.max_norm) r.max_norm = nrm;
      if (std::fabs(nrm - 1.0) > norm_tol) {
        if (r.first_unnormalized < 0) r.first_unnormalized = i;
        ++r.unnormalized_rows;
      }
    }
    x.release(begin, end);
  }, cancel);
  ScanResult out;
  out.min_norm = std::numeric_limits<double>::infinity();
  for (const auto& r : parts) {  // blocks in row order: the first bad row is the first found
    if (out.first_nonfinite < 0) out.first_nonfinite = r.first_nonfinite;
    if (out.first_zero < 0) out.first_zero = r.first_zero;
    if (out.first_unnormalized < 0) out.first_unnormalized = r.first_unnormalized;
    out.nonfinite_rows += r.nonfinite_rows;
    out.zero_rows += r.zero_rows;
    out.unnormalized_rows += r.unnormalized_rows;
    if (r.min_norm < out.min_norm) out.min_norm = r.min_norm;
    if (r.max_norm > out.max_norm) out.max_norm = r.max_norm;
  }
  if (!std::isfinite(out.min_norm)) out.min_norm = 0;
  return out;
}

void normalize_rows(const EmbeddingView& x, float* out, int threads, const ProgressFn& progress, CancelFlag cancel) {
  const int64_t block = 16384, d = x.d;
  const int64_t nblocks = (x.n + block - 1) / block;
  threads = resolve_threads(threads);
  std::vector<std::vector<float>> scratch(static_cast<size_t>(threads), std::vector<float>(size_t(d)));
  std::atomic<int64_t> done{0};
  parallel_for(threads, nblocks, [&](int64_t b, int w) {
    const int64_t begin = b * block, end = std::min(x.n, begin + block);
    float* tmp = scratch[size_t(w)].data();
    for (int64_t i = begin; i < end; ++i) {
      const float* row = x.is_f32() ? x.f32_row(i) : (x.row(i, tmp), tmp);
      double s = 0;
      for (int64_t j = 0; j < d; ++j) s += double(row[j]) * double(row[j]);
      const double inv = 1.0 / std::sqrt(s);
      float* o = out + i * d;
      for (int64_t j = 0; j < d; ++j) o[j] = float(double(row[j]) * inv);
    }
    x.release(begin, end);
    const int64_t now = done.fetch_add(end - begin) + (end - begin);
    if (progress) progress(now, x.n);
  }, cancel);
}

}  // namespace semdedup
