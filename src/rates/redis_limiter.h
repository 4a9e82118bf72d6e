// RedisRateLimiter: rate buckets and the budget shared by every process of a cluster, kept in
// Redis so they survive agent and head restarts. Each operation is one Lua script run atomically
// by Redis (EVALSHA, falling back to EVAL after a Redis restart flushed the script cache).
//
// Keys: PREFIX:rate:NAME (hash level, ts, hold), shared by every run (a provider's limits are per
// API key, not per run), and PREFIX:budget:SCOPE (hash spent) with PREFIX:budget:SCOPE:held (hash
// holder -> USD reserved) and :until (zset holder -> when its hold lapses), one set per run (SCOPE:
// the run's id; a rerun that should continue spending from the same budget passes the same
// scope); all expire `retention` seconds after their last use. Time is Redis's own TIME (one clock
// for the whole cluster) unless a Clock is injected (tests).
//
// Reservations expire with their process: each limiter object is a holder whose reservations
// lapse `hold` seconds (default 60) after it last reserved, settled or renewed; a thread renews
// the hold every third of it while the object holds any. So an agent killed mid-request blocks
// nobody's LLM calls for longer than the hold, while a live one keeps a batch's reservation for
// the batch's hours.
//
// When Redis cannot be reached, TryTake answers "not granted, retry in 1 s" with the error, and
// Reserve refuses with the error: nothing is sent on a guess. Give/Lower are then lost (the bucket
// is conservative afterwards); a Settle is kept and sent again (by the next Reserve, Renew or the
// renewing thread) until Redis has it, as long as this object lives.
//
// Thread-safety: any thread; calls share one connection under a mutex (each is one round trip).
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "baton/rates.h"
#include "baton/thread_annotations.h"
#include "redis/redis.h"
#include "util/clock.h"

namespace baton::rates {

class RedisRateLimiter final : public RateLimiter {
 public:
  // `clock` null: Redis TIME. Connects lazily (and again after any I/O error).
  RedisRateLimiter(cluster::RedisUrl url, std::string prefix, RateSpecs specs, double budget_usd,
                   std::string budget_scope = "run", const Clock* clock = nullptr,
                   double retention_seconds = 7 * 86400.0, double hold_seconds = 60);
  ~RedisRateLimiter() override;

  bool Has(const std::string& name) const override { return specs_.count(name) > 0; }
  std::string Names() const override;
  RateGrant TryTake(const std::string& name, double amount) override;
  void Give(const std::string& name, double amount) override;
  void Lower(const std::string& name, double remaining, double reset_seconds) override;
  void Limited(const std::string& name, double retry_after) override;
  BudgetGrant Reserve(double usd) override;
  void Settle(double reserved_usd, double spent_usd) override;
  double budget_usd() const override { return budget_; }

  // For tests: the bucket's level now (refilled), or NaN when Redis cannot be reached.
  double Level(const std::string& name);
  // The last connection or script error ("" when the last call succeeded).
  std::string last_error();
  // Renews this process's hold on its reservations and retries settles Redis did not take; a
  // thread does it every third of the hold while there is any. False when Redis cannot be reached.
  bool Renew();

 protected:
  bool Sleep(double seconds, const CancelToken* cancel) override;

 private:
  // Runs `op` on bucket `name`; returns {granted, wait, level} or an error.
  struct BucketReply {
    bool ok = false;
    bool granted = false;
    double wait = 0;
    double level = 0;
  };
  BucketReply RunBucket(const std::string& name, const std::string& op, double amount, double extra);
  cluster::Reply Eval(const std::string& script, std::string* sha, const std::vector<std::string>& keys,
                      const std::vector<std::string>& args) REQUIRES(mu_);
  std::string NowArg();
  cluster::Reply RunBudget(const char* op, double a, double b) REQUIRES(mu_);
  bool FlushSettles() REQUIRES(mu_);
  void RenewLoop();

  const cluster::RedisUrl url_;
  const std::string prefix_;
  const RateSpecs specs_;
  const double budget_;
  const std::string budget_key_;
  const Clock* const clock_;
  const double retention_;
  const double hold_;
  const std::string holder_;  // this object's name in the budget's holds
  Mutex mu_;
  std::unique_ptr<cluster::Redis> redis_ GUARDED_BY(mu_);  // null until connected
  std::string bucket_sha_ GUARDED_BY(mu_);
  std::string budget_sha_ GUARDED_BY(mu_);
  std::string error_ GUARDED_BY(mu_);
  double held_ GUARDED_BY(mu_) = 0;  // USD this process reserved and has not settled
  std::vector<std::pair<double, double>> unsettled_ GUARDED_BY(mu_);  // (reserved, spent) not yet in Redis
  bool stopping_ GUARDED_BY(mu_) = false;
  CondVar stop_cv_;
  std::thread renewer_;  // started at the first reservation
};

}  // namespace baton::rates
