// Benchmark of the CUDA backend on one raw float32 matrix (N x D, no header): k-means training,
// assignment of every row, ranking (CPU), and max similarity over the resulting clusters, plus
// max similarity of one large cluster (compute-bound). Writes the clusters for the PyTorch
// reference (bench/gpu/torch_reference.py) and prints one "RESULT" line per step.
//
//   bench_cuda --file /tmp/x.f32 --n 1000000 --d 512 [--gen] [--k 1000] [--niter 20]
//              [--big 50000] [--out DIR] [--repeat 3]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "semdedup/common.hpp"
#include "semdedup/cuda.hpp"
#include "semdedup/maxsim.hpp"
#include "semdedup/sort.hpp"

using namespace semdedup;
using Clock = std::chrono::steady_clock;

static double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

static void usage() {
  std::fprintf(stderr,
               "usage: bench_cuda --file PATH --n N --d D [--gen | --gen-only] [--k K] [--niter I] [--big B] [--out DIR] "
               "[--repeat R]\n");
  std::exit(2);
}

// Unit rows around `centers` random directions, with 1% exact duplicates: like image
// embeddings with near-duplicates. Multi-threaded, deterministic for a given seed.
static void generate(std::vector<float>& x, int64_t n, int64_t d, int centers, uint64_t seed) {
  std::vector<float> c(size_t(centers) * size_t(d));
  {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd;
    for (auto& v : c) v = nd(rng) / std::sqrt(float(d));
  }
  const int threads = resolve_threads(0);
  const int64_t block = 16384;
  parallel_for(threads, (n + block - 1) / block, [&](int64_t b, int) {
    std::mt19937_64 rng(seed * 7919 + uint64_t(b));
    std::normal_distribution<float> nd;
    std::uniform_int_distribution<int> pick(0, centers - 1);
    std::uniform_real_distribution<float> u(0, 1);
    const int64_t i1 = std::min(n, (b + 1) * block);
    for (int64_t i = b * block; i < i1; ++i) {
      float* r = &x[size_t(i * d)];
      if (i > b * block && u(rng) < 0.01f) {  // duplicate of an earlier row of this block
        const int64_t src = b * block + int64_t(u(rng) * float(i - b * block));
        std::memcpy(r, &x[size_t(src * d)], size_t(d) * 4);
        continue;
      }
      const float* cc = &c[size_t(pick(rng)) * size_t(d)];
      const float sigma = 0.3f + 0.5f * u(rng);
      double s = 0;
      for (int64_t j = 0; j < d; ++j) {
        r[j] = cc[j] + sigma * nd(rng) / std::sqrt(float(d));
        s += double(r[j]) * r[j];
      }
      const float inv = float(1.0 / std::sqrt(s));
      for (int64_t j = 0; j < d; ++j) r[j] *= inv;
    }
  });
}

struct Result {
  std::string step;
  double ms, gflop;
};

