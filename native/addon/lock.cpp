// An exclusive, non-blocking advisory lock on an open file (flock): held as long as the file
// descriptor stays open, released by the kernel when the process ends, however it ends.
#include <napi.h>

#include <cerrno>
#include <sys/file.h>

namespace semdedup_addon {

namespace {

// tryLockFd(fd): 0 when the lock is now held, else the errno (EWOULDBLOCK: another holder).
Napi::Value TryLockFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "tryLockFd(fd: number)");
  const int fd = info[0].As<Napi::Number>().Int32Value();
  int rc;
  do {
    rc = flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  return Napi::Number::New(env, rc == 0 ? 0 : errno);
}

}  // namespace

void register_lock(Napi::Env env, Napi::Object exports) {
  exports.Set("tryLockFd", Napi::Function::New(env, TryLockFd, "tryLockFd"));
}

}  // namespace semdedup_addon
