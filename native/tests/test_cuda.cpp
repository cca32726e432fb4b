// Tests of the CUDA backend against the CPU core, on fresh random data every run (the seed is
// printed; pass it as the first argument to replay a run). Without a usable GPU only the
// no-GPU behaviour is checked (device_info reports why, entry points throw Backend errors), and
// the run is reported as skipped: `--require-gpu` turns that into a failure (scripts/gpu-check.sh
// passes it). Last line: "N passed, N failed".
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "semdedup/sampling.hpp"
#include "semdedup/common.hpp"
#include "semdedup/cuda.hpp"
#include "semdedup/engine.hpp"
#include "semdedup/kmeans.hpp"
#include "semdedup/maxsim.hpp"

using namespace semdedup;

static uint64_t g_seed = 0;
using check::run;

// ---------------------------------------------------------------------------------------------
// Data

struct Data {
  int64_t n = 0, d = 0;
  std::vector<float> f32;
  std::vector<uint16_t> f16;
  EmbeddingView view(bool half = false) const {
    EmbeddingView v;
    v.n = n;
    v.d = d;
    v.dtype = half ? DType::F16 : DType::F32;
    v.data = half ? static_cast<const void*>(f16.data()) : static_cast<const void*>(f32.data());
    return v;
  }
  void make_half() {
    f16.resize(f32.size());
    for (size_t i = 0; i < f32.size(); ++i) f16[i] = float_to_half(f32[i]);
  }
};

// Unit rows around `centers` random directions (noise sigma), so that similarities are high and
// spread like real near-duplicate data; dup_frac of the rows are exact copies of earlier rows.
static Data clustered(int64_t n, int64_t d, int centers, float sigma, double dup_frac, std::mt19937_64& rng) {
  Data x;
  x.n = n;
  x.d = d;
  x.f32.resize(size_t(n * d));
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> c(size_t(centers) * size_t(d));
  for (auto& v : c) v = nd(rng);
  std::uniform_int_distribution<int> pick(0, centers - 1);
  std::uniform_real_distribution<double> u(0, 1);
  for (int64_t i = 0; i < n; ++i) {
    float* r = &x.f32[size_t(i * d)];
    if (i > 0 && u(rng) < dup_frac) {
      const int64_t src = std::uniform_int_distribution<int64_t>(0, i - 1)(rng);
      std::memcpy(r, &x.f32[size_t(src * d)], size_t(d) * 4);
      continue;
    }
    const float* cc = &c[size_t(pick(rng)) * size_t(d)];
    double s = 0;
    for (int64_t j = 0; j < d; ++j) {
      r[j] = cc[j] / std::sqrt(float(d)) + sigma * nd(rng) / std::sqrt(float(d));
      s += double(r[j]) * r[j];
    }
    const float inv = float(1.0 / std::sqrt(s));
    for (int64_t j = 0; j < d; ++j) r[j] *= inv;
  }
  return x;
}

static double dot64(const EmbeddingView& v, int64_t a, int64_t b, std::vector<float>& ta, std::vector<float>& tb) {
  v.row(a, ta.data());
  v.row(b, tb.data());
  double s = 0;
  for (int64_t t = 0; t < v.d; ++t) s += double(ta[size_t(t)]) * double(tb[size_t(t)]);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Max similarity checks

struct Clusters {
  std::vector<int64_t> order, offsets;
  int64_t count() const { return int64_t(offsets.size()) - 1; }
  int64_t members() const { return offsets.back(); }
};

// Clusters of the given sizes over a random permutation of the rows (sizes must sum to <= n).
static Clusters make_clusters(const std::vector<int64_t>& sizes, int64_t n, std::mt19937_64& rng) {
  Clusters c;
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t(0));
  std::shuffle(perm.begin(), perm.end(), rng);
  c.offsets.push_back(0);
  int64_t p = 0;
  for (int64_t s : sizes) {
    for (int64_t i = 0; i < s; ++i) c.order.push_back(perm[size_t(p++)]);
    c.offsets.push_back(p);
  }
  return c;
}

struct MsOut {
  std::vector<double> M;
  std::vector<int64_t> arg;
  MaxSimStats st;
};

