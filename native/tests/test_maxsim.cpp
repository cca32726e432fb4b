// Step 4's CPU kernel (semdedup/maxsim.hpp): the whole-cluster filters (SEMDEDUP_MAXSIM_KERNEL =
// blas, fused-avx2) and the exact copies of split clusters give the bytes of the float64
// definition (max_similarity_reference), whatever the filter, thread count or copy skip.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "semdedup/maxsim.hpp"

using namespace semdedup;

namespace {

struct Env {  // sets an environment variable for a scope
  explicit Env(const char* k, const char* v) : k_(k) { setenv(k, v, 1); }
  ~Env() { unsetenv(k_); }
  const char* k_;
};

void normalise(float* r, int64_t d) {
  double s = 0;
  for (int64_t j = 0; j < d; ++j) s += double(r[j]) * r[j];
  const float inv = float(1 / std::sqrt(s));
  for (int64_t j = 0; j < d; ++j) r[j] *= inv;
}

// Rows of clusters like spherical k-means clusters (a centre plus noise: many earlier members
// close to the maximum), with chains (each row a noisy copy of the previous one: clear maxima),
// exact copies near and far from their source, near copies (near ties) and a few rows scaled
// (norms other than 1).
std::vector<float> cluster_rows(const std::vector<int64_t>& offsets, int64_t d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t n = offsets.back();
  std::vector<float> x(static_cast<size_t>(n * d)), cen(static_cast<size_t>(d));
  for (size_t c = 0; c + 1 < offsets.size(); ++c) {
    for (auto& v : cen) v = nd(rng);
    normalise(cen.data(), d);
    const bool chains = c % 3 == 2;
    for (int64_t i = offsets[c]; i < offsets[c + 1]; ++i) {
      float* r = &x[size_t(i * d)];
      const int64_t t = i - offsets[c];
      const int kind = int(rng() % 20);
      if (t > 0 && kind == 0) {  // exact copy of a recent member
        const int64_t src = i - 1 - int64_t(rng() % uint32_t(std::min<int64_t>(t, 8)));
        std::memcpy(r, &x[size_t(src * d)], size_t(d) * 4);
        continue;
      }
      if (t > 0 && kind == 1) {  // exact copy of any earlier member (often too far to skip)
        const int64_t src = offsets[c] + int64_t(rng() % uint32_t(t));
        std::memcpy(r, &x[size_t(src * d)], size_t(d) * 4);
        continue;
      }
      if (t > 0 && kind == 2) {  // near copy: a near tie for the next members
        const int64_t src = offsets[c] + int64_t(rng() % uint32_t(t));
        for (int64_t j = 0; j < d; ++j) r[j] = x[size_t(src * d + j)] + 1e-6f * nd(rng);
      } else if (chains && t > 0) {
        for (int64_t j = 0; j < d; ++j) r[j] = x[size_t((i - 1) * d + j)] + 0.75f / std::sqrt(float(d)) * nd(rng);
      } else {
        for (int64_t j = 0; j < d; ++j) r[j] = cen[size_t(j)] + 0.9f / std::sqrt(float(d)) * nd(rng);
      }
      normalise(r, d);
      if (kind == 3)
        for (int64_t j = 0; j < d; ++j) r[j] *= 1.5f;
    }
  }
  return x;
}

struct Result {
  std::vector<double> M;
  std::vector<int64_t> arg;
  MaxSimStats st;
};

Result run_cpu(const EmbeddingView& v, const std::vector<int64_t>& order, const std::vector<int64_t>& offsets,
               int threads, bool skip_copies) {
  Result r;
  const int64_t n = offsets.back();
  r.M.assign(size_t(n), -1);
  r.arg.assign(size_t(n), -2);
  MaxSimOptions o;
  o.threads = threads;
  o.skip_copies = skip_copies;
  r.st = max_similarity_cpu(v, order.data(), offsets.data(), int64_t(offsets.size()) - 1, r.M.data(), r.arg.data(), o);
  return r;
}

Result reference(const EmbeddingView& v, const std::vector<int64_t>& order, const std::vector<int64_t>& offsets) {
  Result r;
  const int64_t n = offsets.back();
  r.M.assign(size_t(n), 0);
  r.arg.assign(size_t(n), 0);
  for (size_t c = 0; c + 1 < offsets.size(); ++c)
    max_similarity_reference(v, order.data() + offsets[c], offsets[c + 1] - offsets[c], r.M.data() + offsets[c],
                             r.arg.data() + offsets[c]);
  return r;
}

bool same(const Result& a, const Result& b) {
  return a.M.size() == b.M.size() && std::memcmp(a.M.data(), b.M.data(), a.M.size() * 8) == 0 && a.arg == b.arg;
}

int64_t first_difference(const Result& a, const Result& b) {
  for (size_t i = 0; i < a.M.size(); ++i)
    if (std::memcmp(&a.M[i], &b.M[i], 8) != 0 || a.arg[i] != b.arg[i]) return int64_t(i);
  return -1;
}

}  // namespace

