// The low-precision filter (semdedup/qfilter.hpp): its bound against the float64 values, and the
// same bytes from every path this CPU runs (SEMDEDUP_ISA), on data with near ties and copies so
// that the re-checks happen.
#include <cmath>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "check.hpp"
#include "semdedup/kmeans.hpp"
#include "semdedup/maxsim.hpp"
#include "semdedup/nearest.hpp"
#include "semdedup/qfilter.hpp"

using namespace semdedup;

namespace {

std::vector<float> unit_rows(int64_t n, int64_t d, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(size_t(n * d));
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) {
      const float v = nd(rng);
      x[size_t(i * d + j)] = v;
      s += double(v) * v;
    }
    const float inv = float(1 / std::sqrt(s));
    for (int64_t j = 0; j < d; ++j) x[size_t(i * d + j)] *= inv;
  }
  return x;
}

// Clustered unit rows with near ties: exact copies, near copies, and rows halfway between two
// cluster centres (as good for one as for the other).
std::vector<float> tricky_rows(int64_t n, int64_t d, int centres, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  const auto cen = unit_rows(centres, d, rng);
  std::vector<float> x(size_t(n * d));
  for (int64_t i = 0; i < n; ++i) {
    float* r = &x[size_t(i * d)];
    const int kind = int(rng() % 10);
    if (i > 10 && kind == 0) {  // a copy, exact or near, of an earlier row
      const int64_t src = int64_t(rng() % uint32_t(i));
      const bool exact = rng() % 2;
      for (int64_t j = 0; j < d; ++j) r[j] = x[size_t(src * d + j)] + (exact ? 0.f : 1e-4f * nd(rng));
    } else if (kind == 1) {  // halfway between two centres
      const int a = int(rng() % uint32_t(centres)), b = int(rng() % uint32_t(centres));
      for (int64_t j = 0; j < d; ++j) r[j] = cen[size_t(a * d + j)] + cen[size_t(b * d + j)];
    } else {
      const int c = int(rng() % uint32_t(centres));
      for (int64_t j = 0; j < d; ++j) r[j] = cen[size_t(c * d + j)] + 0.08f * nd(rng);
    }
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(r[j]) * r[j];
    const float inv = float(1 / std::sqrt(s));
    for (int64_t j = 0; j < d; ++j) r[j] *= inv;
  }
  return x;
}

struct EnvIsa {  // sets SEMDEDUP_ISA for a scope
  explicit EnvIsa(const char* v) { setenv("SEMDEDUP_ISA", v, 1); }
  ~EnvIsa() { unsetenv("SEMDEDUP_ISA"); }
};

}  // namespace