// The GPU limits the following calls pass (placement, memory budget, staging rows).
static GpuLimits g_gpu;
static void set_mode(int mode, int64_t memory_limit = 0, int64_t stream_rows = 0) {
  g_gpu = GpuLimits{};
  g_gpu.maxsim_placement = mode;
  g_gpu.memory_limit = memory_limit;
  g_gpu.stream_rows = stream_rows;
}
static MaxSimOptions limited(MaxSimOptions opt) {
  opt.gpu = g_gpu;
  return opt;
}

static MsOut gpu_maxsim(const EmbeddingView& v, const Clusters& c, const MaxSimOptions& opt) {
  MsOut o;
  // poison: every element must be written
  o.M.assign(size_t(c.members()), std::numeric_limits<double>::quiet_NaN());
  o.arg.assign(size_t(c.members()), int64_t(-7));
  o.st = cuda::max_similarity(v, c.order.data(), c.offsets.data(), c.count(), o.M.data(), o.arg.data(), limited(opt));
  return o;
}

static void reference(const EmbeddingView& v, const Clusters& c, std::vector<double>& M, std::vector<int64_t>& arg) {
  M.assign(size_t(c.members()), 0);
  arg.assign(size_t(c.members()), -1);
  for (int64_t q = 0; q < c.count(); ++q)
    max_similarity_reference(v, c.order.data() + c.offsets[size_t(q)], c.offsets[size_t(q + 1)] - c.offsets[size_t(q)],
                             M.data() + c.offsets[size_t(q)], arg.data() + c.offsets[size_t(q)]);
}

// Compares GPU output with the float64 reference at positions `which` (all when empty).
// Returns an empty string on success.
static std::string compare_ms(const EmbeddingView& v, const Clusters& c, const MsOut& g, const std::vector<double>& Mref,
                              const std::vector<int64_t>& aref, const std::vector<double>& thresholds,
                              const std::vector<int64_t>& which = {}) {
  (void)v;
  (void)thresholds;  // M is exact, so every decision is
  char buf[512];
  const int64_t count = which.empty() ? c.members() : int64_t(which.size());
  for (int64_t w = 0; w < count; ++w) {
    const int64_t p = which.empty() ? w : which[size_t(w)];
    const double m = g.M[size_t(p)], mr = Mref[size_t(w)];
    const int64_t a = g.arg[size_t(p)], ar = aref[size_t(w)];
    if (std::isnan(m) || a == -7) {
      std::snprintf(buf, sizeof buf, "position %lld not written", (long long)p);
      return buf;
    }
    // M is exact (maxsim.hpp): the float64 definition bit for bit, arg the earliest member reaching it.
    if (std::memcmp(&m, &mr, sizeof m) != 0 || a != ar) {
      std::snprintf(buf, sizeof buf, "position %lld: M %.17g arg %lld vs float64 definition %.17g arg %lld", (long long)p, m,
                    (long long)a, mr, (long long)ar);
      return buf;
    }
  }
  return "";
}


// ---------------------------------------------------------------------------------------------
// k-means helpers

// Host float64 nearest centroid (inner product: largest; L2: smallest squared distance).
static void host_nearest(const EmbeddingView& v, const std::vector<float>& cen, int k, bool ip, int64_t i,
                         std::vector<float>& row, int64_t& best, double& best_s, double& second_s) {
  v.row(i, row.data());
  best = -1;
  best_s = ip ? -1e300 : 1e300;
  second_s = best_s;
  for (int c = 0; c < k; ++c) {
    double s = 0;
    for (int64_t t = 0; t < v.d; ++t) {
      const double a = row[size_t(t)], b = cen[size_t(c) * size_t(v.d) + size_t(t)];
      s += ip ? a * b : (a - b) * (a - b);
    }
    const bool better = ip ? s > best_s : s < best_s;
    if (better) {
      second_s = best_s;
      best_s = s;
      best = c;
    } else if (ip ? s > second_s : s < second_s) {
      second_s = s;
    }
  }
}

