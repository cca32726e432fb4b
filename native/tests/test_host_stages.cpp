// Tests of the host stages of steps 3 and 5 against plain sequential references: the parallel
// ranking (rank_clusters) against a counting pass plus std::stable_sort with docs/algorithm.md's
// comparison, the one-pass split of every eps against a loop per eps, and the native ids writer
// against a byte-by-byte reference (numpy's rules: trailing NULs stripped, UTF-8 checked, UTF-32
// encoded), for every thread count.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "semdedup/extract.hpp"
#include "semdedup/sort.hpp"

using namespace semdedup;
using check::run;

namespace {

// The definition of docs/algorithm.md, sequentially: rows of cluster c in ascending row order, then a stable
// sort by key (descending when keep_hard).
void reference_rank(const std::vector<int64_t>& nearest, const std::vector<float>& key, int64_t k, bool hard,
                    std::vector<int64_t>& order, std::vector<int64_t>& off) {
  const int64_t n = int64_t(nearest.size());
  order.clear();
  off.assign(size_t(k + 1), 0);
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(k));
  for (int64_t i = 0; i < n; ++i) members[size_t(nearest[size_t(i)])].push_back(i);
  for (int64_t c = 0; c < k; ++c) {
    const size_t b = order.size();
    order.insert(order.end(), members[size_t(c)].begin(), members[size_t(c)].end());
    std::stable_sort(order.begin() + long(b), order.end(), [&](int64_t a, int64_t r) {
      return hard ? key[size_t(a)] > key[size_t(r)] : key[size_t(a)] < key[size_t(r)];
    });
    off[size_t(c + 1)] = int64_t(order.size());
  }
}

std::string read_file(const std::string& path) {
  std::string s;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return s;
  char buf[65536];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, got);
  std::fclose(f);
  return s;
}

struct TempFile {
  std::string path;
  int fd = -1;
  TempFile() {
    char tmpl[] = "/tmp/semdedup-test-ids-XXXXXX";
    fd = mkstemp(tmpl);
    path = tmpl;
  }
  ~TempFile() {
    if (fd >= 0) close(fd);
    unlink(path.c_str());
  }
  std::string written() {
    close(fd);
    fd = -1;
    return read_file(path);
  }
};

std::string write_ids(const IdsSource& src, const std::vector<int64_t>& rows, int threads,
                      int64_t stage_bytes = kIdsStageBytes) {
  TempFile f;
  write_ids_text(f.fd, src, rows.data(), int64_t(rows.size()), threads, nullptr, nullptr, stage_bytes);
  return f.written();
}

std::string reference_join(const std::vector<std::string>& items, const std::vector<int64_t>& rows) {
  std::string s;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i) s += '\n';
    s += items[size_t(rows[i])];
  }
  return s;
}

void put_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
}

template <class F>
std::string error_of(F&& f, ErrorCode* code = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (code) *code = e.code();
    return e.what();
  }
  return "";
}

}  // namespace

