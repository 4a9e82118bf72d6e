#include "rates/redis_limiter.h"

#include <unistd.h>

#include <cmath>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "rates/memory_limiter.h"

namespace baton::rates {
namespace {

// The scripts' time: an argument given ("" = Redis TIME, one clock for the whole cluster).
constexpr const char* kNowLua = R"LUA(
local function Now(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
)LUA";

// The bucket arithmetic of Bucket::Take/Refill/Limited (memory_limiter.cc), in Lua; its numbers
// are kRecoverFactor, kMinFactor and kLimitedFactor (memory_limiter.h). `rate` is PacedPerSecond.
// KEYS[1] bucket; ARGV: rate, burst, amount, now ("" = Redis TIME), op, ttl, extra.
const std::string kBucketScript = std::string(kNowLua) + R"LUA(
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local now = Now(ARGV[4])
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

// KEYS[1] budget (hash: spent), KEYS[2] held (hash: holder -> USD it holds), KEYS[3] until
// (zset: holder -> when its hold lapses). ARGV: op ('reserve' | 'settle' | 'renew'), a, b, limit,
// ttl, now ("" = Redis TIME), holder, hold seconds. A holder's reservations lapse `hold` seconds
// after it last reserved, settled or renewed: a process that died mid-request holds nothing then.
const std::string kBudgetScript = std::string(kNowLua) + R"LUA(
local now = Now(ARGV[6])
local holder = ARGV[7]
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, h in ipairs(lapsed) do
  if h ~= holder then
    redis.call('HDEL', KEYS[2], h)
    redis.call('ZREM', KEYS[3], h)
  end
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local reserved = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do reserved = reserved + tonumber(v) end
local mine = tonumber(redis.call('HGET', KEYS[2], holder) or '0')
local mine_until = tonumber(redis.call('ZSCORE', KEYS[3], holder) or '0')
if mine > 0 and mine_until <= now then  -- its own hold lapsed (it stalled): gone as for the others
  reserved = reserved - mine
  mine = 0
end
local a = tonumber(ARGV[2])
local b = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local granted = 1
local before_spent, before_reserved = spent, reserved
if ARGV[1] == 'reserve' then
  if limit > 0 and spent + reserved + a > limit then
    granted = 0
  else
    mine = mine + a
  end
elseif ARGV[1] == 'settle' then
  mine = math.max(0, mine - a)
  spent = spent + b
end
if mine > 1e-12 then
  redis.call('HSET', KEYS[2], holder, string.format('%.17g', mine))
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[8]), holder)
else
  redis.call('HDEL', KEYS[2], holder)
  redis.call('ZREM', KEYS[3], holder)
end
redis.call('HSET', KEYS[1], 'spent', string.format('%.17g', spent))
redis.call('HDEL', KEYS[1], 'reserved')  -- kept there by versions before holds
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[5])) end
return {granted, string.format('%.17g', before_spent), string.format('%.17g', before_reserved)}
)LUA";

std::string Num(double v) { return fmt::format("{:.17g}", v); }

double ToDouble(const cluster::Reply& r) {
  const std::string s = r.str();
  return s.empty() ? 0 : std::stod(s);
}

// Unique per limiter object: host, process and 64 random bits.
std::string NewHolderId() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::random_device rd;
  const uint64_t r = (uint64_t{rd()} << 32) ^ rd();
  return fmt::format("{}:{}:{:016x}", host, getpid(), r);
}

}  // namespace

RedisRateLimiter::RedisRateLimiter(cluster::RedisUrl url, std::string prefix, RateSpecs specs, double budget_usd,
                                   std::string budget_scope, const Clock* clock, double retention_seconds,
                                   double hold_seconds)
    : url_(std::move(url)), prefix_(std::move(prefix)), specs_(std::move(specs)), budget_(budget_usd),
      budget_key_(prefix_ + ":budget:" + budget_scope), clock_(clock), retention_(retention_seconds),
      hold_(hold_seconds), holder_(NewHolderId()) {}

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

cluster::Reply RedisRateLimiter::RunBudget(const char* op, double a, double b) {
  return Eval(kBudgetScript, &budget_sha_, {budget_key_, budget_key_ + ":held", budget_key_ + ":until"},
              {op, Num(a), Num(b), Num(budget_), std::to_string(static_cast<long long>(retention_)), NowArg(),
               holder_, Num(hold_)});
}

// Settles that could not reach Redis, oldest first; false when one still cannot.
bool RedisRateLimiter::FlushSettles() {
  while (!unsettled_.empty()) {
    const auto [reserved, spent] = unsettled_.front();
    if (!RunBudget("settle", reserved, spent).is_array()) return false;
    unsettled_.erase(unsettled_.begin());
  }
  return true;
}

BudgetGrant RedisRateLimiter::Reserve(double usd) {
  BudgetGrant g;
  g.limit = budget_;
  MutexLock lock(&mu_);
  cluster::Reply r;
  if (FlushSettles()) r = RunBudget("reserve", usd, 0);
  if (!r.is_array() || r.size() != 3) {
    g.granted = false;
    g.error = error_;
    return g;
  }
  g.granted = r.at(0).integer() == 1;
  g.spent = ToDouble(r.at(1));
  g.reserved = ToDouble(r.at(2));
  if (g.granted) {
    held_ += usd;
    if (!renewer_.joinable()) renewer_ = std::thread([this] { RenewLoop(); });
  }
  return g;
}

void RedisRateLimiter::Settle(double reserved_usd, double spent_usd) {
  MutexLock lock(&mu_);
  held_ = std::max(0.0, held_ - reserved_usd);
  unsettled_.emplace_back(reserved_usd, spent_usd);  // kept until Redis has it: money spent is never lost
  FlushSettles();
}

bool RedisRateLimiter::Renew() {
  MutexLock lock(&mu_);
  return FlushSettles() && (held_ <= 0 || RunBudget("renew", 0, 0).is_array());
}

// While this process holds reservations or owes settles: renews its hold every third of it and
// retries the settles, so only a process that stopped loses what it held.
void RedisRateLimiter::RenewLoop() {
  MutexLock lock(&mu_);
  while (!stopping_) {
    stop_cv_.WaitFor(&mu_, std::chrono::duration<double>(hold_ / 3));
    if (stopping_) break;
    if (held_ > 0 || !unsettled_.empty()) {
      if (FlushSettles() && held_ > 0) RunBudget("renew", 0, 0);
    }
  }
}

RedisRateLimiter::~RedisRateLimiter() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  stop_cv_.SignalAll();
  if (renewer_.joinable()) renewer_.join();
}

}  // namespace baton::rates