int main() {
  using check::run;
  std::vector<const char*> kernels{"blas"};
  {
    Env e("SEMDEDUP_MAXSIM_KERNEL", "auto");
    std::printf("     whole-cluster filter of this CPU: %s\n", maxsim_filter_kernel());
  }
  try {
    Env e("SEMDEDUP_MAXSIM_KERNEL", "fused-avx2");
    kernels.push_back(maxsim_filter_kernel());
  } catch (const Error&) {
    std::printf("     no AVX2 + FMA: the fused filter is not tested on this CPU\n");
  }

  run("SEMDEDUP_MAXSIM_KERNEL: the filters by name, a clear error otherwise", [&] {
    {
      Env e("SEMDEDUP_MAXSIM_KERNEL", "blas");
      CHECK(std::string(maxsim_filter_kernel()) == "blas", "blas: %s", maxsim_filter_kernel());
    }
    Env e("SEMDEDUP_MAXSIM_KERNEL", "avx9");
    bool threw = false;
    try {
      maxsim_filter_kernel();
    } catch (const Error& err) {
      threw = std::string(err.what()).find("SEMDEDUP_MAXSIM_KERNEL") != std::string::npos;
    }
    CHECK(threw, "an unknown filter name was accepted");
  });

  run("whole clusters: M and M_row the bytes of the float64 definition with each filter, 1 and 2 threads, copies skipped or not, integer filter on or off", [&] {
    for (int64_t d : {29, 64, 512}) {
      // clusters of 1 .. 700 members, and larger ones up to the whole-cluster limit
      std::mt19937 rng(5 + uint32_t(d));
      std::vector<int64_t> offsets{0};
      for (int c = 0; c < 14; ++c) offsets.push_back(offsets.back() + 1 + int64_t(rng() % 700));
      for (int64_t extra : {1, 2, 16, 17, 97, d == 512 ? 1500 : 4096}) offsets.push_back(offsets.back() + extra);
      const int64_t n = offsets.back();
      const auto x = cluster_rows(offsets, d, 17 + uint32_t(d));
      EmbeddingView v{x.data(), n, d, DType::F32};
      std::vector<int64_t> order(static_cast<size_t>(n));
      // keep order differs from row order: clusters reversed
      for (size_t c = 0; c + 1 < offsets.size(); ++c)
        for (int64_t i = offsets[c]; i < offsets[c + 1]; ++i) order[size_t(i)] = offsets[c] + offsets[c + 1] - 1 - i;
      const Result ref = reference(v, order, offsets);
      int64_t copies = 0, rechecked = 0;
      for (const char* k : kernels)
        for (const char* isa : {"fp32", "auto"})
          for (int threads : {1, 2})
            for (bool skip : {true, false}) {
              Env ek("SEMDEDUP_MAXSIM_KERNEL", k);
              Env ei("SEMDEDUP_ISA", isa);
              const Result r = run_cpu(v, order, offsets, threads, skip);
              CHECK(r.st.kernel == k, "the run used %s, not %s", r.st.kernel.c_str(), k);
              CHECK(same(r, ref), "d %lld, %s, ISA %s, %d threads, copies %s: position %lld differs from the definition",
                    (long long)d, k, isa, threads, skip ? "skipped" : "computed", (long long)first_difference(r, ref));
              CHECK(skip || r.st.copies == 0, "copies counted with the skip off");
              if (skip) copies = r.st.copies;
              rechecked += r.st.rechecked;
            }
      std::printf("     D %lld: %lld members, %lld exact copies skipped, %lld re-scored in float64 over the runs\n",
                  (long long)d, (long long)n, (long long)copies, (long long)rechecked);
      CHECK(copies > 0, "no copy was skipped");
      CHECK(rechecked > 0, "no member reached the float64 re-score");
    }
  });

  run("split clusters: exact copies skip the kernel, with M and M_row the bytes of the definition and of the run without the skip", [&] {
    const int64_t d = 64;
    const MaxSimLayout lay = maxsim_layout(6000, d);
    CHECK(lay.split, "a cluster of 6000 x %lld is not split", (long long)d);
    // Boilerplate: 40% of the members copies of one of a few rows (interleaved, some runs of the
    // same row, some sources in the previous tile), the others a spherical cluster with near copies.
    std::mt19937 rng(23);
    std::normal_distribution<float> nd(0.f, 1.f);
    const std::vector<int64_t> offsets{0, 300, 6300, 11000};  // a whole cluster, then two split ones
    const int64_t n = offsets.back();
    auto x = cluster_rows(offsets, d, 29);
    for (size_t c = 0; c + 1 < offsets.size(); ++c) {
      const int64_t b = offsets[c];
      for (int64_t i = b + 10; i < offsets[c + 1]; ++i) {
        const int kind = int(rng() % 10);
        int64_t src = -1;
        if (kind < 3) src = b + int64_t(rng() % 4);            // one of the cluster's first rows
        else if (kind == 3) src = i - 1 - int64_t(rng() % 3);  // a run
        else if (kind == 4 && (i - b) % lay.width < 40 && i - b > lay.width) src = i - 41;  // across a tile boundary
        if (src >= b) std::memcpy(&x[size_t(i * d)], &x[size_t(src * d)], size_t(d) * 4);
      }
    }
    EmbeddingView v{x.data(), n, d, DType::F32};
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
    const Result ref = reference(v, order, offsets);
    int64_t copies_on = -1;
    for (const char* k : kernels)
      for (int threads : {1, 2}) {
        Env ek("SEMDEDUP_MAXSIM_KERNEL", k);
        const Result on = run_cpu(v, order, offsets, threads, true);
        const Result off = run_cpu(v, order, offsets, threads, false);
        CHECK(same(on, off), "%s, %d threads: the skip changes position %lld", k, threads, (long long)first_difference(on, off));
        CHECK(same(on, ref), "%s, %d threads: position %lld differs from the definition", k, threads,
              (long long)first_difference(on, ref));
        CHECK(off.st.copies == 0, "copies counted with the skip off");
        CHECK(copies_on < 0 || on.st.copies == copies_on, "copies %lld, %lld before", (long long)on.st.copies, (long long)copies_on);
        copies_on = on.st.copies;
      }
    std::printf("     %lld of %lld members decided as exact copies (split clusters of 6000 and 4700 members)\n",
                (long long)copies_on, (long long)n);
    CHECK(copies_on > (n - 300) / 3, "only %lld copies skipped", (long long)copies_on);
    // The row-block entry (planned runs): a block of the second cluster, the same bytes.
    const int64_t base = offsets[1], cn = offsets[2] - offsets[1];
    const int64_t j0 = lay.width, j1 = 4 * lay.width;
    std::vector<double> bm(size_t(j1 - j0));
    std::vector<int64_t> ba(size_t(j1 - j0));
    const MaxSimStats bs = max_similarity_block(v, order.data() + base, cn, j0, j1, bm.data(), ba.data(), {});
    CHECK(std::memcmp(bm.data(), ref.M.data() + base + j0, size_t(j1 - j0) * 8) == 0 &&
              std::equal(ba.begin(), ba.end(), ref.arg.begin() + base + j0),
          "max_similarity_block differs from the definition");
    CHECK(bs.copies > 0, "max_similarity_block skipped no copy");
  });

  return check::summary();
}
