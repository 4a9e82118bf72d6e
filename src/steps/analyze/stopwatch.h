// Stopwatch: elapsed wall time for the per-stage timings the analyze step reports, and the
// calling thread's CPU time for work that shares the cores with other stages. One thread.
#pragma once

#include <time.h>

#include <chrono>

namespace baton::analyze {

// CPU seconds the calling thread has used: unlike wall time, not inflated when more threads than
// cores compete (the step runs ASR workers beside the video decoder).
inline double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

class Stopwatch {
 public:
  Stopwatch() : start_(Clock::now()), lap_(start_) {}
  // Seconds since construction.
  double Elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  // Seconds since the previous Lap (or construction); starts a new lap.
  double Lap() {
    const auto now = Clock::now();
    const double s = std::chrono::duration<double>(now - lap_).count();
    lap_ = now;
    return s;
  }

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point start_;
  Clock::time_point lap_;
};

}  // namespace baton::analyze
