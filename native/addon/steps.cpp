// The addon's step functions: k-means, assignment, step 3's distances and ranking, max
// similarity, the embeddings scan, and the engine facts (info, sgemm rate). Each heavy call is a
// Job over one core call.
#include "job.hpp"

#include "semdedup/blas.hpp"
#include "semdedup/kmeans.hpp"
#include "semdedup/maxsim.hpp"
#include "semdedup/scan.hpp"
#include "semdedup/sort.hpp"
#ifdef SEMDEDUP_HAVE_CUDA
#include "semdedup/cuda.hpp"
#endif

namespace semdedup_addon {
namespace {

bool use_faiss(Napi::Object o) {
  Napi::Value v = o.Get("impl");
  const bool faiss = v.IsString() && v.As<Napi::String>().Utf8Value() == "faiss";
#ifndef SEMDEDUP_HAVE_FAISS
  if (faiss) throw_type(o.Env(), "impl 'faiss' needs a build with FAISS");
#endif
  return faiss;
}

// trainKmeans(emb, { k, niter, seed, spherical, maxPointsPerCentroid, minPointsPerCentroid, threads, device },
//             onProgress?, cancel?) -> Promise<{ centroids: Float32Array, objective: number[], nTrain, underMinPoints }>
Napi::Value TrainKmeans(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Embeddings* emb = unwrap_embeddings(env, info[0]);
  Napi::Object o = info[1].As<Napi::Object>();
  sd::KMeansParams p;
  p.k = get_int(o, "k", 0);
  p.niter = get_int(o, "niter", 20);
  p.seed = o.Get("seed").IsNumber() ? o.Get("seed").As<Napi::Number>().Int64Value() : 1234;
  p.spherical = o.Get("spherical").ToBoolean();
  p.max_points_per_centroid = get_int(o, "maxPointsPerCentroid", 256);
  p.min_points_per_centroid = get_int(o, "minPointsPerCentroid", 39);
  p.threads = get_int(o, "threads", 0);
  if (o.Get("prune").IsBoolean()) p.prune = o.Get("prune").ToBoolean();
  const bool faiss = use_faiss(o);
  const std::string device = get_device(o);
  auto result = std::make_shared<sd::KMeansResult>();
  sd::EmbeddingView view = emb->view();
  auto* job = new Job(
      env, info[2], info[3],
      [view, p, result, device, faiss](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
#ifdef SEMDEDUP_HAVE_CUDA
        if (device == "cuda") {
          try {
            *result = sd::cuda::train_kmeans(view, p, prog, cancel);
            return;
          } catch (const sd::Error& e) {
            if (e.code() != sd::ErrorCode::Backend) throw;  // e.g. the training set does not fit: CPU
          }
        }
#endif
        if (device == "cuda") throw sd::Error(sd::ErrorCode::Backend, "this build has no CUDA backend");
#ifdef SEMDEDUP_HAVE_FAISS
        if (faiss) {
          *result = sd::train_kmeans_faiss(view, p, prog, cancel);
          return;
        }
#endif
        (void)faiss;
        *result = sd::train_kmeans(view, p, prog, cancel);
      },
      [result](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        Napi::Float32Array c = Napi::Float32Array::New(env, result->centroids.size());
        std::copy(result->centroids.begin(), result->centroids.end(), c.Data());
        out.Set("centroids", c);
        Napi::Array obj = Napi::Array::New(env, result->objective.size());
        for (size_t i = 0; i < result->objective.size(); ++i) obj.Set(uint32_t(i), double(result->objective[i]));
        out.Set("objective", obj);
        out.Set("nTrain", double(result->n_train));
        out.Set("underMinPoints", result->under_min_points);
        out.Set("searchedRows", double(result->searched_rows));
        out.Set("prunedRows", double(result->pruned_rows));
        return out;
      });
  job->keep_mapping(emb->mapping());
  Napi::Promise pr = job->promise();
  job->Queue();
  return pr;
}

// assignNearest(emb, centroids: Float32Array, k, innerProduct, nearest: BigInt64Array, dist: Float32Array,
//               { threads, device }, onProgress?, cancel?) -> Promise<void>; outputs written in place.
Napi::Value AssignNearest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Embeddings* emb = unwrap_embeddings(env, info[0]);
  auto cent = typed<Napi::Float32Array>(env, info[1], "centroids");
  const int k = info[2].As<Napi::Number>().Int32Value();
  const bool ip = info[3].ToBoolean();
  auto nearest = typed<Napi::BigInt64Array>(env, info[4], "nearest");
  auto dist = typed<Napi::Float32Array>(env, info[5], "dist");
  Napi::Object o = info[6].IsObject() ? info[6].As<Napi::Object>() : Napi::Object::New(env);
  sd::EmbeddingView view = emb->view();
  if (int64_t(cent.ElementLength()) != int64_t(k) * view.d) throw_type(env, "centroids must hold k * d values");
  if (int64_t(nearest.ElementLength()) != view.n || int64_t(dist.ElementLength()) != view.n)
    throw_type(env, "nearest and dist must hold n values");
  const int threads = get_int(o, "threads", 0);
  const bool faiss = use_faiss(o);
  const std::string device = get_device(o);
  const float* c = cent.Data();
  int64_t* pn = nearest.Data();
  float* pd = dist.Data();
  auto* job = new Job(
      env, info[7], info[8],
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
#ifdef SEMDEDUP_HAVE_CUDA
        if (device == "cuda") {
          try {
            sd::cuda::assign_nearest(view, c, k, ip, pn, pd, prog, cancel);
            return;
          } catch (const sd::Error& e) {
            if (e.code() != sd::ErrorCode::Backend) throw;
          }
        }
#endif
        if (device == "cuda") throw sd::Error(sd::ErrorCode::Backend, "this build has no CUDA backend");
#ifdef SEMDEDUP_HAVE_FAISS
        if (faiss) {
          sd::assign_nearest_faiss(view, c, k, ip, pn, pd, threads, prog, cancel);
          return;
        }
#endif
        sd::assign_nearest(view, c, k, ip, pn, pd, threads, prog, cancel);
      },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  job->keep(cent);
  job->keep(nearest);
  job->keep(dist);
  job->keep_mapping(emb->mapping());
  Napi::Promise pr = job->promise();
  job->Queue();
  return pr;
}

// cosineToCentroid(emb, centroids, k, nearest: BigInt64Array, out: Float32Array, { threads }, cancel?) -> Promise<void>
Napi::Value CosineToCentroid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Embeddings* emb = unwrap_embeddings(env, info[0]);
  auto cent = typed<Napi::Float32Array>(env, info[1], "centroids");
  const int k = info[2].As<Napi::Number>().Int32Value();
  auto nearest = typed<Napi::BigInt64Array>(env, info[3], "nearest");
  auto out = typed<Napi::Float32Array>(env, info[4], "out");
  Napi::Object o = info[5].IsObject() ? info[5].As<Napi::Object>() : Napi::Object::New(env);
  sd::EmbeddingView view = emb->view();
  if (int64_t(cent.ElementLength()) != int64_t(k) * view.d) throw_type(env, "centroids must hold k * d values");
  if (int64_t(nearest.ElementLength()) != view.n || int64_t(out.ElementLength()) != view.n)
    throw_type(env, "nearest and out must hold n values");
  const int threads = get_int(o, "threads", 0);
  const float* c = cent.Data();
  const int64_t* pn = nearest.Data();
  float* po = out.Data();
  auto* job = new Job(
      env, env.Undefined(), info[6],
      [=](const sd::ProgressFn&, sd::CancelFlag cancel) { sd::cosine_to_centroid(view, c, k, pn, po, threads, cancel); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  job->keep(cent);
  job->keep(nearest);
  job->keep(out);
  job->keep_mapping(emb->mapping());
  Napi::Promise pr = job->promise();
  job->Queue();
  return pr;
}

// rankClusters(nearest: BigInt64Array, key: Float32Array, k, keepHard, order: BigInt64Array, offsets: BigInt64Array,
//              sortedKey?: Float32Array (key[order[p]]), threads?) -> Promise<void>
Napi::Value RankClusters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto nearest = typed<Napi::BigInt64Array>(env, info[0], "nearest");
  auto key = typed<Napi::Float32Array>(env, info[1], "key");
  const int64_t k = info[2].As<Napi::Number>().Int64Value();
  const bool hard = info[3].ToBoolean();
  auto order = typed<Napi::BigInt64Array>(env, info[4], "order");
  auto offsets = typed<Napi::BigInt64Array>(env, info[5], "offsets");
  const int64_t n = int64_t(nearest.ElementLength());
  if (int64_t(key.ElementLength()) != n || int64_t(order.ElementLength()) != n ||
      int64_t(offsets.ElementLength()) != k + 1)
    throw_type(env, "rankClusters: key and order must hold n values, offsets k + 1");
  float* ps = nullptr;
  if (info.Length() > 6 && info[6].IsTypedArray()) {
    auto sk = typed<Napi::Float32Array>(env, info[6], "sortedKey");
    if (int64_t(sk.ElementLength()) != n) throw_type(env, "rankClusters: sortedKey must hold n values");
    ps = sk.Data();
  }
  const int threads = info.Length() > 7 && info[7].IsNumber() ? info[7].As<Napi::Number>().Int32Value() : 0;
  const int64_t* pn = nearest.Data();
  const float* pk = key.Data();
  int64_t* po = order.Data();
  int64_t* pf = offsets.Data();
  auto* job = new Job(
      env, env.Undefined(), env.Undefined(),
      [=](const sd::ProgressFn&, sd::CancelFlag) { sd::rank_clusters(pn, pk, n, k, hard, po, pf, threads, ps); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  if (ps) job->keep(info[6]);
  job->keep(nearest);
  job->keep(key);
  job->keep(order);
  job->keep(offsets);
  Napi::Promise pr = job->promise();
  job->Queue();
  return pr;
}

// maxSimilarity(emb, order: BigInt64Array, offsets: BigInt64Array, M: Float64Array, arg: BigInt64Array,
//               { thresholds: number[], threads, device, recheckMargin }, onProgress?, cancel?)
//   -> Promise<{ members, clusters, usefulFlops, computedFlops, rechecked, device }>
Napi::Value MaxSimilarity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Embeddings* emb = unwrap_embeddings(env, info[0]);
  auto order = typed<Napi::BigInt64Array>(env, info[1], "order");
  auto offsets = typed<Napi::BigInt64Array>(env, info[2], "offsets");
  auto M = typed<Napi::Float64Array>(env, info[3], "M");
  auto arg = typed<Napi::BigInt64Array>(env, info[4], "arg");
  Napi::Object o = info[5].IsObject() ? info[5].As<Napi::Object>() : Napi::Object::New(env);
  sd::EmbeddingView view = emb->view();
  const int64_t nc = int64_t(offsets.ElementLength()) - 1;
  if (nc < 0) throw_type(env, "offsets must hold nclusters + 1 values");
  const int64_t* po = order.Data();
  const int64_t* pf = offsets.Data();
  const int64_t total = pf[nc] - pf[0];
  if (pf[0] != 0 || total != int64_t(order.ElementLength()) || int64_t(M.ElementLength()) != total ||
      int64_t(arg.ElementLength()) != total)
    throw_type(env, "maxSimilarity: offsets must start at 0 and end at order.length; M and arg as long as order");
  for (int64_t c = 0; c < nc; ++c)
    if (pf[c + 1] < pf[c]) throw_type(env, "maxSimilarity: offsets must be non-decreasing");
  for (int64_t i = 0; i < total; ++i)
    if (po[i] < 0 || po[i] >= view.n) throw_type(env, "maxSimilarity: order holds a row outside the embeddings");
  sd::MaxSimOptions opt;
  opt.threads = get_int(o, "threads", 0);
  if (o.Get("recheckMargin").IsNumber()) opt.recheck_margin = o.Get("recheckMargin").As<Napi::Number>().DoubleValue();
  if (o.Get("thresholds").IsArray()) {
    Napi::Array t = o.Get("thresholds").As<Napi::Array>();
    for (uint32_t i = 0; i < t.Length(); ++i) opt.thresholds.push_back(t.Get(i).As<Napi::Number>().DoubleValue());
  }
  const std::string device = get_device(o);
  double* pM = M.Data();
  int64_t* pa = arg.Data();
  auto stats = std::make_shared<sd::MaxSimStats>();
  auto used = std::make_shared<std::string>(device);
  auto* job = new Job(
      env, info[6], info[7],
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
        (void)used;
#ifdef SEMDEDUP_HAVE_CUDA
        if (device == "cuda") {
          try {
            *stats = sd::cuda::max_similarity(view, po, pf, nc, pM, pa, opt, prog, cancel);
            return;
          } catch (const sd::Error& e) {
            if (e.code() != sd::ErrorCode::Backend) throw;
            *used = "cpu (CUDA refused: " + std::string(e.what()) + ")";
          }
        }
#endif
        if (device == "cuda") throw sd::Error(sd::ErrorCode::Backend, "this build has no CUDA backend");
        *stats = sd::max_similarity_cpu(view, po, pf, nc, pM, pa, opt, prog, cancel);
      },
      [stats, used](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("members", double(stats->members));
        out.Set("clusters", double(stats->clusters));
        out.Set("usefulFlops", stats->useful_flops);
        out.Set("computedFlops", stats->computed_flops);
        out.Set("rechecked", double(stats->rechecked));
        out.Set("device", *used);
        return out;
      });
  job->keep(order);
  job->keep(offsets);
  job->keep(M);
  job->keep(arg);
  job->keep_mapping(emb->mapping());
  Napi::Promise pr = job->promise();
  job->Queue();
  return pr;
}

// scanEmbeddings(emb, normTol, { threads }, cancel?) -> Promise<ScanResult>
Napi::Value ScanEmbeddings(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Embeddings* emb = unwrap_embeddings(env, info[0]);
  const double tol = info[1].As<Napi::Number>().DoubleValue();
  Napi::Object o = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  const int threads = get_int(o, "threads", 0);
  sd::EmbeddingView view = emb->view();
  auto r = std::make_shared<sd::ScanResult>();
  auto* job = new Job(
      env, env.Undefined(), info[3],
      [=](const sd::ProgressFn&, sd::CancelFlag cancel) { *r = sd::scan_embeddings(view, tol, threads, cancel); },
      [r](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("firstNonfinite", double(r->first_nonfinite));
        out.Set("firstZero", double(r->first_zero));
        out.Set("firstUnnormalized", double(r->first_unnormalized));
        out.Set("nonfiniteRows", double(r->nonfinite_rows));
        out.Set("zeroRows", double(r->zero_rows));
        out.Set("unnormalizedRows", double(r->unnormalized_rows));
        out.Set("minNorm", r->min_norm);
        out.Set("maxNorm", r->max_norm);
        return out;
      });
  job->keep_mapping(emb->mapping());
  Napi::Promise pr = job->promise();
  job->Queue();
  return pr;
}

// measureSgemm(n, repeats, threads) -> Promise<number> (GFLOP/s)
Napi::Value MeasureSgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int n = info[0].As<Napi::Number>().Int32Value();
  const int reps = info[1].As<Napi::Number>().Int32Value();
  const int threads = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 0;
  auto g = std::make_shared<double>(0);
  auto* job = new Job(
      env, env.Undefined(), env.Undefined(),
      [=](const sd::ProgressFn&, sd::CancelFlag) { *g = sd::measure_sgemm_gflops(n, reps, threads); },
      [g](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *g); });
  Napi::Promise pr = job->promise();
  job->Queue();
  return pr;
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", SEMDEDUP_VERSION);
  o.Set("faiss", sd::faiss_version());
  o.Set("blasCore", sd::blas_core_name());
  o.Set("blasThreads", sd::blas_threads());
  o.Set("hardwareThreads", sd::resolve_threads(0));
