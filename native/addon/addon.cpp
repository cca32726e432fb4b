// The Node addon: a thin layer over the C++ core. Heavy calls run in Napi::AsyncWorker (job.hpp)
// off the event loop and resolve promises; embeddings are memory-mapped by the core and handed to
// JS as zero-copy typed arrays where the runtime allows it. Each file registers its functions.
#include "job.hpp"

namespace semdedup_addon {
void register_steps(Napi::Env env, Napi::Object exports);
void register_extract(Napi::Env env, Napi::Object exports);
void register_after(Napi::Env env, Napi::Object exports);
void register_lock(Napi::Env env, Napi::Object exports);
void register_plan(Napi::Env env, Napi::Object exports);
}  // namespace semdedup_addon

namespace {

using namespace semdedup_addon;

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  Napi::Function emb = Embeddings::Init(env);
  g_embeddings_ctor = new Napi::FunctionReference(Napi::Persistent(emb));
  Napi::Function tok = CancelToken::Init(env);
  g_cancel_ctor = new Napi::FunctionReference(Napi::Persistent(tok));
  env.AddCleanupHook([]() {
    delete g_embeddings_ctor;
    delete g_cancel_ctor;
    g_embeddings_ctor = nullptr;
    g_cancel_ctor = nullptr;
  });
  exports.Set("Embeddings", emb);
  exports.Set("CancelToken", tok);
  register_steps(env, exports);
  register_extract(env, exports);
  register_after(env, exports);
  register_lock(env, exports);
  register_plan(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(semdedup, InitAll)
