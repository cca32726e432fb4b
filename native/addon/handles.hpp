// The addon's JavaScript classes: Embeddings (a mapped file or shards), CancelToken, and Engine
// (a device choice resolved once), with the option readers that take them from an options object.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "options.hpp"
#include "semdedup/common.hpp"
#include "semdedup/engine.hpp"
#include "semdedup/mapping.hpp"

namespace semdedup_addon {

// ---------------------------------------------------------------- Embeddings (a mapping)
class Embeddings : public Napi::ObjectWrap<Embeddings> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Embeddings",
                       {InstanceMethod("view", &Embeddings::View), InstanceMethod("rows", &Embeddings::Rows),
                        InstanceMethod("sync", &Embeddings::Sync), InstanceMethod("close", &Embeddings::Close),
                        InstanceAccessor("n", &Embeddings::N, nullptr), InstanceAccessor("d", &Embeddings::D, nullptr),
                        InstanceAccessor("dtype", &Embeddings::DTypeName, nullptr),
                        InstanceAccessor("path", &Embeddings::Path, nullptr)});
  }

  // new Embeddings({ path, offset, n, d, dtype: 'float32' | 'float16', writable }): one file;
  // new Embeddings({ shards: [{ path, offset, n }, ...], d, dtype }): shards read as one dataset in
  // order (read-only, each shard mapped).
  explicit Embeddings(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Embeddings>(info) {
    Options o(info, "Embeddings");
    const int64_t d = o.integer("d");
    const std::string dtype = o.string("dtype", "float32");
    if (d <= 0) o.fail("d", "> 0");
    if (dtype != "float32" && dtype != "float16") o.fail("dtype", "'float32' or 'float16'");
    const sd::DType dt = dtype == "float16" ? sd::DType::F16 : sd::DType::F32;
    if (o.has("shards")) {
      open_shards(o, d, dt);
      return;
    }
    const std::string path = o.string("path");
    int64_t offset = 0;
    o.set("offset", offset);
    const int64_t n = o.integer("n");
    const bool writable = o.boolean("writable", false);
    if (n < 0) o.fail("n", ">= 0");
    view_.n = n;
    view_.d = d;
    view_.dtype = dt;
    map_ = rethrow_js(info.Env(), [&] { return std::make_shared<sd::MappedFile>(path, offset, n * int64_t(view_.row_bytes()), writable); });
    view_.data = map_->data();
    view_.mapped = !writable;
    if (!writable) {
      view_.fd = map_->fd();
      view_.fd_offset = map_->offset();
    }
  }

  const sd::EmbeddingView& view() const { return view_; }
  // What keeps the rows mapped (a job holds it while it runs).
  std::shared_ptr<void> mapping() const { return shards_ ? std::shared_ptr<void>(shards_) : std::shared_ptr<void>(map_); }
  bool writable() const { return map_ && map_->writable(); }
  void check_open(Napi::Env env) const {
    if (!map_ && !shards_) throw_invalid(env, "the embeddings mapping is closed");
  }

 private:
  void open_shards(const Options& o, int64_t d, sd::DType dt) {
    Napi::Value v = o.get("shards");
    if (!v.IsArray()) o.fail("shards", "an array of { path, offset, n }");
    Napi::Array list = v.As<Napi::Array>();
    std::vector<sd::ShardSpec> specs;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Options s(o.env(), list.Get(i), "Embeddings (a shard)");
      sd::ShardSpec sp;
      sp.path = s.string("path");
      s.set("offset", sp.offset = 0);
      sp.n = s.integer("n");
      if (sp.n < 0 || sp.offset < 0) throw_invalid(o.env(), sp.path + ": shard offset and n must be >= 0");
      specs.push_back(std::move(sp));
    }
    shards_ = rethrow_js(o.env(), [&] { return std::make_shared<sd::MappedShards>(specs, d, dt); });
    view_ = shards_->view();
    path_ = specs.empty() ? std::string() : specs.front().path;
  }

  // Zero-copy typed array over the whole mapping (Float32Array or Uint16Array for float16).
  // The buffer keeps the mapping alive. Where external buffers are not allowed (V8 sandbox),
  // falls back to a copy and says so in `copied` on the returned array.
  Napi::Value View(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_open(env);
    if (shards_)
      throw_invalid(env, "view(): the embeddings are sharded over several files; read them with rows(begin, end)");
    const size_t bytes = size_t(view_.n) * view_.row_bytes();
    auto* keep = new std::shared_ptr<sd::MappedFile>(map_);
    Napi::ArrayBuffer ab;
    bool copied = false;
    napi_value raw;
    napi_status st = napi_create_external_arraybuffer(
        env, map_->data(), bytes,
        [](napi_env, void*, void* hint) { delete static_cast<std::shared_ptr<sd::MappedFile>*>(hint); }, keep, &raw);
    if (st == napi_ok) {
      ab = Napi::ArrayBuffer(env, raw);
    } else {
      delete keep;
      // clear the pending exception, if any, then copy
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
      ab = Napi::ArrayBuffer::New(env, bytes);
      if (bytes) std::memcpy(ab.Data(), map_->data(), bytes);
      copied = true;
    }
    Napi::Object arr;
    if (view_.dtype == sd::DType::F32)
      arr = Napi::Float32Array::New(env, bytes / 4, ab, 0);
    else
      arr = Napi::Uint16Array::New(env, bytes / 2, ab, 0);
    arr.Set("copied", Napi::Boolean::New(env, copied));
    return arr;
  }

  // rows(begin, end): a float32 copy of rows [begin, end) (float16 converted).
  Napi::Value Rows(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_open(env);
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) throw_invalid(env, "rows(begin, end): begin and end must be numbers");
    const int64_t b = info[0].As<Napi::Number>().Int64Value();
    const int64_t e = info[1].As<Napi::Number>().Int64Value();
    if (b < 0 || e > view_.n || b > e) throw_invalid(env, "rows(begin, end): row range out of bounds");
    Napi::Float32Array out = Napi::Float32Array::New(env, size_t((e - b) * view_.d));
    view_.rows(b, e, out.Data());
    return out;
  }

  Napi::Value Sync(const Napi::CallbackInfo& info) {
    check_open(info.Env());
    if (!map_) return info.Env().Undefined();
    rethrow_js(info.Env(), [&] { map_->sync(); });
    return info.Env().Undefined();
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (map_) {
      if (map_->writable()) rethrow_js(info.Env(), [&] { map_->sync(); });
      map_.reset();  // unmapped once no view holds it
    }
    shards_.reset();
    return info.Env().Undefined();
  }
  Napi::Value N(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(view_.n)); }
  Napi::Value D(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(view_.d)); }
  Napi::Value DTypeName(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), view_.dtype == sd::DType::F32 ? "float32" : "float16");
  }
  Napi::Value Path(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), map_ ? map_->path() : shards_ ? path_ : std::string());
  }

  std::shared_ptr<sd::MappedFile> map_;
  std::shared_ptr<sd::MappedShards> shards_;  // or the rows are shards
  std::string path_;
  sd::EmbeddingView view_;
};