#ifdef SEMDEDUP_HAVE_FAISS
  o.Set("kmeans", "engine (FAISS also linked)");
#else
  o.Set("kmeans", "engine");
#endif
  Napi::Object cuda = Napi::Object::New(env);
#ifdef SEMDEDUP_HAVE_CUDA
  cuda.Set("compiled", true);
  const sd::cuda::DeviceInfo di = sd::cuda::device_info();
  cuda.Set("available", di.available);
  cuda.Set("reason", di.reason);
  if (di.available) {
    cuda.Set("name", di.name);
    cuda.Set("computeCapability", std::to_string(di.cc_major) + "." + std::to_string(di.cc_minor));
    cuda.Set("totalMemory", double(di.total_mem));
    cuda.Set("freeMemory", double(di.free_mem));
    cuda.Set("multiprocessors", di.sm_count);
  }
  cuda.Set("driverVersion", di.driver_version);
  cuda.Set("runtimeVersion", di.runtime_version);
#else
  cuda.Set("compiled", false);
  cuda.Set("available", false);
  cuda.Set("reason", "built without CUDA");
#endif
  o.Set("cuda", cuda);
  return o;
}

}  // namespace

void register_steps(Napi::Env env, Napi::Object exports) {
  exports.Set("trainKmeans", Napi::Function::New(env, TrainKmeans));
  exports.Set("assignNearest", Napi::Function::New(env, AssignNearest));
  exports.Set("cosineToCentroid", Napi::Function::New(env, CosineToCentroid));
  exports.Set("rankClusters", Napi::Function::New(env, RankClusters));
  exports.Set("maxSimilarity", Napi::Function::New(env, MaxSimilarity));
  exports.Set("scanEmbeddings", Napi::Function::New(env, ScanEmbeddings));
  exports.Set("measureSgemm", Napi::Function::New(env, MeasureSgemm));
  exports.Set("info", Napi::Function::New(env, Info));
}

}  // namespace semdedup_addon
