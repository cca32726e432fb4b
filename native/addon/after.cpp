// The addon's functions for working from a finished run: the float64 re-check of M near any
// threshold, the largest similarity to a reference set (decontamination), and exact duplicates.
// Each takes one options object; each heavy call is a Job over one call of the engine facade.
#include "args.hpp"
#include "job.hpp"
#include "semdedup/engine.hpp"

namespace semdedup_addon {
namespace {

// recheckThresholds({ emb, order, offsets, M: Float64Array, arg: BigInt64Array,
//                     thresholds, threads, recheckMargin, cancel }) -> Promise<{ rechecked }>
// M and arg (step 4's, per keep-order position) are updated in place: every member whose M lies
// within the margin of a threshold gets M and arg recomputed in float64.
Napi::Value RecheckThresholds(const Napi::CallbackInfo& info) {
  Options o(info, "recheckThresholds");
  auto [emb, order, offsets, M, arg, nc] = cluster_args(o);
  const sd::EmbeddingView view = emb->view();
  const sd::MaxSimOptions opt = maxsim_options(o);
  const int64_t* po = order.Data();
  const int64_t* pf = offsets.Data();
  double* pM = M.Data();
  int64_t* pa = arg.Data();
  auto n = std::make_shared<int64_t>(0);
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn&, sd::CancelFlag cancel) {
        *n = sd::engine::recheck_near_thresholds(view, po, pf, nc, pM, pa, opt, cancel);
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

// maxSimilarityToReference({ emb, xRows, xOffsets, ref, rRows, rOffsets, best: Float64Array, bestRef: BigInt64Array,
//                            threads, onProgress, cancel }) -> Promise<{ rows, referenceRows, computedFlops, rechecked }>
Napi::Value MaxSimilarityToReference(const Napi::CallbackInfo& info) {
  Options o(info, "maxSimilarityToReference");
  Embeddings* emb = embeddings_of(o, "emb");
  auto xr = o.typed<Napi::BigInt64Array>("xRows");
  auto xo = o.typed<Napi::BigInt64Array>("xOffsets");
  Embeddings* ref = embeddings_of(o, "ref");
  auto rr = o.typed<Napi::BigInt64Array>("rRows");
  auto ro = o.typed<Napi::BigInt64Array>("rOffsets");
  auto best = o.typed<Napi::Float64Array>("best");
  auto bestRef = o.typed<Napi::BigInt64Array>("bestRef");
  const int64_t ng = int64_t(xo.ElementLength()) - 1;
  if (ng < 0 || int64_t(ro.ElementLength()) != ng + 1) o.fail("xOffsets and rOffsets", "ngroups + 1 values each");
  check_groups(o, xo.Data(), ng, int64_t(xr.ElementLength()), "xOffsets");
  check_groups(o, ro.Data(), ng, int64_t(rr.ElementLength()), "rOffsets");
  if (best.ElementLength() != xr.ElementLength() || bestRef.ElementLength() != xr.ElementLength())
    o.fail("best and bestRef", "as long as xRows");
  sd::EmbeddingView xv = emb->view();
  sd::EmbeddingView rv = ref->view();
  if (xv.d != rv.d)
    throw_invalid(o.env(), "maxSimilarityToReference: the reference rows have " + std::to_string(rv.d) + " dimensions, the embeddings " +
                               std::to_string(xv.d));
  const sd::MaxSimOptions opt = maxsim_options(o);
  const int64_t* pxr = xr.Data();
  const int64_t* pxo = xo.Data();
  const int64_t* prr = rr.Data();
  const int64_t* pro = ro.Data();
  double* pb = best.Data();
  int64_t* pbr = bestRef.Data();
  auto st = std::make_shared<sd::CrossStats>();
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) {
        *st = sd::engine::max_similarity_to_reference(xv, pxr, pxo, rv, prr, pro, ng, pb, pbr, opt, prog, cancel);
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

// exactDuplicates({ emb, order: BigInt64Array (every row once), firstOf: BigInt64Array (n, out),
//                   threads, onProgress, cancel }) -> Promise<{ rows, groups, copies }>
Napi::Value ExactDuplicates(const Napi::CallbackInfo& info) {
  Options o(info, "exactDuplicates");
  Embeddings* emb = embeddings_of(o, "emb");
  auto order = o.typed<Napi::BigInt64Array>("order");
  auto firstOf = o.typed<Napi::BigInt64Array>("firstOf");
  sd::EmbeddingView view = emb->view();
  if (int64_t(order.ElementLength()) != view.n || int64_t(firstOf.ElementLength()) != view.n)
    o.fail("order and firstOf", "one value per row");
  const int threads = o.threads();
  const int64_t* po = order.Data();
  int64_t* pf = firstOf.Data();
  auto st = std::make_shared<sd::ExactDuplicateStats>();
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) { *st = sd::engine::exact_duplicates(view, po, pf, threads, prog, cancel); },
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

// recheckMargin({ d }) -> the float64 re-check's default margin at dimension d (maxsim.hpp).
Napi::Value RecheckMargin(const Napi::CallbackInfo& info) {
  Options o(info, "recheckMargin");
  const int64_t d = o.integer("d");
  if (d < 1) o.fail("d", ">= 1");
  return Napi::Number::New(o.env(), sd::default_recheck_margin(d));
}

}  // namespace

void register_after(Napi::Env env, Napi::Object exports) {
  exports.Set("recheckMargin", Napi::Function::New(env, RecheckMargin));
  exports.Set("recheckThresholds", Napi::Function::New(env, RecheckThresholds));
  exports.Set("maxSimilarityToReference", Napi::Function::New(env, MaxSimilarityToReference));
  exports.Set("exactDuplicates", Napi::Function::New(env, ExactDuplicates));
}

}  // namespace semdedup_addon
