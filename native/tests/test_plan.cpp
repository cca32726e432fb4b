// C++ tests of the row-block max similarity (planned runs): a block of a cluster gives the
// whole-cluster kernel's M and arg bit for bit, for the narrow and the wide tiles, and M agrees
// with a float64 loop. Last line: "N passed, N failed".
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "check.hpp"
#include "semdedup/common.hpp"
#include "semdedup/maxsim.hpp"
#include "semdedup/nearest.hpp"

using namespace semdedup;
using check::run;

static std::vector<float> rows_near_centres(int64_t n, int64_t d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> cen(static_cast<size_t>(3 * d));
  for (auto& c : cen) c = nd(rng);
  std::vector<float> x(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    const bool copy = i > 10 && rng() % 8 == 0;
    const int64_t src = copy ? int64_t(rng() % uint32_t(i)) : 0;
    double s = 0;
    for (int64_t t = 0; t < d; ++t) {
      float v = copy ? x[size_t(src * d + t)] + 1e-3f * nd(rng) : cen[size_t((i % 3) * d + t)] + 0.5f * nd(rng);
      x[size_t(i * d + t)] = v;
      s += double(v) * v;
    }
    for (int64_t t = 0; t < d; ++t) x[size_t(i * d + t)] = float(x[size_t(i * d + t)] / std::sqrt(s));
  }
  return x;
}

static void check_blocks(int64_t n, int64_t d, const std::vector<std::pair<int64_t, int64_t>>& blocks, uint32_t seed) {
  auto x = rows_near_centres(n, d, seed);
  EmbeddingView v{x.data(), n, d, DType::F32};
  std::vector<int64_t> order(static_cast<size_t>(n)), offsets{0, n};
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = (i * 7919) % n;
  MaxSimOptions opt;
  opt.threads = 2;
  opt.thresholds = {0.99, 0.9};
  std::vector<double> M(static_cast<size_t>(n));
  std::vector<int64_t> arg(static_cast<size_t>(n));
  max_similarity_cpu(v, order.data(), offsets.data(), 1, M.data(), arg.data(), opt);
  const MaxSimLayout lay = maxsim_layout(n, d);
  CHECK(lay.split, "a cluster of %lld members at D = %lld is split by the kernel", (long long)n, (long long)d);
  for (auto [j0, j1] : blocks) {
    std::vector<double> bm(static_cast<size_t>(j1 - j0));
    std::vector<int64_t> ba(static_cast<size_t>(j1 - j0));
    opt.threads = 1 + int(j0 % 2);
    max_similarity_block(v, order.data(), n, j0, j1, bm.data(), ba.data(), opt);
    for (int64_t j = j0; j < j1; ++j) {
      CHECK(std::memcmp(&bm[size_t(j - j0)], &M[size_t(j)], sizeof(double)) == 0, "block [%lld, %lld): M[%lld] %.17g, whole kernel %.17g",
            (long long)j0, (long long)j1, (long long)j, bm[size_t(j - j0)], M[size_t(j)]);
      CHECK(ba[size_t(j - j0)] == arg[size_t(j)], "block [%lld, %lld): arg[%lld]", (long long)j0, (long long)j1, (long long)j);
    }
    for (int64_t j = j0; j < j1; j += 211) {
      double best = 0;
      for (int64_t i = 0; i < j; ++i)
        best = std::max(best, nearest::dot64(x.data() + order[size_t(i)] * d, x.data() + order[size_t(j)] * d, d));
      CHECK(bm[size_t(j - j0)] == best, "member %lld: M %.17g, float64 definition %.17g", (long long)j, bm[size_t(j - j0)], best);
    }
  }
}

int main() {
  run("block layout follows the kernel: whole up to 4096 members, 512 then 2048 wide", [] {
    CHECK(!maxsim_layout(4096, 64).split, "4096 members are one item");
    CHECK(maxsim_layout(4097, 64).split && maxsim_layout(4097, 64).width == 512, "4097: 512-wide items");
    CHECK(maxsim_layout(65536, 64).width == 2048, "65536: 2048-wide items");
  });
  run("row blocks of a 5,000-member cluster equal the whole kernel bit for bit", [] {
    check_blocks(5000, 32, {{0, 512}, {512, 2560}, {2560, 5000}}, 3);
  });
  run("row blocks of a 66,000-member cluster (wide tiles) equal the whole kernel bit for bit", [] {
    check_blocks(66000, 4, {{0, 2048}, {61440, 66000}}, 5);
  });
  run("misaligned blocks are refused", [] {
    std::vector<float> x(size_t(5000 * 4), 0.5f);
    EmbeddingView v{x.data(), 5000, 4, DType::F32};
    std::vector<int64_t> order(5000);
    for (int64_t i = 0; i < 5000; ++i) order[size_t(i)] = i;
    std::vector<double> M(5000);
    std::vector<int64_t> a(5000);
    bool threw = false;
    try {
      max_similarity_block(v, order.data(), 5000, 100, 612, M.data(), a.data(), {});
    } catch (const Error& e) {
      threw = e.code() == ErrorCode::InvalidArgument;
    }
    CHECK(threw, "j0 = 100 is not a multiple of 512");
  });
  return check::summary();
}
