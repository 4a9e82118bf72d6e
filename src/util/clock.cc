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
  if (seconds <= 0) return;
  cv.wait_for(lock, std::chrono::milliseconds(1));
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
