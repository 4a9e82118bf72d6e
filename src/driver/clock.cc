#include "driver/clock.h"

#include <chrono>

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
  if (seconds <= 0) return;
  cv.wait_for(lock, std::chrono::milliseconds(1));
}

void FakeClock::Advance(double seconds) {
  mono_.store(mono_.load() + seconds);
  wall_.store(wall_.load() + seconds);
}

}  // namespace baton
