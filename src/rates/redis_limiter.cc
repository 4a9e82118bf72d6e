#include "rates/redis_limiter.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "rates/memory_limiter.h"

namespace baton::rates {
namespace {

// The bucket arithmetic of Bucket::Take/Refill/Limited (memory_limiter.cc), in Lua; its numbers
// are kRecoverFactor, kMinFactor and kLimitedFactor (memory_limiter.h). `rate` is PacedPerSecond.
// KEYS[1] bucket; ARGV: rate, burst, amount, now ("" = Redis TIME), op, ttl, extra.
constexpr const char* kBucketScript = R"LUA(
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[4])
end
local op = ARGV[5]
local extra = tonumber(ARGV[7])
local s = redis.call('HMGET', KEYS[1], 'level', 'ts', 'hold', 'factor')
local level = tonumber(s[1]) or burst
local ts = tonumber(s[2]) or now
local hold = tonumber(s[3]) or 0
local factor = tonumber(s[4]) or 1
if now > ts then
  level = math.min(burst, level + (now - ts) * rate * factor)
  ts = now
end
local granted = 0
local wait = 0
if op == 'take' then
  if now < hold then
    wait = hold - now
  else
    local need = math.min(amount, burst)
    if level + 1e-9 * math.max(1, need) >= need then
      level = level - amount
      factor = math.min(1, factor * 1.01)
      granted = 1
    else
      wait = (need - level) / (rate * factor)
    end
  end
elseif op == 'give' then
  level = math.min(burst, level + amount)
elseif op == 'lower' then
  level = math.min(level, amount)
  if amount <= 0 and extra > 0 then hold = math.max(hold, now + extra) end
elseif op == 'limited' then
  factor = math.max(0.25, factor * 0.8)
  level = math.min(level, 0)
  local w = extra
  if w <= 0 then w = 1 / (rate * factor) end
  hold = math.max(hold, now + w)
  ts = math.max(ts, hold)
end
redis.call('HSET', KEYS[1], 'level', string.format('%.17g', level), 'ts', string.format('%.17g', ts),
           'hold', string.format('%.17g', hold), 'factor', string.format('%.17g', factor))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return {granted, string.format('%.17g', wait), string.format('%.17g', level)}
)LUA";

// KEYS[1] budget; ARGV: op ('reserve' | 'settle'), a, b, limit, ttl.
constexpr const char* kBudgetScript = R"LUA(
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local a = tonumber(ARGV[2])
local b = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local granted = 1
local before_spent, before_reserved = spent, reserved
if ARGV[1] == 'reserve' then
  if limit > 0 and spent + reserved + a > limit then
    granted = 0
  else
    reserved = reserved + a
  end
else
  reserved = math.max(0, reserved - a)
  spent = spent + b
end
redis.call('HSET', KEYS[1], 'spent', string.format('%.17g', spent), 'reserved', string.format('%.17g', reserved))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return {granted, string.format('%.17g', before_spent), string.format('%.17g', before_reserved)}
)LUA";

std::string Num(double v) { return fmt::format("{:.17g}", v); }

double ToDouble(const cluster::Reply& r) {
  const std::string s = r.str();
  return s.empty() ? 0 : std::stod(s);
}

}  // namespace

RedisRateLimiter::RedisRateLimiter(cluster::RedisUrl url, std::string prefix, RateSpecs specs, double budget_usd,
                                   std::string budget_scope, const Clock* clock, double retention_seconds)
    : url_(std::move(url)), prefix_(std::move(prefix)), specs_(std::move(specs)), budget_(budget_usd),
      budget_key_(prefix_ + ":budget:" + budget_scope), clock_(clock), retention_(retention_seconds) {}

std::string RedisRateLimiter::Names() const {
  std::string out;
  for (const auto& [name, spec] : specs_) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "none declared" : out;
}

bool RedisRateLimiter::Sleep(double seconds, const CancelToken* cancel) {
  return (clock_ != nullptr ? *clock_ : Clock::Real()).Sleep(seconds, cancel);
}

std::string RedisRateLimiter::NowArg() { return clock_ != nullptr ? Num(clock_->Monotonic()) : std::string(); }

