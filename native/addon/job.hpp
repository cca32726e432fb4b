// What every file of the Node addon shares: typed errors, the mapped Embeddings object, the
// cancel token, and Job, the one AsyncWorker that runs a core call off the event loop, reports
// progress through a thread-safe function and turns C++ exceptions into JS errors with a `code`.
#pragma once
#include <napi.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <cstring>
#include <functional>
#include <type_traits>

#include "semdedup/common.hpp"
#include "semdedup/mapping.hpp"
#include "semdedup/maxsim.hpp"

namespace sd = semdedup;

namespace semdedup_addon {

inline Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

[[noreturn]] inline void throw_type(Napi::Env env, const std::string& msg) {
  Napi::TypeError e = Napi::TypeError::New(env, msg);
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARGUMENT"));
  throw e;
}

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

  // new Embeddings(path, { offset, n, d, dtype: 'float32' | 'float16', writable }): one file;
  // new Embeddings([{ path, offset, n }, ...], { d, dtype }): shards read as one dataset in order
  // (read-only, each shard mapped).
  explicit Embeddings(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Embeddings>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !(info[0].IsString() || info[0].IsArray()) || !info[1].IsObject())
      throw_type(env, "Embeddings(path | [{ path, offset, n }], { offset, n, d, dtype, writable })");
    Napi::Object o = info[1].As<Napi::Object>();
    if (info[0].IsArray()) {
      open_shards(env, info[0].As<Napi::Array>(), o);
      return;
    }
    const std::string path = info[0].As<Napi::String>();
    const int64_t offset = o.Get("offset").IsNumber() ? o.Get("offset").As<Napi::Number>().Int64Value() : 0;
    const int64_t n = o.Get("n").As<Napi::Number>().Int64Value();
    const int64_t d = o.Get("d").As<Napi::Number>().Int64Value();
    const std::string dtype = o.Get("dtype").IsString() ? o.Get("dtype").As<Napi::String>().Utf8Value() : "float32";
    const bool writable = o.Get("writable").ToBoolean();
    if (n < 0 || d <= 0) throw_type(env, "n must be >= 0 and d > 0");
    if (dtype != "float32" && dtype != "float16") throw_type(env, "dtype must be float32 or float16");
    view_.n = n;
    view_.d = d;
    view_.dtype = dtype == "float16" ? sd::DType::F16 : sd::DType::F32;
    try {
      map_ = std::make_shared<sd::MappedFile>(path, offset, n * int64_t(view_.row_bytes()), writable);
    } catch (const sd::Error& e) {
      throw make_error(env, e.code_name(), e.what());
    }
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
    if (!map_ && !shards_) throw make_error(env, "ERR_INVALID_ARGUMENT", "the embeddings mapping is closed");
  }

 private:
  void open_shards(Napi::Env env, Napi::Array list, Napi::Object o) {
    const int64_t d = o.Get("d").As<Napi::Number>().Int64Value();
    const std::string dtype = o.Get("dtype").IsString() ? o.Get("dtype").As<Napi::String>().Utf8Value() : "float32";
    if (d <= 0) throw_type(env, "d must be > 0");
    if (dtype != "float32" && dtype != "float16") throw_type(env, "dtype must be float32 or float16");
    std::vector<sd::ShardSpec> specs;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Napi::Value v = list.Get(i);
      if (!v.IsObject()) throw_type(env, "each shard must be { path, offset, n }");
      Napi::Object s = v.As<Napi::Object>();
      if (!s.Get("path").IsString() || !s.Get("n").IsNumber()) throw_type(env, "each shard must be { path, offset, n }");
      sd::ShardSpec sp;
      sp.path = s.Get("path").As<Napi::String>().Utf8Value();
      sp.offset = s.Get("offset").IsNumber() ? s.Get("offset").As<Napi::Number>().Int64Value() : 0;
      sp.n = s.Get("n").As<Napi::Number>().Int64Value();
      if (sp.n < 0 || sp.offset < 0) throw_type(env, sp.path + ": shard offset and n must be >= 0");
      specs.push_back(std::move(sp));
    }
    try {
      shards_ = std::make_shared<sd::MappedShards>(specs, d, dtype == "float16" ? sd::DType::F16 : sd::DType::F32);
    } catch (const sd::Error& e) {
      throw make_error(env, e.code_name(), e.what());
    }
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
      throw make_error(env, "ERR_INVALID_ARGUMENT",
                       "view(): the embeddings are sharded over several files; read them with rows(begin, end)");
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
    const int64_t b = info[0].As<Napi::Number>().Int64Value();
    const int64_t e = info[1].As<Napi::Number>().Int64Value();
    if (b < 0 || e > view_.n || b > e) throw_type(env, "row range out of bounds");
    Napi::Float32Array out = Napi::Float32Array::New(env, size_t((e - b) * view_.d));
    view_.rows(b, e, out.Data());
    return out;
  }

  Napi::Value Sync(const Napi::CallbackInfo& info) {
    check_open(info.Env());
    if (!map_) return info.Env().Undefined();
    try {
      map_->sync();
    } catch (const sd::Error& e) {
      throw make_error(info.Env(), e.code_name(), e.what());
    }
    return info.Env().Undefined();
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (map_) {
      if (map_->writable()) map_->sync();
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

inline Embeddings* unwrap_embeddings(Napi::Env env, Napi::Value v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(g_embeddings_ctor->Value()))
    throw_type(env, "expected an Embeddings object");
  Embeddings* e = Embeddings::Unwrap(v.As<Napi::Object>());
  e->check_open(env);
  return e;
}

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

// ---------------------------------------------------------------- the generic async worker
// Runs `work` on a libuv worker thread; `done` builds the resolved value on the JS thread.
// Inputs/outputs that are JS typed arrays are held by references for the worker's lifetime.
class Job : public Napi::AsyncWorker {
 public:
  using Work = std::function<void(const sd::ProgressFn&, sd::CancelFlag)>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  Job(Napi::Env env, Napi::Value on_progress, Napi::Value cancel, Work work, Done done)
      : Napi::AsyncWorker(env, "semdedup"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)) {
    if (on_progress.IsFunction()) {
      tsfn_ = Napi::ThreadSafeFunction::New(env, on_progress.As<Napi::Function>(), "semdedup-progress", 0, 1);
      has_tsfn_ = true;
    }
    if (cancel.IsObject() && cancel.As<Napi::Object>().InstanceOf(g_cancel_ctor->Value()))
      cancel_ = CancelToken::Unwrap(cancel.As<Napi::Object>())->flag();
    else
      cancel_ = std::make_shared<std::atomic<bool>>(false);
  }
  ~Job() override {
    if (has_tsfn_) tsfn_.Release();
  }
  // Holds JS values (typed arrays the worker reads or writes) for the worker's lifetime.
  void keep(Napi::Value v) { held_->refs.emplace_back(Napi::Persistent(v.As<Napi::Object>())); }
  void keep(std::initializer_list<Napi::Value> vs) {
    for (const Napi::Value& v : vs) keep(v);
  }
  void keep_mapping(std::shared_ptr<void> m) { held_->maps.push_back(std::move(m)); }
  Napi::Promise promise() { return deferred_.Promise(); }
  // Queues the worker and returns its promise (the worker deletes itself when done).
  Napi::Promise start() {
    Napi::Promise pr = deferred_.Promise();
    Queue();
    return pr;
  }

 protected:
  void Execute() override {
    sd::ProgressFn progress;
    if (has_tsfn_) {
      progress = [this](int64_t done, int64_t total) {
        // Reports from several workers arrive in any order: only a larger `done` is passed on
        // (so a job's progress never goes back), at most every 100 ms, plus the final call.
        const auto now = std::chrono::steady_clock::now();
        std::lock_guard<std::mutex> lock(mu_);
        if (done <= last_done_ || (done < total && now - last_ < std::chrono::milliseconds(100))) return;
        last_ = now;
        last_done_ = done;
        auto* payload = new std::pair<double, double>(double(done), double(total));
        const napi_status st = tsfn_.NonBlockingCall(payload, [](Napi::Env env, Napi::Function fn, std::pair<double, double>* p) {
          fn.Call({Napi::Number::New(env, p->first), Napi::Number::New(env, p->second)});
          delete p;
        });
        if (st != napi_ok) delete payload;
      };
    }
    try {
      work_(progress, cancel_.get());
    } catch (const sd::Error& e) {
      code_ = e.code_name();
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      code_ = "ERR_OUT_OF_MEMORY";
      SetError("out of memory");
    } catch (const std::exception& e) {
      code_ = "ERR_INTERNAL";
      SetError(e.what());
    }
  }
  void OnOK() override {
    settle([d = deferred_, done = done_](Napi::Env env) {
      try {
        d.Resolve(done(env));
      } catch (const Napi::Error& e) {
        d.Reject(e.Value());
      }
    });
  }
  void OnError(const Napi::Error& e) override {
    settle([d = deferred_, code = code_, msg = e.Message()](Napi::Env env) { d.Reject(make_error(env, code, msg).Value()); });
  }

  // Settles the promise on the JS thread behind every progress report already queued, so that no
  // report of a job arrives after its promise settled. What the job holds (typed arrays, mappings)
  // stays held until then.
  void settle(std::function<void(Napi::Env)> fn) {
    if (!has_tsfn_) {
      fn(Env());
      return;
    }
    auto* call = new std::function<void(Napi::Env)>([fn = std::move(fn), held = held_](Napi::Env env) { fn(env); });
    const napi_status st = tsfn_.NonBlockingCall(call, [](Napi::Env env, Napi::Function, std::function<void(Napi::Env)>* c) {
      (*c)(env);
      delete c;
    });
    if (st != napi_ok) {  // the queue is closing: settle now
      (*call)(Env());
      delete call;
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  Napi::ThreadSafeFunction tsfn_;
  bool has_tsfn_ = false;
  std::shared_ptr<std::atomic<bool>> cancel_;
  struct Held {
    std::vector<Napi::ObjectReference> refs;
    std::vector<std::shared_ptr<void>> maps;
  };
  std::shared_ptr<Held> held_ = std::make_shared<Held>();
  std::string code_ = "ERR_INTERNAL";
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_{};
  int64_t last_done_ = -1;
};

template <class T>
T typed(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsTypedArray()) throw_type(env, std::string(what) + " must be a typed array");
  return v.As<T>();
}

inline int get_int(Napi::Object o, const char* key, int dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : dflt;
}


// Sets `field` from o[key] when present (the C++ struct's default stays otherwise).
template <class T>
inline void set_if(Napi::Object o, const char* key, T& field) {
  Napi::Value v = o.Get(key);
  if constexpr (std::is_same_v<T, bool>) {
    if (v.IsBoolean()) field = v.As<Napi::Boolean>().Value();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (v.IsNumber()) field = T(v.As<Napi::Number>().DoubleValue());
  } else {
    if (v.IsNumber()) field = T(v.As<Napi::Number>().Int64Value());
  }
}

// Checks group offsets over `len` rows: start at 0, end at len, never decrease.
inline void check_groups(Napi::Env env, const int64_t* off, int64_t ngroups, int64_t len, const char* what) {
  if (off[0] != 0 || off[ngroups] != len) throw_type(env, std::string(what) + ": offsets must start at 0 and end at the length of the rows");
  for (int64_t g = 0; g < ngroups; ++g)
    if (off[g + 1] < off[g]) throw_type(env, std::string(what) + ": offsets must be non-decreasing");
}

// The (emb, order, offsets, M, arg) arguments of the max-similarity calls, checked: the offsets
// over order, M and arg as long as order, every row inside the embeddings.
struct ClusterArgs {
  Embeddings* emb;
  Napi::BigInt64Array order, offsets;
  Napi::Float64Array M;
  Napi::BigInt64Array arg;
  int64_t nclusters = 0;
};
inline ClusterArgs cluster_args(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Env env = info.Env();
  ClusterArgs a{unwrap_embeddings(env, info[0]), typed<Napi::BigInt64Array>(env, info[1], "order"),
                typed<Napi::BigInt64Array>(env, info[2], "offsets"), typed<Napi::Float64Array>(env, info[3], "M"),
                typed<Napi::BigInt64Array>(env, info[4], "arg")};
  a.nclusters = int64_t(a.offsets.ElementLength()) - 1;
  if (a.nclusters < 0) throw_type(env, std::string(fn) + ": offsets must hold nclusters + 1 values");
  const int64_t total = int64_t(a.order.ElementLength());
  check_groups(env, a.offsets.Data(), a.nclusters, total, fn);
  if (int64_t(a.M.ElementLength()) != total || int64_t(a.arg.ElementLength()) != total)
    throw_type(env, std::string(fn) + ": M and arg must be as long as order");
  const int64_t n = a.emb->view().n;
  const int64_t* po = a.order.Data();
  for (int64_t i = 0; i < total; ++i)
    if (po[i] < 0 || po[i] >= n) throw_type(env, std::string(fn) + ": order holds a row outside the embeddings");
  return a;
}

// A MaxSimStats as the JS object { members, clusters, usefulFlops, computedFlops, rechecked, rescanned }.
inline Napi::Object maxsim_stats_object(Napi::Env env, const sd::MaxSimStats& st) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("members", double(st.members));
  out.Set("clusters", double(st.clusters));
  out.Set("usefulFlops", st.useful_flops);
  out.Set("computedFlops", st.computed_flops);
  out.Set("rechecked", double(st.rechecked));
  out.Set("rescanned", double(st.rescanned));
  return out;
}

// The max-similarity options of o: threads, thresholds, recheckMargin, gpuMemoryLimit (absent:
// sd::MaxSimOptions's defaults).
inline sd::MaxSimOptions maxsim_options(Napi::Object o) {
  sd::MaxSimOptions opt;
  set_if(o, "threads", opt.threads);
  set_if(o, "recheckMargin", opt.recheck_margin);
  set_if(o, "gpuMemoryLimit", opt.gpu.memory_limit);
  if (o.Get("thresholds").IsArray()) {
    Napi::Array t = o.Get("thresholds").As<Napi::Array>();
    for (uint32_t i = 0; i < t.Length(); ++i) opt.thresholds.push_back(t.Get(i).As<Napi::Number>().DoubleValue());
  }
  return opt;
}

}  // namespace semdedup_addon
