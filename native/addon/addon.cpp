// The Node addon: a thin layer over the engine facade. Every function takes one options object
// (options.hpp); heavy calls run in Napi::AsyncWorker (job.hpp) off the event loop and resolve
// promises; errors are instances of the JavaScript class registered by setErrorClass (errors.hpp);
// embeddings are memory-mapped by the core and handed to JS as zero-copy typed arrays where the
// runtime allows it. Each file registers its functions.
#include "handles.hpp"

namespace semdedup_addon {
void register_steps(Napi::Env env, Napi::Object exports);
void register_extract(Napi::Env env, Napi::Object exports);
void register_after(Napi::Env env, Napi::Object exports);
void register_lock(Napi::Env env, Napi::Object exports);
void register_plan(Napi::Env env, Napi::Object exports);
}  // namespace semdedup_addon

namespace {

using namespace semdedup_addon;

// setErrorClass({ errorClass }): the class every error of the addon is an instance of, built as
// new errorClass(code, message, { reason }) (src/native/loader.ts registers SemDedupError once).
Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  Options o(info, "setErrorClass");
  Napi::Value c = o.get("errorClass");
  if (!c.IsFunction()) o.fail("errorClass", "a class");
  delete g_error_class;
  g_error_class = new Napi::FunctionReference(Napi::Persistent(c.As<Napi::Function>()));
  return o.env().Undefined();
}

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  Napi::Function emb = Embeddings::Init(env);
  g_embeddings_ctor = new Napi::FunctionReference(Napi::Persistent(emb));
  Napi::Function tok = CancelToken::Init(env);
  g_cancel_ctor = new Napi::FunctionReference(Napi::Persistent(tok));
  env.AddCleanupHook([]() {
    delete g_embeddings_ctor;
    delete g_cancel_ctor;
    delete g_error_class;
    g_embeddings_ctor = nullptr;
    g_cancel_ctor = nullptr;
    g_error_class = nullptr;
  });
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
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
