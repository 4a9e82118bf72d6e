// RateLimiter::Acquire (the waiting loop shared by every implementation) and the real clock.
#include <algorithm>
#include <thread>

#include "baton/rates.h"
#include "baton/step.h"
#include "rates/clock.h"

namespace baton {

bool RateLimiter::Acquire(const std::string& name, double amount, const CancelToken* cancel,
                          const std::function<void(double, const std::string&)>& on_wait) {
  for (;;) {
    if (cancel != nullptr && cancel->cancelled()) return false;
    const RateGrant g = TryTake(name, amount);
    if (g.granted) return true;
    const double wait = std::max(g.wait, 0.001);
    if (on_wait) on_wait(wait, g.error);
    if (!Sleep(wait, cancel)) return false;
  }
}

namespace rates {

bool RealClock::Sleep(double seconds, const CancelToken* cancel) {
  if (cancel != nullptr) return cancel->sleep_for(seconds);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return true;
}

Clock& SystemClock() {
  static RealClock clock;
  return clock;
}

}  // namespace rates
}  // namespace baton
