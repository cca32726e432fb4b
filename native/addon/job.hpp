// Job, the one AsyncWorker that runs an engine call off the event loop: progress through a
// thread-safe function, cancellation through a CancelToken, C++ exceptions turned into the
// registered JavaScript error of their kind (errors.hpp), and the promise settled behind the last
// progress report.
#pragma once
#include <napi.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "errors.hpp"
#include "handles.hpp"
#include "options.hpp"
#include "semdedup/common.hpp"

namespace semdedup_addon {

// ---------------------------------------------------------------- the generic async worker
// Runs `work` on a libuv worker thread; `done` builds the resolved value on the JS thread.
// Inputs/outputs that are JS typed arrays are held by references for the worker's lifetime.
class Job : public Napi::AsyncWorker {
 public:
  using Work = std::function<void(const sd::ProgressFn&, sd::CancelFlag)>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  // A job of the call whose options are o: o's onProgress (a function, optional) gets the
  // progress reports, o's cancel (a CancelToken, optional) cancels it.
  Job(const Options& o, Work work, Done done) : Job(o.env(), o.on_progress(), o.cancel(), std::move(work), std::move(done)) {
    if (o.has("onProgress") && !o.on_progress().IsFunction()) o.fail("onProgress", "a function");
    if (o.has("cancel") && !has_token_) o.fail("cancel", "a CancelToken");
  }
  Job(Napi::Env env, Napi::Value on_progress, Napi::Value cancel, Work work, Done done)
      : Napi::AsyncWorker(env, "semdedup"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)) {
    if (on_progress.IsFunction()) {
      tsfn_ = Napi::ThreadSafeFunction::New(env, on_progress.As<Napi::Function>(), "semdedup-progress", 0, 1);
      has_tsfn_ = true;
    }
    if (cancel.IsObject() && cancel.As<Napi::Object>().InstanceOf(g_cancel_ctor->Value())) {
      cancel_ = CancelToken::Unwrap(cancel.As<Napi::Object>())->flag();
      has_token_ = true;
    } else
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
      kind_ = e.code();
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      kind_ = sd::ErrorCode::OutOfMemory;
      SetError("out of memory");
    } catch (const std::exception& e) {
      kind_ = sd::ErrorCode::Internal;
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
    settle([d = deferred_, kind = kind_, msg = e.Message()](Napi::Env env) { d.Reject(make_error(env, kind, msg).Value()); });
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
  bool has_token_ = false;
  std::shared_ptr<std::atomic<bool>> cancel_;
  struct Held {
    std::vector<Napi::ObjectReference> refs;
    std::vector<std::shared_ptr<void>> maps;
  };
  std::shared_ptr<Held> held_ = std::make_shared<Held>();
  sd::ErrorCode kind_ = sd::ErrorCode::Internal;
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_{};
  int64_t last_done_ = -1;
};

}  // namespace semdedup_addon
