#include "rates/memory_limiter.h"

#include <algorithm>

#include "rates/rate_config.h"

namespace baton::rates {

double PacedPerSecond(const RateSpec& spec) {
  if (spec.per_second <= 0) return spec.per_second;
  const double interval = 1 / spec.per_second;
  const double margin = std::clamp(0.020, 0.02 * interval, 0.05 * interval);
  return 1 / (interval + margin);
}

void Bucket::Refill(const RateSpec& spec, double now) {
  if (now > ts) {
    level = std::min(spec.burst, level + (now - ts) * PacedPerSecond(spec) * factor);
    ts = now;
  }
}

RateGrant Bucket::Take(const RateSpec& spec, double amount, double now) {
  Refill(spec, now);
  RateGrant g;
  if (now < hold) {
    g.wait = hold - now;
    return g;
  }
  // A take larger than the burst waits for a full bucket and leaves debt behind.
  const double need = std::min(amount, spec.burst);
  if (level + 1e-9 * std::max(1.0, need) >= need) {
    level -= amount;
    factor = std::min(1.0, factor * kRecoverFactor);
    g.granted = true;
    return g;
  }
  g.wait = (need - level) / (PacedPerSecond(spec) * factor);
  return g;
}

void Bucket::Limited(const RateSpec& spec, double retry_after, double now) {
  Refill(spec, now);
  factor = std::max(kMinFactor, factor * kLimitedFactor);
  level = std::min(level, 0.0);
  const double wait = retry_after > 0 ? retry_after : 1 / (PacedPerSecond(spec) * factor);
  hold = std::max(hold, now + wait);
  ts = std::max(ts, hold);  // nothing accrues while held: the first grant after it is paced too
}

void MemoryRateLimiter::Limited(const std::string& name, double retry_after) {
  const double now = clock_.Monotonic();
  MutexLock lock(&mu_);
  buckets_.at(name).Limited(specs_.at(name), retry_after, now);
}

MemoryRateLimiter::MemoryRateLimiter(RateSpecs specs, double budget_usd, const Clock& clock)
    : specs_(std::move(specs)), budget_(budget_usd), clock_(clock) {
  const double now = clock_.Monotonic();
  for (const auto& [name, spec] : specs_) buckets_[name] = Bucket{spec.burst, now, 0, 1};
}

std::string MemoryRateLimiter::Names() const {
  std::string out;
  for (const auto& [name, spec] : specs_) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "none declared" : out;
}

RateGrant MemoryRateLimiter::TryTake(const std::string& name, double amount) {
  const double now = clock_.Monotonic();
  MutexLock lock(&mu_);
  return buckets_.at(name).Take(specs_.at(name), amount, now);
}

void MemoryRateLimiter::Give(const std::string& name, double amount) {
  const double now = clock_.Monotonic();
  MutexLock lock(&mu_);
  Bucket& b = buckets_.at(name);
  b.Refill(specs_.at(name), now);
  b.level = std::min(specs_.at(name).burst, b.level + amount);
}

void MemoryRateLimiter::Lower(const std::string& name, double remaining, double reset_seconds) {
  const double now = clock_.Monotonic();
  MutexLock lock(&mu_);
  Bucket& b = buckets_.at(name);
  b.Refill(specs_.at(name), now);
  b.level = std::min(b.level, remaining);
  if (remaining <= 0 && reset_seconds > 0) b.hold = std::max(b.hold, now + reset_seconds);
}

double MemoryRateLimiter::Level(const std::string& name) {
  const double now = clock_.Monotonic();
  MutexLock lock(&mu_);
  Bucket& b = buckets_.at(name);
  b.Refill(specs_.at(name), now);
  return b.level;
}

BudgetGrant MemoryRateLimiter::Reserve(double usd) {
  MutexLock lock(&mu_);
  BudgetGrant g{true, budget_, spent_, reserved_, {}};
  if (refusing_.load(std::memory_order_acquire) == 2) {
    g.granted = false;
    g.error = refused_why_;
    return g;
  }
  if (budget_ > 0 && spent_ + reserved_ + usd > budget_) {
    g.granted = false;
    return g;
  }
  reserved_ += usd;
  return g;
}

void MemoryRateLimiter::Settle(double reserved_usd, double spent_usd) {
  MutexLock lock(&mu_);
  reserved_ = std::max(0.0, reserved_ - reserved_usd);
  spent_ += spent_usd;
  if (spent_usd > 0 && record_) record_(spent_usd);
}

void MemoryRateLimiter::Resume(double spent_before, std::function<void(double usd)> record) {
  MutexLock lock(&mu_);
  spent_ = spent_before;
  record_ = std::move(record);
}

void MemoryRateLimiter::RefuseBudget(const std::string& why) {
  int expected = 0;
  if (!refusing_.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) return;
  refused_why_ = why;
  refusing_.store(2, std::memory_order_release);
}

void MemoryRateLimiter::StopRecording() {
  MutexLock lock(&mu_);
  record_ = nullptr;
}

std::unique_ptr<MemoryRateLimiter> NewMemoryLimiter(const RateSpecs& pipeline_rates, const RateSpecs& cluster_rates,
                                              double budget_usd) {
  return std::make_unique<MemoryRateLimiter>(MergeRates(pipeline_rates, cluster_rates), budget_usd);
}

}  // namespace baton::rates
