// Named rates (token buckets) and the run's spending budget, as steps see them.
//
// A pipeline or cluster file declares `rates: {openai_requests: 500/min, openai_tokens: {rate:
// 200000/min, burst: 20000}}`: each name is a token bucket that refills continuously at `rate`
// up to `burst` (default: one second's worth, at least 1). Every step, job and node that names a
// bucket shares it. Requests are paced a little below `rate` (PacedPerSecond in
// src/rates/memory_limiter.h: ~20 ms per interval, 2% to 5% of it), since the provider's clock
// and the network see Baton's spacing with some jitter. `budget: {usd: N}` caps what LLM
// requests may cost across the run.
//
// The engine hands a step a RateLimiter through StepContext::rates (null when the runtime has
// none). Implementations: a memory one for the embedded runtime (src/rates/memory_limiter.h) and
// a Redis one shared by a cluster (src/rates/redis_limiter.h). Both take time from an injected
// clock, so refill is tested without sleeping.
//
// Thread-safety: every RateLimiter method may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <string>

namespace baton {

class CancelToken;

struct RateSpec {
  double per_second = 0;  // refill rate
  double burst = 0;       // bucket capacity
};
using RateSpecs = std::map<std::string, RateSpec>;

// The result of one non-blocking take.
struct RateGrant {
  bool granted = false;
  double wait = 0;     // when not granted: seconds before a take of this size can succeed
  std::string error;   // the shared store could not be reached (wait then says when to retry)
};

// The result of one budget reservation.
struct BudgetGrant {
  bool granted = true;
  double limit = 0;     // USD; 0 = no budget
  double spent = 0;     // USD settled so far (before this reservation)
  double reserved = 0;  // USD held by requests in flight (before this reservation)
  std::string error;    // the shared store could not be reached (granted is then false)
};

class RateLimiter {
 public:
  virtual ~RateLimiter() = default;

  // True when `name` is a declared bucket.
  virtual bool Has(const std::string& name) const = 0;
  // Names of the declared buckets, for messages.
  virtual std::string Names() const = 0;

  // Takes `amount` from `name` when it holds enough now; else takes nothing and says how long to
  // wait. An amount above the burst is granted once the bucket is full and leaves it in debt (a
  // request larger than the burst must still be able to run). REQUIRES: Has(name).
  virtual RateGrant TryTake(const std::string& name, double amount) = 0;
  // Puts `amount` back (usage below the reservation), never above the burst; a negative amount
  // takes without waiting (usage above the reservation), possibly into debt.
  virtual void Give(const std::string& name, double amount) = 0;
  // The provider knows better: the bucket holds at most `remaining`, and when `remaining` <= 0
  // nothing is granted for `reset_seconds` (a 429's Retry-After, a reset header).
  virtual void Lower(const std::string& name, double remaining, double reset_seconds) = 0;
  // The provider refused a request of this bucket (HTTP 429): the bucket is emptied, grants
  // nothing to any waiting request for `retry_after` seconds (the provider's Retry-After; one
  // interval when <= 0) and refills only from then on, and its rate is lowered (x0.8 per 429,
  // down to a quarter of the declared rate; each grant brings back 1%).
  virtual void Limited(const std::string& name, double retry_after) = 0;

  // Budget: reserves `usd` when spent + reserved + usd stays within the budget (always granted
  // without a budget). Every granted reservation must be settled exactly once.
  virtual BudgetGrant Reserve(double usd) = 0;
  // Releases a reservation of `reserved_usd` and adds `spent_usd` (the request's real cost).
  virtual void Settle(double reserved_usd, double spent_usd) = 0;
  // The budget in USD (0 = none).
  virtual double budget_usd() const = 0;

  // Takes `amount` from `name`, waiting (on this limiter's clock) as long as needed. Calls
  // `on_wait(seconds)` before each wait so the caller can show "waiting for rate NAME". Returns
  // false when `cancel` fired during the wait (nothing taken then).
  bool Acquire(const std::string& name, double amount, const CancelToken* cancel,
               const std::function<void(double seconds, const std::string& error)>& on_wait = {});

 protected:
  // Sleeps `seconds` on this limiter's clock; false when cancelled first.
  virtual bool Sleep(double seconds, const CancelToken* cancel) = 0;
};

}  // namespace baton
