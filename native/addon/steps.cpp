// The addon's step functions: k-means, assignment, step 3's distances and ranking, max
// similarity, the embeddings scan, and the engine facts (info, sgemm rate). Each takes one options
// object; each heavy call is a Job over one engine call.
#include "args.hpp"
#include "job.hpp"

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

// The k-means implementation option: impl 'engine' | 'faiss' (absent: engine).
eng::KMeansImpl impl_of(const Options& o) {
  const std::string v = o.string("impl", "engine");
  try {
    return eng::parse_kmeans_impl(v);
  } catch (const sd::Error& e) {
    throw make_error(o.env(), e);
  }
}

// trainKmeans({ emb, k, niter, seed, spherical, maxPointsPerCentroid, minPointsPerCentroid, threads, prune,
//               engine, impl, gpuMemoryLimit, keepAssignment, onProgress, cancel })
//   -> Promise<{ centroids: Float32Array, objective: number[], iterations, nTrain, underMinPoints, searchedRows,
//                prunedRows, rescoredRows, partialRows, searchedColumns, filter, filterCheckedRows, backend, backendNote,
//                assigned?: { rows: BigInt64Array, nearest: BigInt64Array, dist: Float32Array } }>
//   assigned (keepAssignment): the training rows' exact assignment to the final centroids.
// Absent parameters keep the defaults of sd::KMeansParams.
Napi::Value TrainKmeans(const Napi::CallbackInfo& info) {
  Options o(info, "trainKmeans");
  Embeddings* emb = embeddings_of(o, "emb");
  sd::KMeansParams p;
  o.set("k", p.k);
  o.set("niter", p.niter);
  o.set("seed", p.seed);
  o.set("spherical", p.spherical);
  o.set("maxPointsPerCentroid", p.max_points_per_centroid);
  o.set("minPointsPerCentroid", p.min_points_per_centroid);
  o.set("threads", p.threads);
  o.set("prune", p.prune);
  o.set("gpuMemoryLimit", p.gpu.memory_limit);
  o.set("keepAssignment", p.keep_assignment);
  const eng::Resolved engine = engine_of(o);
  const eng::KMeansImpl impl = impl_of(o);
  auto result = std::make_shared<sd::KMeansResult>();
  auto ran = std::make_shared<eng::Ran>();
  sd::EmbeddingView view = emb->view();
  auto* job = new Job(
      o,
      [view, p, result, ran, engine, impl](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
        *ran = ran_on(engine, eng::train_kmeans(engine.dispatch_device(), impl, view, p, *result, prog, cancel));
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
        out.Set("partialRows", double(result->partial_rows));
        out.Set("searchedColumns", double(result->searched_columns));
        out.Set("filter", result->filter);
        out.Set("filterCheckedRows", double(result->filter_rechecked_rows));
        out.Set("iterations", double(result->iterations));
        if (!result->final_rows.empty()) {
          const size_t n = result->final_rows.size();
          Napi::Object a = Napi::Object::New(env);
          Napi::BigInt64Array rows = Napi::BigInt64Array::New(env, n), near = Napi::BigInt64Array::New(env, n);
          Napi::Float32Array dist = Napi::Float32Array::New(env, n);
          std::copy(result->final_rows.begin(), result->final_rows.end(), rows.Data());
          std::copy(result->final_nearest.begin(), result->final_nearest.end(), near.Data());
          std::copy(result->final_dist.begin(), result->final_dist.end(), dist.Data());
          a.Set("rows", rows);
          a.Set("nearest", near);
          a.Set("dist", dist);
          out.Set("assigned", a);
        }
        set_ran(env, out, *ran);
        return out;
      });
  job->keep_mapping(emb->mapping());
  return job->start();
}

