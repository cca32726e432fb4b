// Tests of the CUDA backend's memory plans (plain C++, run without a GPU): every plan stays
// within its device budget for any N, datasets larger than the card are batched, the host side
// is two staging buffers whatever N is, and the arithmetic is checked against direct sums.
#include <cstdio>
#include <random>

#include "../cuda/semdedup/gpu_plan.hpp"
#include "check.hpp"

using namespace semdedup::cuda::plan;
using check::run;

int main() {
  const int64_t GiB = int64_t(1) << 30;

  run("budget: 85% of the free memory, or the smaller limit", [] {
    CHECK(device_budget(100 * GiB, 0) == int64_t(double(100 * GiB) * 0.85), "85%%");
    CHECK(device_budget(100 * GiB, GiB) == GiB, "limit");
    CHECK(device_budget(GiB, 100 * GiB) == int64_t(double(GiB) * 0.85), "a limit above the free memory");
    CHECK(device_budget(0, 0) == 0, "no free memory");
  });

  run("staging: two buffers of about 64 MiB whatever N (host memory bounded by them)", [] {
    for (int64_t rb : {int64_t(2 * 64), int64_t(2 * 512), int64_t(4 * 512), int64_t(4 * 4096), int64_t(1) << 20}) {
      const int64_t r = staging_rows(rb);
      CHECK(r >= 1024, "at least 1024 rows");
      CHECK(r * rb <= std::max<int64_t>(kStagingBytes, 1024 * rb), "row bytes %lld: %lld rows", (long long)rb, (long long)r);
    }
    CHECK(staging_rows(2048, 4096) == 4096, "tuned rows");
  });

  run("max similarity: resident when it fits, else batches within the budget (10M to 100M rows, 80 and 141 GB cards)", [] {
    struct Case {
      int64_t n, d, es, free_bytes;
      bool resident;
    };
    for (const Case& c : {Case{1000000, 512, 4, 141 * GiB, true}, Case{10000000, 512, 4, 141 * GiB, true},
                          Case{100000000, 512, 2, 141 * GiB, true}, Case{100000000, 512, 2, 80 * GiB, false},
                          Case{100000000, 512, 4, 141 * GiB, false}, Case{1000000000, 768, 2, 141 * GiB, false},
                          Case{5000, 64, 4, 64 << 20, true}}) {
      const int64_t budget = device_budget(c.free_bytes, 0);
      const int64_t work = (c.n / 128) * 2 * 40;
      const MaxSimPlan p = plan_maxsim(budget, c.n, c.d, c.es, c.n, work);
      const int64_t dp = padded_dim(c.d);
      CHECK((p.placement == MaxSimPlan::Placement::Resident) == c.resident, "n %lld d %lld es %lld free %lld GiB: placement",
            (long long)c.n, (long long)c.d, (long long)c.es, (long long)(c.free_bytes / GiB));
      CHECK(p.device_bytes <= budget, "n %lld: %lld bytes over the budget %lld", (long long)c.n, (long long)p.device_bytes,
            (long long)budget);
      if (p.placement == MaxSimPlan::Placement::Resident) {
        CHECK(p.device_bytes == c.n * dp * c.es + c.n * 16 + work, "resident bytes");
      } else {
        CHECK(p.batch_rows >= kTileRows && p.batch_rows <= c.n, "batch rows %lld", (long long)p.batch_rows);
        CHECK(p.device_bytes == p.batch_rows * (2 * (dp * c.es + 8) + 8), "batched bytes");
        // a batch is large: at least 80% of the budget is used when the dataset does not fit
        CHECK(double(p.device_bytes) >= 0.8 * double(budget), "batched plan uses %.2f of the budget",
              double(p.device_bytes) / double(budget));
      }
    }
  });

  run("max similarity: forced placements, tiny budgets and tiny datasets", [] {
    const MaxSimPlan r = plan_maxsim(GiB, 100, 64, 4, 100, 0, 1);
    CHECK(r.placement == MaxSimPlan::Placement::Resident, "mode 1");
    const MaxSimPlan b = plan_maxsim(GiB, 100, 64, 4, 100, 0, 2);
    CHECK(b.placement == MaxSimPlan::Placement::Batched && b.batch_rows == kTileRows, "mode 2: one tile for 100 members");
    const MaxSimPlan t = plan_maxsim(1000, 1000000, 512, 4, 1000000, 0);
    CHECK(t.placement == MaxSimPlan::Placement::Batched && t.batch_rows == kTileRows, "a budget below one tile: one tile");
  });

  run("assignment: passes within the budget after the centroids, for any N", [] {
    std::mt19937_64 rng(7);
    for (int i = 0; i < 2000; ++i) {
      const int64_t n = int64_t(rng() % 2000000000) + 1, d = int64_t(rng() % 4096) + 1, k = int64_t(rng() % 100000) + 1;
      const int64_t es = rng() % 2 ? 4 : 2;
      const int64_t budget = int64_t(rng() % (200 * GiB)) + k * padded_dim(d) * 4 + k * 12 + (padded_dim(d) * es + 36);
      const int64_t staging = staging_rows(d * es);
      const AssignPlan p = plan_assign(budget, n, d, es, k, staging);
      CHECK(p.rows_per_pass >= 1 && p.rows_per_pass <= std::min(n, staging), "rows %lld", (long long)p.rows_per_pass);
      CHECK(p.device_bytes <= budget, "n %lld d %lld k %lld: %lld over %lld", (long long)n, (long long)d, (long long)k,
            (long long)p.device_bytes, (long long)budget);
    }
  });

  return check::summary();
}
