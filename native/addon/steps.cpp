// The addon's step functions: k-means, assignment, step 3's distances and ranking, max
// similarity, the embeddings scan, and the engine facts (info, sgemm rate). Each heavy call is a
// Job over one core call.
#include "job.hpp"

#include <type_traits>

#include "semdedup/blas.hpp"
#include "semdedup/engine.hpp"
#include "semdedup/keep_order.hpp"
#include "semdedup/kmeans.hpp"
#include "semdedup/maxsim.hpp"
#include "semdedup/qfilter.hpp"
#include "semdedup/scan.hpp"
#include "semdedup/sort.hpp"

namespace semdedup_addon {
namespace {

namespace eng = sd::engine;

// The backend options of a job: { device: 'auto' | 'cpu' | 'cuda', impl: 'engine' | 'faiss' }
// (absent: auto, engine). A bad value is a typed argument error.
eng::Device device_of(Napi::Object o) {
  Napi::Value v = o.Get("device");
  try {
    return v.IsString() ? eng::parse_device(v.As<Napi::String>().Utf8Value()) : eng::Device::Auto;
  } catch (const sd::Error& e) {
    throw_type(o.Env(), e.what());
  }
}
eng::KMeansImpl impl_of(Napi::Object o) {
  Napi::Value v = o.Get("impl");
  try {
    return v.IsString() ? eng::parse_kmeans_impl(v.As<Napi::String>().Utf8Value()) : eng::KMeansImpl::Engine;
  } catch (const sd::Error& e) {
    throw_type(o.Env(), e.what());
  }
}

// Which backend ran a job, for the resolved value: { backend: 'cpu' | 'cuda', backendNote }.
void set_ran(Napi::Env env, Napi::Object out, const eng::Ran& ran) {
  out.Set("backend", Napi::String::New(env, eng::backend_name(ran.backend)));
  out.Set("backendNote", Napi::String::New(env, ran.note));
}

// trainKmeans(emb, { k, niter, seed, spherical, maxPointsPerCentroid, minPointsPerCentroid, threads, prune,
//                    device, impl, gpuMemoryLimit }, onProgress?, cancel?)
//   -> Promise<{ centroids: Float32Array, objective: number[], iterations, nTrain, underMinPoints, searchedRows,
//                prunedRows, rescoredRows, backend, backendNote }>
// Absent parameters keep the defaults of sd::KMeansParams.
Napi::Value TrainKmeans(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Embeddings* emb = unwrap_embeddings(env, info[0]);
  if (!info[1].IsObject()) throw_type(env, "trainKmeans(emb, params)");
  Napi::Object o = info[1].As<Napi::Object>();
  sd::KMeansParams p;
  set_if(o, "k", p.k);
  set_if(o, "niter", p.niter);
  set_if(o, "seed", p.seed);
  set_if(o, "spherical", p.spherical);
  set_if(o, "maxPointsPerCentroid", p.max_points_per_centroid);
  set_if(o, "minPointsPerCentroid", p.min_points_per_centroid);
  set_if(o, "threads", p.threads);
  set_if(o, "prune", p.prune);
  set_if(o, "gpuMemoryLimit", p.gpu.memory_limit);
  const eng::Device device = device_of(o);
  const eng::KMeansImpl impl = impl_of(o);
  auto result = std::make_shared<sd::KMeansResult>();
  auto ran = std::make_shared<eng::Ran>();
  sd::EmbeddingView view = emb->view();
  auto* job = new Job(
      env, info[2], info[3],
      [view, p, result, ran, device, impl](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
        *ran = eng::train_kmeans(device, impl, view, p, *result, prog, cancel);
      },
      [result, ran](Napi::Env env) -> Napi::Value {
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
        out.Set("rescoredRows", double(result->rescored_rows));
        out.Set("iterations", double(result->iterations));
        set_ran(env, out, *ran);
        return out;
      });
  job->keep_mapping(emb->mapping());
  return job->start();
}

// assignNearest(emb, centroids: Float32Array, k, innerProduct, nearest: BigInt64Array, dist: Float32Array,
//               { threads, device, impl }, onProgress?, cancel?) -> Promise<{ backend, backendNote, rescoredRows }>;
//   outputs written in place.
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
  const eng::Device device = device_of(o);
  const eng::KMeansImpl impl = impl_of(o);
  const float* c = cent.Data();
  int64_t* pn = nearest.Data();
  float* pd = dist.Data();
  auto ran = std::make_shared<eng::Ran>();
  auto rescored = std::make_shared<int64_t>(0);
  auto* job = new Job(
      env, info[7], info[8],
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
        *ran = eng::assign_nearest(device, impl, view, c, k, ip, pn, pd, threads, prog, cancel, rescored.get());
      },
      [ran, rescored](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        set_ran(env, out, *ran);
        out.Set("rescoredRows", double(*rescored));
        return out;
      });
  job->keep({cent, nearest, dist});
  job->keep_mapping(emb->mapping());
  return job->start();
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
  job->keep({cent, nearest, out});
  job->keep_mapping(emb->mapping());
  return job->start();
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
  job->keep({nearest, key, order, offsets});
  return job->start();
}