int main(int argc, char** argv) {
  std::string file, out = ".";
  int64_t n = 0, d = 0, big = 50000;
  int k = 1000, niter = 20, repeat = 3;
  bool gen = false, gen_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--file") file = next();
    else if (a == "--n") n = std::atoll(next());
    else if (a == "--d") d = std::atoll(next());
    else if (a == "--k") k = std::atoi(next());
    else if (a == "--niter") niter = std::atoi(next());
    else if (a == "--big") big = std::atoll(next());
    else if (a == "--out") out = next();
    else if (a == "--repeat") repeat = std::max(1, std::atoi(next()));
    else if (a == "--gen") gen = true;
    else if (a == "--gen-only") gen = gen_only = true;
    else usage();
  }
  if (file.empty() || n <= 0 || d <= 0) usage();

  const cuda::DeviceInfo info = cuda::device_info();
  std::printf("device: %s (cc %d.%d, %d SMs, %lld MiB free), driver %d, runtime %d\n", info.name.c_str(),
              info.cc_major, info.cc_minor, info.sm_count, (long long)(info.free_mem >> 20), info.driver_version,
              info.runtime_version);
  if (!info.available) {
    std::printf("no usable GPU: %s\n", info.reason.c_str());
    return 1;
  }

  std::vector<float> x(size_t(n) * size_t(d));
  if (gen) {
    auto t0 = Clock::now();
    generate(x, n, d, std::max(10, k * 2), 20240601);
    FILE* f = std::fopen(file.c_str(), "wb");
    if (!f || std::fwrite(x.data(), 4, x.size(), f) != x.size()) {
      std::perror(file.c_str());
      return 1;
    }
    std::fclose(f);
    std::printf("generated %lld x %lld into %s in %.0f ms\n", (long long)n, (long long)d, file.c_str(), ms_since(t0));
    if (gen_only) return 0;
  } else {
    FILE* f = std::fopen(file.c_str(), "rb");
    if (!f || std::fread(x.data(), 4, x.size(), f) != x.size()) {
      std::perror(file.c_str());
      return 1;
    }
    std::fclose(f);
  }
  EmbeddingView v;
  v.data = x.data();
  v.n = n;
  v.d = d;

  // warm-up: context, module load, pinned allocations
  {
    std::vector<int64_t> order(1000), offsets = {0, 1000};
    for (int i = 0; i < 1000; ++i) order[size_t(i)] = i;
    std::vector<double> M(1000);
    std::vector<int64_t> arg(1000);
    EmbeddingView w = v;
    w.n = std::min<int64_t>(n, 4096);
    if (w.n >= 1000) cuda::max_similarity(w, order.data(), offsets.data(), 1, M.data(), arg.data(), {});
    std::vector<float> cen(size_t(d) * 8, 0.01f);
    std::vector<int64_t> nr(static_cast<size_t>(w.n));
    std::vector<float> ds(static_cast<size_t>(w.n));
    cuda::assign_nearest(w, cen.data(), 8, true, nr.data(), ds.data());
  }

  std::vector<Result> results;
  auto report = [&](const std::string& step, double ms, double gflop) {
    results.push_back({step, ms, gflop});
    std::printf("RESULT step=%s ms=%.3f gflop=%.3f gflops=%.1f\n", step.c_str(), ms, gflop,
                ms > 0 ? gflop / (ms / 1000) : 0.0);
    std::fflush(stdout);
  };

  // 1. k-means training (spherical, FAISS defaults)
  KMeansParams p;
  p.k = k;
  p.niter = niter;
  p.seed = 1234;
  p.spherical = true;
  auto t0 = Clock::now();
  KMeansResult km = cuda::train_kmeans(v, p);
  report("kmeans_train", ms_since(t0), double(niter) * 2.0 * double(km.n_train) * k * double(d) / 1e9);

  // 2. nearest centroid of every row
  std::vector<int64_t> nearest(static_cast<size_t>(n));
  std::vector<float> dist(static_cast<size_t>(n));
  t0 = Clock::now();
  cuda::assign_nearest(v, km.centroids.data(), k, true, nearest.data(), dist.data());
  report("assign", ms_since(t0), 2.0 * double(n) * k * double(d) / 1e9);

  // 3. rank (CPU): distance = 1 - inner product, hardest first
  std::vector<float> key(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) key[size_t(i)] = 1.0f - dist[size_t(i)];
  std::vector<int64_t> order(static_cast<size_t>(n)), offsets(size_t(k) + 1);
  t0 = Clock::now();
  rank_clusters(nearest.data(), key.data(), n, k, true, order.data(), offsets.data());
  report("rank_cpu", ms_since(t0), 0);
  {
    const std::string path = out + "/clusters.bin";
    FILE* f = std::fopen(path.c_str(), "wb");
    const int64_t kk = k;
    if (!f) {
      std::perror(path.c_str());
      return 1;
    }
    std::fwrite(&kk, 8, 1, f);
    std::fwrite(offsets.data(), 8, offsets.size(), f);
    std::fwrite(order.data(), 8, order.size(), f);
    std::fclose(f);
    int64_t largest = 0;
    for (int c = 0; c < k; ++c) largest = std::max(largest, offsets[size_t(c) + 1] - offsets[size_t(c)]);
    std::printf("clusters: %d, largest %lld members\n", k, (long long)largest);
  }

  // 4. max similarity over all clusters (upload of the matrix included), median of `repeat`
  std::vector<double> M(static_cast<size_t>(n));
  std::vector<int64_t> arg(static_cast<size_t>(n));
  MaxSimOptions opt;
  opt.thresholds = {1 - 0.01, 1 - 0.05, 1 - 0.1};
  std::vector<double> times;
  MaxSimStats st;
  for (int r = 0; r < repeat; ++r) {
    t0 = Clock::now();
    st = cuda::max_similarity(v, order.data(), offsets.data(), k, M.data(), arg.data(), opt);
    times.push_back(ms_since(t0));
  }
  std::sort(times.begin(), times.end());
  report("maxsim_all", times[times.size() / 2], st.useful_flops / 1e9);
  std::printf("maxsim_all: computed %.1f GFLOP for %.1f useful, %lld re-checked\n", st.computed_flops / 1e9,
              st.useful_flops / 1e9, (long long)st.rechecked);
  {
    int64_t removed = 0;
    for (int64_t i = 0; i < n; ++i) removed += M[size_t(i)] > 1 - 0.05;
    std::printf("maxsim_all: eps 0.05 removes %lld of %lld\n", (long long)removed, (long long)n);
  }

  // 5. one large cluster (rows 0 .. big-1 in order): compute-bound
  if (big > 1 && big <= n) {
    std::vector<int64_t> ord(static_cast<size_t>(big)), off = {0, big};
    for (int64_t i = 0; i < big; ++i) ord[size_t(i)] = i;
    std::vector<double> Mb(static_cast<size_t>(big));
    std::vector<int64_t> ab(static_cast<size_t>(big));
    EmbeddingView w = v;
    w.n = big;  // only the cluster's rows go to the GPU
    times.clear();
    for (int r = 0; r < repeat; ++r) {
      t0 = Clock::now();
      st = cuda::max_similarity(w, ord.data(), off.data(), 1, Mb.data(), ab.data(), {});
      times.push_back(ms_since(t0));
    }
    std::sort(times.begin(), times.end());
    report("maxsim_big", times[times.size() / 2], st.useful_flops / 1e9);
  }

  const std::string jpath = out + "/bench_cuda.json";
  if (FILE* f = std::fopen(jpath.c_str(), "w")) {
    std::fprintf(f, "{\"device\": \"%s\", \"n\": %lld, \"d\": %lld, \"k\": %d, \"niter\": %d, \"big\": %lld, \"steps\": [",
                 info.name.c_str(), (long long)n, (long long)d, k, niter, (long long)big);
    for (size_t i = 0; i < results.size(); ++i)
      std::fprintf(f, "%s{\"step\": \"%s\", \"ms\": %.3f, \"gflop\": %.3f}", i ? ", " : "", results[i].step.c_str(),
                   results[i].ms, results[i].gflop);
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  return 0;
}