// assignNearest({ emb, centroids: Float32Array, k, innerProduct, nearest: BigInt64Array, dist: Float32Array,
//                 skip?: Uint8Array, threads, engine, impl, onProgress, cancel })
//   -> Promise<{ backend, backendNote, rescoredRows, filter, filterCheckedRows }>;
//   outputs written in place; rows with skip[i] != 0 already hold theirs (trainKmeans's assigned).
Napi::Value AssignNearest(const Napi::CallbackInfo& info) {
  Options o(info, "assignNearest");
  Napi::Env env = o.env();
  Embeddings* emb = embeddings_of(o, "emb");
  auto cent = o.typed<Napi::Float32Array>("centroids");
  const int k = int(o.integer("k"));
  const bool ip = o.boolean("innerProduct", false);
  auto nearest = o.typed<Napi::BigInt64Array>("nearest");
  auto dist = o.typed<Napi::Float32Array>("dist");
  sd::EmbeddingView view = emb->view();
  if (int64_t(cent.ElementLength()) != int64_t(k) * view.d) o.fail("centroids", "k * d values");
  if (int64_t(nearest.ElementLength()) != view.n || int64_t(dist.ElementLength()) != view.n) o.fail("nearest and dist", "n values");
  Napi::Uint8Array skipArr;
  const uint8_t* skip = nullptr;
  if (o.has("skip")) {
    skipArr = o.typed<Napi::Uint8Array>("skip");
    if (int64_t(skipArr.ElementLength()) != view.n) o.fail("skip", "n values");
    skip = skipArr.Data();
  }
  const int threads = o.threads();
  const eng::Resolved engine = engine_of(o);
  const eng::KMeansImpl impl = impl_of(o);
  const float* c = cent.Data();
  int64_t* pn = nearest.Data();
  float* pd = dist.Data();
  auto ran = std::make_shared<eng::Ran>();
  auto rescored = std::make_shared<int64_t>(0);
  auto rechecked = std::make_shared<int64_t>(0);
  auto filter = std::make_shared<std::string>();
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
        *ran = ran_on(engine, eng::assign_nearest(engine.dispatch_device(), impl, view, c, k, ip, pn, pd, threads, prog, cancel,
                                                  rescored.get(), skip, rechecked.get()));
        *filter = eng::filter_of(ran->backend, view.d);
      },
      [ran, rescored, rechecked, filter](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        set_ran(env, out, *ran);
        out.Set("rescoredRows", double(*rescored));
        out.Set("filter", *filter);
        out.Set("filterCheckedRows", double(*rechecked));
        return out;
      });
  job->keep({cent, nearest, dist});
  if (skip) job->keep({skipArr});
  job->keep_mapping(emb->mapping());
  return job->start();
}

// cosineToCentroid({ emb, centroids, k, nearest: BigInt64Array, out: Float32Array, threads, cancel }) -> Promise<void>
Napi::Value CosineToCentroid(const Napi::CallbackInfo& info) {
  Options o(info, "cosineToCentroid");
  Embeddings* emb = embeddings_of(o, "emb");
  auto cent = o.typed<Napi::Float32Array>("centroids");
  const int k = int(o.integer("k"));
  auto nearest = o.typed<Napi::BigInt64Array>("nearest");
  auto out = o.typed<Napi::Float32Array>("out");
  sd::EmbeddingView view = emb->view();
  if (int64_t(cent.ElementLength()) != int64_t(k) * view.d) o.fail("centroids", "k * d values");
  if (int64_t(nearest.ElementLength()) != view.n || int64_t(out.ElementLength()) != view.n) o.fail("nearest and out", "n values");
  const int threads = o.threads();
  const float* c = cent.Data();
  const int64_t* pn = nearest.Data();
  float* po = out.Data();
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn&, sd::CancelFlag cancel) { sd::cosine_to_centroid(view, c, k, pn, po, threads, cancel); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  job->keep({cent, nearest, out});
  job->keep_mapping(emb->mapping());
  return job->start();
}

