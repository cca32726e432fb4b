// Reading the one options object each addon function takes: every field is read through Options,
// which names the function and the field in the error when a field is missing or of the wrong
// type. An absent (undefined or null) optional field keeps the C++ default.
#pragma once
#include <napi.h>

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "errors.hpp"

namespace semdedup_addon {

template <class T>
struct TypedArrayKind;
template <>
struct TypedArrayKind<Napi::Float32Array> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* name = "a Float32Array";
};
template <>
struct TypedArrayKind<Napi::Float64Array> {
  static constexpr napi_typedarray_type type = napi_float64_array;
  static constexpr const char* name = "a Float64Array";
};
template <>
struct TypedArrayKind<Napi::BigInt64Array> {
  static constexpr napi_typedarray_type type = napi_bigint64_array;
  static constexpr const char* name = "a BigInt64Array";
};
template <>
struct TypedArrayKind<Napi::Uint8Array> {
  static constexpr napi_typedarray_type type = napi_uint8_array;
  static constexpr const char* name = "a Uint8Array";
};

class Options {
 public:
  // The options object of fn: info[0].
  Options(const Napi::CallbackInfo& info, const char* fn) : Options(info.Env(), info[0], fn) {}
  Options(Napi::Env env, Napi::Value v, const char* fn) : env_(env), fn_(fn) {
    if (!v.IsObject() || v.IsArray() || v.IsTypedArray()) throw_invalid(env, std::string(fn) + ": expected one options object");
    o_ = v.As<Napi::Object>();
  }

  Napi::Env env() const { return env_; }
  const char* fn() const { return fn_; }
  [[noreturn]] void fail(const std::string& key, const std::string& expected) const {
    throw_invalid(env_, std::string(fn_) + ": " + key + " must be " + expected);
  }
  bool has(const char* key) const {
    Napi::Value v = o_.Get(key);
    return !v.IsUndefined() && !v.IsNull();
  }
  Napi::Value get(const char* key) const { return o_.Get(key); }

  double number(const char* key) const {
    Napi::Value v = o_.Get(key);
    if (!v.IsNumber()) fail(key, "a number");
    return v.As<Napi::Number>().DoubleValue();
  }
  // A finite number, truncated toward zero (as Napi's Int64Value).
  int64_t integer(const char* key) const {
    const double x = number(key);
    if (!std::isfinite(x)) fail(key, "a finite number");
    return o_.Get(key).As<Napi::Number>().Int64Value();
  }
  std::string string(const char* key) const {
    Napi::Value v = o_.Get(key);
    if (!v.IsString()) fail(key, "a string");
    return v.As<Napi::String>().Utf8Value();
  }
  std::string string(const char* key, const std::string& dflt) const { return has(key) ? string(key) : dflt; }
  bool boolean(const char* key, bool dflt) const {
    if (!has(key)) return dflt;
    Napi::Value v = o_.Get(key);
    if (!v.IsBoolean()) fail(key, "a boolean");
    return v.As<Napi::Boolean>().Value();
  }
  // Sets `field` from the option when present (the C++ default stays otherwise).
  template <class T>
  void set(const char* key, T& field) const {
    if (!has(key)) return;
    if constexpr (std::is_same_v<T, bool>)
      field = boolean(key, field);
    else if constexpr (std::is_floating_point_v<T>)
      field = T(number(key));
    else
      field = T(integer(key));
  }
  // The worker threads (0: all cores).
  int threads() const {
    int t = 0;
    set("threads", t);
    return t;
  }
  template <class T>
  T typed(const char* key) const {
    Napi::Value v = o_.Get(key);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TypedArrayKind<T>::type)
      fail(key, TypedArrayKind<T>::name);
    return v.As<T>();
  }
  std::vector<double> numbers(const char* key) const {
    std::vector<double> out;
    if (!has(key)) return out;
    Napi::Value v = o_.Get(key);
    if (!v.IsArray()) fail(key, "an array of numbers");
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value x = a.Get(i);
      if (!x.IsNumber()) fail(key, "an array of numbers");
      out.push_back(x.As<Napi::Number>().DoubleValue());
    }
    return out;
  }
  // The progress callback and the cancel token of a job (either may be absent).
  Napi::Value on_progress() const { return o_.Get("onProgress"); }
  Napi::Value cancel() const { return o_.Get("cancel"); }

 private:
  Napi::Env env_;
  const char* fn_;
  Napi::Object o_;
};

// Checks group offsets over `len` rows: start at 0, end at len, never decrease.
inline void check_groups(const Options& o, const int64_t* off, int64_t ngroups, int64_t len, const char* what) {
  if (off[0] != 0 || off[ngroups] != len)
    throw_invalid(o.env(), std::string(o.fn()) + ": " + what + " must start at 0 and end at the length of the rows");
  for (int64_t g = 0; g < ngroups; ++g)
    if (off[g + 1] < off[g]) throw_invalid(o.env(), std::string(o.fn()) + ": " + what + " must be non-decreasing");
}

}  // namespace semdedup_addon
