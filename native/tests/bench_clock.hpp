// The clocks of the native benchmarks.
#pragma once
#include <chrono>
#include <ctime>

namespace bench {

// CPU time of the process (all threads): on a shared machine it counts the cycles this process
// got, not the time others held the cores (cache and memory contention still show).
inline double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Wall-clock time (monotonic).
inline double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace bench