// maxSimilarity(emb, order: BigInt64Array, offsets: BigInt64Array, M: Float64Array, arg: BigInt64Array,
//               { thresholds: number[], threads, device, recheckMargin, gpuMemoryLimit }, onProgress?, cancel?)
//   -> Promise<{ members, clusters, usefulFlops, computedFlops, rechecked, backend, backendNote }>
Napi::Value MaxSimilarity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto [emb, order, offsets, M, arg, nc] = cluster_args(info, "maxSimilarity");
  Napi::Object o = info[5].IsObject() ? info[5].As<Napi::Object>() : Napi::Object::New(env);
  const sd::EmbeddingView view = emb->view();
  const sd::MaxSimOptions opt = maxsim_options(o);
  const eng::Device device = device_of(o);
  const int64_t* po = order.Data();
  const int64_t* pf = offsets.Data();
  double* pM = M.Data();
  int64_t* pa = arg.Data();
  auto stats = std::make_shared<sd::MaxSimStats>();
  auto ran = std::make_shared<eng::Ran>();
  auto* job = new Job(
      env, info[6], info[7],
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
        *ran = eng::max_similarity(device, view, po, pf, nc, pM, pa, opt, *stats, prog, cancel);
      },
      [stats, ran](Napi::Env env) -> Napi::Value {
        Napi::Object out = maxsim_stats_object(env, *stats);
        set_ran(env, out, *ran);
        return out;
      });
  job->keep({order, offsets, M, arg});
  job->keep_mapping(emb->mapping());
  return job->start();
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
  return job->start();
}

// normalizeRows(emb, out: writable float32 Embeddings of the same shape, { threads }, onProgress?, cancel?)
//   -> Promise<void>: out's rows are emb's rows L2-normalised (normalize: always).
Napi::Value NormalizeRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Embeddings* src = unwrap_embeddings(env, info[0]);
  Embeddings* dst = unwrap_embeddings(env, info[1]);
  Napi::Object o = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  const sd::EmbeddingView view = src->view();
  const sd::EmbeddingView out = dst->view();
  if (!dst->writable() || !out.is_f32() || out.n != view.n || out.d != view.d)
    throw_type(env, "normalizeRows: out must be a writable float32 mapping of the same shape");
  const int threads = get_int(o, "threads", 0);
  float* po = const_cast<float*>(out.f32_row(0));
  auto* job = new Job(
      env, info[3], info[4],
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) { sd::normalize_rows(view, po, threads, prog, cancel); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  job->keep_mapping(src->mapping());
  job->keep_mapping(dst->mapping());
  return job->start();
}

