// A non-blocking advisory lock on an open file (flock), exclusive or shared: held as long as the
// file descriptor stays open, released by the kernel when the process ends, however it ends.
#include <napi.h>

#include "options.hpp"

#include <cerrno>
#include <sys/file.h>

namespace semdedup_addon {

namespace {

// tryLockFd({ fd, shared = false }): 0 when the lock is now held, else the errno (EWOULDBLOCK: a
// holder of the other kind, or any holder for an exclusive lock).
Napi::Value TryLockFd(const Napi::CallbackInfo& info) {
  Options o(info, "tryLockFd");
  Napi::Env env = o.env();
  const int fd = int(o.integer("fd"));
  const bool shared = o.boolean("shared", false);
  int rc;
  do {
    rc = flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  return Napi::Number::New(env, rc == 0 ? 0 : errno);
}

}  // namespace

void register_lock(Napi::Env env, Napi::Object exports) {
  exports.Set("tryLockFd", Napi::Function::New(env, TryLockFd, "tryLockFd"));
}

}  // namespace semdedup_addon
