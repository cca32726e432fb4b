/* For the self-contained build of the addon (static libstdc++): libstdc++.a of GCC 12 built on
 * glibc 2.36 calls arc4random (std::random_device), which older glibc lacks. This hidden
 * definition, on getrandom (glibc 2.25), keeps the addon loadable on glibc 2.34 and 2.35. */
#include <stdint.h>
#include <sys/random.h>

__attribute__((visibility("hidden"))) uint32_t arc4random(void) {
  uint32_t v = 0;
  while (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
  }
  return v;
}
