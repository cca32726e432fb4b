// step 5 (docs/algorithm.md): the kept and removed members of every eps in one pass, and the ids text files.
#include "semdedup/extract.hpp"

#include "semdedup/decision.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

namespace semdedup {

void split_kept(const int64_t* keep_order, const double* M, int64_t n, const std::vector<double>& thresholds,
                std::vector<BigBuffer>& kept, std::vector<BigBuffer>& removed, int threads, CancelFlag cancel) {
  const size_t ne = thresholds.size();
  threads = resolve_threads(threads);
  // Ranges of members: count per (range, eps), then every range writes from its own start.
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(int64_t(threads) * 4, n / 262144));
  const int64_t per = (n + parts - 1) / parts;
  std::vector<int64_t> nk(size_t(parts) * ne, 0);
  parallel_for(threads, parts, [&](int64_t q, int) {
    const int64_t b = q * per, e = std::min(n, b + per);
    for (size_t t = 0; t < ne; ++t) {
      const double th = thresholds[t];
      int64_t c = 0;
      for (int64_t i = b; i < e; ++i) c += !removed_at(M[i], th);
      nk[size_t(q) * ne + t] = c;
    }
  }, cancel);
  kept.clear();
  removed.clear();
  kept.resize(ne);
  removed.resize(ne);
  std::vector<int64_t> kat(size_t(parts) * ne), rat(size_t(parts) * ne);
  for (size_t t = 0; t < ne; ++t) {
    int64_t ka = 0, ra = 0;
    for (int64_t q = 0; q < parts; ++q) {
      const int64_t b = q * per, e = std::min(n, b + per), len = std::max<int64_t>(0, e - b);
      kat[size_t(q) * ne + t] = ka;
      rat[size_t(q) * ne + t] = ra;
      ka += nk[size_t(q) * ne + t];
      ra += len - nk[size_t(q) * ne + t];
    }
    kept[t].resize(size_t(ka) * 8);
    removed[t].resize(size_t(ra) * 8);
  }
  parallel_for(threads, parts, [&](int64_t q, int) {
    const int64_t b = q * per, e = std::min(n, b + per);
    for (size_t t = 0; t < ne; ++t) {
      const double th = thresholds[t];
      int64_t* kp = reinterpret_cast<int64_t*>(kept[t].data()) + kat[size_t(q) * ne + t];
      int64_t* rp = reinterpret_cast<int64_t*>(removed[t].data()) + rat[size_t(q) * ne + t];
      for (int64_t i = b; i < e; ++i) {
        if (removed_at(M[i], th))
          *rp++ = keep_order[i];
        else
          *kp++ = keep_order[i];
      }
    }
  }, cancel);
}

std::vector<int64_t> blob_offsets(const uint8_t* data, int64_t bytes) {
  std::vector<int64_t> off{0};
  const uint8_t* p = data;
  const uint8_t* end = data + bytes;
  while (p < end) {
    const void* nl = std::memchr(p, '\n', size_t(end - p));
    if (!nl) break;
    p = static_cast<const uint8_t*>(nl) + 1;
    off.push_back(int64_t(p - data));
  }
  off.push_back(bytes + 1);
  return off;
}

namespace {

// Length of the valid UTF-8 prefix of [p, p + n) as the WHATWG decoder (fatal) accepts it;
// n when all of it is valid.
size_t valid_utf8(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t t = 2; t < len; ++t)
      if (p[i + t] < 0x80 || p[i + t] > 0xBF) return i;
    i += len;
  }
  return n;
}

void put_utf8(BigBuffer& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push(char(cp));
  } else if (cp < 0x800) {
    out.push(char(0xC0 | (cp >> 6)));
    out.push(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push(char(0xE0 | (cp >> 12)));
    out.push(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push(char(0x80 | (cp & 0x3F)));
  } else {
    out.push(char(0xF0 | (cp >> 18)));
    out.push(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push(char(0x80 | (cp & 0x3F)));
  }
}

struct BadItem {
  int64_t pos = -1;  // position in the output (rows index), -1 when none
  ErrorCode code = ErrorCode::Format;
  std::string what;
};

// Appends the id of `row` to out; returns false (filling bad) when it cannot be written.
bool append_id(BigBuffer& out, const IdsSource& ids, int64_t row, BadItem& bad) {
  if (row < 0 || (ids.kind != IdsSource::Kind::Rows && row >= ids.count) ||
      (ids.kind == IdsSource::Kind::Rows && ids.count > 0 && row >= ids.count)) {
    bad.code = ErrorCode::InvalidArgument;
    bad.what = "row " + std::to_string(row) + " has no id (the ids hold " + std::to_string(ids.count) + ")";
    return false;
  }
  switch (ids.kind) {
    case IdsSource::Kind::Rows: {
      char buf[24];
      int len = 0;
      uint64_t v = uint64_t(row);
      do {
        buf[len++] = char('0' + v % 10);
        v /= 10;
      } while (v);
      while (len) out.push(buf[--len]);
      return true;
    }
    case IdsSource::Kind::Bytes: {
      const uint8_t* p = ids.data + row * ids.width;
      size_t e = size_t(ids.width);
      while (e > 0 && p[e - 1] == 0) --e;
      if (valid_utf8(p, e) != e) {
        bad.what = "item " + std::to_string(row) + " is not valid UTF-8";
        return false;
      }
      size_t b = 0;
      if (e >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) b = 3;  // the decoder drops a BOM
      out.append(p + b, e - b);
      return true;
    }
    case IdsSource::Kind::Utf32: {
      const uint8_t* p = ids.data + row * ids.width * 4;
      auto at = [p](int64_t t) {
        return uint32_t(p[4 * t]) | uint32_t(p[4 * t + 1]) << 8 | uint32_t(p[4 * t + 2]) << 16 |
               uint32_t(p[4 * t + 3]) << 24;
      };
      int64_t e = ids.width;
      while (e > 0 && at(e - 1) == 0) --e;
      for (int64_t t = 0; t < e; ++t) {
        const uint32_t cp = at(t);
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
          char hex[16];
          std::snprintf(hex, sizeof hex, "%x", cp);
          bad.what = "item " + std::to_string(row) + " holds an invalid code point 0x" + hex;
          return false;
        }
        put_utf8(out, cp);
      }
      return true;
    }
    case IdsSource::Kind::Blob: {
      const int64_t b = ids.offsets[row], e = ids.offsets[row + 1] - 1;
      out.append(ids.data + b, size_t(e - b));
      return true;
    }
  }
  return true;
}

inline void prefetch_id(const IdsSource& ids, int64_t row) {
  if (row < 0 || row >= ids.count) return;
  switch (ids.kind) {
    case IdsSource::Kind::Bytes:
      __builtin_prefetch(ids.data + row * ids.width);
      break;
    case IdsSource::Kind::Utf32:
      __builtin_prefetch(ids.data + row * ids.width * 4);
      break;
    case IdsSource::Kind::Blob:
      __builtin_prefetch(ids.offsets + row);
      break;
    case IdsSource::Kind::Rows:
      break;
  }
}

void write_all(int fd, const BigBuffer& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t w = ::write(fd, s.data() + done, std::min<size_t>(s.size() - done, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::Io, std::string("write failed: ") + std::strerror(errno));
    }
    done += size_t(w);
  }
}

}  // namespace

