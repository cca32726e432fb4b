// Validation of embeddings before the heavy steps (non-finite values, zero rows, norms), and the
// L2-normalised copy made under `normalize: always`.
#pragma once
#include "semdedup/common.hpp"

namespace semdedup {

struct ScanResult {
  int64_t first_nonfinite = -1;  // first row holding NaN or Inf
  int64_t first_zero = -1;       // first all-zero row
  int64_t first_unnormalized = -1;  // first row with | ||x|| - 1 | > tol
  int64_t nonfinite_rows = 0, zero_rows = 0, unnormalized_rows = 0;
  double min_norm = 0, max_norm = 0;
};

ScanResult scan_embeddings(const EmbeddingView& x, double norm_tol, int threads = 0,
                           CancelFlag cancel = nullptr);

// Writes every row divided by its L2 norm into out (N x D float32): the norm summed in double in
// column order, out[j] = float(x[j] * (1 / sqrt(sum))). Rows must be non-zero (checked by the scan
// first). Streams x in blocks, releasing mapped pages behind it.
void normalize_rows(const EmbeddingView& x, float* out, int threads = 0, const ProgressFn& progress = {},
                    CancelFlag cancel = nullptr);

}  // namespace semdedup