cluster::Reply RedisRateLimiter::Eval(const std::string& script, std::string* sha,
                                      const std::vector<std::string>& keys, const std::vector<std::string>& args) {
  if (redis_ == nullptr || !redis_->ok()) {
    redis_ = std::make_unique<cluster::Redis>();
    bucket_sha_.clear();
    budget_sha_.clear();
    if (!redis_->Connect(url_)) {
      error_ = "rate store: " + redis_->error();
      return {};
    }
  }
  auto argv_for = [&](const std::string& cmd, const std::string& body) {
    std::vector<std::string> argv = {cmd, body, std::to_string(keys.size())};
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  };
  cluster::Reply r;
  if (!sha->empty()) {
    r = redis_->Command(argv_for("EVALSHA", *sha));
    if (r.is_error() && r.str().rfind("NOSCRIPT", 0) == 0) sha->clear();  // Redis restarted
    else if (redis_->ok() && !r.is_error()) {
      error_.clear();
      return r;
    }
  }
  if (sha->empty() && redis_->ok()) {
    cluster::Reply loaded = redis_->Command({"SCRIPT", "LOAD", script});
    if (redis_->ok() && !loaded.is_error()) *sha = loaded.str();
    r = redis_->Command(argv_for("EVAL", script));
  }
  if (!redis_->ok()) {
    error_ = "rate store: " + redis_->error();
    return {};
  }
  if (r.is_error()) {
    error_ = "rate store script error: " + r.str();
    return {};
  }
  error_.clear();
  return r;
}

RedisRateLimiter::BucketReply RedisRateLimiter::RunBucket(const std::string& name, const std::string& op,
                                                          double amount, double extra) {
  const RateSpec& spec = specs_.at(name);
  const std::string now = NowArg();
  MutexLock lock(&mu_);
  cluster::Reply r = Eval(kBucketScript, &bucket_sha_, {prefix_ + ":rate:" + name},
                          {Num(PacedPerSecond(spec)), Num(spec.burst), Num(amount), now, op,
                           std::to_string(static_cast<long long>(retention_)), Num(extra)});
  BucketReply out;
  if (!r.is_array() || r.size() != 3) return out;
  out.ok = true;
  out.granted = r.at(0).integer() == 1;
  out.wait = ToDouble(r.at(1));
  out.level = ToDouble(r.at(2));
  return out;
}

RateGrant RedisRateLimiter::TryTake(const std::string& name, double amount) {
  const BucketReply r = RunBucket(name, "take", amount, 0);
  RateGrant g;
  if (!r.ok) {
    g.wait = 1;
    g.error = last_error();
    return g;
  }
  g.granted = r.granted;
  g.wait = r.wait;
  return g;
}

void RedisRateLimiter::Give(const std::string& name, double amount) { RunBucket(name, "give", amount, 0); }

void RedisRateLimiter::Lower(const std::string& name, double remaining, double reset_seconds) {
  RunBucket(name, "lower", remaining, reset_seconds);
}

void RedisRateLimiter::Limited(const std::string& name, double retry_after) {
  RunBucket(name, "limited", 0, retry_after);
}

double RedisRateLimiter::Level(const std::string& name) {
  const BucketReply r = RunBucket(name, "peek", 0, 0);
  return r.ok ? r.level : std::numeric_limits<double>::quiet_NaN();
}

std::string RedisRateLimiter::last_error() {
  MutexLock lock(&mu_);
  return error_;
}

BudgetGrant RedisRateLimiter::Reserve(double usd) {
  BudgetGrant g;
  g.limit = budget_;
  MutexLock lock(&mu_);
  cluster::Reply r = Eval(kBudgetScript, &budget_sha_, {budget_key_},
                          {"reserve", Num(usd), "0", Num(budget_), std::to_string(static_cast<long long>(retention_))});
  if (!r.is_array() || r.size() != 3) {
    g.granted = false;
    g.error = error_;
    return g;
  }
  g.granted = r.at(0).integer() == 1;
  g.spent = ToDouble(r.at(1));
  g.reserved = ToDouble(r.at(2));
  return g;
}

void RedisRateLimiter::Settle(double reserved_usd, double spent_usd) {
  MutexLock lock(&mu_);
  Eval(kBudgetScript, &budget_sha_, {budget_key_},
       {"settle", Num(reserved_usd), Num(spent_usd), Num(budget_), std::to_string(static_cast<long long>(retention_))});
}

}  // namespace baton::rates