static std::string check_assignment(const EmbeddingView& v, const std::vector<float>& cen, int k, bool ip,
                                    const std::vector<int64_t>& nearest, const std::vector<float>& dist) {
  std::vector<float> row(static_cast<size_t>(v.d));
  char buf[512];
  for (int64_t i = 0; i < v.n; ++i) {
    if (nearest[size_t(i)] == -7 || std::isnan(dist[size_t(i)])) {
      std::snprintf(buf, sizeof buf, "row %lld not written", (long long)i);
      return buf;
    }
    int64_t b;
    double bs, ss;
    host_nearest(v, cen, k, ip, i, row, b, bs, ss);
    const int64_t g = nearest[size_t(i)];
    if (g < 0 || g >= k) {
      std::snprintf(buf, sizeof buf, "row %lld: nearest %lld out of range", (long long)i, (long long)g);
      return buf;
    }
    if (g != b) {
      // near-tie: the GPU's choice must score within 1e-5 of the best
      double s = 0;
      for (int64_t t = 0; t < v.d; ++t) {
        const double a = row[size_t(t)], c = cen[size_t(g) * size_t(v.d) + size_t(t)];
        s += ip ? a * c : (a - c) * (a - c);
      }
      if (std::fabs(s - bs) > 1e-5) {
        std::snprintf(buf, sizeof buf, "row %lld: nearest %lld (score %.9f) vs float64 %lld (%.9f)", (long long)i,
                      (long long)g, s, (long long)b, bs);
        return buf;
      }
    }
    if (std::fabs(double(dist[size_t(i)]) - bs) > 1e-4 * std::max(1.0, std::fabs(bs))) {
      std::snprintf(buf, sizeof buf, "row %lld: dist %.9f vs float64 %.9f", (long long)i, double(dist[size_t(i)]), bs);
      return buf;
    }
  }
  return "";
}

// ---------------------------------------------------------------------------------------------

