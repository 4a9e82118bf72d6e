// Clock: the one way Baton reads time (the drivers, the rate limiters) (LevelDB's Env, reduced to time). Monotonic
// seconds measure intervals (timeouts, backoff, heartbeat loss, lock renewal); wall seconds are
// for display and for times shared between processes (the cluster's epoch). The real clock reads
// the system; FakeClock is set by tests, so every timer is tested without sleeping.
//
// WaitFor() is how a driver thread sleeps until "dt seconds of this clock have passed or it was
// woken": the real clock waits on the condition variable; the fake clock returns after at most a
// millisecond of real time, so a loop re-reads the fake time that a test moves with Advance().
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace baton {

class CancelToken;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual double Monotonic() const = 0;  // seconds, arbitrary epoch, never goes back
  virtual double Wall() const = 0;       // unix seconds
  virtual void WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, double seconds) const = 0;
  // Sleeps `seconds` of this clock; false when `cancel` fired first.
  virtual bool Sleep(double seconds, const CancelToken* cancel) const = 0;
  // The process-wide real clock.
  static const Clock& Real();
};

class SystemClock final : public Clock {
 public:
  double Monotonic() const override;
  double Wall() const override;
  void WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, double seconds) const override;
  bool Sleep(double seconds, const CancelToken* cancel) const override;
};

// Time stands still until Advance() moves it; Sleep() moves it at once (and counts what was
// slept), so code that waits on the clock runs through its waits instantly in tests.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(double monotonic = 1000, double wall = 1.8e9) : mono_(monotonic), wall_(wall) {}
  double Monotonic() const override { return mono_.load(); }
  double Wall() const override { return wall_.load(); }
  void WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, double seconds) const override;
  bool Sleep(double seconds, const CancelToken* cancel) const override;
  double slept() const { return slept_.load(); }
  int sleeps() const { return sleeps_.load(); }
  // Moves both clocks forward.
  void Advance(double seconds);
  // Moves only the wall clock (an NTP step, a VM resumed): intervals must not notice.
  void JumpWall(double seconds) { wall_.store(wall_.load() + seconds); }
  // Returns once every thread that is waiting on this clock (WaitFor in the last 100 ms of real
  // time) has looked at it `looks` more times: what a test calls after Advance() to know that the
  // code under test has seen the new time, instead of sleeping real time and hoping. Gives up
  // after `real_seconds` (a thread that stopped waiting on the clock).
  void Settle(int looks = 2, double real_seconds = 10) const;

 private:
  struct Waiter {
    uint64_t looks = 0;
    std::chrono::steady_clock::time_point last;
  };
  mutable std::mutex waiters_mu_;
  mutable std::map<std::thread::id, Waiter> waiters_;
  mutable std::atomic<double> mono_;
  mutable std::atomic<double> wall_;
  mutable std::atomic<double> slept_{0};
  mutable std::atomic<int> sleeps_{0};
};

}  // namespace baton
