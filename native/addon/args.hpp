// Option groups and results that several addon functions share: the cluster arrays of the
// max-similarity calls, the max-similarity options, and the result objects.
#pragma once
#include <napi.h>

#include <string>

#include "handles.hpp"
#include "options.hpp"
#include "semdedup/engine.hpp"
#include "semdedup/maxsim.hpp"

namespace semdedup_addon {

// { emb, order, offsets, M, arg } of the max-similarity calls, checked: the offsets over order, M
// and arg as long as order, every row inside the embeddings.
struct ClusterArgs {
  Embeddings* emb;
  Napi::BigInt64Array order, offsets;
  Napi::Float64Array M;
  Napi::BigInt64Array arg;
  int64_t nclusters = 0;
};
inline ClusterArgs cluster_args(const Options& o) {
  ClusterArgs a{embeddings_of(o, "emb"), o.typed<Napi::BigInt64Array>("order"), o.typed<Napi::BigInt64Array>("offsets"),
                o.typed<Napi::Float64Array>("M"), o.typed<Napi::BigInt64Array>("arg")};
  a.nclusters = int64_t(a.offsets.ElementLength()) - 1;
  if (a.nclusters < 0) o.fail("offsets", "nclusters + 1 values");
  const int64_t total = int64_t(a.order.ElementLength());
  check_groups(o, a.offsets.Data(), a.nclusters, total, "offsets");
  if (int64_t(a.M.ElementLength()) != total || int64_t(a.arg.ElementLength()) != total) o.fail("M and arg", "as long as order");
  const int64_t n = a.emb->view().n;
  const int64_t* po = a.order.Data();
  for (int64_t i = 0; i < total; ++i)
    if (po[i] < 0 || po[i] >= n) o.fail("order", "rows inside the embeddings");
  return a;
}

// The max-similarity options: threads, thresholds (each 1 - eps, from src/decision.ts),
// recheckMargin, gpuMemoryLimit (absent: sd::MaxSimOptions's defaults).
inline sd::MaxSimOptions maxsim_options(const Options& o) {
  sd::MaxSimOptions opt;
  o.set("threads", opt.threads);
  o.set("recheckMargin", opt.recheck_margin);
  o.set("gpuMemoryLimit", opt.gpu.memory_limit);
  opt.thresholds = o.numbers("thresholds");
  return opt;
}

// A MaxSimStats as the JS object { members, clusters, usefulFlops, computedFlops, rechecked, rescanned,
// filter, filterChecked, copies, mPrecision }.
inline Napi::Object maxsim_stats_object(Napi::Env env, const sd::MaxSimStats& st) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("members", double(st.members));
  out.Set("clusters", double(st.clusters));
  out.Set("usefulFlops", st.useful_flops);
  out.Set("computedFlops", st.computed_flops);
  out.Set("rechecked", double(st.rechecked));
  out.Set("rescanned", double(st.rescanned));
  out.Set("filter", st.filter);
  out.Set("filterChecked", double(st.filter_checked));
  out.Set("copies", double(st.copies));
  // M's precision: every M is the float64 value (each member's M comes from dot64, maxsim.hpp's
  // exact_from_filter and exact_max_scan), so M is exact from the smallest cosine on and carries no
  // bound below it. A kernel that leaves M below some value at its filter's bound reports both here.
  Napi::Object prec = Napi::Object::New(env);
  prec.Set("exactAtOrAbove", -1.0);
  prec.Set("boundBelow", 0.0);
  out.Set("mPrecision", prec);
  return out;
}

// Which backend ran a job, on its resolved value: { backend: 'cpu' | 'cuda', backendNote }.
inline void set_ran(Napi::Env env, Napi::Object out, const sd::engine::Ran& ran) {
  out.Set("backend", Napi::String::New(env, sd::engine::backend_name(ran.backend)));
  out.Set("backendNote", Napi::String::New(env, ran.note));
}

}  // namespace semdedup_addon
