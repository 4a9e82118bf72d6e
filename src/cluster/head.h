// Head: the cluster's scheduler. It runs the same pure scheduling core as the embedded runtime
// (core::Scheduler) over the cluster state kept in Redis, consumes node results, submits and
// cancels from the PREFIX:inbox stream (consumer group "head"), and sends placements to each
// node's PREFIX:place:NODE stream. Every transition of one loop turn (job hashes, attempt
// records, placements, acknowledgements) is written in one script that runs only while this head
// holds the lease (fencing), so a head killed at any moment leaves Redis at a turn boundary and a
// head that stalled past its lease writes nothing: a restarted head rebuilds the core from Redis
// (Scheduler::RestoreJob/RestoreRunning) and reads the unacknowledged results again. A Redis
// error also makes the head reconnect and rebuild. One head leads per prefix (PREFIX:head lease);
// others wait as standbys.
//
// A turn is bounded (HeadOptions::turn_jobs submitted jobs at most; the rest of the inbox waits,
// unacknowledged, for the next turns) and the lease is renewed inside it between chunks of work
// that scale with jobs, so a large submission cannot make the head lose its lease mid-turn.
//
// Run() blocks on the calling thread; RequestStop(), CancelJob(), RetryJob(), Snapshot(),
// Overview(), JobsPage() and JobDetail() may be called from any thread. AddSink before Run. Sinks
// get events on the Run thread, with real node names.
#pragma once

#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "baton/events.h"
#include "baton/report.h"
#include "redis/redis.h"
#include "util/clock.h"

namespace baton::cluster {

struct HeadOptions {
  RedisUrl redis;
  std::string prefix = "baton";
  double heartbeat_timeout = 5.0;  // a node silent this long is lost
  // A step whose node was lost this many times while running it fails (0: never), so an input
  // that kills its agent is not placed on every node in turn (core::Scheduler::SetMaxNodeLosses).
  int max_node_losses = 3;
  // An attempt told to stop (cancelled, timed out) that its agent has not reported stopped this
  // long after is given up on, as the embedded runtime does (RunOptions::cancel_grace): the job is
  // cancelled, or the timeout counts; a late result is ignored. kNever: wait for the agent.
  double cancel_grace = 10;
  // Finished jobs leave Redis this long after they ended (0: kept forever), first appended as
  // JSON lines (the job detail of `baton status JOB --json`) to `export_file` when set.
  double retain = 7 * 86400.0;
  std::string export_file;
  // An agent dead this long (no heartbeat, or left) has its keys removed from Redis (its P:nodes
  // and P:hb entries, its placement stream P:place:NODE) once no live job's attempt or artifact
  // points at it (0: kept forever). The agent, back later, registers afresh (head_cleanup.cc).
  double forget_nodes = 86400.0;
  // When a job ends, its nodes remove its work folder (WORKDIR/JOB/): succeeded or cancelled at
  // once, failed when retention forgets it. `keep_work` (`baton head --keep-work`) tells none.
  bool keep_work = false;
  LogFormat log_format = LogFormat::kText;
  FILE* log_stream = stderr;
  // Submitted jobs one turn admits at most: the inbox entries past it stay unacknowledged and are
  // read again on the next turns (one SubmitJobs entry larger than this is admitted in slices).
  // Bounds a turn's work and its fenced write, so a million-job submission does not stall the
  // head for longer than its lease.
  size_t turn_jobs = 20000;
  const Clock* clock = nullptr;    // null: the real clock (tests pass a FakeClock)
  // Called on the Run thread each time the head is up: lock held and state loaded from Redis
  // (again after a reconnect). `baton head` tells systemd (sd_notify READY=1) there.
  std::function<void()> on_ready;
};

class Head {
 public:
  explicit Head(HeadOptions options);
  ~Head();
  Head(const Head&) = delete;
  Head& operator=(const Head&) = delete;

  void AddSink(std::shared_ptr<EventSink> sink);
  // Runs until RequestStop(). Returns 0, or 2 with a message on stderr when Redis never answered.
  int Run();
  void RequestStop();

  bool CancelJob(const std::string& job_id);
  bool RetryJob(const std::string& job_id);
  // Same shapes as baton::Runtime::Snapshot() and JobDetail(). Snapshot() builds a JSON object
  // per job under the head's lock: for small clusters and tests; views of a large cluster use
  // Overview() and JobsPage().
  Json Snapshot() const;
  Json JobDetail(const std::string& job_id) const;
  // Same shapes as baton::Runtime::Overview() and JobsPage(). Overview() never takes the head's
  // lock: the loop publishes an immutable overview after a committed turn (at most 4 times a
  // second of the head's clock, only while someone asked in the last minute); a call that
  // knows of events the published one predates waits (up to 1 s) for the next. JobsPage() holds
  // the lock for one page's worth of jobs at a time (a filtered page scans in slices, letting the
  // loop in between), never for a JSON object per job of the whole cluster.
  Json Overview() const;
  Json JobsPage(const JobsQuery& query) const;

  // What the loop did, for tests and diagnostics.
  struct Counters {
    uint64_t turns = 0;                   // committed turns
    uint64_t lease_renewals = 0;          // renewals of the lease, in and between turns
    uint64_t most_renewals_in_a_turn = 0;
    size_t most_admitted_in_a_turn = 0;   // submitted jobs one turn admitted, at most
    uint64_t overviews_published = 0;
  };
  Counters GetCounters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace baton::cluster