// keepOrder(order: BigInt64Array, offsets: BigInt64Array, which: 'hard' | 'easy' | 'random', seed,
//           keepOrder: BigInt64Array, keepIndex: BigInt64Array, { threads }) -> Promise<void>
Napi::Value KeepOrder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto order = typed<Napi::BigInt64Array>(env, info[0], "order");
  auto offsets = typed<Napi::BigInt64Array>(env, info[1], "offsets");
  const std::string which = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
  if (which != "hard" && which != "easy" && which != "random") throw_type(env, "which must be 'hard', 'easy' or 'random'");
  const int64_t seed = info[3].As<Napi::Number>().Int64Value();
  auto ko = typed<Napi::BigInt64Array>(env, info[4], "keepOrder");
  auto ki = typed<Napi::BigInt64Array>(env, info[5], "keepIndex");
  Napi::Object o = info[6].IsObject() ? info[6].As<Napi::Object>() : Napi::Object::New(env);
  const int64_t k = int64_t(offsets.ElementLength()) - 1;
  const int64_t n = int64_t(order.ElementLength());
  if (k < 0 || ko.ElementLength() != order.ElementLength() || ki.ElementLength() != order.ElementLength())
    throw_type(env, "keepOrder: offsets must hold k + 1 values, keepOrder and keepIndex as many as order");
  const int64_t* pf = offsets.Data();
  if (pf[0] != 0 || pf[k] != n) throw_type(env, "keepOrder: offsets must start at 0 and end at order.length");
  for (int64_t c = 0; c < k; ++c)
    if (pf[c + 1] < pf[c]) throw_type(env, "keepOrder: offsets must be non-decreasing");
  const sd::WhichToKeep w = which == "hard" ? sd::WhichToKeep::Hard : which == "easy" ? sd::WhichToKeep::Easy : sd::WhichToKeep::Random;
  const int threads = get_int(o, "threads", 0);
  const int64_t* po = order.Data();
  int64_t* pko = ko.Data();
  int64_t* pki = ki.Data();
  auto* job = new Job(
      env, env.Undefined(), env.Undefined(),
      [=](const sd::ProgressFn&, sd::CancelFlag) { sd::keep_order(po, pf, k, w, seed, pko, pki, threads); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  job->keep({order, offsets, ko, ki});
  return job->start();
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
  return job->start();
}

// info() -> the engine facts (engine_info(): computed once per process, the GPU query included).
Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const eng::EngineInfo& ei = eng::engine_info();
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", ei.version);
  o.Set("faiss", ei.faiss);
  o.Set("blasCore", ei.blas_core);
  o.Set("blasThreads", ei.blas_threads);
  o.Set("hardwareThreads", ei.hardware_threads);
  o.Set("kmeans", ei.faiss_kmeans ? "engine (FAISS also linked)" : "engine");
  try {  // the CPU distance passes' filter (SEMDEDUP_ISA, read now)
    o.Set("cpuFilter", sd::qfilter::isa_name(sd::qfilter::active_isa()));
  } catch (const sd::Error& e) {
    o.Set("cpuFilter", std::string("invalid: ") + e.what());
  }
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("compiled", ei.cuda.compiled);
  cuda.Set("available", ei.cuda.available);
  cuda.Set("reason", ei.cuda.reason);
  if (ei.cuda.available) {
    cuda.Set("name", ei.cuda.name);
    cuda.Set("computeCapability", std::to_string(ei.cuda.cc_major) + "." + std::to_string(ei.cuda.cc_minor));
    cuda.Set("totalMemory", double(ei.cuda.total_mem));
    cuda.Set("freeMemory", double(ei.cuda.free_mem));
    cuda.Set("multiprocessors", ei.cuda.sm_count);
  }
  if (ei.cuda.compiled) {
    cuda.Set("driverVersion", ei.cuda.driver_version);
    cuda.Set("runtimeVersion", ei.cuda.runtime_version);
  }
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
  exports.Set("normalizeRows", Napi::Function::New(env, NormalizeRows));
  exports.Set("keepOrder", Napi::Function::New(env, KeepOrder));
  exports.Set("measureSgemm", Napi::Function::New(env, MeasureSgemm));
  exports.Set("info", Napi::Function::New(env, Info));
}

}  // namespace semdedup_addon
