// MemoryRateLimiter: the rate buckets and budget of one process (the embedded runtime), under
// one mutex. Time comes from an injected Clock (FakeClock in tests).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <map>
#include <memory>

#include "baton/rates.h"
#include "baton/thread_annotations.h"
#include "util/clock.h"

namespace baton::rates {

// The rate a bucket refills at: `per_second` less a margin for jitter (the provider's clock, the
// network, thread wake-ups see Baton's spacing a little shorter than it was): 20 ms per interval,
// at least 2% and at most 5% of it. Told a provider's exact rate, Baton then stays under it.
double PacedPerSecond(const RateSpec& spec);

// After a 429: the rate is multiplied by kLimitedFactor (not below kMinFactor of the declared
// one); each grant multiplies it by kRecoverFactor, back up to 1.
inline constexpr double kLimitedFactor = 0.8, kMinFactor = 0.25, kRecoverFactor = 1.01;

// The bucket arithmetic shared with the Redis script (redis_limiter.cc mirrors it in Lua).
struct Bucket {
  double level = 0;   // tokens now (negative: debt)
  double ts = 0;      // clock time of `level`; in the future while a 429's hold lasts (no refill)
  double hold = 0;    // nothing is granted before this time (provider said 0 remaining, or 429)
  double factor = 1;  // the rate's multiplier after 429s

  void Refill(const RateSpec& spec, double now);
  RateGrant Take(const RateSpec& spec, double amount, double now);
  void Limited(const RateSpec& spec, double retry_after, double now);
};

class MemoryRateLimiter final : public RateLimiter {
 public:
  // `budget_usd` 0 = no budget. `clock` must outlive the limiter.
  MemoryRateLimiter(RateSpecs specs, double budget_usd, const Clock& clock = Clock::Real());

  bool Has(const std::string& name) const override { return specs_.count(name) > 0; }
  std::string Names() const override;
  RateGrant TryTake(const std::string& name, double amount) override;
  void Give(const std::string& name, double amount) override;
  void Lower(const std::string& name, double remaining, double reset_seconds) override;
  void Limited(const std::string& name, double retry_after) override;
  BudgetGrant Reserve(double usd) override;
  void Settle(double reserved_usd, double spent_usd) override;
  double budget_usd() const override { return budget_; }

  // A resumed run (`baton run` with the same --out): `spent_before` USD were spent by the output
  // folder's earlier runs (its journal's `spent` records), so the budget caps the folder's total.
  // `record` (may be empty) is called, under the limiter's lock, with each settled cost > 0, so the
  // next run can do the same; call StopRecording before what it writes to goes away (attempts
  // may outlive the run that made them).
  void Resume(double spent_before, std::function<void(double usd)> record);
  void StopRecording();
  // From now on every Reserve is refused with `why` as its error: the spending can no longer be
  // recorded (the journal failed), so a resumed run would not know of it. Lock-free: callable
  // from `record` itself. The first call's reason stays.
  void RefuseBudget(const std::string& why);
  double spent() {
    MutexLock lock(&mu_);
    return spent_;
  }

  // For tests: the bucket's level now.
  double Level(const std::string& name);

 protected:
  bool Sleep(double seconds, const CancelToken* cancel) override { return clock_.Sleep(seconds, cancel); }

 private:
  const RateSpecs specs_;
  const double budget_;
  const Clock& clock_;
  Mutex mu_;
  std::map<std::string, Bucket> buckets_ GUARDED_BY(mu_);
  double spent_ GUARDED_BY(mu_) = 0;
  double reserved_ GUARDED_BY(mu_) = 0;
  std::function<void(double)> record_ GUARDED_BY(mu_);
  std::atomic<int> refusing_{0};  // 1: being set, 2: refused_why_ is set and final
  std::string refused_why_;
};

// The limiter of an embedded run: the pipeline's and the cluster file's rates, the budget.
std::unique_ptr<MemoryRateLimiter> NewMemoryLimiter(const RateSpecs& pipeline_rates, const RateSpecs& cluster_rates,
                                              double budget_usd);

}  // namespace baton::rates