int main(int argc, char** argv) {
  bool require_gpu = false;
  g_seed = uint64_t(std::chrono::high_resolution_clock::now().time_since_epoch().count());
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--require-gpu") == 0)
      require_gpu = true;
    else
      g_seed = std::strtoull(argv[i], nullptr, 10);
  }
  std::printf("seed %llu (replay: test_cuda %llu)\n", (unsigned long long)g_seed, (unsigned long long)g_seed);
  std::mt19937_64 rng(g_seed);

  const cuda::DeviceInfo info = cuda::device_info();
  std::printf("device: available=%d name='%s' cc=%d.%d sms=%d mem=%lld/%lld MiB driver=%d runtime=%d reason='%s'\n",
              int(info.available), info.name.c_str(), info.cc_major, info.cc_minor, info.sm_count,
              (long long)(info.free_mem >> 20), (long long)(info.total_mem >> 20), info.driver_version,
              info.runtime_version, info.reason.c_str());

  if (!info.available) {
    run("no GPU: device_info explains why", [&] { CHECK(!info.reason.empty(), "empty reason"); });
    run("no GPU: max_similarity throws a Backend error", [&] {
      Data x = clustered(10, 4, 2, 0.1f, 0, rng);
      Clusters c = make_clusters({10}, 10, rng);
      std::vector<double> M(10);
      std::vector<int64_t> arg(10);
      bool threw = false;
      try {
        cuda::max_similarity(x.view(), c.order.data(), c.offsets.data(), 1, M.data(), arg.data(), limited({}));
      } catch (const Error& e) {
        threw = e.code() == ErrorCode::Backend;
      }
      CHECK(threw, "expected Error(Backend)");
    });
    if (require_gpu) {
      ++check::failed;
      std::printf("FAIL no usable GPU: %s\n", info.reason.c_str());
    } else {
      std::printf("SKIP GPU tests: %s\n", info.reason.c_str());
    }
    return check::summary();
  }

  // ---- max similarity: sizes around the tile edges, one cluster each, all placements ----
  run("maxsim: single clusters of size 1, 2, 3, tile edges +-1 (f32, every placement)", [&] {
    for (int64_t d : {int64_t(3), int64_t(8), int64_t(100), int64_t(512)}) {
      for (int64_t n : {1, 2, 3, 127, 128, 129, 255, 256, 257, 383, 384, 385, 1000}) {
        Data x = clustered(n + 5, d, 4, 0.6f, 0.02, rng);
        Clusters c = make_clusters({n}, x.n, rng);
        std::vector<double> Mref;
        std::vector<int64_t> aref;
        reference(x.view(), c, Mref, aref);
        MsOut first;
        for (int mode : {1, 2}) {
          set_mode(mode, mode == 2 ? std::max<int64_t>(1, (n / 3 + 1)) * 2 * (((d + 7) / 8 * 8) * 4 + 8) : 0);
          MsOut g = gpu_maxsim(x.view(), c, {});
          const std::string err = compare_ms(x.view(), c, g, Mref, aref, {0.5, 0.9, 0.99});
          CHECK(err.empty(), "d %lld n %lld mode %d: %s", (long long)d, (long long)n, mode, err.c_str());
          if (mode == 1) {
            first = g;
          } else {
            // same kernel arithmetic per pair, order-independent merge: identical results
            CHECK(std::memcmp(first.M.data(), g.M.data(), g.M.size() * 8) == 0 && first.arg == g.arg,
                  "d %lld n %lld: placements differ", (long long)d, (long long)n);
          }
        }
      }
    }
    set_mode(0);
  });

  run("maxsim: many small clusters mixed with big ones, empty clusters, d = 100", [&] {
    std::vector<int64_t> sizes;
    std::uniform_int_distribution<int> small(0, 40);
    for (int i = 0; i < 600; ++i) sizes.push_back(small(rng));
    for (int64_t s : {1500, 2049, 700, 0, 1, 128}) sizes.insert(sizes.begin() + int64_t(rng() % sizes.size()), s);
    const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t(0));
    Data x = clustered(total + 100, 100, 50, 0.5f, 0.03, rng);
    Clusters c = make_clusters(sizes, x.n, rng);
    std::vector<double> Mref;
    std::vector<int64_t> aref;
    reference(x.view(), c, Mref, aref);
    for (int mode : {0, 1, 2}) {
      set_mode(mode, mode == 2 ? 1000 * 2 * (104 * 4 + 8) : 0);  // batches of ~900 rows: big ones chunked
      MsOut g = gpu_maxsim(x.view(), c, {});
      const std::string err = compare_ms(x.view(), c, g, Mref, aref, {0.7, 0.95});
      CHECK(err.empty(), "mode %d: %s", mode, err.c_str());
      CHECK(g.st.members == c.members() && g.st.clusters == c.count(), "stats");
    }
    set_mode(0);
  });

  run("maxsim: exact duplicates go to the earliest copy", [&] {
    const int64_t d = 64;
    Data x = clustered(3000, d, 5, 0.3f, 0.3, rng);
    Clusters c = make_clusters({1000, 999, 1001}, x.n, rng);
    std::vector<double> Mref;
    std::vector<int64_t> aref;
    reference(x.view(), c, Mref, aref);
    MsOut g = gpu_maxsim(x.view(), c, {});
    const std::string err = compare_ms(x.view(), c, g, Mref, aref, {0.9, 0.999});
    CHECK(err.empty(), "%s", err.c_str());
    int64_t dups = 0;
    for (int64_t q = 0; q < c.count(); ++q)
      for (int64_t p = c.offsets[size_t(q)]; p < c.offsets[size_t(q + 1)]; ++p)
        for (int64_t e = c.offsets[size_t(q)]; e < p; ++e)
          if (std::memcmp(&x.f32[size_t(c.order[size_t(e)] * d)], &x.f32[size_t(c.order[size_t(p)] * d)], d * 4) == 0) {
            ++dups;
            // the earliest copy reaches |x|^2 exactly in both precisions
            CHECK(g.arg[size_t(p)] == aref[size_t(p)], "position %lld: arg %lld vs %lld", (long long)p,
                  (long long)g.arg[size_t(p)], (long long)aref[size_t(p)]);
            break;
          }
    CHECK(dups > 100, "only %lld duplicates", (long long)dups);
  });

  run("maxsim: exact M whatever the thresholds (placed at members' float64 M)", [&] {
    const int64_t d = 256;
    Data x = clustered(4000, d, 8, 0.4f, 0.01, rng);
    Clusters c = make_clusters({1500, 2500}, x.n, rng);
    std::vector<double> Mref;
    std::vector<int64_t> aref;
    reference(x.view(), c, Mref, aref);
    MaxSimOptions opt;
    for (int i = 0; i < 5; ++i) {
      const int64_t p = 1 + int64_t(rng() % uint64_t(c.members() - 1));
      opt.thresholds.push_back(Mref[size_t(p)]);  // 1 - eps == M exactly for this member
    }
    MsOut g = gpu_maxsim(x.view(), c, opt);
    const std::string err = compare_ms(x.view(), c, g, Mref, aref, opt.thresholds);
    CHECK(err.empty(), "%s", err.c_str());
    const double margin = std::max(1e-5, 4.0 * double(d) * std::ldexp(1.0, -24));
    for (int64_t p = 0; p < c.members(); ++p)
      for (double t : opt.thresholds) {
        if (std::fabs(g.M[size_t(p)] - t) <= margin || std::fabs(Mref[size_t(p)] - t) <= margin / 2) {
          CHECK(g.M[size_t(p)] == Mref[size_t(p)], "position %lld near %.9f not exact: %.12f vs %.12f", (long long)p, t,
                g.M[size_t(p)], Mref[size_t(p)]);
        }
        CHECK((g.M[size_t(p)] > t) == (Mref[size_t(p)] > t), "position %lld: decision at %.12f", (long long)p, t);
      }
  });

  run("maxsim: float16 embeddings (every placement)", [&] {
    for (int64_t d : {int64_t(100), int64_t(384)}) {
      Data x = clustered(3000, d, 6, 0.5f, 0.02, rng);
      x.make_half();
      Clusters c = make_clusters({1, 2, 129, 1200, 700, 257}, x.n, rng);
      std::vector<double> Mref;
      std::vector<int64_t> aref;
      reference(x.view(true), c, Mref, aref);
      for (int mode : {1, 2}) {
        set_mode(mode, mode == 2 ? 400 * 2 * (((d + 7) / 8 * 8) * 2 + 8) : 0);
        MsOut g = gpu_maxsim(x.view(true), c, {});
        const std::string err = compare_ms(x.view(true), c, g, Mref, aref, {0.8, 0.97});
        CHECK(err.empty(), "d %lld mode %d: %s", (long long)d, mode, err.c_str());
      }
    }
    set_mode(0);
  });

  run("maxsim: a 100,000-member cluster (300 members checked in float64; chunked = resident)", [&] {
    const int64_t n = 100000, d = 128;
    Data x = clustered(n, d, 20, 0.8f, 0.001, rng);
    Clusters c = make_clusters({n}, n, rng);
    set_mode(1);
    MsOut g = gpu_maxsim(x.view(), c, {});
    std::vector<int64_t> which;
    for (int i = 0; i < 300; ++i) which.push_back(int64_t(rng() % uint64_t(n)));
    which.push_back(n - 1);
    which.push_back(0);
    std::vector<double> Mref(which.size());
    std::vector<int64_t> aref(which.size());
    std::vector<float> a(static_cast<size_t>(d)), b(static_cast<size_t>(d));
    for (size_t w = 0; w < which.size(); ++w) {
      const int64_t p = which[w];
      double best = 0;
      int64_t who = -1;
      for (int64_t i = 0; i < p; ++i) {
        const double s = dot64(x.view(), c.order[size_t(i)], c.order[size_t(p)], a, b);
        if (s > best) {
          best = s;
          who = c.order[size_t(i)];
        }
      }
      Mref[w] = best;
      aref[w] = who;
    }
    const std::string err = compare_ms(x.view(), c, g, Mref, aref, {0.9, 0.95}, which);
    CHECK(err.empty(), "%s", err.c_str());
    // column x row chunks of 30,000 rows must give the same bits
    set_mode(2, 30000 * 2 * (d * 4 + 8));
    MsOut h = gpu_maxsim(x.view(), c, {});
    set_mode(0);
    CHECK(std::memcmp(g.M.data(), h.M.data(), g.M.size() * 8) == 0 && g.arg == h.arg, "chunked run differs");
  });

  run("maxsim: cancellation", [&] {
    Data x = clustered(5000, 64, 4, 0.5f, 0, rng);
    Clusters c = make_clusters({5000}, x.n, rng);
    std::vector<double> M(5000);
    std::vector<int64_t> arg(5000);
    std::atomic<bool> cancel{true};
    bool threw = false;
    try {
      cuda::max_similarity(x.view(), c.order.data(), c.offsets.data(), 1, M.data(), arg.data(), limited({}), {}, &cancel);
    } catch (const Error& e) {
      threw = e.code() == ErrorCode::Cancelled;
    }
    CHECK(threw, "expected Error(Cancelled)");
  });

  // ---- k-means ----
  run("assign_nearest: the CPU backend's bytes, exact against float64 (IP and L2, f32 and f16, several chunks)", [&] {
    const int64_t n = 20011, d = 100;
    const int k = 300;
    Data x = clustered(n, d, 40, 0.7f, 0.01, rng);
    x.make_half();
    std::vector<float> cen(size_t(k) * size_t(d));
    std::normal_distribution<float> nd;
    for (auto& v : cen) v = nd(rng) / 10.f;
    // near ties: centroid 1 = centroid 0 with two values swapped, rows near centroid 0 with those
    // two values equal (exactly equidistant from both) or nearly equal
    std::copy_n(cen.begin(), d, cen.begin() + d);
    std::swap(cen[size_t(d) + 3], cen[size_t(d) + 4]);
    for (int64_t i = 0; i < 200; ++i) {
      float* r = &x.f32[size_t(i * d)];
      std::copy_n(cen.begin(), d, r);
      r[3] = r[4] = i % 2 ? 0.f : cen[3];
      if (i % 4 == 1) r[3] = std::nextafter(r[4], 1.f);
    }
    x.make_half();
    set_mode(0, 0, 4096);
    for (bool ip : {true, false})
      for (bool half : {false, true}) {
        std::vector<int64_t> nearest(size_t(n), -7);
        std::vector<float> dist(size_t(n), std::numeric_limits<float>::quiet_NaN());
        int64_t rescored = -1, rescored_cpu = -1;
        cuda::assign_nearest(x.view(half), cen.data(), k, ip, nearest.data(), dist.data(), g_gpu, {}, nullptr, &rescored);
        const std::string err = check_assignment(x.view(half), cen, k, ip, nearest, dist);
        CHECK(err.empty(), "ip %d half %d: %s", int(ip), int(half), err.c_str());
        std::vector<int64_t> nc(static_cast<size_t>(n));
        std::vector<float> dc(static_cast<size_t>(n));
        semdedup::assign_nearest(x.view(half), cen.data(), k, ip, nc.data(), dc.data(), 0, {}, nullptr, &rescored_cpu);
        CHECK(nc == nearest, "ip %d half %d: nearest differs from the CPU backend", int(ip), int(half));
        CHECK(std::memcmp(dc.data(), dist.data(), size_t(n) * 4) == 0, "ip %d half %d: dist bits differ from the CPU backend",
              int(ip), int(half));
        CHECK(rescored >= 200 / 2, "ip %d half %d: only %lld rows re-scored", int(ip), int(half), (long long)rescored);
        std::printf("     ip %d half %d: %lld rows re-scored on the GPU, %lld on the CPU\n", int(ip), int(half),
                    (long long)rescored, (long long)rescored_cpu);
      }
    set_mode(0);
  });

  run("assignment through the engine with device cuda: the same bytes as the CPU backend (step 3 ranks by these bits)", [&] {
    const int64_t n = 9001, d = 64;
    const int k = 1030;  // two centroid blocks of the CPU's search
    Data x = clustered(n, d, 50, 0.5f, 0.05, rng);
    x.make_half();
    std::vector<float> cen(size_t(k) * size_t(d));
    std::normal_distribution<float> nd;
    for (auto& v : cen) v = nd(rng) / 8.f;
    set_mode(0);
    for (bool ip : {true, false})
      for (bool half : {false, true}) {
        std::vector<int64_t> ng(size_t(n), -7), nc(size_t(n), -9);
        std::vector<float> dg(static_cast<size_t>(n)), dc(static_cast<size_t>(n));
        engine::assign_nearest(engine::Device::Cuda, engine::KMeansImpl::Engine, x.view(half), cen.data(), k, ip, ng.data(),
                               dg.data(), 0);
        semdedup::assign_nearest(x.view(half), cen.data(), k, ip, nc.data(), dc.data());
        CHECK(ng == nc, "ip %d half %d: nearest differs from the CPU backend", int(ip), int(half));
        CHECK(std::memcmp(dg.data(), dc.data(), size_t(n) * 4) == 0, "ip %d half %d: dist bits differ from the CPU backend",
              int(ip), int(half));
      }
  });

  run("k-means: nt == k copies the first rows; niter = 0 keeps FAISS's initial centroids", [&] {
    Data x = clustered(64, 20, 4, 0.5f, 0, rng);
    KMeansParams p;
    p.k = 64;
    p.niter = 5;
    KMeansResult r = cuda::train_kmeans(x.view(), p);
    CHECK(std::memcmp(r.centroids.data(), x.f32.data(), 64 * 20 * 4) == 0, "corner case");
    Data y = clustered(5000, 24, 8, 0.5f, 0, rng);
    p.k = 10;
    p.niter = 0;
    p.max_points_per_centroid = 100;
    KMeansResult s = cuda::train_kmeans(y.view(), p);
    const auto sample = kmeans_training_sample(5000, 10, 100, p.seed);
    const auto init = kmeans_init_rows(int64_t(sample.size()), 10, p.seed, 0);
    for (int c = 0; c < 10; ++c)
      CHECK(std::memcmp(&s.centroids[size_t(c) * 24], &y.f32[size_t(sample[size_t(init[size_t(c)])]) * 24], 24 * 4) == 0,
            "centroid %d", c);
  });

  run("k-means: GPU and CPU give the same bytes (centroids, objectives, iterations), spherical and L2, subsampled, with empty clusters", [&] {
    struct Case {
      int64_t n, d;
      int k, niter, maxp;
      bool spherical;
      double dup;
      int centers;
    };
    for (const Case& cs : {Case{20000, 32, 50, 10, 64, true, 0.0, 60}, Case{20000, 32, 50, 10, 64, false, 0.0, 60},
                           Case{9000, 40, 37, 8, 256, true, 0.0, 37}, Case{3000, 16, 40, 6, 256, false, 0.9, 30}}) {
      Data x = clustered(cs.n, cs.d, cs.centers, 0.3f, cs.dup, rng);
      KMeansParams p;
      p.k = cs.k;
      p.niter = cs.niter;
      p.spherical = cs.spherical;
      p.max_points_per_centroid = cs.maxp;
      p.seed = int64_t(rng() % 100000);
      KMeansResult g = cuda::train_kmeans(x.view(), p);
      KMeansResult c = semdedup::train_kmeans(x.view(), p);
      CHECK(int(g.objective.size()) == g.iterations && g.iterations <= cs.niter, "objective size %zu", g.objective.size());
      CHECK(g.n_train == std::min<int64_t>(cs.n, int64_t(cs.k) * cs.maxp), "n_train %lld", (long long)g.n_train);
      CHECK(g.iterations == c.iterations && g.objective == c.objective, "case n %lld: iterations %d / %d, objectives differ",
            (long long)cs.n, g.iterations, c.iterations);
      CHECK(g.centroids == c.centroids, "case n %lld: centroids differ from the CPU backend's", (long long)cs.n);
      // and the float64 objective of the last iteration from the centroids that entered it
      KMeansParams pl = p;
      pl.niter = g.iterations - 1;
      const KMeansResult g_t = cuda::train_kmeans(x.view(), pl);
      std::vector<float> row(static_cast<size_t>(cs.d));
      const auto sample = kmeans_training_sample(cs.n, cs.k, cs.maxp, p.seed);
      double obj = 0;
      for (int64_t i : sample) {
        int64_t b;
        double bs, ss;
        host_nearest(x.view(), g_t.centroids, cs.k, cs.spherical, i, row, b, bs, ss);
        obj += bs;
      }
      const double last = g.objective.back();
      CHECK(std::fabs(last - obj) <= 1e-5 * std::max(1.0, std::fabs(obj)), "case n %lld: objective %.9g vs float64 %.9g",
            (long long)cs.n, last, obj);
      std::printf("     n %lld k %d %s: %d iterations, %lld rows re-scored\n", (long long)cs.n, cs.k,
                  cs.spherical ? "spherical" : "L2", g.iterations, (long long)g.rescored_rows);
    }
  });

  return check::summary();
}
