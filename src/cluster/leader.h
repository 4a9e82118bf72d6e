// LeaderLock: the head's lock in Redis (PREFIX:head), so one head runs per prefix. Acquired with
// SET NX PX and a token HOST:PID:RANDOM, renewed by a compare-and-PEXPIRE script a third of the way
// through its time to live (renewal times are measured on the head's monotonic Clock, so a wall
// clock jump neither renews late nor early), released by compare-and-DEL.
//
// Not thread-safe: used by the head's loop thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "redis/redis.h"
#include "util/clock.h"

namespace baton::cluster {

class LeaderLock {
 public:
  LeaderLock(std::string key, double ttl_seconds, const Clock& clock);
  // True when this head holds the lock now (freshly taken, or still ours after a reconnect).
  bool Acquire(Redis& db);
  // Renews when due. False when the lock was lost (expired and taken, or deleted).
  bool RenewIfDue(Redis& db);
  void Release(Redis& db);
  // Runs `cmds` atomically, only while this head still holds the lock (fencing): a
  // head that stalled past its lease writes nothing. Stops at the first command Redis refuses
  // (out of memory, wrong type): the commands after it are not run. The reply: an array {XADD ids
  // in order, the refused command's "NAME: error" (empty when none was refused)}, or an error reply
  // starting with "FENCED" when the lock is not ours.
  Reply WriteFenced(Redis& db, const CommandBatch& cmds) const;
  // When RenewIfDue next talks to Redis (monotonic seconds).
  double next_renewal() const { return next_renew_; }
  // How many times RenewIfDue renewed the lease (the head's counters, tests).
  uint64_t renewals() const { return renewals_; }
  const std::string& token() const { return token_; }

 private:
  std::string key_, token_, ttl_ms_;
  double ttl_;
  const Clock& clock_;
  double next_renew_ = 0;
  uint64_t renewals_ = 0;
};

// 2*bytes random hex characters.
std::string RandomHex(int bytes);

}  // namespace baton::cluster
