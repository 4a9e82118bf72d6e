#include "cluster/leader.h"

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
    : key_(std::move(key)), token_(RandomHex(8)), ttl_(std::max(1.0, ttl_seconds)), clock_(clock) {
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
  return true;
}

void LeaderLock::Release(Redis& db) {
  if (!db.ok()) return;
  db.Command({"EVAL", "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end",
              "1", key_, token_});
}

}  // namespace baton::cluster
