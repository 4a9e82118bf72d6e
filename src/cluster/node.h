// NodeAgent: runs attempts on one machine for the cluster head. It registers itself (resources,
// labels, GPUs, address, work folder, a fresh incarnation id) in PREFIX:nodes, heartbeats
// (PREFIX:hb), reads placements from its stream PREFIX:place:NAME (consumer group "node"), runs
// them with the same Step objects as the embedded runtime on worker threads, and reports each
// result to PREFIX:inbox before acknowledging its placement, so a result is never lost: a crash
// before the report leaves the attempt to the head's node-lost handling. It also serves its work
// folder's artifacts (cluster/artifacts.h) to steps on other nodes. When the head says a job
// ended (RemoveWork), its work folder is removed by a cleaner thread (driver/work_cleaner.h) once
// no attempt of the job runs here, unless `keep_work`.
//
// Run() blocks; RequestStop() may be called from any thread (a signal handler sets a flag).
#pragma once

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "baton/events.h"
#include "redis/redis.h"
#include "util/clock.h"

namespace baton::cluster {

struct NodeOptions {
  RedisUrl redis;
  std::string prefix = "baton";
  std::string name;                        // default: host name
  double cpus = 0;                         // 0: detected
  double gpus = 0;                         // logical GPUs (ids 0..gpus-1)
  double memory = 0;                       // 0: detected
  std::map<std::string, double> resources;
  std::map<std::string, std::string> labels;
  std::filesystem::path workdir = "baton-work";  // made absolute by the agent
  // Keep every job's work folder (WORKDIR/JOB/): RemoveWork from the head is acknowledged, not done.
  bool keep_work = false;
  std::string address;                     // HOST[:PORT] others use to reach this agent's artifacts
  std::string listen = "0.0.0.0";          // interface for the artifact server
  double heartbeat = 1.0;                  // seconds between heartbeats
  double drain_timeout = 30;               // on stop: how long running attempts may finish
  uint64_t max_artifact_bytes = 1ull << 30;
  LogFormat log_format = LogFormat::kText;
  FILE* log_stream = stderr;
  // Every interval the agent keeps (heartbeats, the drain deadline, retry pauses) and the times it
  // stamps; null: the real clock. A test's FakeClock moves them with Advance(); it must outlive
  // the agent and its attempts.
  const Clock* clock = nullptr;
  // Called on the Run thread once registered with the head's Redis (`baton node` tells systemd
  // READY=1 there).
  std::function<void()> on_ready;
};

class NodeAgent {
 public:
  explicit NodeAgent(NodeOptions options);
  ~NodeAgent();
  // Returns 0 after RequestStop (drained and deregistered), 2 when the artifact server cannot bind.
  int Run();
  // Drains: no new attempts; running ones may finish within drain_timeout, the rest are handed
  // back to the head (re-queued there without counting as failed tries); then Run returns.
  void RequestStop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Registers steps that only make sense in cluster mode:
//   fetch: {from: STEP, path: RELATIVE} copies an artifact of an earlier step to this node and
//          returns {path, bytes, sha256}.
void RegisterClusterSteps(StepRegistry& registry = StepRegistry::Global());

}  // namespace baton::cluster
