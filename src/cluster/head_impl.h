// Head::Impl: the cluster head's state, shared by head.cc (load, inbox, turn, loop) and
// head_cleanup.cc (retention, agents' work folders). Private to src/cluster.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cluster/fence.h"
#include "cluster/head.h"
#include "cluster/keys.h"
#include "cluster/leader.h"
#include "cluster/liveness.h"
#include "cluster/protocol.h"
#include "cluster/redis_store.h"
#include "driver/driver.h"
#include "driver/output.h"

namespace baton::cluster {

constexpr size_t kInboxBatch = 4096;  // inbox entries read per turn

// The head's transport (driver/transport.h): RunAttempt / StopAttempt messages on each node's
// placement stream, written with the turn (FlushTurn).
struct Head::Impl : driver::Transport {
  HeadOptions opts;
  Keys keys;
  const Clock& clock;
  std::vector<std::shared_ptr<EventSink>> sinks;
  std::shared_ptr<LogSink> log;
  std::atomic<bool> stop{false};

  mutable std::mutex mu;  // guards the driver and requests against Snapshot()/JobDetail()/requests
  std::unique_ptr<driver::Driver> driver;
  std::unique_ptr<RedisJobStore> store;
  std::vector<std::string> cancel_requests, retry_requests;
  NodeLiveness liveness;
  std::map<std::string, std::string> incarnation;  // node name -> incarnation placements go to
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
  bool check_nodes_now = false;  // an agent announced itself: look at the registrations this turn
  LeaderLock lock;

  explicit Impl(HeadOptions o)
      : opts(std::move(o)), keys(opts.prefix), clock(opts.clock ? *opts.clock : Clock::Real()),
        liveness(opts.heartbeat_timeout), lock(keys.head(), opts.heartbeat_timeout, clock) {}

  double Now() const { return clock.Monotonic() - mono_base + epoch_offset; }
  void Say(const std::string& s) const {
    if (log) log->Line("baton head: " + s);
  }

  bool Load();
  void CheckNodes(bool reconcile = true);
  void OnInbox(const std::string& entry_id, std::string_view text);
  void OnResults(const protocol::AttemptResults& m, double now);
  void Reconcile(const std::map<std::string, Json>& registrations, double now);
  void OnSubmit(const protocol::SubmitJobs& m, double now);
  void Start(const core::Placement& p, double now) override;
  void Stop(const core::AttemptRef& ref) override;
  void RemoveWork(uint32_t job);
  std::map<int, std::vector<std::string>> removals;  // node -> jobs whose folders go this turn
  std::vector<int8_t> makes_work;  // per pipeline: 1 when a step makes a work folder, -1 unknown yet
  bool MakesWork(uint32_t pipeline);
  bool ReadInbox(bool pending, long block_ms, size_t* got);
  void ApplyRequests(double now);
  void SweepRetention(double now);
  bool FlushTurn(double now);
  void Serve();
  int Loop();
};

}  // namespace baton::cluster
