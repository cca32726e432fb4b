// Tests of the engine facade (backend choice, fallback, what ran) and of the shared Lloyd driver,
// on a machine with or without a GPU.
#include <cmath>
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "check.hpp"
#include "semdedup/engine.hpp"
#include "semdedup/keep_order.hpp"
#include "semdedup/kmeans.hpp"

using namespace semdedup;
namespace eng = semdedup::engine;

static std::vector<float> unit_rows(int64_t n, int64_t d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(size_t(n * d));
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) {
      x[size_t(i * d + j)] = nd(rng) + (i % 7 == 0 ? 2.f : 0.f) * float(j % 3 == 0);
      s += double(x[size_t(i * d + j)]) * x[size_t(i * d + j)];
    }
    for (int64_t j = 0; j < d; ++j) x[size_t(i * d + j)] = float(x[size_t(i * d + j)] / std::sqrt(s));
  }
  return x;
}

// An independent assignment step: the definition of nearest.hpp written out plainly, row by row
// over every centroid (no fast pass, no bounds): the float64 inner product of exact products in 8
// lanes (lane j mod 8, ascending j) added as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)); L2 as
// (|x|^2 + |c|^2) - 2 x.c; the best score wins, ties to the lower id.
static double plain_dot(const float* a, const float* b, int64_t d) {
  double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t j = 0; j < d; ++j) l[j % 8] += double(a[j]) * double(b[j]);
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

class PlainAssigner : public KMeansAssigner {
 public:
  void prepare(const float* X, int64_t nt, int64_t d, bool ip) override {
    X_ = X, nt_ = nt, d_ = d, ip_ = ip;
  }
  void assign(const float* cent, int k, const double*, int64_t* assign, double* dis, CancelFlag) override {
    ++calls;
    for (int64_t i = 0; i < nt_; ++i) {
      const float* x = X_ + i * d_;
      const double xx = plain_dot(x, x, d_);
      int64_t best = -1;
      double bs = 0;
      for (int c = 0; c < k; ++c) {
        const float* cc = cent + c * d_;
        const double xc = plain_dot(x, cc, d_);
        const double s = ip_ ? xc : -((xx + plain_dot(cc, cc, d_)) - 2 * xc);
        if (best < 0 || s > bs) best = c, bs = s;
      }
      assign[i] = best;
      dis[i] = ip_ ? bs : std::max(0.0, -bs);
    }
    searched_rows += nt_;
  }
  int calls = 0;

 private:
  const float* X_ = nullptr;
  int64_t nt_ = 0, d_ = 0;
  bool ip_ = false;
};