// rankClusters({ nearest: BigInt64Array, key: Float32Array, k, keepHard, order: BigInt64Array, offsets: BigInt64Array,
//                sortedKey?: Float32Array (key[order[p]]), threads }) -> Promise<void>
Napi::Value RankClusters(const Napi::CallbackInfo& info) {
  Options o(info, "rankClusters");
  auto nearest = o.typed<Napi::BigInt64Array>("nearest");
  auto key = o.typed<Napi::Float32Array>("key");
  const int64_t k = o.integer("k");
  const bool hard = o.boolean("keepHard", false);
  auto order = o.typed<Napi::BigInt64Array>("order");
  auto offsets = o.typed<Napi::BigInt64Array>("offsets");
  const int64_t n = int64_t(nearest.ElementLength());
  if (int64_t(key.ElementLength()) != n || int64_t(order.ElementLength()) != n || int64_t(offsets.ElementLength()) != k + 1)
    o.fail("key, order and offsets", "n, n and k + 1 values");
  float* ps = nullptr;
  Napi::Float32Array sk;
  if (o.has("sortedKey")) {
    sk = o.typed<Napi::Float32Array>("sortedKey");
    if (int64_t(sk.ElementLength()) != n) o.fail("sortedKey", "n values");
    ps = sk.Data();
  }
  const int threads = o.threads();
  const int64_t* pn = nearest.Data();
  const float* pk = key.Data();
  int64_t* po = order.Data();
  int64_t* pf = offsets.Data();
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn&, sd::CancelFlag) { sd::rank_clusters(pn, pk, n, k, hard, po, pf, threads, ps); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  if (ps) job->keep(sk);
  job->keep({nearest, key, order, offsets});
  return job->start();
}

// maxSimilarity({ emb, order: BigInt64Array, offsets: BigInt64Array, M: Float64Array, arg: BigInt64Array,
//                 thresholds: number[], threads, engine, recheckMargin, gpuMemoryLimit, onProgress, cancel })
//   -> Promise<{ members, clusters, usefulFlops, computedFlops, rechecked, rescanned, backend, backendNote }>
Napi::Value MaxSimilarity(const Napi::CallbackInfo& info) {
  Options o(info, "maxSimilarity");
  auto [emb, order, offsets, M, arg, nc] = cluster_args(o);
  const sd::EmbeddingView view = emb->view();
  const sd::MaxSimOptions opt = maxsim_options(o);
  const eng::Resolved engine = engine_of(o);
  const int64_t* po = order.Data();
  const int64_t* pf = offsets.Data();
  double* pM = M.Data();
  int64_t* pa = arg.Data();
  auto stats = std::make_shared<sd::MaxSimStats>();
  auto ran = std::make_shared<eng::Ran>();
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
        *ran = ran_on(engine, eng::max_similarity(engine.dispatch_device(), view, po, pf, nc, pM, pa, opt, *stats, prog, cancel));
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

// scanEmbeddings({ emb, normTol, threads, cancel }) -> Promise<ScanResult>
Napi::Value ScanEmbeddings(const Napi::CallbackInfo& info) {
  Options o(info, "scanEmbeddings");
  Embeddings* emb = embeddings_of(o, "emb");
  const double tol = o.number("normTol");
  const int threads = o.threads();
  sd::EmbeddingView view = emb->view();
  auto r = std::make_shared<sd::ScanResult>();
  auto* job = new Job(
      o,
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

// normalizeRows({ emb, out: writable float32 Embeddings of the same shape, threads, onProgress, cancel })
//   -> Promise<void>: out's rows are emb's rows L2-normalised (normalize: always).
Napi::Value NormalizeRows(const Napi::CallbackInfo& info) {
  Options o(info, "normalizeRows");
  Embeddings* src = embeddings_of(o, "emb");
  Embeddings* dst = embeddings_of(o, "out");
  const sd::EmbeddingView view = src->view();
  const sd::EmbeddingView out = dst->view();
  if (!dst->writable() || !out.is_f32() || out.n != view.n || out.d != view.d)
    o.fail("out", "a writable float32 mapping of the same shape");
  const int threads = o.threads();
  float* po = const_cast<float*>(out.f32_row(0));
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) { sd::normalize_rows(view, po, threads, prog, cancel); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  job->keep_mapping(src->mapping());
  job->keep_mapping(dst->mapping());
  return job->start();
}

// keepOrder({ order: BigInt64Array, offsets: BigInt64Array, which: 'hard' | 'easy' | 'random', seed,
//             keepOrder: BigInt64Array, keepIndex: BigInt64Array, threads }) -> Promise<void>
Napi::Value KeepOrder(const Napi::CallbackInfo& info) {
  Options o(info, "keepOrder");
  auto order = o.typed<Napi::BigInt64Array>("order");
  auto offsets = o.typed<Napi::BigInt64Array>("offsets");
  const std::string which = o.string("which");
  if (which != "hard" && which != "easy" && which != "random") o.fail("which", "'hard', 'easy' or 'random'");
  const int64_t seed = o.integer("seed");
  auto ko = o.typed<Napi::BigInt64Array>("keepOrder");
  auto ki = o.typed<Napi::BigInt64Array>("keepIndex");
  const int64_t k = int64_t(offsets.ElementLength()) - 1;
  const int64_t n = int64_t(order.ElementLength());
  if (k < 0) o.fail("offsets", "k + 1 values");
  if (ko.ElementLength() != order.ElementLength() || ki.ElementLength() != order.ElementLength())
    o.fail("keepOrder and keepIndex", "as long as order");
  const int64_t* pf = offsets.Data();
  check_groups(o, pf, k, n, "offsets");
  const sd::WhichToKeep w = which == "hard" ? sd::WhichToKeep::Hard : which == "easy" ? sd::WhichToKeep::Easy : sd::WhichToKeep::Random;
  const int threads = o.threads();
  const int64_t* po = order.Data();
  int64_t* pko = ko.Data();
  int64_t* pki = ki.Data();
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn&, sd::CancelFlag) { sd::keep_order(po, pf, k, w, seed, pko, pki, threads); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  job->keep({order, offsets, ko, ki});
  return job->start();
}

// measureSgemm({ n, repeats, threads }) -> Promise<number> (GFLOP/s)
Napi::Value MeasureSgemm(const Napi::CallbackInfo& info) {
  Options o(info, "measureSgemm");
  const int n = int(o.integer("n"));
  const int reps = int(o.integer("repeats"));
  if (n < 1 || reps < 1) o.fail("n and repeats", ">= 1");
  const int threads = o.threads();
  auto g = std::make_shared<double>(0);
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn&, sd::CancelFlag) { *g = sd::measure_sgemm_gflops(n, reps, threads); },
      [g](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *g); });
  return job->start();
}

