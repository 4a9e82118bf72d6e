// RateLimiter::Acquire: the waiting loop shared by every implementation.
#include <algorithm>
#include <thread>

#include "baton/rates.h"
#include "baton/step.h"
#include "util/clock.h"

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

}  // namespace baton
