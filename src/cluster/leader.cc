#include "cluster/leader.h"

#include <unistd.h>

#include <algorithm>
#include <random>

#include <fmt/format.h>

namespace baton::cluster {

std::string RandomHex(int bytes) {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < bytes; ++i) s += fmt::format("{:02x}", rd() & 0xff);
  return s;
}

LeaderLock::LeaderLock(std::string key, double ttl_seconds, const Clock& clock)
    : key_(std::move(key)), ttl_(std::max(1.0, ttl_seconds)), clock_(clock) {
  // HOST:PID:RANDOM: unique, and tells an operator (`redis-cli GET PREFIX:head`) which head leads.
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  token_ = fmt::format("{}:{}:{}", host, getpid(), RandomHex(8));
  ttl_ms_ = std::to_string(static_cast<long long>(ttl_ * 1000));
}

bool LeaderLock::Acquire(Redis& db) {
  Reply r = db.Command({"SET", key_, token_, "NX", "PX", ttl_ms_});
  bool held = r.str() == "OK";
  // Ours from before a reconnect?
  if (!held) held = db.Command({"GET", key_}).str() == token_ && db.Command({"PEXPIRE", key_, ttl_ms_}).integer() == 1;
  if (held) next_renew_ = clock_.Monotonic() + ttl_ / 3;
  return held;
}

bool LeaderLock::RenewIfDue(Redis& db) {
  const double now = clock_.Monotonic();
  if (now < next_renew_) return true;
  Reply r = db.Command({"EVAL",
                        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
                        "else return 0 end",
                        "1", key_, token_, ttl_ms_});
  if (r.integer() != 1) return false;
  next_renew_ = now + ttl_ / 3;
  ++renewals_;
  return true;
}

namespace {

// ARGV: token, then each command as its argc and its args. Stops at the first refused command
// (Redis out of memory refuses HSET, RPUSH and XADD but not XACK or XDEL; a wrong key type):
// what follows it, the inbox acknowledgements last of all, is not run, so the turn's inputs stay
// pending and the head that reloads applies them again. (A script is not rolled back: commands
// before the refused one stay written. Under OOM the first write is the one refused, so none do.)
constexpr const char* kFencedWrite = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED this head no longer holds the lease') end
local i, ids = 2, {}
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local r = redis.pcall(unpack(ARGV, i + 1, i + n))
  if type(r) == 'table' and r.err then return {ids, {ARGV[i + 1] .. ': ' .. r.err}} end
  if ARGV[i + 1] == 'XADD' then ids[#ids + 1] = r end
  i = i + n + 1
end
return {ids, {}}
)lua";

}  // namespace

Reply LeaderLock::WriteFenced(Redis& db, const CommandBatch& cmds) const {
  db.AppendEval(kFencedWrite, {key_, token_}, cmds, 1);
  return db.Read();
}

void LeaderLock::Release(Redis& db) {
  if (!db.ok()) return;
  db.Command({"EVAL",
              "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end", "1",
              key_, token_});
}

}  // namespace baton::cluster
