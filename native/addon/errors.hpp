// The errors the addon throws and rejects with: instances of the JavaScript class registered at
// load (setErrorClass, called once by src/native/loader.ts; better-sqlite3 does the same), built
// as new SemDedupError(code, message, { reason }) with the code and reason of the engine's kind of
// failure from semdedup/errors.def. So no native error needs mapping on the TypeScript side.
#pragma once
#include <napi.h>

#include <string>

#include "semdedup/common.hpp"

namespace semdedup_addon {

namespace sd = semdedup;

inline Napi::FunctionReference* g_error_class = nullptr;

// The error of kind `kind` with message `msg` (a plain Error with `code` and `reason` before any
// class is registered).
inline Napi::Error make_error(Napi::Env env, sd::ErrorCode kind, const std::string& msg) {
  const char* code = sd::public_code_name(sd::public_code(kind));
  const char* reason = sd::reason_name(kind);
  if (g_error_class) {
    Napi::Object opts = Napi::Object::New(env);
    opts.Set("reason", reason);
    return Napi::Error(env, g_error_class->New({Napi::String::New(env, code), Napi::String::New(env, msg), opts}));
  }
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  e.Set("reason", Napi::String::New(env, reason));
  return e;
}

inline Napi::Error make_error(Napi::Env env, const sd::Error& e) { return make_error(env, e.code(), e.what()); }

// A bad argument (a wrong option, an array of the wrong length, a closed mapping).
[[noreturn]] inline void throw_invalid(Napi::Env env, const std::string& msg) {
  throw make_error(env, sd::ErrorCode::InvalidArgument, msg);
}

// Runs f, turning an sd::Error it throws into the JavaScript error of its kind.
template <class F>
auto rethrow_js(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const sd::Error& e) {
    throw make_error(env, e);
  }
}

}  // namespace semdedup_addon