int main() {
  std::mt19937_64 rng(20261129);

  run("rank: parallel grouping and ranking equal the sequential stable sort, for every thread count", [&] {
    for (int64_t n : {0, 1, 7, 1000, 300000}) {
      for (int64_t k : {1, 5, 997}) {
        std::vector<int64_t> nearest(static_cast<size_t>(n));
        std::vector<float> key(static_cast<size_t>(n));
        // Skewed cluster sizes, many exact ties, signed zeros, and one cluster with a NaN key.
        for (int64_t i = 0; i < n; ++i) {
          const uint64_t r = rng();
          nearest[size_t(i)] = (r % 4 == 0) ? 0 : int64_t(r % uint64_t(k));
          const int kind = int((r >> 20) % 10);
          key[size_t(i)] = kind == 0 ? 0.0f : kind == 1 ? -0.0f : kind < 5 ? float((r >> 32) % 16) / 8.0f - 1.0f
                                                                             : float(int64_t(r >> 33) % 100000) / 1e5f;
        }
        if (n > 10 && k > 1) {
          for (int64_t i = 0; i < n; ++i)
            if (nearest[size_t(i)] == 1) {
              key[size_t(i)] = std::nanf("");
              break;
            }
        }
        for (bool hard : {true, false}) {
          std::vector<int64_t> ro, rf;
          reference_rank(nearest, key, k, hard, ro, rf);
          for (int threads : {1, 2, 5}) {
            std::vector<int64_t> order(static_cast<size_t>(n), -1), off(size_t(k + 1), -1);
            std::vector<float> sk(static_cast<size_t>(n));
            rank_clusters(nearest.data(), key.data(), n, k, hard, order.data(), off.data(), threads, sk.data());
            CHECK(off == rf, "n %lld k %lld hard %d threads %d: offsets differ", (long long)n, (long long)k, int(hard), threads);
            CHECK(order == ro, "n %lld k %lld hard %d threads %d: order differs", (long long)n, (long long)k, int(hard), threads);
            for (int64_t p = 0; p < n; ++p)
              CHECK(std::memcmp(&sk[size_t(p)], &key[size_t(order[size_t(p)])], 4) == 0, "sorted key at %lld", (long long)p);
          }
        }
      }
    }
  });

  run("rank: the first row outside [0, k) is named, whatever the thread count", [&] {
    const int64_t n = 400000, k = 10;
    std::vector<int64_t> nearest(static_cast<size_t>(n), 3);
    nearest[250000] = -1;
    nearest[390000] = 12;
    std::vector<float> key(static_cast<size_t>(n), 0.5f);
    std::vector<int64_t> order(static_cast<size_t>(n)), off(size_t(k + 1));
    for (int threads : {1, 4}) {
      ErrorCode code = ErrorCode::Internal;
      const std::string msg =
          error_of([&] { rank_clusters(nearest.data(), key.data(), n, k, true, order.data(), off.data(), threads); }, &code);
      CHECK(code == ErrorCode::InvalidArgument && msg.find("row 250000 ") != std::string::npos, "threads %d: '%s'",
            threads, msg.c_str());
    }
  });

  run("split: one pass over every eps equals a loop per eps (NaN M kept, ties at the threshold kept)", [&] {
    for (int64_t n : {0, 1, 1000, 700001}) {
      std::vector<int64_t> order(static_cast<size_t>(n));
      std::vector<double> M(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        order[size_t(i)] = int64_t(rng() % 1000000007ull);
        const uint64_t r = rng() % 20;
        M[size_t(i)] = r == 0 ? std::nan("") : r == 1 ? 0.95 : r == 2 ? 1.0 : double(rng() % 1000) / 1000.0;
      }
      const std::vector<double> th = {0.99, 0.95, 0.9, 0.0};
      for (int threads : {1, 3}) {
        std::vector<BigBuffer> kept, removed;
        split_kept(order.data(), M.data(), n, th, kept, removed, threads);
        CHECK(kept.size() == th.size() && removed.size() == th.size(), "one pair per eps");
        for (size_t e = 0; e < th.size(); ++e) {
          std::vector<int64_t> rk, rr;
          for (int64_t i = 0; i < n; ++i) (M[size_t(i)] > th[e] ? rr : rk).push_back(order[size_t(i)]);
          CHECK(kept[e].size() == rk.size() * 8 && removed[e].size() == rr.size() * 8, "n %lld eps %zu: sizes",
                (long long)n, e);
          CHECK(rk.empty() || std::memcmp(kept[e].data(), rk.data(), rk.size() * 8) == 0, "n %lld eps %zu: kept", (long long)n, e);
          CHECK(rr.empty() || std::memcmp(removed[e].data(), rr.data(), rr.size() * 8) == 0, "n %lld eps %zu: removed", (long long)n, e);
        }
      }
    }
  });

  run("ids text: S bytes (NULs stripped, BOM dropped, UTF-8), U code points, blobs and row numbers", [&] {
    const int64_t n = 200000, w = 12;
    std::vector<uint8_t> s(size_t(n * w), 0), u(size_t(n * w * 4), 0);
    std::vector<std::string> s_ref(static_cast<size_t>(n)), u_ref(static_cast<size_t>(n)), rows_ref(static_cast<size_t>(n));
    std::string blob;
    for (int64_t i = 0; i < n; ++i) {
      // S: ASCII with an embedded NUL now and then, a 2-byte and a 4-byte character, a BOM in front.
      std::string id = "r" + std::to_string(i);
      if (i % 7 == 0) id += std::string("\xC3\xA9", 2);
      if (i % 11 == 0) id += std::string("\xF0\x9F\x98\x80", 4);
      if (i % 13 == 0) id.insert(1, 1, '\0');
      std::string stored = (i % 17 == 0) ? std::string("\xEF\xBB\xBF", 3) + id : id;
      if (stored.size() > size_t(w)) stored.resize(size_t(w));  // still valid: cut at ASCII digits only below
      while (!stored.empty() && (uint8_t(stored.back()) & 0xC0) == 0x80) stored.pop_back();
      while (!stored.empty() && uint8_t(stored.back()) >= 0xC0) stored.pop_back();
      std::memcpy(&s[size_t(i * w)], stored.data(), stored.size());
      std::string r = stored;
      while (!r.empty() && r.back() == '\0') r.pop_back();
      if (r.compare(0, 3, "\xEF\xBB\xBF") == 0) r.erase(0, 3);
      s_ref[size_t(i)] = r;
      // U: code points incl. one above the BMP, trailing NULs stripped.
      std::vector<uint32_t> cps = {uint32_t('a' + i % 26), 0xE9, uint32_t(0x1F600 + i % 5)};
      for (char c : std::to_string(i)) cps.push_back(uint32_t(c));
      std::string ur;
      for (size_t t = 0; t < cps.size() && t < size_t(w); ++t) {
        const uint32_t cp = cps[t];
        for (int b = 0; b < 4; ++b) u[size_t((i * w + int64_t(t)) * 4 + b)] = uint8_t(cp >> (8 * b));
        put_utf8(ur, cp);
      }
      u_ref[size_t(i)] = ur;
      rows_ref[size_t(i)] = std::to_string(i);
      if (i) blob += '\n';
      blob += "id-" + std::to_string(i * 31);
    }
    std::vector<std::string> blob_ref(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) blob_ref[size_t(i)] = "id-" + std::to_string(i * 31);
    const std::vector<int64_t> off = blob_offsets(reinterpret_cast<const uint8_t*>(blob.data()), int64_t(blob.size()));
    CHECK(int64_t(off.size()) == n + 1, "blob offsets: %zu", off.size());

    std::vector<int64_t> rows;
    for (int64_t i = 0; i < n; ++i)
      if (rng() % 3) rows.push_back(int64_t(rng() % uint64_t(n)));
    IdsSource S;
    S.kind = IdsSource::Kind::Bytes, S.data = s.data(), S.width = w, S.count = n;
    IdsSource U;
    U.kind = IdsSource::Kind::Utf32, U.data = u.data(), U.width = w, U.count = n;
    IdsSource B;
    B.kind = IdsSource::Kind::Blob, B.data = reinterpret_cast<const uint8_t*>(blob.data()), B.offsets = off.data(), B.count = n;
    IdsSource R;
    R.kind = IdsSource::Kind::Rows, R.count = n;
    for (int threads : {1, 4}) {
      CHECK(write_ids(S, rows, threads) == reference_join(s_ref, rows), "S ids, threads %d", threads);
      CHECK(write_ids(U, rows, threads) == reference_join(u_ref, rows), "U ids, threads %d", threads);
      CHECK(write_ids(B, rows, threads) == reference_join(blob_ref, rows), "blob ids, threads %d", threads);
      CHECK(write_ids(R, rows, threads) == reference_join(rows_ref, rows), "row numbers, threads %d", threads);
      CHECK(write_ids(S, {}, threads).empty(), "no rows: an empty file");
    }
  });

  run("ids text: invalid items are named (the first in output order) and rows outside the ids refused", [&] {
    const int64_t n = 300000, w = 4;
    std::vector<uint8_t> s(size_t(n * w), 'a'), u(size_t(n * w * 4), 0);
    for (int64_t i = 0; i < n; ++i) u[size_t(i * w * 4)] = 'b';
    // overlong, lone continuation, surrogate, above U+10FFFF, truncated
    const std::vector<std::vector<uint8_t>> bad = {{0xC0, 0xAF}, {0x80}, {0xED, 0xA0, 0x80}, {0xF4, 0x90, 0x80, 0x80}, {0xE2, 0x82}};
    for (const auto& b : bad) {
      std::vector<uint8_t> t = s;
      std::memcpy(&t[size_t(250001 * w)], b.data(), b.size());
      std::memcpy(&t[size_t(299999 * w)], b.data(), b.size());
      IdsSource S;
      S.kind = IdsSource::Kind::Bytes, S.data = t.data(), S.width = w, S.count = n;
      std::vector<int64_t> rows(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) rows[size_t(i)] = n - 1 - i;  // 299999 comes first in output order
      ErrorCode code = ErrorCode::Internal;
      TempFile f;
      const std::string msg = error_of([&] { write_ids_text(f.fd, S, rows.data(), n, 4); }, &code);
      CHECK(code == ErrorCode::Format && msg == "item 299999 is not valid UTF-8", "'%s'", msg.c_str());
    }
    for (uint32_t cp : {0xD800u, 0x110000u}) {
      std::vector<uint8_t> t = u;
      for (int b = 0; b < 4; ++b) t[size_t(12345 * w * 4 + 4 + b)] = uint8_t(cp >> (8 * b));
      IdsSource U;
      U.kind = IdsSource::Kind::Utf32, U.data = t.data(), U.width = w, U.count = n;
      std::vector<int64_t> rows = {1, 12345, 2};
      char want[64];
      std::snprintf(want, sizeof want, "item 12345 holds an invalid code point 0x%x", cp);
      const std::string msg = error_of([&] { write_ids(U, rows, 2); });
      CHECK(msg == want, "'%s'", msg.c_str());
    }
    IdsSource S;
    S.kind = IdsSource::Kind::Bytes, S.data = s.data(), S.width = w, S.count = n;
    ErrorCode code = ErrorCode::Internal;
    error_of([&] { write_ids(S, {0, n}, 1); }, &code);
    CHECK(code == ErrorCode::InvalidArgument, "a row past the ids must be refused");
    // valid UTF-8 at the edges of the ranges the decoder accepts
    const std::vector<std::vector<uint8_t>> good = {{0xC2, 0x80}, {0xE0, 0xA0, 0x80}, {0xED, 0x9F, 0xBF}, {0xF4, 0x8F, 0xBF, 0xBF}};
    for (const auto& g : good) {
      std::vector<uint8_t> t(size_t(w), 0);
      std::memcpy(t.data(), g.data(), g.size());
      IdsSource one;
      one.kind = IdsSource::Kind::Bytes, one.data = t.data(), one.width = w, one.count = 1;
      CHECK(write_ids(one, {0, 0}, 1) == std::string(g.begin(), g.end()) + "\n" + std::string(g.begin(), g.end()),
            "valid sequence refused");
    }
  });

  run("large inputs (keys and ids copied into huge pages first) give the same bytes", [&] {
    const int64_t n = (int64_t(1) << 22) + 5, k = 997;
    std::vector<int64_t> nearest(static_cast<size_t>(n));
    std::vector<float> key(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      nearest[size_t(i)] = int64_t(rng() % uint64_t(k));
      key[size_t(i)] = float(rng() % 5000) / 5000.0f;
    }
    std::vector<int64_t> ro, rf;
    reference_rank(nearest, key, k, true, ro, rf);
    std::vector<int64_t> order(static_cast<size_t>(n)), off(size_t(k + 1));
    rank_clusters(nearest.data(), key.data(), n, k, true, order.data(), off.data(), 2);
    CHECK(order == ro && off == rf, "rank of %lld rows", (long long)n);
    const int64_t m = 1500000, w = 24;  // 36 MB of ids
    std::vector<uint8_t> raw(size_t(m * w), 0);
    std::vector<std::string> ref(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) {
      ref[size_t(i)] = "img_" + std::to_string(i * 7) + ".jpg";
      std::memcpy(&raw[size_t(i * w)], ref[size_t(i)].data(), ref[size_t(i)].size());
    }
    std::vector<int64_t> rows(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) rows[size_t(i)] = int64_t(rng() % uint64_t(m));
    IdsSource S;
    S.kind = IdsSource::Kind::Bytes, S.data = raw.data(), S.width = w, S.count = m;
    // 36 MB: staged when the threshold allows it (the default stages from 256 MB on), and not
    CHECK(write_ids(S, rows, 2, int64_t(32) << 20) == reference_join(ref, rows), "ids of %lld rows (staged)", (long long)m);
    CHECK(write_ids(S, rows, 2) == reference_join(ref, rows), "ids of %lld rows", (long long)m);
  });

  return check::summary();
}