void write_ids_text(int fd, const IdsSource& ids_in, const int64_t* rows, int64_t m, int threads, CancelFlag cancel,
                    const ProgressFn& progress, int64_t stage_bytes) {
  threads = resolve_threads(threads);
  // Rows come in keep order, scattered over the ids: with 4 KiB pages nearly every id read is a
  // TLB miss once the ids outgrow the TLB's reach (on a virtual machine a costly two-level page
  // walk: 24M ids of S24 took 51 s here). A copy into huge pages (one sequential pass) keeps
  // the whole table within reach. It is made per file, so it pays only for large tables: at 2M
  // text ids (42 MB, their page tables in cache) three files took 0.79-0.91 s with it and
  // 0.62-0.68 s without (bench/RESULTS.md).
  IdsSource ids = ids_in;
  BigBuffer staged, staged_off;
  int64_t data_bytes = 0;
  if (ids.kind == IdsSource::Kind::Bytes) data_bytes = ids.count * ids.width;
  if (ids.kind == IdsSource::Kind::Utf32) data_bytes = ids.count * ids.width * 4;
  if (ids.kind == IdsSource::Kind::Blob) data_bytes = ids.count > 0 ? ids.offsets[ids.count] - 1 : 0;
  if (data_bytes >= stage_bytes && m >= ids.count / 16) {
    staged.resize(size_t(data_bytes));
    const int64_t chunk = int64_t(16) << 20;
    parallel_for(threads, (data_bytes + chunk - 1) / chunk, [&](int64_t q, int) {
      const int64_t b = q * chunk, e = std::min(data_bytes, b + chunk);
      std::memcpy(staged.data() + b, ids.data + b, size_t(e - b));
    }, cancel);
    ids.data = reinterpret_cast<const uint8_t*>(staged.data());
    if (ids.kind == IdsSource::Kind::Blob) {
      staged_off.append(ids.offsets, size_t(ids.count + 1) * 8);
      ids.offsets = reinterpret_cast<const int64_t*>(staged_off.data());
    }
  }
  const int64_t piece = 65536;
  const int64_t pieces = (m + piece - 1) / piece;
  const int64_t batch = int64_t(threads) * 2;
  std::vector<BigBuffer> text(static_cast<size_t>(batch));
  std::vector<BadItem> bad(static_cast<size_t>(batch));
  for (int64_t p0 = 0; p0 < pieces; p0 += batch) {
    const int64_t np = std::min(batch, pieces - p0);
    parallel_for(threads, np, [&](int64_t j, int) {
      BigBuffer& out = text[size_t(j)];
      out.clear();
      bad[size_t(j)] = BadItem{};
      const int64_t b = (p0 + j) * piece, e = std::min(m, b + piece);
      out.reserve(size_t(e - b) * size_t(ids.kind == IdsSource::Kind::Bytes ? ids.width + 1 : 16));
      for (int64_t i = b; i < e; ++i) {
        // Rows come in keep order, scattered over the ids: fetch a few items ahead.
        if (i + 8 < e) prefetch_id(ids, rows[i + 8]);
        if (i > 0) out.push('\n');
        if (!append_id(out, ids, rows[i], bad[size_t(j)])) {
          bad[size_t(j)].pos = i;
          return;
        }
      }
    }, cancel);
    for (int64_t j = 0; j < np; ++j)
      if (bad[size_t(j)].pos >= 0) throw Error(bad[size_t(j)].code, bad[size_t(j)].what);
    for (int64_t j = 0; j < np; ++j) write_all(fd, text[size_t(j)]);
    if (progress) progress(std::min(m, (p0 + np) * piece), m);
  }
}

}  // namespace semdedup
