// The small test harness of the C++ tests: CHECK(cond, fmt, ...) fails the current test with a
// message; run(name, fn) runs one test and catches exceptions; summary() prints the closing
// "N passed, N failed" line and returns the exit code.
#pragma once
#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>

namespace check {
inline int passed = 0, failed = 0;
inline std::string current;

inline void run(const char* name, const std::function<void()>& fn) {
  current = name;
  const int before = failed;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    fn();
  } catch (const std::exception& e) {
    ++failed;
    std::printf("FAIL [%s] exception: %s\n", name, e.what());
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (failed == before) {
    ++passed;
    std::printf("ok   %s (%.0f ms)\n", name, ms);
  }
  std::fflush(stdout);
}

inline int summary() {
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
}  // namespace check

#define CHECK(cond, ...)                                                                      \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      ++check::failed;                                                                        \
      std::printf("FAIL [%s] %s:%d: %s: ", check::current.c_str(), __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                                               \
      std::printf("\n");                                                                      \
      return;                                                                                 \
    }                                                                                         \
  } while (0)