// measureFilter({ repeats, threads }) -> Promise<number> (GOP/s of the integer filter; 0 without one)
Napi::Value MeasureFilter(const Napi::CallbackInfo& info) {
  Options o(info, "measureFilter");
  const int reps = int(o.integer("repeats"));
  if (reps < 1) o.fail("repeats", ">= 1");
  const int threads = o.threads();
  auto g = std::make_shared<double>(0);
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn&, sd::CancelFlag) { *g = sd::qfilter::measure_filter_gops(reps, threads); },
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

// The Engine class (handles.hpp), registered once.
Napi::Function engine_class(Napi::Env env) {
  Napi::Function f = Engine::Init(env);
  g_engine_ctor = new Napi::FunctionReference(Napi::Persistent(f));
  env.AddCleanupHook([]() {
    delete g_engine_ctor;
    g_engine_ctor = nullptr;
  });
  return f;
}

}  // namespace

void register_steps(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", engine_class(env));
  exports.Set("trainKmeans", Napi::Function::New(env, TrainKmeans));
  exports.Set("assignNearest", Napi::Function::New(env, AssignNearest));
  exports.Set("cosineToCentroid", Napi::Function::New(env, CosineToCentroid));
  exports.Set("rankClusters", Napi::Function::New(env, RankClusters));
  exports.Set("maxSimilarity", Napi::Function::New(env, MaxSimilarity));
  exports.Set("scanEmbeddings", Napi::Function::New(env, ScanEmbeddings));
  exports.Set("normalizeRows", Napi::Function::New(env, NormalizeRows));
  exports.Set("keepOrder", Napi::Function::New(env, KeepOrder));
  exports.Set("measureSgemm", Napi::Function::New(env, MeasureSgemm));
  exports.Set("measureFilter", Napi::Function::New(env, MeasureFilter));
  exports.Set("info", Napi::Function::New(env, Info));
}

}  // namespace semdedup_addon