inline Napi::FunctionReference* g_embeddings_ctor = nullptr;

// ---------------------------------------------------------------- cancellation
class CancelToken : public Napi::ObjectWrap<CancelToken> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CancelToken", {InstanceMethod("cancel", &CancelToken::Cancel)});
  }
  explicit CancelToken(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<CancelToken>(info), flag_(std::make_shared<std::atomic<bool>>(false)) {}
  std::shared_ptr<std::atomic<bool>> flag() const { return flag_; }

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    flag_->store(true);
    return info.Env().Undefined();
  }
  std::shared_ptr<std::atomic<bool>> flag_;
};
inline Napi::FunctionReference* g_cancel_ctor = nullptr;


// ---------------------------------------------------------------- the engine handle
// new Engine({ device: 'auto' | 'cpu' | 'cuda' }): the device resolved once by the engine facade
// (semdedup::engine::resolve_device; cuda without a usable GPU throws ERR_BACKEND with the reason).
// Reports device ('cpu' | 'cuda': where its jobs run), requested, and note (why not the GPU, under
// auto). Heavy jobs take it as their `engine` option.
class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Engine",
                       {InstanceAccessor("device", &Engine::DeviceName, nullptr),
                        InstanceAccessor("requested", &Engine::Requested, nullptr),
                        InstanceAccessor("note", &Engine::Note, nullptr)});
  }
  explicit Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info) {
    Options o(info, "Engine");
    const std::string device = o.string("device", "auto");
    resolved_ = rethrow_js(info.Env(), [&] { return sd::engine::resolve_device(sd::engine::parse_device(device)); });
  }
  const sd::engine::Resolved& resolved() const { return resolved_; }

 private:
  Napi::Value DeviceName(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), sd::engine::backend_name(resolved_.device));
  }
  Napi::Value Requested(const Napi::CallbackInfo& info) {
    const sd::engine::Device d = resolved_.requested;
    return Napi::String::New(info.Env(), d == sd::engine::Device::Cpu ? "cpu" : d == sd::engine::Device::Cuda ? "cuda" : "auto");
  }
  Napi::Value Note(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), resolved_.note); }
  sd::engine::Resolved resolved_;
};
inline Napi::FunctionReference* g_engine_ctor = nullptr;

// The Embeddings object of option `key` (open).
inline Embeddings* embeddings_of(const Options& o, const char* key) {
  Napi::Value v = o.get(key);
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(g_embeddings_ctor->Value())) o.fail(key, "an Embeddings object");
  Embeddings* e = Embeddings::Unwrap(v.As<Napi::Object>());
  e->check_open(o.env());
  return e;
}

// The resolved device of a job, from its `engine` option (an Engine; absent: device auto).
inline sd::engine::Resolved engine_of(const Options& o) {
  if (!o.has("engine")) return rethrow_js(o.env(), [] { return sd::engine::resolve_device(sd::engine::Device::Auto); });
  Napi::Value v = o.get("engine");
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(g_engine_ctor->Value())) o.fail("engine", "an Engine object");
  return Engine::Unwrap(v.As<Napi::Object>())->resolved();
}

// What ran a job of engine e: the facade's answer, with the engine's reason for the CPU (device
// auto without a usable GPU) when the job itself gives none.
inline sd::engine::Ran ran_on(const sd::engine::Resolved& e, sd::engine::Ran ran) {
  if (ran.backend == sd::engine::Backend::Cpu && ran.note.empty()) ran.note = e.note;
  return ran;
}

}  // namespace semdedup_addon
