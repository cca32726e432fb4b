// The addon's step 5 functions: the kept and removed members of every eps in one pass, and the
// ids text files written natively (parallel formatting, large writes). Each takes one options object.
#include <cstring>

#include "job.hpp"

#include "semdedup/extract.hpp"

namespace semdedup_addon {
namespace {

// A BigInt64Array over the buffer's memory (no copy; the array frees it); where external
// buffers are not allowed (V8 sandbox), a copy.
Napi::BigInt64Array to_array(Napi::Env env, sd::BigBuffer&& b) {
  const size_t n = b.size() / 8;
  if (n > 0) {
    size_t cap = 0;
    char* p = b.release(cap);
    auto* hint = new size_t(cap);
    napi_value raw;
    if (napi_create_external_arraybuffer(
            env, p, n * 8,
            [](napi_env, void* data, void* h) {
              sd::BigBuffer::free_mapping(data, *static_cast<size_t*>(h));
              delete static_cast<size_t*>(h);
            },
            hint, &raw) == napi_ok)
      return Napi::BigInt64Array::New(env, n, Napi::ArrayBuffer(env, raw), 0, napi_bigint64_array);
    napi_value ignored;
    napi_get_and_clear_last_exception(env, &ignored);
    Napi::BigInt64Array a = Napi::BigInt64Array::New(env, n);
    std::memcpy(a.Data(), p, n * 8);
    sd::BigBuffer::free_mapping(p, cap);
    delete hint;
    return a;
  }
  return Napi::BigInt64Array::New(env, 0);
}

Napi::BigInt64Array to_array(Napi::Env env, const std::vector<int64_t>& v) {
  Napi::BigInt64Array a = Napi::BigInt64Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * 8);
  return a;
}

// splitKept({ keepOrder: BigInt64Array, M: Float64Array, thresholds: number[] (each 1 - eps, from
//              src/decision.ts), threads, cancel }) -> Promise<{ kept: BigInt64Array[], removed: BigInt64Array[] }>
//   (one of each per threshold; the removal rule is semdedup/decision.hpp's)
Napi::Value SplitKept(const Napi::CallbackInfo& info) {
  Options o(info, "splitKept");
  auto order = o.typed<Napi::BigInt64Array>("keepOrder");
  auto M = o.typed<Napi::Float64Array>("M");
  if (!o.get("thresholds").IsArray()) o.fail("thresholds", "an array of numbers");
  const std::vector<double> th = o.numbers("thresholds");
  const int threads = o.threads();
  if (M.ElementLength() != order.ElementLength()) o.fail("M", "as long as keepOrder");
  const int64_t n = int64_t(order.ElementLength());
  const int64_t* po = order.Data();
  const double* pm = M.Data();
  auto kept = std::make_shared<std::vector<sd::BigBuffer>>();
  auto removed = std::make_shared<std::vector<sd::BigBuffer>>();
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn&, sd::CancelFlag cancel) { sd::split_kept(po, pm, n, th, *kept, *removed, threads, cancel); },
      [kept, removed](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        Napi::Array k = Napi::Array::New(env, kept->size()), r = Napi::Array::New(env, removed->size());
        for (size_t i = 0; i < kept->size(); ++i) {
          k.Set(uint32_t(i), to_array(env, std::move((*kept)[i])));
          r.Set(uint32_t(i), to_array(env, std::move((*removed)[i])));
        }
        out.Set("kept", k);
        out.Set("removed", r);
        return out;
      });
  job->keep({order, M});
  return job->start();
}

// blobOffsets({ blob: Uint8Array }) -> Promise<BigInt64Array>: the item offsets of a '\n'-joined blob.
Napi::Value BlobOffsets(const Napi::CallbackInfo& info) {
  Options o(info, "blobOffsets");
  auto blob = o.typed<Napi::Uint8Array>("blob");
  const uint8_t* p = blob.Data();
  const int64_t bytes = int64_t(blob.ByteLength());
  auto off = std::make_shared<std::vector<int64_t>>();
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn&, sd::CancelFlag) { *off = sd::blob_offsets(p, bytes); },
      [off](Napi::Env env) -> Napi::Value { return to_array(env, *off); });
  job->keep(blob);
  return job->start();
}

// writeIdsText({ fd, ids: { kind: 'rows' | 'bytes' | 'utf32' | 'blob', data?: Uint8Array, width?, offsets?: BigInt64Array,
//                count }, rows: BigInt64Array, threads, onProgress, cancel }) -> Promise<void>
Napi::Value WriteIdsText(const Napi::CallbackInfo& info) {
  Options o(info, "writeIdsText");
  const int fd = int(o.integer("fd"));
  Options io(o.env(), o.get("ids"), "writeIdsText (ids)");
  const std::string kind = io.string("kind");
  sd::IdsSource src;
  io.set("count", src.count);
  std::vector<Napi::Value> held;
  if (kind == "rows") {
    src.kind = sd::IdsSource::Kind::Rows;
  } else if (kind == "bytes" || kind == "utf32" || kind == "blob") {
    auto data = io.typed<Napi::Uint8Array>("data");
    src.data = data.Data();
    held.push_back(data);
    if (kind == "blob") {
      auto off = io.typed<Napi::BigInt64Array>("offsets");
      if (int64_t(off.ElementLength()) != src.count + 1) io.fail("offsets", "count + 1 values");
      const int64_t* po = off.Data();
      for (int64_t i = 0; i < src.count; ++i)
        if (po[i] < 0 || po[i + 1] - 1 < po[i] || po[i + 1] - 1 > int64_t(data.ByteLength()))
          io.fail("offsets", "in order and inside the data");
      src.kind = sd::IdsSource::Kind::Blob;
      src.offsets = po;
      held.push_back(off);
    } else {
      src.kind = kind == "bytes" ? sd::IdsSource::Kind::Bytes : sd::IdsSource::Kind::Utf32;
      src.width = io.integer("width");
      const int64_t item = kind == "bytes" ? src.width : src.width * 4;
      if (src.width <= 0 || src.count * item > int64_t(data.ByteLength())) io.fail("data", "count items of the width");
    }
  } else {
    io.fail("kind", "rows, bytes, utf32 or blob");
  }
  auto rows = o.typed<Napi::BigInt64Array>("rows");
  const int threads = o.threads();
  const int64_t* pr = rows.Data();
  const int64_t m = int64_t(rows.ElementLength());
  auto* job = new Job(
      o,
      [=](const sd::ProgressFn& prog, sd::CancelFlag cancel) { sd::write_ids_text(fd, src, pr, m, threads, cancel, prog); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  for (auto& h : held) job->keep(h);
  job->keep(rows);
  return job->start();
}

}  // namespace

void register_extract(Napi::Env env, Napi::Object exports) {
  exports.Set("splitKept", Napi::Function::New(env, SplitKept));
  exports.Set("blobOffsets", Napi::Function::New(env, BlobOffsets));
  exports.Set("writeIdsText", Napi::Function::New(env, WriteIdsText));
}

}  // namespace semdedup_addon