int main() {
  const eng::EngineInfo& info = eng::engine_info();
  std::printf("engine %s, FAISS %s, BLAS %s, CUDA compiled %d available %d (%s)\n", info.version.c_str(),
              info.faiss.c_str(), info.blas_core.c_str(), int(info.cuda.compiled), int(info.cuda.available),
              info.cuda.reason.c_str());

  check::run("engine: device names, kmeans_impl names", [] {
    CHECK(eng::parse_device("auto") == eng::Device::Auto && eng::parse_device("cpu") == eng::Device::Cpu &&
              eng::parse_device("cuda") == eng::Device::Cuda,
          "device names");
    bool threw = false;
    try {
      eng::parse_device("gpu");
    } catch (const Error& e) {
      threw = e.code() == ErrorCode::InvalidArgument && std::string(e.what()).find("'gpu'") != std::string::npos;
    }
    CHECK(threw, "an unknown device is an InvalidArgument naming it");
    CHECK(eng::parse_kmeans_impl("faiss") == eng::KMeansImpl::Faiss, "impl");
  });

  check::run("engine: a device choice resolved once (the engine handle)", [] {
    const eng::Resolved cpu = eng::resolve_device(eng::Device::Cpu);
    CHECK(cpu.device == eng::Backend::Cpu && cpu.note.empty() && cpu.dispatch_device() == eng::Device::Cpu, "cpu");
    const eng::CudaStatus& cs = eng::engine_info().cuda;
    const eng::Resolved autod = eng::resolve_device(eng::Device::Auto);
    if (cs.available) {
      CHECK(autod.device == eng::Backend::Cuda && autod.note.empty() && autod.dispatch_device() == eng::Device::Auto, "auto: the GPU");
      CHECK(eng::resolve_device(eng::Device::Cuda).device == eng::Backend::Cuda, "cuda");
    } else {
      CHECK(autod.device == eng::Backend::Cpu && autod.note == cs.reason && autod.dispatch_device() == eng::Device::Cpu,
            "auto without a GPU: the CPU, with the reason");
      bool threw = false;
      try {
        eng::resolve_device(eng::Device::Cuda);
      } catch (const Error& e) {
        threw = e.code() == ErrorCode::Backend && std::string(e.what()).find(cs.reason) != std::string::npos;
      }
      CHECK(threw, "cuda without a usable GPU: a Backend error naming the reason");
    }
  });

  check::run("errors: each kind of failure reaches JavaScript with its code from errors.def", [] {
    CHECK(std::string(Error(ErrorCode::Io, "x").code_name()) == "ERR_INPUT" && std::string(Error(ErrorCode::Io, "x").reason()) == "io", "io");
    CHECK(std::string(Error(ErrorCode::Format, "x").code_name()) == "ERR_INPUT", "format");
    CHECK(std::string(Error(ErrorCode::InvalidArgument, "x").code_name()) == "ERR_INPUT", "invalid argument");
    CHECK(std::string(Error(ErrorCode::Numeric, "x").code_name()) == "ERR_NUMERIC", "numeric");
    CHECK(std::string(Error(ErrorCode::Cancelled, "x").code_name()) == "ERR_CANCELLED", "cancelled");
    CHECK(std::string(Error(ErrorCode::Backend, "x").code_name()) == "ERR_BACKEND", "backend");
    CHECK(std::string(Error(ErrorCode::Internal, "x").code_name()) == "ERR_NATIVE", "internal");
    CHECK(std::string(public_code_name(PublicCode::Task)) == "ERR_TASK", "a failed planned task has its own code");
  });

  check::run("engine: info is computed once (same object)", [] {
    CHECK(&eng::engine_info() == &eng::engine_info(), "engine_info() returns one object");
    CHECK(!eng::engine_info().version.empty(), "version");
  });

  const int64_t n = 3000, d = 16;
  auto x = unit_rows(n, d, 5);
  EmbeddingView v{x.data(), n, d, DType::F32};
  KMeansParams p;
  p.k = 12;
  p.niter = 6;
  p.spherical = true;
  p.max_points_per_centroid = 100;  // n > k * 100: subsampled

  check::run("engine: device cpu runs k-means on the CPU, same centroids as the core call", [&] {
    KMeansResult r;
    const eng::Ran ran = eng::train_kmeans(eng::Device::Cpu, eng::KMeansImpl::Engine, v, p, r);
    CHECK(ran.backend == eng::Backend::Cpu && ran.note.empty(), "cpu ran, no note");
    CHECK(r.centroids == train_kmeans(v, p).centroids, "same centroids as semdedup::train_kmeans");
  });

  check::run("engine: device auto without a usable GPU runs on the CPU and says why", [&] {
    if (eng::engine_info().cuda.available) return;  // a GPU is here: covered by the GPU tests
    KMeansResult r;
    const eng::Ran ran = eng::train_kmeans(eng::Device::Auto, eng::KMeansImpl::Engine, v, p, r);
    CHECK(ran.backend == eng::Backend::Cpu, "cpu ran");
    CHECK(ran.note == eng::engine_info().cuda.reason && !ran.note.empty(), "note '%s'", ran.note.c_str());
    std::vector<int64_t> nearest(static_cast<size_t>(n));
    std::vector<float> dist(static_cast<size_t>(n));
    const eng::Ran a = eng::assign_nearest(eng::Device::Auto, eng::KMeansImpl::Engine, v, r.centroids.data(), p.k, true,
                                           nearest.data(), dist.data(), 0);
    CHECK(a.backend == eng::Backend::Cpu && !a.note.empty(), "assignment on the CPU with a note");
  });

  check::run("engine: device cuda without a usable GPU is a Backend error with the real reason", [&] {
    if (eng::engine_info().cuda.available) return;
    KMeansResult r;
    bool threw = false;
    try {
      eng::train_kmeans(eng::Device::Cuda, eng::KMeansImpl::Engine, v, p, r);
    } catch (const Error& e) {
      threw = e.code() == ErrorCode::Backend &&
              std::string(e.what()).find(eng::engine_info().cuda.reason) != std::string::npos;
      std::printf("     message: %s\n", e.what());
    }
    CHECK(threw, "Backend error naming the reason");
    std::vector<int64_t> order(static_cast<size_t>(n)), offsets{0, n};
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
    std::vector<double> M(static_cast<size_t>(n));
    std::vector<int64_t> arg(static_cast<size_t>(n));
    MaxSimStats st;
    threw = false;
    try {
      eng::max_similarity(eng::Device::Cuda, v, order.data(), offsets.data(), 1, M.data(), arg.data(), {}, st);
    } catch (const Error& e) {
      threw = e.code() == ErrorCode::Backend;
    }
    CHECK(threw, "max similarity too");
  });

  check::run("lloyd driver: a plain exhaustive float64 assigner gives the engine's centroids bit for bit", [&] {
    for (bool spherical : {true, false}) {
      for (bool prune : {true, false}) {
        KMeansParams q = p;
        q.spherical = spherical;
        q.prune = prune;
        q.niter = 25;
        PlainAssigner plain;
        const KMeansResult a = lloyd_kmeans(v, q, plain);
        const KMeansResult b = train_kmeans(v, q);
        CHECK(plain.calls == a.iterations && a.iterations == b.iterations, "iterations %d / %d / %d", plain.calls,
              a.iterations, b.iterations);
        CHECK(a.n_train == b.n_train && a.objective == b.objective, "same objectives (spherical=%d)", int(spherical));
        // Every assignment is the exact nearest centroid: the fast pass and the bounds change nothing.
        CHECK(a.centroids == b.centroids, "centroids differ (spherical=%d prune=%d)", int(spherical), int(prune));
        std::printf("     spherical=%d prune=%d: %d iterations, %lld rows re-scored, %lld pruned\n", int(spherical),
                    int(prune), b.iterations, (long long)b.rescored_rows, (long long)b.pruned_rows);
      }
    }
  });

  check::run("lloyd driver: stopping when no assignment changes gives the centroids of all niter iterations", [&] {
    // A driver that never stops early: the same assigner, told to report a change every time by
    // running each niter separately up to the stop and beyond.
    KMeansParams q = p;
    q.niter = 40;
    const KMeansResult full = train_kmeans(v, q);
    CHECK(full.iterations < q.niter, "converged before %d iterations (%d)", q.niter, full.iterations);
    for (int extra : {0, 1, 5}) {
      KMeansParams r = q;
      r.niter = full.iterations + extra;
      CHECK(train_kmeans(v, r).centroids == full.centroids, "niter %d gives other centroids", r.niter);
    }
    // and one iteration fewer than the stop is (in general) not converged yet, but deterministic
    KMeansParams r = q;
    r.niter = full.iterations - 1;
    const KMeansResult before = train_kmeans(v, r);
    CHECK(before.iterations == r.niter, "ran all %d", r.niter);
    CHECK(before.centroids == full.centroids, "the stopping iteration only confirmed the previous centroids");
  });

  check::run("keep order: hard keeps, easy reverses, random is a seeded per-cluster permutation", [] {
    std::vector<int64_t> order{5, 3, 9, 1, 7, 2, 8, 0, 4, 6}, offsets{0, 4, 4, 5, 10};
    std::vector<int64_t> ko(10), ki(10), ko2(10), ki2(10);
    keep_order(order.data(), offsets.data(), 4, WhichToKeep::Hard, 1, ko.data(), ki.data(), 2);
    CHECK(ko == order, "hard keeps the order");
    keep_order(order.data(), offsets.data(), 4, WhichToKeep::Easy, 1, ko.data(), ki.data(), 2);
    CHECK((ko == std::vector<int64_t>{1, 9, 3, 5, 7, 6, 4, 0, 8, 2}), "easy reverses each cluster");
    CHECK((ki == std::vector<int64_t>{3, 2, 1, 0, 0, 4, 3, 2, 1, 0}), "easy indices");
    keep_order(order.data(), offsets.data(), 4, WhichToKeep::Random, 7, ko.data(), ki.data(), 1);
    keep_order(order.data(), offsets.data(), 4, WhichToKeep::Random, 7, ko2.data(), ki2.data(), 2);
    CHECK(ko == ko2 && ki == ki2, "the thread count changes nothing");
    for (int64_t c = 0; c < 4; ++c) {
      std::vector<int64_t> a(order.begin() + offsets[c], order.begin() + offsets[c + 1]);
      std::vector<int64_t> b(ko.begin() + offsets[c], ko.begin() + offsets[c + 1]);
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      CHECK(a == b, "cluster %lld is a permutation", (long long)c);
      for (int64_t p = offsets[c]; p < offsets[c + 1]; ++p) CHECK(ko[p] == order[offsets[c] + ki[p]], "index column");
    }
  });

  return check::summary();
}
