// The addon's functions for planned runs (src/plan): the max similarity of a row block of one
// cluster, and the kernel's decomposition of a cluster (which clusters it splits, and how wide).
#include "job.hpp"

#include "semdedup/maxsim.hpp"

namespace semdedup_addon {
namespace {

// maxSimLayout(n, d) -> { split: boolean, width: number }
Napi::Value MaxSimLayoutOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) throw_type(env, "maxSimLayout(n, d)");
  const int64_t n = info[0].As<Napi::Number>().Int64Value();
  const int64_t d = info[1].As<Napi::Number>().Int64Value();
  if (n < 0 || d <= 0) throw_type(env, "maxSimLayout: n must be >= 0 and d > 0");
  const sd::MaxSimLayout b = sd::maxsim_layout(n, d);
  Napi::Object out = Napi::Object::New(env);
  out.Set("split", Napi::Boolean::New(env, b.split));
  out.Set("width", Napi::Number::New(env, double(b.width)));
  return out;
}

// maxSimilarityBlock(emb, rows: BigInt64Array (the cluster's rows in keep order), j0, j1,
//                    M: Float64Array (j1 - j0), arg: BigInt64Array (j1 - j0),
//                    { thresholds, threads, recheckMargin }, onProgress?, cancel?)
//   -> Promise<{ members, clusters, usefulFlops, computedFlops, rechecked, rescanned }>
Napi::Value MaxSimilarityBlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Embeddings* emb = unwrap_embeddings(env, info[0]);
  auto rows = typed<Napi::BigInt64Array>(env, info[1], "rows");
  if (!info[2].IsNumber() || !info[3].IsNumber()) throw_type(env, "maxSimilarityBlock: j0 and j1 must be numbers");
  const int64_t j0 = info[2].As<Napi::Number>().Int64Value();
  const int64_t j1 = info[3].As<Napi::Number>().Int64Value();
  auto M = typed<Napi::Float64Array>(env, info[4], "M");
  auto arg = typed<Napi::BigInt64Array>(env, info[5], "arg");
  Napi::Object o = info[6].IsObject() ? info[6].As<Napi::Object>() : Napi::Object::New(env);
  sd::EmbeddingView view = emb->view();
  const int64_t n = int64_t(rows.ElementLength());
  if (j0 < 0 || j1 < j0 || j1 > n) throw_type(env, "maxSimilarityBlock: need 0 <= j0 <= j1 <= rows.length");
  if (int64_t(M.ElementLength()) != j1 - j0 || int64_t(arg.ElementLength()) != j1 - j0)
    throw_type(env, "maxSimilarityBlock: M and arg must hold j1 - j0 values");
  const int64_t* pr = rows.Data();
  for (int64_t i = 0; i < n; ++i)
    if (pr[i] < 0 || pr[i] >= view.n) throw_type(env, "maxSimilarityBlock: rows holds a row outside the embeddings");
  const sd::MaxSimOptions opt = maxsim_options(o);
  double* pM = M.Data();
  int64_t* pa = arg.Data();
  auto stats = std::make_shared<sd::MaxSimStats>();
  auto* job = new Job(
      env, info[7], info[8],
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
        *stats = sd::max_similarity_block(view, pr, n, j0, j1, pM, pa, opt, prog, cancel);
      },
      [stats](Napi::Env env) -> Napi::Value { return maxsim_stats_object(env, *stats); });
  job->keep({rows, M, arg});
  job->keep_mapping(emb->mapping());
  return job->start();
}

}  // namespace

void register_plan(Napi::Env env, Napi::Object exports) {
  exports.Set("maxSimLayout", Napi::Function::New(env, MaxSimLayoutOf));
  exports.Set("maxSimilarityBlock", Napi::Function::New(env, MaxSimilarityBlock));
}

}  // namespace semdedup_addon
