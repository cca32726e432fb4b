// C++ tests of the core, without Node. Each check compares against an independent reference
// (float64 loops, or FAISS called directly). Last line: "N passed, N failed".
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "semdedup/blas.hpp"
#include "semdedup/common.hpp"
#include "semdedup/mapping.hpp"
#include "semdedup/maxsim.hpp"
#include "semdedup/nearest.hpp"
#include "semdedup/sampling.hpp"
#include "semdedup/sort.hpp"
#include "semdedup/scan.hpp"
#include "semdedup/kmeans.hpp"
#include "semdedup/decontaminate.hpp"
#include <sys/resource.h>
#ifdef SEMDEDUP_HAVE_FAISS
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#endif
#include "semdedup/kmeans.hpp"
#include "semdedup/nearest.hpp"

using namespace semdedup;

using check::run;

static std::vector<float> random_unit_rows(int64_t n, int64_t d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) {
      x[size_t(i * d + j)] = nd(rng);
      s += double(x[size_t(i * d + j)]) * x[size_t(i * d + j)];
    }
    const float inv = float(1.0 / std::sqrt(s));
    for (int64_t j = 0; j < d; ++j) x[size_t(i * d + j)] *= inv;
  }
  return x;
}

// Clustered data with planted duplicates: rows near a few centres, some copies of earlier rows.
static std::vector<float> clustered_rows(int64_t n, int64_t d, int centres, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  auto cen = random_unit_rows(centres, d, seed + 7);
  std::vector<float> x(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    if (i > 10 && rng() % 10 == 0) {  // exact or near duplicate of an earlier row
      const int64_t src = int64_t(rng() % uint32_t(i));
      for (int64_t j = 0; j < d; ++j) x[size_t(i * d + j)] = x[size_t(src * d + j)] + (rng() % 2 ? 0.f : 1e-3f * nd(rng));
    } else {
      const int c = int(rng() % uint32_t(centres));
      for (int64_t j = 0; j < d; ++j) x[size_t(i * d + j)] = cen[size_t(c * d + j)] + 0.05f * nd(rng);
    }
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(x[size_t(i * d + j)]) * x[size_t(i * d + j)];
    const float inv = float(1.0 / std::sqrt(s));
    for (int64_t j = 0; j < d; ++j) x[size_t(i * d + j)] *= inv;
  }
  return x;
}

static void check_maxsim(const EmbeddingView& v, const std::vector<int64_t>& order, const std::vector<int64_t>& offsets,
                         int threads, const std::vector<double>& thresholds, std::vector<double>* M_out = nullptr,
                         MaxSimStats* st_out = nullptr) {
  const int64_t nc = int64_t(offsets.size()) - 1;
  const int64_t total = offsets.back();
  std::vector<double> M(static_cast<size_t>(total), std::nan("")), Mref(static_cast<size_t>(total));
  std::vector<int64_t> arg(static_cast<size_t>(total), -7), argref(static_cast<size_t>(total));
  MaxSimOptions opt;
  opt.threads = threads;
  opt.thresholds = thresholds;
  const MaxSimStats st = max_similarity_cpu(v, order.data(), offsets.data(), nc, M.data(), arg.data(), opt);
  if (st_out) *st_out = st;
  for (int64_t c = 0; c < nc; ++c)
    max_similarity_reference(v, order.data() + offsets[c], offsets[c + 1] - offsets[c], Mref.data() + offsets[c],
                             argref.data() + offsets[c]);
  // M is exact: the float64 definition bit for bit, and the earliest member reaching it.
  for (int64_t p = 0; p < total; ++p) {
    CHECK(!std::isnan(M[size_t(p)]), "position %lld not written", (long long)p);
    CHECK(std::memcmp(&M[size_t(p)], &Mref[size_t(p)], sizeof(double)) == 0, "M[%lld] = %.17g, float64 definition %.17g",
          (long long)p, M[size_t(p)], Mref[size_t(p)]);
    CHECK(arg[size_t(p)] == argref[size_t(p)], "arg[%lld] = %lld, definition %lld", (long long)p, (long long)arg[size_t(p)],
          (long long)argref[size_t(p)]);
  }
  if (M_out) *M_out = M;
}

