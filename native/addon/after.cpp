// The addon's functions for working from a finished run: the float64 re-check of M near any
// threshold, the largest similarity to a reference set (decontamination), and exact duplicates.
// Each heavy call is a Job over one core call.
#include "job.hpp"

#include "semdedup/decontaminate.hpp"
#include "semdedup/maxsim.hpp"

namespace semdedup_addon {
namespace {

// recheckThresholds(emb, order, offsets, M: Float64Array, arg: BigInt64Array,
//                   { thresholds, threads, recheckMargin }, cancel?) -> Promise<{ rechecked }>
// M and arg (step 4's, per keep-order position) are updated in place: every member whose M lies
// within the margin of a threshold gets M and arg recomputed in float64.
Napi::Value RecheckThresholds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto [emb, order, offsets, M, arg, nc] = cluster_args(info, "recheckThresholds");
  Napi::Object o = info[5].IsObject() ? info[5].As<Napi::Object>() : Napi::Object::New(env);
  const sd::EmbeddingView view = emb->view();
  const sd::MaxSimOptions opt = maxsim_options(o);
  const int64_t* po = order.Data();
  const int64_t* pf = offsets.Data();
  double* pM = M.Data();
  int64_t* pa = arg.Data();
  auto n = std::make_shared<int64_t>(0);
  auto* job = new Job(
      env, env.Undefined(), info[6],
      [=](const sd::ProgressFn&, sd::CancelFlag cancel) {
        *n = sd::recheck_near_thresholds(view, po, pf, nc, pM, pa, opt, cancel);
      },
      [n](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("rechecked", double(*n));
        return out;
      });
  job->keep({order, offsets, M, arg});
  job->keep_mapping(emb->mapping());
  return job->start();
}

// maxSimilarityToReference(emb, xRows, xOffsets, ref, rRows, rOffsets, best: Float64Array, bestRef: BigInt64Array,
//                          { thresholds, threads, recheckMargin }, onProgress?, cancel?)
//   -> Promise<{ rows, referenceRows, computedFlops, rechecked }>
Napi::Value MaxSimilarityToReference(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Embeddings* emb = unwrap_embeddings(env, info[0]);
  auto xr = typed<Napi::BigInt64Array>(env, info[1], "xRows");
  auto xo = typed<Napi::BigInt64Array>(env, info[2], "xOffsets");
  Embeddings* ref = unwrap_embeddings(env, info[3]);
  auto rr = typed<Napi::BigInt64Array>(env, info[4], "rRows");
  auto ro = typed<Napi::BigInt64Array>(env, info[5], "rOffsets");
  auto best = typed<Napi::Float64Array>(env, info[6], "best");
  auto bestRef = typed<Napi::BigInt64Array>(env, info[7], "bestRef");
  Napi::Object o = info[8].IsObject() ? info[8].As<Napi::Object>() : Napi::Object::New(env);
  const int64_t ng = int64_t(xo.ElementLength()) - 1;
  if (ng < 0 || int64_t(ro.ElementLength()) != ng + 1) throw_type(env, "maxSimilarityToReference: xOffsets and rOffsets must hold ngroups + 1 values");
  check_groups(env, xo.Data(), ng, int64_t(xr.ElementLength()), "maxSimilarityToReference (rows)");
  check_groups(env, ro.Data(), ng, int64_t(rr.ElementLength()), "maxSimilarityToReference (reference rows)");
  if (best.ElementLength() != xr.ElementLength() || bestRef.ElementLength() != xr.ElementLength())
    throw_type(env, "maxSimilarityToReference: best and bestRef must be as long as xRows");
  sd::EmbeddingView xv = emb->view();
  sd::EmbeddingView rv = ref->view();
  if (xv.d != rv.d) throw_type(env, "maxSimilarityToReference: the reference rows have " + std::to_string(rv.d) +
                                        " dimensions, the embeddings " + std::to_string(xv.d));
  const sd::MaxSimOptions opt = maxsim_options(o);
  const int64_t* pxr = xr.Data();
  const int64_t* pxo = xo.Data();
  const int64_t* prr = rr.Data();
  const int64_t* pro = ro.Data();
  double* pb = best.Data();
  int64_t* pbr = bestRef.Data();
  auto st = std::make_shared<sd::CrossStats>();
  auto* job = new Job(
      env, info[9], info[10],
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
        *st = sd::max_similarity_to_reference(xv, pxr, pxo, rv, prr, pro, ng, pb, pbr, opt, prog, cancel);
      },
      [st](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("rows", double(st->rows));
        out.Set("referenceRows", double(st->reference_rows));
        out.Set("computedFlops", st->computed_flops);
        out.Set("rechecked", double(st->rechecked));
        return out;
      });
  job->keep({xr, xo, rr, ro, best, bestRef});
  job->keep_mapping(emb->mapping());
  job->keep_mapping(ref->mapping());
  return job->start();
}

// exactDuplicates(emb, order: BigInt64Array (every row once), firstOf: BigInt64Array (n, out),
//                 { threads }, onProgress?, cancel?) -> Promise<{ rows, groups, copies }>
Napi::Value ExactDuplicates(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Embeddings* emb = unwrap_embeddings(env, info[0]);
  auto order = typed<Napi::BigInt64Array>(env, info[1], "order");
  auto firstOf = typed<Napi::BigInt64Array>(env, info[2], "firstOf");
  Napi::Object o = info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
  sd::EmbeddingView view = emb->view();
  if (int64_t(order.ElementLength()) != view.n || int64_t(firstOf.ElementLength()) != view.n)
    throw_type(env, "exactDuplicates: order and firstOf must hold one value per row");
  const int threads = get_int(o, "threads", 0);
  const int64_t* po = order.Data();
  int64_t* pf = firstOf.Data();
  auto st = std::make_shared<sd::ExactDuplicateStats>();
  auto* job = new Job(
      env, info[4], info[5],
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) { *st = sd::exact_duplicates(view, po, pf, threads, prog, cancel); },
      [st](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("rows", double(st->rows));
        out.Set("groups", double(st->groups));
        out.Set("copies", double(st->copies));
        return out;
      });
  job->keep({order, firstOf});
  job->keep_mapping(emb->mapping());
  return job->start();
}

// recheckMargin(d) -> the float64 re-check's default margin at dimension d (maxsim.hpp).
Napi::Value RecheckMargin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || info[0].As<Napi::Number>().Int64Value() < 1) throw_type(env, "recheckMargin(d): d must be a positive number");
  return Napi::Number::New(env, sd::default_recheck_margin(info[0].As<Napi::Number>().Int64Value()));
}

}  // namespace

void register_after(Napi::Env env, Napi::Object exports) {
  exports.Set("recheckMargin", Napi::Function::New(env, RecheckMargin));
  exports.Set("recheckThresholds", Napi::Function::New(env, RecheckThresholds));
  exports.Set("maxSimilarityToReference", Napi::Function::New(env, MaxSimilarityToReference));
  exports.Set("exactDuplicates", Napi::Function::New(env, ExactDuplicates));
}

}  // namespace semdedup_addon
