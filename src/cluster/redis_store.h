// RedisJobStore: the cluster's store for the driver kit (driver::JobStore). It keeps the jobs the
// Driver holds in Redis (hash PREFIX:job:ID, list PREFIX:attempts:ID; layout in keys.h), so a
// head that restarts, or a standby that takes over, rebuilds the same state (Load), and `baton
// status` reads it without a head.
//
// Writes are batched per head turn: the Driver reports changes (JobChanged, AttemptRecorded) as
// they happen, AppendTurn() appends one HSET per changed job (only the fields that changed:
// results, history and homes are re-sent only when they differ) and one RPUSH per job with new
// attempts, to be sent inside the head's MULTI/EXEC with the turn's other writes.
//
// Also here, because both read the job hash: JobJsonFromHash, the job view of `baton status`.
//
// Not thread-safe: owned by the head's loop thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "baton/pipeline.h"
#include "cluster/fence.h"
#include "cluster/keys.h"
#include "driver/driver.h"
#include "redis/redis.h"

namespace baton::cluster {

class RedisJobStore : public driver::JobStore {
 public:
  // `incarnations`: node name -> the agent incarnation placements go to (the head's view, kept
  // current by its liveness checks). An attempt is persisted with the incarnation it was placed
  // on, so a head that reloads can tell an attempt whose agent restarted meanwhile (lost).
  // `fence`: the term each in-flight attempt was placed in, persisted with it.
  RedisJobStore(driver::Driver& driver, const Keys& keys, const std::map<std::string, std::string>& incarnations,
                const AttemptFence& fence)
      : d_(driver), keys_(keys), incarnations_(incarnations), fence_(fence) {}

  void JobChanged(uint32_t job) override;
  void AttemptRecorded(uint32_t job, const AttemptReport& attempt) override;

  // Reads the pipeline `id` from Redis into the driver (once). Error: unknown or unloadable.
  Result<uint32_t> EnsurePipeline(Redis& db, const std::string& id);
  // Rebuilds the driver's pipelines and jobs from Redis (nodes first: the head adds them). `now`:
  // driver seconds. `in_flight(job, term, incarnation)` is told of each attempt restored in
  // flight; `keep_alive()` is called between batches (the head renews its lease there) and
  // stops the load when it returns false. An error on a Redis error or a lost lease.
  struct LoadHooks {
    std::function<void(uint32_t job, const std::string& term, const std::string& incarnation)> in_flight;
    std::function<bool()> keep_alive;
  };
  Status LoadJobs(Redis& db, double now, const LoadHooks& hooks);
  // Adds a submitted job from its hash. Error when its pipeline cannot be loaded (the job is
  // then marked failed in Redis with that reason, so the submitter sees it).
  Status AddSubmitted(Redis& db, const std::string& id, const Hash& h, double now);

  // Appends this turn's writes (commands as argv) to `out`.
  void AppendTurn(CommandBatch& out, double now);

  // Jobs written this turn that ended succeeded or cancelled: once the turn is in Redis, their
  // detail may leave the head's memory (Forget, Driver::ReleaseDetail). Failed jobs stay (a
  // retry needs their results).
  std::vector<uint32_t> TakeEnded() { return std::move(ended_); }
  const std::vector<uint32_t>& ended() const { return ended_; }  // the same, before the turn is sent
  void Forget(uint32_t job) {
    if (job < saved_.size()) saved_[job].encoded.reset();
  }

  // The job's results object and history array as JSON text, encoded once per change.
  const std::string& ResultsText(uint32_t job);
  const std::string& HistoryText(uint32_t job);

 private:
  // Per job, small: the head holds one for every job it knows.
  struct Encoded {
    std::string results = "{}", history = "[]";
  };
  struct Saved {
    bool dirty = false;
    bool results_unsaved = false;
    bool in_ended_index = false;        // listed in PREFIX:ended (a retried job leaves it)
    uint32_t version = UINT32_MAX;      // the JobRecord::results_version last encoded
    size_t homes_hash = 0;              // std::hash of the homes field as last written
    std::unique_ptr<Encoded> encoded;   // null while the job has no results
  };
  Saved& At(uint32_t job) {
    if (job >= saved_.size()) saved_.resize(job + 1);
    return saved_[job];
  }
  void Encode(uint32_t job);
  std::string HomesText(uint32_t job) const;
  std::string IncarnationOf(const std::string& node) const;

  driver::Driver& d_;
  const Keys& keys_;
  const std::map<std::string, std::string>& incarnations_;
  const AttemptFence& fence_;
  std::vector<Saved> saved_;
  std::vector<uint32_t> dirty_;
  std::vector<uint32_t> ended_;  // written this turn with a succeeded/cancelled end
  // Ended jobs loaded from Redis (score, id), added to PREFIX:ended with the next turn (NX: kept
  // when there), so a Redis written before the index existed is swept too.
  std::vector<std::pair<std::string, std::string>> index_on_load_;
  std::vector<std::pair<uint32_t, std::string>> attempts_;  // encoded attempts to push this turn
  bool loading_ = false;
};

// The job view (driver/views.h) from its Redis hash, for `baton status` without a head.
Json JobJsonFromHash(const std::string& id, const Hash& h, const std::vector<std::string>& steps, bool detail,
                     const Json& attempts);

}  // namespace baton::cluster
