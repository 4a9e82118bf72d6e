// Stopwatch: elapsed wall time for the per-stage timings the analyze step reports. One thread.
#pragma once

#include <chrono>

namespace baton::analyze {

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
