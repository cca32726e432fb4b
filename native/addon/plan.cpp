// The addon's functions for planned runs (src/plan): the max similarity of a row block of one
// cluster, and the kernel's decomposition of a cluster (which clusters it splits, and how wide).
// Each takes one options object.
#include "args.hpp"
#include "job.hpp"
#include "semdedup/engine.hpp"

namespace semdedup_addon {
namespace {

// maxSimLayout({ n, d }) -> { split: boolean, width: number }
Napi::Value MaxSimLayoutOf(const Napi::CallbackInfo& info) {
  Options o(info, "maxSimLayout");
  Napi::Env env = o.env();
  const int64_t n = o.integer("n");
  const int64_t d = o.integer("d");
  if (n < 0 || d <= 0) o.fail("n and d", ">= 0 and > 0");
  const sd::MaxSimLayout b = sd::maxsim_layout(n, d);
  Napi::Object out = Napi::Object::New(env);
  out.Set("split", Napi::Boolean::New(env, b.split));
  out.Set("width", Napi::Number::New(env, double(b.width)));
  return out;
}

// maxSimilarityBlock({ emb, rows: BigInt64Array (the cluster's rows in keep order), j0, j1,
//                      M: Float64Array (j1 - j0), arg: BigInt64Array (j1 - j0),
//                      thresholds, threads, recheckMargin, onProgress, cancel })
//   -> Promise<{ members, clusters, usefulFlops, computedFlops, rechecked, rescanned }>
Napi::Value MaxSimilarityBlock(const Napi::CallbackInfo& info) {
  Options o(info, "maxSimilarityBlock");
  Embeddings* emb = embeddings_of(o, "emb");
  auto rows = o.typed<Napi::BigInt64Array>("rows");
  const int64_t j0 = o.integer("j0");
  const int64_t j1 = o.integer("j1");
  auto M = o.typed<Napi::Float64Array>("M");
  auto arg = o.typed<Napi::BigInt64Array>("arg");
  sd::EmbeddingView view = emb->view();
  const int64_t n = int64_t(rows.ElementLength());
  if (j0 < 0 || j1 < j0 || j1 > n) o.fail("j0 and j1", "0 <= j0 <= j1 <= rows.length");
  if (int64_t(M.ElementLength()) != j1 - j0 || int64_t(arg.ElementLength()) != j1 - j0) o.fail("M and arg", "j1 - j0 values");
  const int64_t* pr = rows.Data();
  for (int64_t i = 0; i < n; ++i)
    if (pr[i] < 0 || pr[i] >= view.n) o.fail("rows", "rows inside the embeddings");
  const sd::MaxSimOptions opt = maxsim_options(o);
  double* pM = M.Data();
  int64_t* pa = arg.Data();
  auto stats = std::make_shared<sd::MaxSimStats>();
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
        *stats = sd::engine::max_similarity_block(view, pr, n, j0, j1, pM, pa, opt, prog, cancel);
      },
      [stats](Napi::Env env) -> Napi::Value { return maxsim_stats_object(env, *stats); });
  job->keep({rows, M, arg});
  job->keep_mapping(emb->mapping());
  return job->start();
}

// cpuFilter({ d }) -> 'fp32' | 'avx2-int8': the filter the CPU's whole-cluster max similarity uses at
// dimension d (SEMDEDUP_ISA read now), for a dedup task that ran only blocks of split clusters.
Napi::Value CpuFilter(const Napi::CallbackInfo& info) {
  Options o(info, "cpuFilter");
  const int64_t d = o.integer("d");
  if (d <= 0) o.fail("d", "> 0");
  try {
    return Napi::String::New(o.env(), sd::engine::filter_of(sd::engine::Backend::Cpu, d));
  } catch (const sd::Error& e) {
    throw make_error(o.env(), e);
  }
}

}  // namespace

void register_plan(Napi::Env env, Napi::Object exports) {
  exports.Set("maxSimLayout", Napi::Function::New(env, MaxSimLayoutOf));
  exports.Set("maxSimilarityBlock", Napi::Function::New(env, MaxSimilarityBlock));
  exports.Set("cpuFilter", Napi::Function::New(env, CpuFilter));
}

}  // namespace semdedup_addon
