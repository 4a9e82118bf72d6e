// Head::Impl: the cluster head's state, shared by head.cc (load, inbox, turn, loop) and
// head_cleanup.cc (retention, agents' work folders). Private to src/cluster.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "baton/thread_annotations.h"
#include "cluster/fence.h"
#include "cluster/head.h"
#include "cluster/keys.h"
#include "cluster/leader.h"
#include "cluster/liveness.h"
#include "cluster/protocol.h"
#include "cluster/redis_store.h"
#include "driver/driver.h"
#include "driver/output.h"
#include "driver/requests.h"

namespace baton::cluster {

constexpr size_t kInboxBatch = 4096;  // inbox entries read per turn
constexpr size_t kAdmitChunk = 1000;  // submitted jobs read (HGETALL) per pipelined batch; the lease is renewed between
constexpr size_t kPageSlice = 4096;   // jobs a filtered JobsPage scans per hold of the head's lock

// The head's transport (driver/transport.h): RunAttempt / StopAttempt messages on each node's
// placement stream, written with the turn (FlushTurn).
struct Head::Impl : driver::Transport {
  HeadOptions opts;
  Keys keys;
  const Clock& clock;
  std::vector<std::shared_ptr<EventSink>> sinks;
  std::shared_ptr<LogSink> log;
  std::atomic<bool> stop{false};

  // Guards the driver, its store and the requests: the loop thread holds it for a turn; Snapshot(),
  // JobsPage() (a page at a time), JobDetail(), CancelJob() and RetryJob() take it from other
  // threads, after the loop when it waits for it (loop_waiting); Overview() never does. The loop's steps say so
  // with REQUIRES(mu) (checked by Clang's -Wthread-safety, include/baton/thread_annotations.h).
  mutable Mutex mu;
  std::unique_ptr<driver::Driver> driver GUARDED_BY(mu);
  std::unique_ptr<RedisJobStore> store GUARDED_BY(mu);
  driver::Requests requests;  // cancel and retry from the dashboard and `baton cancel`
  NodeLiveness liveness;
  std::map<std::string, std::string> incarnation;  // node name -> incarnation placements go to
  std::map<std::string, Json> agent_workers GUARDED_BY(mu);  // node name -> its registration's "workers"
  AttemptFence fence;                              // which results count; reconciliation
  // Driver time: seconds since the cluster's epoch, advanced by the monotonic clock.
  double epoch = 0, mono_base = 0, epoch_offset = 0;

  // One turn's transport writes.
  Redis db;
  struct Outgoing {
    std::string node, message;
    int64_t job = -1;  // a RunAttempt's job (its entry id goes to the fence)
  };
  std::vector<Outgoing> outgoing;
  std::vector<std::string> acks;
  std::vector<std::vector<std::string>> expiring;  // retention deletes of this turn
  double next_sweep = 0;                            // monotonic
  std::string nodes_view_written;
  bool refused_pause = false;    // Redis refused the last turn: pause before reloading
  bool check_nodes_now = false;  // an agent announced itself: look at the registrations this turn
  LeaderLock lock;
  // Set when a renewal inside a turn found the lease lost: the turn stops, writes nothing, and the
  // head reloads (Serve returns).
  bool lease_lost = false;
  size_t admit_left = 0;  // submitted jobs this turn may still admit (HeadOptions::turn_jobs)
  size_t admitted = 0;    // submitted jobs this turn admitted
  // The SubmitJobs entry a turn admitted in part (its budget spent), and how far into its job
  // list: the next turn goes on from there (a job refused stays behind, never asked again).
  std::string partial_entry;
  size_t partial_done = 0;
  // The loop's counters (Head::GetCounters).
  std::atomic<uint64_t> turns{0}, most_renewals{0}, renewals{0}, published_count{0};
  std::atomic<size_t> most_admitted{0};
  // A caller that is about to wait for `mu` (JobsPage, CancelJob...) lets the loop go first.
  std::atomic<int> loop_waiting{0};
  std::atomic<uint64_t> generation{0};  // bumped by each Load: job indices of an older driver mean nothing