int main() {
  std::printf("BLAS core: %s, FAISS %s\n", blas_core_name().c_str(), faiss_version().c_str());

  run("half conversion round trip", [] {
    for (uint32_t h = 0; h < 0x10000; ++h) {
      const float f = half_to_float(uint16_t(h));
      if (std::isnan(f)) continue;
      CHECK(float_to_half(f) == h, "half %04x -> %g -> %04x", h, f, float_to_half(f));
    }
    CHECK(float_to_half(1.0f) == 0x3c00, "1.0");
    CHECK(float_to_half(65520.f) == 0x7c00, "overflow rounds to inf");
    CHECK(float_to_half(1.0f + 1.0f / 4096) == 0x3c00, "round to even down");
  });

  run("thread counts: 0 is every core, a huge request is capped at 4 a core", [] {
    const unsigned hc = std::thread::hardware_concurrency();
    const int cores = hc ? int(hc) : 1;
    CHECK(resolve_threads(0) == cores, "0 -> %d, cores %d", resolve_threads(0), cores);
    CHECK(resolve_threads(1) == 1, "1 -> %d", resolve_threads(1));
    CHECK(resolve_threads(99999999) == 4 * cores, "99999999 -> %d, expected %d", resolve_threads(99999999), 4 * cores);
    // The pool a huge request gets: at most 4 a core work at once.
    std::atomic<int> seen{0};
    std::vector<std::atomic<int>> hit(size_t(4 * cores + 1));
    parallel_for(99999999, 1 << 16, [&](int64_t, int w) {
      CHECK(w >= 0 && w < 4 * cores, "worker %d", w);
      if (hit[size_t(w)]++ == 0) seen++;
    });
    CHECK(seen.load() <= 4 * cores, "%d workers", seen.load());
  });

  run("max similarity: sizes 0,1,2, tile edges, many clusters", [] {
    const int64_t d = 48;
    const std::vector<int64_t> sizes = {0, 1, 2, 3, 255, 256, 257, 511, 512, 513, 7, 0, 1, 600};
    int64_t n = 0;
    for (auto s : sizes) n += s;
    auto x = clustered_rows(n, d, 5, 11);
    EmbeddingView v{x.data(), n, d, DType::F32};
    std::vector<int64_t> order(static_cast<size_t>(n)), offsets{0};
    std::mt19937 rng(3);
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
    std::shuffle(order.begin(), order.end(), rng);
    for (auto s : sizes) offsets.push_back(offsets.back() + s);
    check_maxsim(v, order, offsets, 2, {});
  });

  run("max similarity: exact duplicates, negative similarities clamp to 0", [] {
    const int64_t d = 16;
    std::vector<float> x = random_unit_rows(6, d, 5);
    for (int64_t j = 0; j < d; ++j) x[size_t(3 * d + j)] = x[size_t(1 * d + j)];       // row 3 == row 1
    for (int64_t j = 0; j < d; ++j) x[size_t(4 * d + j)] = -x[size_t(0 * d + j)];      // row 4 == -row 0
    for (int64_t j = 0; j < d; ++j) x[size_t(5 * d + j)] = x[size_t(1 * d + j)];       // row 5 == row 1 too
    EmbeddingView v{x.data(), 6, d, DType::F32};
    std::vector<int64_t> order = {0, 4}, offsets = {0, 2};
    std::vector<double> M(2);
    std::vector<int64_t> arg(2);
    max_similarity_cpu(v, order.data(), offsets.data(), 1, M.data(), arg.data(), {});
    CHECK(M[0] == 0 && arg[0] == -1, "first member");
    CHECK(M[1] == 0 && arg[1] == -1, "opposite vectors clamp to 0, got %g", M[1]);
    order = {1, 3, 5};
    offsets = {0, 3};
    M.assign(3, 0);
    arg.assign(3, 0);
    max_similarity_cpu(v, order.data(), offsets.data(), 1, M.data(), arg.data(), {});
    CHECK(std::fabs(M[1] - 1) < 1e-6 && arg[1] == 1, "dup of row 1: M %g arg %lld", M[1], (long long)arg[1]);
    CHECK(std::fabs(M[2] - 1) < 1e-6 && arg[2] == 1, "tie goes to the earliest member: arg %lld", (long long)arg[2]);
  });

  run("max similarity: deterministic across thread counts; thresholds at M re-checked", [] {
    const int64_t d = 64, n = 1500;
    auto x = clustered_rows(n, d, 3, 21);
    EmbeddingView v{x.data(), n, d, DType::F32};
    std::vector<int64_t> order(static_cast<size_t>(n)), offsets = {0, 700, 701, 1500};
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = (i * 7919) % n;
    std::vector<double> M1, M2;
    check_maxsim(v, order, offsets, 1, {}, &M1);
    check_maxsim(v, order, offsets, 3, {}, &M2);
    CHECK(std::memcmp(M1.data(), M2.data(), M1.size() * sizeof(double)) == 0, "thread count changed M");
    // thresholds placed exactly at some members' float64 M
    std::vector<double> Mref(static_cast<size_t>(n));
    std::vector<int64_t> aref(static_cast<size_t>(n));
    for (int c = 0; c < 3; ++c)
      max_similarity_reference(v, order.data() + offsets[c], offsets[c + 1] - offsets[c], Mref.data() + offsets[c],
                               aref.data() + offsets[c]);
    check_maxsim(v, order, offsets, 2, {Mref[100], Mref[900], std::nextafter(Mref[1200], 2.0)});
  });

  run("max similarity: clusters split into column items (> 4096 members), row blocks", [] {
    const int64_t d = 32;
    const std::vector<int64_t> sizes = {4097, 2049, 4500};
    int64_t n = 0;
    for (auto s : sizes) n += s;
    auto x = clustered_rows(n, d, 3, 77);
    EmbeddingView v{x.data(), n, d, DType::F32};
    std::vector<int64_t> order(static_cast<size_t>(n)), offsets{0};
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = (i * 104729) % n;
    for (auto s : sizes) offsets.push_back(offsets.back() + s);
    check_maxsim(v, order, offsets, 2, {0.98});
  });

  run("max similarity: planted exact and near ties (whole and split clusters) equal the float64 definition", [] {
    // Member j of a cluster gets two earlier members a < b with x_a . x_j == x_b . x_j exactly
    // (b is a changed only where x_j is 0) or nearly (and one value one ulp away),
    // far inside the float32 filter's bound: M, arg must be the float64 ones, arg the earliest.
    const int64_t d = 64;
    for (const int64_t n : {int64_t(900), int64_t(5000)}) {
      auto x = clustered_rows(n, d, 2, uint32_t(31 + n));
      std::mt19937 rng{uint32_t(n)};
      int planted = 0;
      for (int64_t j = 300; j < n; j += 97) {
        const int64_t a = int64_t(rng() % uint32_t(j / 2)), b = a + 1 + int64_t(rng() % uint32_t(j / 2 - 1));
        float* xa = x.data() + a * d;
        float* xb = x.data() + b * d;
        float* xj = x.data() + j * d;
        for (int64_t t = 0; t < d; ++t) xj[t] = xa[t];  // j close to a (and so to b)
        xj[5] = 0;
        for (int64_t t = 0; t < d; ++t) xb[t] = xa[t];
        xb[5] += 0.25f;                                   // x_b . x_j == x_a . x_j exactly
        if (planted % 2) xb[20] = std::nextafter(xb[20], 2.0f);  // a near tie
        xj[30] += 1e-3f;                                  // j is not a copy of either
        ++planted;
      }
      EmbeddingView v{x.data(), n, d, DType::F32};
      std::vector<int64_t> order(static_cast<size_t>(n)), offsets = {0, n};
      for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
      MaxSimStats st;
      check_maxsim(v, order, offsets, 2, {}, nullptr, &st);
      CHECK(st.rechecked >= planted / 2, "n %lld: %lld members re-scored for %d planted ties", (long long)n, (long long)st.rechecked, planted);
      std::printf("  n %lld: %d planted, %lld not decided by the filter, %lld re-scanned\n", (long long)n, planted,
                  (long long)st.rechecked, (long long)st.rescanned);
    }
  });

  run("max similarity: a 70,000-member cluster (wide column items), sampled members exact", [] {
    const int64_t d = 16, n = 70000;
    auto x = clustered_rows(n, d, 2, 123);
    EmbeddingView v{x.data(), n, d, DType::F32};
    std::vector<int64_t> order(static_cast<size_t>(n)), offsets = {0, n};
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = (i * 7919) % n;
    std::vector<double> M(static_cast<size_t>(n), std::nan(""));
    std::vector<int64_t> arg(static_cast<size_t>(n), -7);
    MaxSimOptions opt;
    opt.threads = 2;
    max_similarity_cpu(v, order.data(), offsets.data(), 1, M.data(), arg.data(), opt);
    std::mt19937 rng(9);
    for (int s = 0; s < 200; ++s) {
      const int64_t j = s < 4 ? std::vector<int64_t>{0, 1, 2047, n - 1}[size_t(s)] : int64_t(rng() % uint32_t(n));
      double best = 0;
      int64_t who = -1;
      for (int64_t i = 0; i < j; ++i) {
        const double dot = nearest::dot64(x.data() + order[size_t(i)] * d, x.data() + order[size_t(j)] * d, d);
        if (dot > best) {
          best = dot;
          who = order[size_t(i)];
        }
      }
      CHECK(M[size_t(j)] == best && arg[size_t(j)] == who, "member %lld: M %.17g arg %lld, float64 %.17g arg %lld", (long long)j,
            M[size_t(j)], (long long)arg[size_t(j)], best, (long long)who);
    }
  });

  run("max similarity: float16 input", [] {
    const int64_t d = 40, n = 700;
    auto x = clustered_rows(n, d, 4, 8);
    std::vector<uint16_t> h(x.size());
    for (size_t i = 0; i < x.size(); ++i) h[i] = float_to_half(x[i]);
    EmbeddingView v{h.data(), n, d, DType::F16};
    std::vector<int64_t> order(static_cast<size_t>(n)), offsets = {0, 300, 700};
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
    check_maxsim(v, order, offsets, 2, {0.99});
  });

  run("rank: grouped by cluster, stable ties, asc and desc", [] {
    const int64_t n = 2000, k = 7;
    std::mt19937 rng(1);
    std::vector<int64_t> nearest(static_cast<size_t>(n));
    std::vector<float> key(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      nearest[size_t(i)] = int64_t(rng() % 6);  // cluster 6 stays empty
      key[size_t(i)] = float(rng() % 50) / 50.f;  // many ties
    }
    for (bool hard : {true, false}) {
      std::vector<int64_t> order(static_cast<size_t>(n)), off(size_t(k + 1));
      rank_clusters(nearest.data(), key.data(), n, k, hard, order.data(), off.data());
      CHECK(off[0] == 0 && off[size_t(k)] == n && off[6] == off[7], "offsets");
      for (int64_t c = 0; c < k; ++c)
        for (int64_t p = off[size_t(c)]; p < off[size_t(c + 1)]; ++p) {
          const int64_t r = order[size_t(p)];
          CHECK(nearest[size_t(r)] == c, "row in wrong cluster");
          if (p > off[size_t(c)]) {
            const int64_t q = order[size_t(p - 1)];
            const bool in_order = hard ? key[size_t(q)] > key[size_t(r)] : key[size_t(q)] < key[size_t(r)];
            CHECK(in_order || (key[size_t(q)] == key[size_t(r)] && q < r), "order at %lld", (long long)p);
          }
        }
    }
    std::vector<int64_t> bad = {0, 9};
    std::vector<int64_t> order(2), off(3);
    bool threw = false;
    try {
      rank_clusters(bad.data(), key.data(), 2, 2, true, order.data(), off.data());
    } catch (const Error& e) {
      threw = e.code() == ErrorCode::InvalidArgument;
    }
    CHECK(threw, "cluster id out of range must throw");
  });

  run("scan: NaN, zero and unnormalised rows", [] {
    const int64_t d = 8;
    auto x = random_unit_rows(100, d, 2);
    x[size_t(17 * d + 3)] = std::nanf("");
    x[size_t(40 * d + 0)] = INFINITY;
    for (int64_t j = 0; j < d; ++j) x[size_t(50 * d + j)] = 0;
    for (int64_t j = 0; j < d; ++j) x[size_t(60 * d + j)] *= 2;
    EmbeddingView v{x.data(), 100, d, DType::F32};
    auto r = scan_embeddings(v, 1e-3, 2);
    CHECK(r.first_nonfinite == 17 && r.nonfinite_rows == 2, "nonfinite %lld", (long long)r.first_nonfinite);
    CHECK(r.first_zero == 50 && r.zero_rows == 1, "zero");
    CHECK(r.first_unnormalized == 60 && r.unnormalized_rows == 1, "unnormalised");
  });

  run("mapping: offset, size check, release", [] {
    const std::string path = "/tmp/semdedup_core_test.bin";
    {
      std::ofstream f(path, std::ios::binary);
      std::vector<float> v(5000);
      for (int i = 0; i < 5000; ++i) v[size_t(i)] = float(i);
      f.write("HDR!", 4);
      f.write(reinterpret_cast<const char*>(v.data()), 20000);
    }
    MappedFile m(path, 4, 20000, false);
    const float* p = static_cast<const float*>(m.data());
    CHECK(p[0] == 0.f && p[4999] == 4999.f, "values");
    m.release(0, 20000);
    CHECK(p[1234] == 1234.f, "pages come back after release");
    bool threw = false;
    try {
      MappedFile bad(path, 4, 20004, false);
    } catch (const Error& e) {
      threw = e.code() == ErrorCode::Format && std::string(e.what()).find(path) != std::string::npos;
    }
    CHECK(threw, "a too-short file must be a Format error naming the file");
    threw = false;
    try {
      MappedFile bad("/tmp/does/not/exist.bin", 0, -1, false);
    } catch (const Error& e) {
      threw = e.code() == ErrorCode::Io;
    }
    CHECK(threw, "missing file");
    std::remove(path.c_str());
  });

  run("mapped embeddings: pread gathers equal mapping reads (float32 and float16), same M", [] {
    const int64_t n = 900, d = 24;
    auto x = clustered_rows(n, d, 3, 5);
    std::vector<uint16_t> h(x.size());
    for (size_t i = 0; i < x.size(); ++i) h[i] = float_to_half(x[i]);
    for (bool half : {false, true}) {
      const std::string path = "/tmp/semdedup_core_gather.bin";
      {
        std::ofstream f(path, std::ios::binary);
        f.write("0123456789abcdef", 16);  // a header before row 0
        if (half)
          f.write(reinterpret_cast<const char*>(h.data()), std::streamsize(h.size() * 2));
        else
          f.write(reinterpret_cast<const char*>(x.data()), std::streamsize(x.size() * 4));
      }
      MappedFile m(path, 16, n * d * (half ? 2 : 4), false);
      EmbeddingView a{m.data(), n, d, half ? DType::F16 : DType::F32};
      EmbeddingView b = a;
      b.mapped = true;
      b.fd = m.fd();
      b.fd_offset = m.offset();
      std::vector<int64_t> rows = {899, 0, 17, 17, 450};
      std::vector<float> ga(rows.size() * size_t(d)), gb(rows.size() * size_t(d));
      a.gather(rows.data(), int64_t(rows.size()), ga.data());
      b.gather(rows.data(), int64_t(rows.size()), gb.data());
      CHECK(ga == gb, "pread gather differs from the mapping (half=%d)", int(half));
      std::vector<int64_t> order(static_cast<size_t>(n)), offsets = {0, 300, 900};
      for (int64_t i = 0; i < n; ++i) order[size_t(i)] = (i * 31) % n;
      std::vector<double> Ma(static_cast<size_t>(n)), Mb(static_cast<size_t>(n));
      std::vector<int64_t> aa(static_cast<size_t>(n)), ab(static_cast<size_t>(n));
      max_similarity_cpu(a, order.data(), offsets.data(), 2, Ma.data(), aa.data(), {});
      max_similarity_cpu(b, order.data(), offsets.data(), 2, Mb.data(), ab.data(), {});
      CHECK(Ma == Mb && aa == ab, "M differs between mapping and pread gathers");
      std::remove(path.c_str());
    }
  });

  run("sharded embeddings: one view over many files gives the single file's rows, scan, assignment, M and duplicates", [] {
    const int64_t n = 5000, d = 20;
    auto x = clustered_rows(n, d, 4, 21);
    std::vector<uint16_t> h(x.size());
    for (size_t i = 0; i < x.size(); ++i) h[i] = float_to_half(x[i]);
    // Uneven shards: empty, one row, ones crossing every block size the passes use.
    std::vector<int64_t> sizes = {0, 1, 7, 4095, 2, 0, 600, 1, 290};
    int64_t used = 0;
    for (int64_t s : sizes) used += s;
    for (int i = 0; used < n; ++i) {
      const int64_t s = std::min<int64_t>(n - used, 37 + 13 * i);
      sizes.push_back(s);
      used += s;
    }
    // A small descriptor limit: the gathers' pool then reuses its few slots.
    struct rlimit old;
    getrlimit(RLIMIT_NOFILE, &old);
    struct rlimit low = old;
    low.rlim_cur = 40;
    setrlimit(RLIMIT_NOFILE, &low);
    CHECK(shard_fd_budget() == 10, "fd budget %lld", (long long)shard_fd_budget());
    for (bool half : {false, true}) {
      const size_t item = half ? 2 : 4;
      const char* src = half ? reinterpret_cast<const char*>(h.data()) : reinterpret_cast<const char*>(x.data());
      std::vector<ShardSpec> specs;
      int64_t row = 0;
      for (size_t i = 0; i < sizes.size(); ++i) {
        const std::string path = "/tmp/semdedup_core_shard_" + std::to_string(i) + ".bin";
        std::ofstream f(path, std::ios::binary);
        const int64_t hdr = int64_t(i % 3) * 64;  // a header of some shards
        for (int64_t b = 0; b < hdr; ++b) f.put('h');
        f.write(src + size_t(row * d) * item, std::streamsize(size_t(sizes[i] * d) * item));
        specs.push_back({path, hdr, sizes[i]});
        row += sizes[i];
      }
      const std::string one = "/tmp/semdedup_core_shard_all.bin";
      {
        std::ofstream f(one, std::ios::binary);
        f.write(src, std::streamsize(size_t(n * d) * item));
      }
      MappedFile m(one, 0, -1, false);
      EmbeddingView a{m.data(), n, d, half ? DType::F16 : DType::F32};
      a.mapped = true;
      a.fd = m.fd();
      MappedShards ms(specs, d, half ? DType::F16 : DType::F32);
      const EmbeddingView& b = ms.view();
      CHECK(b.n == n && !b.contiguous() && b.preads(), "shape");
      std::vector<float> ra(size_t(n * d)), rb(size_t(n * d));
      a.rows(0, n, ra.data());
      b.rows(0, n, rb.data());
      CHECK(ra == rb, "rows differ (half=%d)", int(half));
      std::vector<float> sa(size_t(700 * d)), sb(size_t(700 * d));
      for (int64_t b0 : {int64_t(0), int64_t(5), int64_t(4100), int64_t(4300)}) {
        const float* pa = a.f32_rows(b0, b0 + 700, sa.data());
        const float* pb = b.f32_rows(b0, b0 + 700, sb.data());
        CHECK(std::memcmp(pa, pb, size_t(700 * d) * 4) == 0, "f32_rows at %lld", (long long)b0);
      }
      std::vector<int64_t> idx;
      std::mt19937 rng(3);
      for (int i = 0; i < 3000; ++i) idx.push_back(int64_t(rng() % uint32_t(n)));
      std::vector<float> ga(idx.size() * size_t(d)), gb(idx.size() * size_t(d));
      a.gather(idx.data(), int64_t(idx.size()), ga.data());
      b.gather(idx.data(), int64_t(idx.size()), gb.data());
      CHECK(ga == gb, "gathers differ (half=%d)", int(half));
      const ScanResult s1 = scan_embeddings(a, 1e-3, 2), s2 = scan_embeddings(b, 1e-3, 2);
      CHECK(s1.min_norm == s2.min_norm && s1.max_norm == s2.max_norm && s1.unnormalized_rows == s2.unnormalized_rows, "scan");
      KMeansParams p;
      p.k = 8;
      p.niter = 4;
      p.threads = 2;
      p.max_points_per_centroid = 300;  // a sample: gathered rows
      const KMeansResult ka = train_kmeans(a, p), kb = train_kmeans(b, p);
      CHECK(ka.centroids == kb.centroids, "k-means centroids differ (half=%d)", int(half));
      std::vector<int64_t> na(static_cast<size_t>(n)), nb(static_cast<size_t>(n));
      std::vector<float> da(static_cast<size_t>(n)), db(static_cast<size_t>(n));
      assign_nearest(a, ka.centroids.data(), p.k, true, na.data(), da.data(), 2);
      assign_nearest(b, ka.centroids.data(), p.k, true, nb.data(), db.data(), 2);
      CHECK(na == nb && da == db, "assignment differs (half=%d)", int(half));
      std::vector<float> ca(static_cast<size_t>(n)), cb(static_cast<size_t>(n));
      cosine_to_centroid(a, ka.centroids.data(), p.k, na.data(), ca.data(), 2);
      cosine_to_centroid(b, ka.centroids.data(), p.k, na.data(), cb.data(), 2);
      CHECK(ca == cb, "cosine to centroid differs");
      std::vector<int64_t> order(static_cast<size_t>(n)), offsets = {0, 100, 4900, 5000};
      for (int64_t i = 0; i < n; ++i) order[size_t(i)] = (i * 31) % n;
      std::vector<double> Ma(static_cast<size_t>(n)), Mb(static_cast<size_t>(n));
      std::vector<int64_t> aa(static_cast<size_t>(n)), ab(static_cast<size_t>(n));
      max_similarity_cpu(a, order.data(), offsets.data(), 3, Ma.data(), aa.data(), {});
      max_similarity_cpu(b, order.data(), offsets.data(), 3, Mb.data(), ab.data(), {});
      CHECK(Ma == Mb && aa == ab, "M differs between one file and shards (half=%d)", int(half));
      std::vector<int64_t> fa(static_cast<size_t>(n)), fb(static_cast<size_t>(n));
      exact_duplicates(a, order.data(), fa.data(), 2);
      exact_duplicates(b, order.data(), fb.data(), 2);
      CHECK(fa == fb, "exact duplicates differ");
      std::vector<float> oa(static_cast<size_t>(n * d)), ob(static_cast<size_t>(n * d));
      normalize_rows(a, oa.data(), 2);
      normalize_rows(b, ob.data(), 2);
      CHECK(oa == ob, "normalised rows differ");
      for (size_t i = 0; i < sizes.size(); ++i) std::remove(("/tmp/semdedup_core_shard_" + std::to_string(i) + ".bin").c_str());
      std::remove(one.c_str());
    }
    setrlimit(RLIMIT_NOFILE, &old);
  });

  run("nearest.hpp: the fast pass's error stays within eps (sgemm, float32 and float64 fast scores, float64 values)", [] {
    // Adversarial rows: mixed magnitudes and signs (cancellation), D up to 4096; the exact inner
    // product in binary128 (each product exact, 113-bit sums: far below the bounds' scale).
    std::mt19937_64 rng(17);
    std::normal_distribution<double> nd;
    for (int64_t d : {3, 8, 61, 256, 1000, 4096}) {
      const int64_t m = d > 1000 ? 16 : 64, k = 48;
      std::vector<float> x(size_t(m * d)), c(size_t(k * d));
      for (auto* v : {&x, &c})
        for (size_t i = 0; i < v->size(); ++i) (*v)[i] = float(nd(rng) * std::ldexp(1.0, int(rng() % 24) - 12));
      for (int64_t j = 0; j < d; ++j) c[size_t(d + j)] = -c[size_t(j)] * (1 + 1e-7f);  // near cancellation
      std::vector<float> f(size_t(m * k));
      gemm_abt(x.data(), m, c.data(), k, d, f.data(), k);
      double worst = 0;
      for (int64_t i = 0; i < m; ++i) {
        const float* xi = &x[size_t(i * d)];
        const double xx = nearest::dot64(xi, xi, d);
        double cm2 = 0;
        for (int64_t t = 0; t < k; ++t) cm2 = std::max(cm2, nearest::dot64(&c[size_t(t * d)], &c[size_t(t * d)], d));
        const double xn = nearest::norm_slack(std::sqrt(xx)), cmax = nearest::norm_slack(std::sqrt(cm2));
        for (bool ip : {true, false}) {
          const double eps = nearest::eps_score(ip, d, xn, cmax), e64 = nearest::eps64(ip, d, xn, cmax);
          for (int64_t t = 0; t < k; ++t) {
            const float* ct = &c[size_t(t * d)];
            __float128 ex = 0, exx = 0, ecc = 0;
            for (int64_t j = 0; j < d; ++j) {
              ex += __float128(double(xi[j]) * double(ct[j]));
              exx += __float128(double(xi[j]) * double(xi[j]));
              ecc += __float128(double(ct[j]) * double(ct[j]));
            }
            const double cc = nearest::dot64(ct, ct, d);
            const double s64 = nearest::score64(ip, xx, cc, nearest::dot64(xi, ct, d));
            const double exact = ip ? double(ex) : -double(exx + ecc - 2 * ex);
            // the float64 score against the exact one
            CHECK(std::fabs(s64 - exact) <= e64, "d %lld: float64 score off by %g > %g", (long long)d, std::fabs(s64 - exact), e64);
            // the CPU's fast score (float64 arithmetic) and the GPU's (float32 arithmetic) against it
            const double fast = nearest::fast_score(ip, f[size_t(i * k + t)], cc);
            const float fast32 = ip ? f[size_t(i * k + t)] : 2.f * f[size_t(i * k + t)] - float(cc);
            for (double v : {fast, double(fast32)}) {
              const double err = std::fabs(v - (s64 + (ip ? 0 : xx)));
              worst = std::max(worst, err / eps);
              CHECK(err <= eps, "d %lld ip %d: fast score off by %g > eps %g", (long long)d, int(ip), err, eps);
            }
          }
        }
      }
      std::printf("     D %lld: largest error %.3g of eps\n", (long long)d, worst);
    }
  });

  run("k-means and assignment: the exact rule (float64 oracle), any thread count, pruning on or off", [] {
    const int64_t n = 6000, d = 24;
    auto x = clustered_rows(n, d, 10, 99);
    // near ties: rows that are exact copies of other rows, at other positions
    for (int64_t i = 0; i < 300; ++i) std::memcpy(&x[size_t((n - 1 - i) * d)], &x[size_t((i * 7) * d)], size_t(d) * 4);
    for (int k : {10, 48})  // 48: several groups of pruning bounds
    for (bool spherical : {true, false}) {
      KMeansParams p;
      p.k = k;
      p.niter = 12;
      p.seed = 1234;
      p.spherical = spherical;
      p.max_points_per_centroid = 100;  // n > k * 100: subsampled
      EmbeddingView v{x.data(), n, d, DType::F32};
      auto ours = train_kmeans(v, p);
      KMeansParams noprune = p;
      noprune.prune = false;
      auto unpruned = train_kmeans(v, noprune);
      CHECK(ours.pruned_rows > 0, "pruning skipped no row");
      KMeansParams one = p;
      one.threads = 1;
      CHECK(train_kmeans(v, one).centroids == ours.centroids, "the thread count changed the centroids");
      CHECK(unpruned.centroids == ours.centroids, "pruning changed the centroids");
      CHECK(ours.n_train == int64_t(k) * 100, "n_train %lld", (long long)ours.n_train);
      std::vector<int64_t> nearest(static_cast<size_t>(n)), nearest1(static_cast<size_t>(n));
      std::vector<float> dist(static_cast<size_t>(n)), dist1(static_cast<size_t>(n));
      int64_t rescored = -1;
      assign_nearest(v, ours.centroids.data(), k, spherical, nearest.data(), dist.data(), 2, {}, nullptr, &rescored);
      assign_nearest(v, ours.centroids.data(), k, spherical, nearest1.data(), dist1.data(), 1);
      CHECK(nearest == nearest1 && std::memcmp(dist.data(), dist1.data(), dist.size() * 4) == 0, "threads changed the assignment");
      CHECK(rescored >= 0 && rescored < n, "rescored %lld", (long long)rescored);
      // Oracle: every centroid scored by the float64 definition (8 lanes of exact products), the
      // best score, ties to the lower id; dist = that value rounded once.
      auto dot = [&](const float* a, const float* b) {
        double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j = 0; j < d; ++j) l[j % 8] += double(a[j]) * double(b[j]);
        return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
      };
      for (int64_t i = 0; i < n; ++i) {
        const float* xi = &x[size_t(i * d)];
        const double xx = dot(xi, xi);
        double best = 0;
        int64_t who = -1;
        for (int c = 0; c < k; ++c) {
          const float* cc = &ours.centroids[size_t(c * d)];
          const double s = spherical ? dot(xi, cc) : -((xx + dot(cc, cc)) - 2 * dot(xi, cc));
          if (who < 0 || s > best) best = s, who = c;
        }
        const float want = float(spherical ? best : std::max(0.0, -best));
        CHECK(nearest[size_t(i)] == who, "row %lld: %lld vs %lld", (long long)i, (long long)nearest[size_t(i)], (long long)who);
        CHECK(std::memcmp(&dist[size_t(i)], &want, 4) == 0, "dist row %lld: %.9g vs %.9g", (long long)i, dist[size_t(i)], want);
      }
      for (int64_t i = 0; i < 300; ++i)
        CHECK(nearest[size_t(n - 1 - i)] == nearest[size_t(i * 7)] &&
                  std::memcmp(&dist[size_t(n - 1 - i)], &dist[size_t(i * 7)], 4) == 0, "copies of row %lld differ", (long long)(i * 7));
#ifdef SEMDEDUP_HAVE_FAISS
      // Against faiss::Clustering: other centroids (its float32 sums and BLAS decide its
      // assignments), but a k-means objective within a small relative tolerance of FAISS's, both
      // measured in float64 over all rows.
      faiss::ClusteringParameters cp;
      cp.niter = p.niter;
      cp.seed = 1234;
      cp.spherical = spherical;
      cp.max_points_per_centroid = 100;
      faiss::Clustering clus(int(d), k, cp);
      std::unique_ptr<faiss::IndexFlat> idx(spherical ? (faiss::IndexFlat*)new faiss::IndexFlatIP(int(d))
                                                      : (faiss::IndexFlat*)new faiss::IndexFlatL2(int(d)));
      clus.train(n, x.data(), *idx);
      auto objective = [&](const float* cent) {
        double total = 0;
        for (int64_t i = 0; i < n; ++i) {
          double best = spherical ? -1e300 : 1e300;
          for (int c = 0; c < k; ++c) {
            double s = 0;
            for (int64_t j = 0; j < d; ++j) {
              const double a = x[size_t(i * d + j)], b = cent[size_t(c * d + j)];
              s += spherical ? a * b : (a - b) * (a - b);
            }
            best = spherical ? std::max(best, s) : std::min(best, s);
          }
          total += best;
        }
        return total;
      };
      const double ob = objective(ours.centroids.data()), of = objective(clus.centroids.data());
      std::printf("     k=%d spherical=%d: objective %.9g (FAISS %.9g), %d iterations, %lld rows re-scored\n", k,
                  int(spherical), ob, of, ours.iterations, (long long)rescored);
      CHECK(std::fabs(ob - of) <= 1e-3 * std::fabs(of), "objective %.9g vs FAISS %.9g", ob, of);
#endif
    }
  });
  run("k-means: centroids the same bytes as a plain Lloyd (every cluster summed again each iteration)", [] {
    // The driver keeps the float64 sum of a centroid whose rows did not change; the plain loop
    // below sums every cluster each iteration, in training-row order, and must give the same bytes.
    const int64_t n = 6000, d = 24;
    auto x = clustered_rows(n, d, 10, 5);
    for (bool spherical : {true, false}) {
      const int k = 48;
      KMeansParams p;
      p.k = k;
      p.niter = 25;
      p.seed = 77;
      p.spherical = spherical;
      p.max_points_per_centroid = 100;
      EmbeddingView v{x.data(), n, d, DType::F32};
      const KMeansResult ours = train_kmeans(v, p);
      const std::vector<int64_t> rows = kmeans_training_sample(n, k, 100, p.seed);
      const int64_t nt = int64_t(rows.size());
      std::vector<float> X(size_t(nt * d));
      for (int64_t i = 0; i < nt; ++i) std::memcpy(&X[size_t(i * d)], &x[size_t(rows[size_t(i)] * d)], size_t(d) * 4);
      auto dot = [&](const float* a, const float* b) {
        double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j = 0; j < d; ++j) l[j % 8] += double(a[j]) * double(b[j]);
        return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
      };
      auto normalise = [&](const double* src, float* dst) {  // float64 norm (8 lanes of squares), rounded once
        double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j = 0; j < d; ++j) {
          volatile double sq = src[j] * src[j];
          l[j % 8] += sq;
        }
        const double n2 = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        const double inv = n2 > 0 ? 1 / std::sqrt(n2) : 1.0;
        for (int64_t j = 0; j < d; ++j) dst[j] = float(src[j] * inv);
      };
      std::vector<float> cent(size_t(k * d));
      const std::vector<int64_t> init = kmeans_init_rows(nt, k, p.seed, 0);
      std::vector<double> tmp(static_cast<size_t>(d));
      for (int c = 0; c < k; ++c) {
        std::memcpy(&cent[size_t(c * d)], &X[size_t(init[size_t(c)] * d)], size_t(d) * 4);
        if (spherical) {
          for (int64_t j = 0; j < d; ++j) tmp[size_t(j)] = cent[size_t(c * d + j)];
          normalise(tmp.data(), &cent[size_t(c * d)]);
        }
      }
      std::vector<int64_t> assign(static_cast<size_t>(nt), -1), last;
      int it = 0, changed_clusters_last = -1;
      for (; it < p.niter; ++it) {
        last = assign;
        for (int64_t i = 0; i < nt; ++i) {
          const float* xi = &X[size_t(i * d)];
          double best = 0;
          int64_t who = -1;
          for (int c = 0; c < k; ++c) {
            const float* cc = &cent[size_t(c * d)];
            const double sc = spherical ? dot(xi, cc) : -((dot(xi, xi) + dot(cc, cc)) - 2 * dot(xi, cc));
            if (who < 0 || sc > best) best = sc, who = c;
          }
          assign[size_t(i)] = who;
        }
        if (it > 0 && assign == last) {
          ++it;
          break;
        }
        std::vector<uint8_t> touched(static_cast<size_t>(k), 0);
        for (int64_t i = 0; i < nt; ++i)
          if (assign[size_t(i)] != last[size_t(i)]) {
            touched[size_t(assign[size_t(i)])] = 1;
            if (last[size_t(i)] >= 0) touched[size_t(last[size_t(i)])] = 1;
          }
        changed_clusters_last = 0;
        for (uint8_t t : touched) changed_clusters_last += t;
        std::vector<double> sums(size_t(k * d), 0.0);
        std::vector<int64_t> counts(static_cast<size_t>(k), 0);
        for (int64_t i = 0; i < nt; ++i) {
          const int64_t c = assign[size_t(i)];
          ++counts[size_t(c)];
          for (int64_t j = 0; j < d; ++j) sums[size_t(c * d + j)] += double(X[size_t(i * d + j)]);
        }
        std::vector<float> hassign(static_cast<size_t>(k));
        for (int c = 0; c < k; ++c) {
          hassign[size_t(c)] = float(counts[size_t(c)]);
          if (counts[size_t(c)] == 0) {
            std::fill(&cent[size_t(c * d)], &cent[size_t(c * d)] + d, 0.f);
            continue;
          }
          for (int64_t j = 0; j < d; ++j) tmp[size_t(j)] = sums[size_t(c * d + j)] / double(counts[size_t(c)]);
          if (spherical)
            normalise(tmp.data(), &cent[size_t(c * d)]);
          else
            for (int64_t j = 0; j < d; ++j) cent[size_t(c * d + j)] = float(tmp[size_t(j)]);
        }
        if (faiss_split_clusters(size_t(d), size_t(k), size_t(nt), hassign.data(), cent.data()) > 0 && spherical)
          for (int c = 0; c < k; ++c)
            if (counts[size_t(c)] == 0 || float(counts[size_t(c)]) != hassign[size_t(c)]) {
              for (int64_t j = 0; j < d; ++j) tmp[size_t(j)] = cent[size_t(c * d + j)];
              normalise(tmp.data(), &cent[size_t(c * d)]);
            }
      }
      std::printf("     spherical=%d: %d iterations, %d of %d clusters changed in the last update\n", int(spherical), it,
                  changed_clusters_last, k);
      CHECK(it > 3 && changed_clusters_last < k, "the data did not leave clusters unchanged (%d iterations, %d changed)", it,
            changed_clusters_last);
      CHECK(ours.iterations == it, "iterations %d vs %d", ours.iterations, it);
      CHECK(ours.centroids == cent, "spherical=%d: the centroids differ from the plain Lloyd's", int(spherical));
    }
  });
  run("pruning bounds: grow_bounds and open_groups the same bits as the plain loops", [] {
    std::mt19937 rng(3);
    std::uniform_real_distribution<double> ud(-2, 2);
    const float special[] = {0.f, -0.f, 1e-45f, -1e-45f, 1e-38f, -1e-38f, 3.4e38f, -3.4e38f, INFINITY, -INFINITY, NAN, 1.f, -1.f};
    for (int n = 0; n <= 70; ++n)
      for (int trial = 0; trial < 20; ++trial) {
        std::vector<float> u(static_cast<size_t>(n)), want(static_cast<size_t>(n));
        std::vector<double> add(static_cast<size_t>(n));
        for (int g = 0; g < n; ++g) {
          u[size_t(g)] = rng() % 4 == 0 ? special[rng() % 13] : float(ud(rng) * std::pow(10.0, double(int(rng() % 9)) - 4));
          add[size_t(g)] = rng() % 5 == 0 ? 0.0 : std::fabs(ud(rng)) * 1e-3;
        }
        const double scale = trial % 3 == 0 ? 1.0 : std::fabs(ud(rng)), tau = trial % 4 == 0 ? 0.0 : trial % 4 == 1 ? 1e-300 : 1e-14 * std::fabs(ud(rng));
        for (int g = 0; g < n; ++g) {
          const double t = double(u[size_t(g)]) + scale * add[size_t(g)] + tau;
          float f = float(t);
          if (double(f) < t) f = std::nextafter(f, INFINITY);
          want[size_t(g)] = f;
        }
        const double l = trial % 2 ? ud(rng) : double(u.empty() ? 0.f : u[size_t(rng() % size_t(n))]);
        int open = 0;
        for (int g = 0; g < n; ++g) open += !(l > double(u[size_t(g)]));
        CHECK(open_groups(u.data(), n, l) == open, "n %d: open groups %d vs %d", n, open_groups(u.data(), n, l), open);
        grow_bounds(u.data(), add.data(), n, scale, tau);
        CHECK(n == 0 || std::memcmp(u.data(), want.data(), size_t(n) * 4) == 0, "n %d trial %d: grown bounds differ", n, trial);
      }
  });
#ifdef SEMDEDUP_HAVE_FAISS
  run("k-means: k > N and float16", [] {
    auto x = random_unit_rows(50, 8, 4);
    EmbeddingView v{x.data(), 50, 8, DType::F32};
    KMeansParams p;
    p.k = 51;
    bool threw = false;
    try {
      train_kmeans(v, p);
    } catch (const Error& e) {
      threw = e.code() == ErrorCode::InvalidArgument;
    }
    CHECK(threw, "k > N must be rejected");
    std::vector<uint16_t> h(x.size());
    for (size_t i = 0; i < x.size(); ++i) h[i] = float_to_half(x[i]);
    EmbeddingView vh{h.data(), 50, 8, DType::F16};
    p.k = 4;
    auto r = train_kmeans(vh, p);
    CHECK(r.centroids.size() == 32 && r.objective.size() == size_t(r.iterations) && r.iterations <= p.niter, "f16 training ran");
  });
#endif

  return check::summary();
}