int main() {
  using check::run;
  const bool int8 = qfilter::best_isa() == qfilter::Isa::Avx2Int8;
  std::printf("     filter ISA of this CPU: %s\n", qfilter::isa_name(qfilter::best_isa()));

  run("SEMDEDUP_ISA: the paths by name, a clear error otherwise", [&] {
    {
      EnvIsa e("fp32");
      CHECK(qfilter::active_isa() == qfilter::Isa::Fp32, "fp32 not honoured");
    }
    {
      EnvIsa e("avx3-int4");
      bool threw = false;
      try {
        qfilter::active_isa();
      } catch (const Error& err) {
        threw = err.code() == ErrorCode::InvalidArgument && std::strstr(err.what(), "SEMDEDUP_ISA") != nullptr;
      }
      CHECK(threw, "an unknown SEMDEDUP_ISA was not refused by name");
    }
    CHECK(qfilter::active_isa() == qfilter::best_isa(), "unset SEMDEDUP_ISA is not the widest path");
  });

  if (int8)
    run("integer filter: every filter score within the row's bound of the float64 score (IP and L2)", [] {
      std::mt19937 rng(5);
      std::normal_distribution<float> nd(0.f, 1.f);
      for (int64_t d : {3, 37, 64, 512, 1000}) {
        const int64_t m = 21, k = 35;
        std::vector<float> x(size_t(m * d)), c(size_t(k * d));
        for (auto* v : {&x, &c})  // varied scales, and spikes that coarsen the quantisation
          for (size_t i = 0; i < v->size(); ++i)
            (*v)[i] = float(nd(rng) * std::ldexp(1.0, int(rng() % 8) - 4)) * (rng() % 97 == 0 ? 30.f : 1.f);
        for (int64_t j = 0; j < d; ++j) c[size_t(d + j)] = x[size_t(j)];  // a centroid equal to row 0
        qfilter::QRows qr;
        qr.quantise(x.data(), m, d);
        qfilter::QCols qc;
        qc.pack(c.data(), k, d);
        std::vector<int32_t> v(size_t(m * qc.np));
        qfilter::qgemm(qr.q.data(), m, qr.dp, qc, v.data(), qc.np);
        double cm2 = 0;
        for (int64_t t = 0; t < k; ++t) cm2 = std::max(cm2, nearest::dot64(&c[size_t(t * d)], &c[size_t(t * d)], d));
        const double cmax = nearest::norm_slack(std::sqrt(cm2));
        double worst = 0;
        for (int64_t i = 0; i < m; ++i) {
          const float* xi = &x[size_t(i * d)];
          const double xx = nearest::dot64(xi, xi, d);
          const double xn = nearest::norm_slack(std::sqrt(xx));
          // the kernel's sum against a plain integer loop
          for (int64_t t = 0; t < k; ++t) {
            int64_t ref = 0;
            for (int64_t j = 0; j < d; ++j) {
              const int8_t qcj = qc.packed[size_t(((t / 16) * (qc.dp / 4) + j / 4) * 64 + (t % 16) * 4 + j % 4)];
              ref += int64_t(qr.row(i)[j]) * qcj;
            }
            CHECK(ref == v[size_t(i * qc.np + t)], "d %lld: kernel sum %d, plain loop %lld", (long long)d,
                  v[size_t(i * qc.np + t)], (long long)ref);
          }
          for (bool ip : {true, false}) {
            const double eps = qfilter::row_bound(ip, d, qr.err[size_t(i)], qr.qnorm[size_t(i)], xn, cmax, qc);
            for (int64_t t = 0; t < k; ++t) {
              const float* ct = &c[size_t(t * d)];
              const double cc = nearest::dot64(ct, ct, d);
              const double s64 = nearest::score64(ip, xx, cc, nearest::dot64(xi, ct, d));
              const double p = qfilter::scaled(v[size_t(i * qc.np + t)], qr.scale[size_t(i)], qc, t);
              const double fast = ip ? p : 2 * p - cc;
              const double err = std::fabs(fast - (s64 + (ip ? 0 : xx)));
              worst = std::max(worst, err / eps);
              CHECK(err <= eps, "d %lld ip %d: filter score off by %g > bound %g", (long long)d, int(ip), err, eps);
            }
          }
        }
        std::printf("     D %lld: largest error %.3g of the bound\n", (long long)d, worst);
      }
    });

  run("k-means and assignment: the same bytes with SEMDEDUP_ISA=fp32 and each wider path; re-checks happen", [&] {
    std::vector<const char*> paths{"fp32"};
    if (int8) paths.push_back("avx2-int8");
    int64_t total_checked = 0, total_rescored = 0;
    for (int64_t d : {37, 256})
      for (bool spherical : {true, false}) {
        const int64_t n = 5000;
        const int k = 40;
        auto x = tricky_rows(n, d, 12, uint32_t(d) + (spherical ? 1 : 0));
        EmbeddingView v{x.data(), n, d, DType::F32};
        KMeansParams p;
        p.k = k;
        p.niter = 10;
        p.spherical = spherical;
        p.max_points_per_centroid = 64;
        std::vector<KMeansResult> res;
        std::vector<std::vector<int64_t>> nearest_of;
        std::vector<std::vector<float>> dist_of;
        for (const char* path : paths) {
          for (int threads : {1, 2}) {
            EnvIsa e(path);
            p.threads = threads;
            KMeansResult r = train_kmeans(v, p);
            CHECK(r.filter == path, "%s: the searches used %s", path, r.filter.c_str());
            std::vector<int64_t> nearest(static_cast<size_t>(n));
            std::vector<float> dist(static_cast<size_t>(n));
            int64_t rescored = 0, checked = 0;
            assign_nearest(v, res.empty() ? r.centroids.data() : res[0].centroids.data(), k, spherical, nearest.data(),
                           dist.data(), threads, {}, nullptr, &rescored, &checked);
            for (int niter : {p.niter, 2}) {  // converged or not: training's kept assignment is the search's
              KMeansParams pk = p;
              pk.keep_assignment = true;
              pk.niter = niter;
              KMeansResult rk = train_kmeans(v, pk);
              std::vector<int64_t> n2(static_cast<size_t>(n), -1);
              std::vector<float> d2(static_cast<size_t>(n), -1.f);
              std::vector<uint8_t> skip(static_cast<size_t>(n), 0);
              CHECK(!rk.final_rows.empty(), "%s: no kept assignment", path);
              for (size_t t = 0; t < rk.final_rows.size(); ++t) {
                n2[size_t(rk.final_rows[t])] = rk.final_nearest[t];
                d2[size_t(rk.final_rows[t])] = rk.final_dist[t];
                skip[size_t(rk.final_rows[t])] = 1;
              }
              std::vector<int64_t> n3(static_cast<size_t>(n));
              std::vector<float> d3(static_cast<size_t>(n));
              assign_nearest(v, rk.centroids.data(), k, spherical, n3.data(), d3.data(), threads);
              assign_nearest(v, rk.centroids.data(), k, spherical, n2.data(), d2.data(), threads, {}, nullptr, nullptr,
                             nullptr, skip.data());
              CHECK(n2 == n3 && std::memcmp(d2.data(), d3.data(), size_t(n) * 4) == 0,
                    "%s d %lld sph %d niter %d: the kept training assignment differs from the search's", path,
                    (long long)d, int(spherical), niter);
              if (niter == p.niter) CHECK(rk.centroids == r.centroids, "%s: keep_assignment changed the centroids", path);
            }
            if (std::strcmp(path, "fp32") != 0) {
              total_checked += checked + r.filter_rechecked_rows;
              total_rescored += rescored + r.rescored_rows;
            }
            res.push_back(std::move(r));
            nearest_of.push_back(std::move(nearest));
            dist_of.push_back(std::move(dist));
          }
        }
        for (size_t t = 1; t < res.size(); ++t) {
          CHECK(res[t].centroids == res[0].centroids, "d %lld sph %d: run %zu: centroids differ", (long long)d, int(spherical), t);
          CHECK(res[t].iterations == res[0].iterations && res[t].objective == res[0].objective,
                "d %lld: run %zu: iterations or objective differ", (long long)d, t);
          CHECK(nearest_of[t] == nearest_of[0], "d %lld sph %d: run %zu: nearest_cent differs", (long long)d, int(spherical), t);
          CHECK(std::memcmp(dist_of[t].data(), dist_of[0].data(), size_t(n) * 4) == 0,
                "d %lld sph %d: run %zu: dist_to_cent differs", (long long)d, int(spherical), t);
        }
        // and the float64 oracle of the assignment: the best dot64 score, ties to the lower id
        const float* C = res[0].centroids.data();
        for (int64_t i = 0; i < n; ++i) {
          const float* xi = &x[size_t(i * d)];
          const double xx = nearest::dot64(xi, xi, d);
          double bs = 0;
          int64_t bj = -1;
          for (int j = 0; j < k; ++j) {
            const double s = nearest::score64(spherical, xx, nearest::dot64(C + j * d, C + j * d, d), nearest::dot64(xi, C + j * d, d));
            if (bj < 0 || s > bs) bs = s, bj = j;
          }
          CHECK(nearest_of[0][size_t(i)] == bj, "row %lld: nearest %lld, oracle %lld", (long long)i,
                (long long)nearest_of[0][size_t(i)], (long long)bj);
          CHECK(dist_of[0][size_t(i)] == float(nearest::value_of_score(spherical, bs)), "row %lld: dist", (long long)i);
        }
      }
    if (int8) {
      std::printf("     integer filter: %lld rows checked by their float32 products, %lld re-scored in float64\n",
                  (long long)total_checked, (long long)total_rescored);
      CHECK(total_checked > 0, "the integer filter never left a row with several candidates");
      CHECK(total_rescored > 0, "no row reached the float64 re-score");
    }
  });

  run("max similarity: M and M_row the same bytes with SEMDEDUP_ISA=fp32 and each wider path, and the float64 oracle; exact copies skip the kernel", [&] {
    std::vector<const char*> paths{"fp32"};
    if (int8) paths.push_back("avx2-int8");
    for (int64_t d : {29, 384}) {
      const int64_t n = 3000;
      // Chains: each row a noisy copy of the previous one (cosine ~0.8 to it, ~0.64 to the one
      // before: a clear maximum the filter decides), restarting now and then (fresh rows: no
      // clear maximum), with exact copies (ties for the float64 re-score).
      std::mt19937 rng(9 + uint32_t(d));
      std::normal_distribution<float> nd(0.f, 1.f);
      auto x = unit_rows(n, d, rng);
      std::vector<int64_t> order(static_cast<size_t>(n)), offsets{0};
      while (offsets.back() < n) offsets.push_back(std::min<int64_t>(n, offsets.back() + 1 + int64_t(rng() % 700)));
      const int64_t nc = int64_t(offsets.size()) - 1;
      for (int64_t i = 1; i < n; ++i) {
        const int64_t first = *(std::upper_bound(offsets.begin(), offsets.end(), i) - 1);
        if (i == first || rng() % 12 == 0) continue;  // fresh
        const int kind = int(rng() % 15);
        const bool exact = kind <= 1;
        // kind 0: an exact copy of the previous row (decided as a copy); kind 1: of the row 70
        // before (too far to skip: the next row has two equal candidates, re-scored in float64)
        const int64_t from = kind == 1 && i - first > 70 ? i - 70 : i - 1;
        const float noise = exact ? 0.f : 0.75f / std::sqrt(float(d));
        double s2 = 0;
        for (int64_t j = 0; j < d; ++j) {
          float& r = x[size_t(i * d + j)];
          r = x[size_t(from * d + j)] + noise * nd(rng);
          s2 += double(r) * r;
        }
        if (!exact)
          for (int64_t j = 0; j < d; ++j) x[size_t(i * d + j)] *= float(1 / std::sqrt(s2));
      }
      EmbeddingView v{x.data(), n, d, DType::F32};
      // clusters of 1..700 members (whole-cluster items), rows in keep order (copies after their
      // sources; each cluster a contiguous range)
      for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
      std::vector<std::vector<double>> Ms;
      std::vector<std::vector<int64_t>> args;
      int64_t checked = 0, rechecked = 0, copies = -1;
      for (const char* path : paths)
        for (int threads : {1, 2}) {
          EnvIsa e(path);
          std::vector<double> M(static_cast<size_t>(n));
          std::vector<int64_t> arg(static_cast<size_t>(n));
          MaxSimOptions o;
          o.threads = threads;
          const MaxSimStats st = max_similarity_cpu(v, order.data(), offsets.data(), nc, M.data(), arg.data(), o);
          CHECK(st.filter == path, "%s: the kernel used %s", path, st.filter.c_str());
          if (std::strcmp(path, "fp32") != 0) checked += st.filter_checked, rechecked += st.rechecked;
          CHECK(copies < 0 || st.copies == copies, "%s: %lld copies, %lld before", path, (long long)st.copies, (long long)copies);
          copies = st.copies;
          Ms.push_back(std::move(M));
          args.push_back(std::move(arg));
        }
      for (size_t t = 1; t < Ms.size(); ++t) {
        CHECK(std::memcmp(Ms[t].data(), Ms[0].data(), size_t(n) * 8) == 0, "d %lld: run %zu: M differs", (long long)d, t);
        CHECK(args[t] == args[0], "d %lld: run %zu: M_row differs", (long long)d, t);
      }
      std::vector<double> Mr(static_cast<size_t>(n));
      std::vector<int64_t> ar(static_cast<size_t>(n));
      for (int64_t c = 0; c < nc; ++c)
        max_similarity_reference(v, order.data() + offsets[size_t(c)], offsets[size_t(c + 1)] - offsets[size_t(c)],
                                 Mr.data() + offsets[size_t(c)], ar.data() + offsets[size_t(c)]);
      CHECK(std::memcmp(Mr.data(), Ms[0].data(), size_t(n) * 8) == 0 && ar == args[0], "d %lld: M differs from the oracle", (long long)d);
      CHECK(copies > 0, "no exact copy was decided without the kernel");
      if (int8) {
        std::printf("     D %lld: %lld exact copies decided without the kernel; integer filter: %lld members checked by "
                    "float32 products, %lld re-scored in float64\n", (long long)d, (long long)copies, (long long)checked,
                    (long long)rechecked);
        CHECK(checked > 0, "the integer filter never left a member with several candidates");
        CHECK(rechecked > 0, "no member reached the float64 re-score");
      }
    }
  });

  run("max similarity: clusters of boilerplate (a few rows copied many times, interleaved) against the float64 oracle", [&] {
    const int64_t d = 64;
    std::mt19937 rng(31);
    const int64_t n = 2500;
    auto base = unit_rows(n, d, rng);
    std::vector<float> x(base);
    for (int64_t i = 0; i < n; ++i) {
      const int kind = int(rng() % 10);
      if (i >= 5 && kind < 8) {  // a copy of one of the first 3 rows of its cluster of 500
        const int64_t src = (i / 500) * 500 + int64_t(rng() % 3);
        if (src < i) std::memcpy(&x[size_t(i * d)], &base[size_t(src * d)], size_t(d) * 4);
      }
    }
    EmbeddingView v{x.data(), n, d, DType::F32};
    std::vector<int64_t> order(static_cast<size_t>(n)), offsets;
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
    for (int64_t c = 0; c <= n; c += 500) offsets.push_back(c);
    const int64_t nc = int64_t(offsets.size()) - 1;
    std::vector<double> Mr(static_cast<size_t>(n));
    std::vector<int64_t> ar(static_cast<size_t>(n));
    for (int64_t c = 0; c < nc; ++c)
      max_similarity_reference(v, order.data() + offsets[size_t(c)], 500, Mr.data() + offsets[size_t(c)], ar.data() + offsets[size_t(c)]);
    for (const char* path : {"fp32", "avx2-int8"}) {
      if (!int8 && std::strcmp(path, "fp32") != 0) continue;
      EnvIsa e(path);
      std::vector<double> M(static_cast<size_t>(n));
      std::vector<int64_t> arg(static_cast<size_t>(n));
      MaxSimOptions o;
      const MaxSimStats st = max_similarity_cpu(v, order.data(), offsets.data(), nc, M.data(), arg.data(), o);
      CHECK(std::memcmp(Mr.data(), M.data(), size_t(n) * 8) == 0 && ar == arg, "%s: M differs from the oracle", path);
      std::printf("     %s: %lld of %lld members decided as exact copies\n", path, (long long)st.copies, (long long)n);
      CHECK(st.copies > n / 2, "%s: only %lld copies decided without the kernel", path, (long long)st.copies);
    }
  });

  return check::summary();
}
