// step 5 (docs/algorithm.md) for every eps at once: which members each eps keeps, and the ids text files.
#pragma once
#include <vector>

#include "semdedup/common.hpp"

namespace semdedup {

// For each threshold t_e (= 1 - eps), walks the members in keep order once and splits them:
// member i is removed when M[i] > t_e, kept otherwise (NaN M keeps it, as the comparison is
// false). kept[e] / removed[e] receive the rows (keep_order values) in keep order. Parallel over
// ranges of members; the result does not depend on the thread count. Each buffer holds int64 rows
// (size() / 8 of them).
void split_kept(const int64_t* keep_order, const double* M, int64_t n, const std::vector<double>& thresholds,
                std::vector<BigBuffer>& kept, std::vector<BigBuffer>& removed, int threads = 0,
                CancelFlag cancel = nullptr);

// Where the ids of the rows come from.
struct IdsSource {
  enum class Kind {
    Rows,   // the row numbers "0", "1", ...
    Bytes,  // fixed-width bytes (numpy S): trailing NULs stripped, must be UTF-8 (a leading BOM dropped)
    Utf32,  // fixed-width UTF-32LE code points (numpy U): trailing NULs stripped
    Blob,   // variable-length UTF-8 items: item i is data[offsets[i] .. offsets[i+1])
  };
  Kind kind = Kind::Rows;
  const uint8_t* data = nullptr;
  int64_t width = 0;              // Bytes: bytes per item; Utf32: code points per item
  const int64_t* offsets = nullptr;  // Blob: count + 1 byte offsets
  int64_t count = 0;              // number of ids (Rows: any row >= 0 below count)
};

// An id that cannot be written: the item and why (Format errors carry "item I ..." messages).
// Writes the ids of rows[0..m) joined by '\n' (no final newline, as the original) to the open
// descriptor fd, in large writes. Rows are formatted in parallel in pieces and written in order.
// Throws Error(Format, "item I is not valid UTF-8" / "item I holds an invalid code point 0x...")
// naming the first such item in output order, Error(InvalidArgument) for a row outside the ids,
// Error(Io) when a write fails. Ids of at least stage_bytes (and rows at least a sixteenth of
// them) are first copied into huge pages (extract.cpp).
constexpr int64_t kIdsStageBytes = int64_t(256) << 20;
void write_ids_text(int fd, const IdsSource& ids, const int64_t* rows, int64_t m, int threads = 0,
                    CancelFlag cancel = nullptr, const ProgressFn& progress = nullptr,
                    int64_t stage_bytes = kIdsStageBytes);

// Number of items of a '\n'-joined UTF-8 blob and their offsets (count + 1), for ids given as
// strings: offsets[i] .. offsets[i+1] - 1 excludes the separator.
std::vector<int64_t> blob_offsets(const uint8_t* data, int64_t bytes);

}  // namespace semdedup