  // The published overview (Head::Overview): built by the loop after a committed turn, read by
  // any thread without `mu`. `view_mu` is held only to swap or copy the pointer.
  mutable Mutex view_mu;
  mutable CondVar view_cv;
  std::shared_ptr<const Json> published GUARDED_BY(view_mu);
  uint64_t published_events GUARDED_BY(view_mu) = 0;  // events_seen when it was built
  double published_at GUARDED_BY(view_mu) = 0;        // the head's monotonic time it was built
  std::atomic<uint64_t> events_seen{0};  // events the driver emitted (counted before any other sink sees them)
  mutable std::atomic<double> overview_asked{-1};  // the head's monotonic time of the last Overview(); -1 never
  double last_publish = -1;                        // monotonic, loop thread

  explicit Impl(HeadOptions o)
      : opts(std::move(o)), keys(opts.prefix), clock(opts.clock ? *opts.clock : Clock::Real()),
        liveness(opts.heartbeat_timeout), lock(keys.head(), opts.heartbeat_timeout, clock) {}

  double Now() const { return clock.Monotonic() - mono_base + epoch_offset; }
  void Say(const std::string& s) const {
    if (log) log->Line("baton head: " + s);
  }

  Status Load() REQUIRES(mu);
  void CheckNodes(bool reconcile = true) REQUIRES(mu);
  // Applies one inbox entry; false when it was not applied whole (its jobs exceed this turn's
  // budget, or the lease was lost): it is not acknowledged, and the turn applies no later entry.
  bool OnInbox(const std::string& entry_id, std::string_view text) REQUIRES(mu);
  void OnResults(const protocol::AttemptResults& m, double now) REQUIRES(mu);
  void Reconcile(const std::map<std::string, Json>& registrations, double now) REQUIRES(mu);
  // Admits the entry's jobs not yet known, up to admit_left; false when some were left for a
  // later turn (budget spent) or the lease was lost.
  bool OnSubmit(const std::string& entry_id, const protocol::SubmitJobs& m, double now) REQUIRES(mu);
  // Renews the lease when due, between chunks of a turn's work (never inside a pipelined batch).
  // False when it was lost: the turn stops and writes nothing.
  bool KeepLease();
  void PublishOverview() REQUIRES(mu) EXCLUDES(view_mu);
  // Takes `mu` for a caller other than the loop, after the loop if it is waiting for it.
  static void YieldToLoop(const std::atomic<int>& waiting);
  void Start(const core::Placement& p, double now) override REQUIRES(mu);
  void Stop(const core::AttemptRef& ref) override REQUIRES(mu);
  void StopWorker(const core::WorkerRef& w) override REQUIRES(mu);
  void RemoveWork(uint32_t job) REQUIRES(mu);
  std::map<int, std::vector<std::string>> removals;  // node -> jobs whose folders go this turn
  std::vector<int8_t> makes_work;  // per pipeline: 1 when a step makes a work folder, -1 unknown yet
  bool MakesWork(uint32_t pipeline) REQUIRES(mu);
  // Reads up to `count` inbox entries and applies them. `*applied` < `*got`: the rest were left for
  // the next turn (they stay in this consumer's pending list). False on a Redis error or a lost
  // lease.
  bool ReadInbox(bool pending, size_t count, long block_ms, size_t* got, size_t* applied) EXCLUDES(mu);
  void ApplyRequests(double now) REQUIRES(mu);
  void SweepRetention(double now) REQUIRES(mu);
  // What the head forgets besides jobs (head_cleanup.cc): each sweep, pipelines no job in Redis
  // refers to any more, then finished jobs past --retain, then the keys of agents dead past
  // --forget-nodes. Sets next_sweep.
  void Sweep() REQUIRES(mu);
  void SweepPipelines() REQUIRES(mu);
  void SweepDeadNodes() REQUIRES(mu);
  std::string swept_term;                    // fence.term() the two below belong to (Load resets)
  std::vector<bool> forgotten;               // per driver job: removed from Redis by retention
  std::map<std::string, double> dead_since;  // node name -> monotonic time first seen dead
  bool FlushTurn(double now) REQUIRES(mu);
  void Serve() EXCLUDES(mu);
  void WarnIfRedisEvicts();
  int Loop() EXCLUDES(mu);
};

}  // namespace baton::cluster
