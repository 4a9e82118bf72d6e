#include "util/clock.h"

#include "baton/step.h"

#include <chrono>
#include <thread>

namespace baton {

const Clock& Clock::Real() {
  static const SystemClock clock;
  return clock;
}

double SystemClock::Monotonic() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double SystemClock::Wall() const {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void SystemClock::WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, double seconds) const {
  if (seconds <= 0) return;
  cv.wait_for(lock, std::chrono::duration<double>(seconds));
}

void FakeClock::WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, double seconds) const {
  {
    std::lock_guard<std::mutex> g(waiters_mu_);
    Waiter& w = waiters_[std::this_thread::get_id()];
    ++w.looks;
    w.last = std::chrono::steady_clock::now();
  }
  if (seconds <= 0) return;
  cv.wait_for(lock, std::chrono::milliseconds(1));
}

void FakeClock::Settle(int looks, double real_seconds) const {
  using std::chrono::steady_clock;
  const auto start = steady_clock::now();
  std::map<std::thread::id, uint64_t> want;
  {
    std::lock_guard<std::mutex> g(waiters_mu_);
    for (const auto& [id, w] : waiters_)
      if (start - w.last < std::chrono::milliseconds(100)) want[id] = w.looks + static_cast<uint64_t>(looks);
  }
  while (steady_clock::now() - start < std::chrono::duration<double>(real_seconds)) {
    bool all = true;
    {
      std::lock_guard<std::mutex> g(waiters_mu_);
      for (const auto& [id, n] : want) all = all && waiters_[id].looks >= n;
    }
    if (all) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

bool SystemClock::Sleep(double seconds, const CancelToken* cancel) const {
  if (cancel == nullptr) {
    if (seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    return true;
  }
  return cancel->sleep_for(seconds);
}

bool FakeClock::Sleep(double seconds, const CancelToken* cancel) const {
  if (cancel != nullptr && cancel->cancelled()) return false;
  mono_.store(mono_.load() + seconds);
  wall_.store(wall_.load() + seconds);
  slept_.store(slept_.load() + seconds);
  sleeps_.fetch_add(1);
  return true;
}

void FakeClock::Advance(double seconds) {
  mono_.store(mono_.load() + seconds);
  wall_.store(wall_.load() + seconds);
}

}  // namespace baton
