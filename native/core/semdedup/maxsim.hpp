// step 4 (docs/algorithm.md, "Exact M"): for every member j of a cluster (members in keep order
// x_0 .. x_{n-1}),
//   M[j] = max(0, max_{i<j} x_i . x_j),   M[0] = 0,
// each x_i . x_j being the fixed-order float64 value nearest::dot64 (nearest.hpp), and arg[j] = the
// row (index into the embeddings) of the earliest member reaching that exact maximum, or -1 when
// M[j] = 0 (no earlier member, or all similarities <= 0). Every backend stores these float64
// values, the same bits on every machine; float32 passes are only a filter.
#pragma once
#include <string>
#include <vector>

#include "semdedup/common.hpp"

namespace semdedup {

struct MaxSimOptions {
  int threads = 0;  // 0 = all hardware threads
  // Thresholds (1 - eps) near which recheck_near_thresholds recomputes M (and decontamination's
  // maxima). The max-similarity kernels compute M exactly and do not use them.
  std::vector<double> thresholds;
  // Members whose M lies within this distance of a threshold are re-checked in float64.
  // <= 0 picks a bound from D (a few ulp per accumulated term, at least 1e-5).
  double recheck_margin = 0;
  GpuLimits gpu;  // the CUDA backend's limits (common.hpp)
  // Exact copies (docs/algorithm.md, "Exact copies") decided without the kernel (the CPU kernel;
  // off only to compare: M and M_row are the same bytes either way).
  bool skip_copies = true;
};

struct MaxSimStats {
  int64_t members = 0;
  int64_t clusters = 0;
  double useful_flops = 0;    // sum over clusters of n(n-1) D (each pair once, 2 flops per term)
  double computed_flops = 0;  // flops actually issued (tiles include some masked work)
  int64_t rechecked = 0;      // members the float32 filter did not decide (several candidates re-scored in float64)
  int64_t rescanned = 0;      // of those, members re-scanned over all their earlier members in float64
  // The filter of whole-cluster items (qfilter.hpp: "avx2-int8" or "fp32"; split clusters use
  // float32 tiles), and the members it left with several candidates (checked by their float32
  // products; those left with a float32 near tie are counted in rechecked).
  std::string filter = "fp32";
  int64_t filter_checked = 0;
  int64_t copies = 0;  // exact copies decided without the kernel
  // The float32 filter of whole-cluster items: "fused-avx2" (maxsim.cpp's own kernel: dot products
  // folded in registers, no score matrix) or "blas" (sgemm column tiles, then the fold).
  std::string kernel = "blas";
};

// The whole-cluster float32 filter max_similarity_cpu uses: environment variable
// SEMDEDUP_MAXSIM_KERNEL = auto (default: fused-avx2 on a CPU with AVX2 and FMA but no AVX-512),
// blas or fused-avx2. Both give the same M and M_row bytes (the filter only decides the work).
const char* maxsim_filter_kernel();

// The exact maximum of member p of a cluster (rows: its rows in keep order) over its earlier
// members: value = max_{i<p} dot64(x_i, x_p) and pos = the earliest i reaching it (-1 when p = 0).
// buf holds (kScanChunk + 1) * d floats. The one home of the rule for every float64 scan.
constexpr int64_t kScanChunk = 256;
struct ExactMax {
  double value = 0;
  int64_t pos = -1;
};
ExactMax exact_max_scan(const EmbeddingView& x, const int64_t* rows, int64_t p, float* buf);

// The float32 filter's bound for a cluster whose rows have norms at most cmax: every float32 dot
// product of two of its rows, summed in any order (BLAS, GPU tiles), lies within this distance of
// its dot64 value (nearest::eps_score), so the member reaching the exact maximum has a float32
// score within 2 bound of the float32 maximum.
double filter_bound(int64_t d, double cmax);

// The exact pairs of positions [p0, p1) of a cluster (rows: its rows in keep order) from a
// float32 filter's result per position p (index q = p - p0): best[q] the float32 maximum over
// the earlier members, pos[q] its earliest position (-1: none), second[q] the largest float32
// score at another position (-inf: none). A member whose runner-up is further than 2 eps below
// its maximum gets M from one float64 dot product; the others are re-scanned over all their
// earlier members by exact_max_scan (rechecked = rescanned = their count). Writes M[q], arg[q],
// except where skip[q] is set (positions the caller settled).
struct FilterCounts {
  int64_t rechecked = 0, rescanned = 0;
};
FilterCounts exact_from_filter(const EmbeddingView& x, const int64_t* rows, int64_t p0, int64_t p1, const float* best,
                               const float* second, const int64_t* pos, double eps, double* M, int64_t* arg,
                               int threads = 0, CancelFlag cancel = nullptr, const uint8_t* skip = nullptr);

// Largest float64 norm (sqrt of dot64(x, x)) of the listed rows.
double max_norm_of_rows(const EmbeddingView& x, const int64_t* rows, int64_t n, int threads = 0,
                        CancelFlag cancel = nullptr);

// Clusters are given as a permutation `order` of rows (length offsets[nclusters]) and
// offsets (length nclusters + 1): cluster c is order[offsets[c] .. offsets[c+1]), in keep order.
// Outputs are per position: M[p], arg[p] for p in [0, offsets[nclusters]).
// Deterministic: results do not depend on the thread count.
MaxSimStats max_similarity_cpu(const EmbeddingView& x, const int64_t* order, const int64_t* offsets,
                               int64_t nclusters, double* M, int64_t* arg, const MaxSimOptions& opt,
                               const ProgressFn& progress = {}, CancelFlag cancel = nullptr);

// The re-check of stored results (runs written before M was exact): every member whose M lies
// within the margin of a threshold (opt.thresholds, opt.recheck_margin) gets M and arg recomputed
// by exact_max_scan. On an exact M it changes nothing. Returns the number of members re-checked.
int64_t recheck_near_thresholds(const EmbeddingView& x, const int64_t* order, const int64_t* offsets,
                                int64_t nclusters, double* M, int64_t* arg, const MaxSimOptions& opt,
                                CancelFlag cancel = nullptr);

// The definition computed plainly for one cluster by exact_max_scan (O(n^2 D), for tests).
// rows: the cluster's rows in keep order.
void max_similarity_reference(const EmbeddingView& x, const int64_t* rows, int64_t n, double* M,
                              int64_t* arg);

// The float64 re-check's margin when MaxSimOptions::recheck_margin is <= 0: a few float32
// roundings per accumulated term of a D-dimensional dot product, at least 1e-5.
double default_recheck_margin(int64_t d);

// How max_similarity_cpu decomposes a cluster of n members at dimension d: one whole-cluster item,
// or (split) one item per column tile of `width` members.
struct MaxSimLayout {
  bool split = false;
  int64_t width = 0;
};
MaxSimLayout maxsim_layout(int64_t n, int64_t d);

// One row block of a split cluster (planned runs split a cluster across tasks): M[j - j0], arg[j - j0]
// for the members j in [j0, j1) of a cluster whose n rows (keep order) are `rows`, over all earlier
// members, with the float64 re-check near opt.thresholds. j0 and j1 are multiples of the layout's
// width (or j1 = n); the block runs the whole-cluster kernel's own column items, so its M and arg
// are bit for bit those of max_similarity_cpu. Deterministic whatever the thread count.
MaxSimStats max_similarity_block(const EmbeddingView& x, const int64_t* rows, int64_t n, int64_t j0, int64_t j1, double* M,
                                 int64_t* arg, const MaxSimOptions& opt, const ProgressFn& progress = {},
                                 CancelFlag cancel = nullptr);

}  // namespace semdedup
