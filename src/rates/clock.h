// The time source of the rate limiters: a real monotonic clock, and a fake one for tests whose
// Sleep advances time at once (refill is then tested without waiting for timers).
//
// Thread-safety: both clocks may be used from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>

#include "baton/step.h"

namespace baton::rates {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual double Now() = 0;  // seconds on a monotonic scale
  // Sleeps `seconds`; false when `cancel` fired first.
  virtual bool Sleep(double seconds, const CancelToken* cancel) = 0;
};

class RealClock final : public Clock {
 public:
  double Now() override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  bool Sleep(double seconds, const CancelToken* cancel) override;
};

// Time stands still until Advance or Sleep moves it. Sleep also records how long was slept.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(double start = 1000) : now_(start) {}
  double Now() override {
    std::lock_guard lock(mu_);
    return now_;
  }
  bool Sleep(double seconds, const CancelToken* cancel) override {
    if (cancel != nullptr && cancel->cancelled()) return false;
    std::lock_guard lock(mu_);
    now_ += seconds;
    slept_ += seconds;
    ++sleeps_;
    return true;
  }
  void Advance(double seconds) {
    std::lock_guard lock(mu_);
    now_ += seconds;
  }
  double slept() {
    std::lock_guard lock(mu_);
    return slept_;
  }
  int sleeps() {
    std::lock_guard lock(mu_);
    return sleeps_;
  }

 private:
  std::mutex mu_;
  double now_;
  double slept_ = 0;
  int sleeps_ = 0;
};

// The process's real clock.
Clock& SystemClock();

}  // namespace baton::rates
