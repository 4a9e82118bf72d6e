// Scheduler: Baton's pure scheduling core (docs/design.md, "Scheduling policy").
//
// The core holds the state of nodes, pipelines and jobs and decides where ready steps run. It does
// no IO, starts no threads and reads no clock: `now` (seconds, any epoch) is always an argument,
// so every decision is deterministic and tests drive it with fake time. Drivers (the embedded
// runtime, the Redis head, the simulator) feed it events (Submit, Finish, AddNode, NodeLost,
// Cancel) and carry out the placements Decide returns.
//
// Policy, in the order Decide applies it:
//  1. Resources: a step is placed only where its demand fits the node's free resources (fixed-
//     point, so fractions add up exactly), with GPUs granted as device ids: a demand below 1 shares
//     one device, a whole number takes that many free devices. Pool resources are cluster-wide.
//  2. Order: step classes are visited from the last step to the first (jobs further along go
//     first); within a class, jobs in submission order.
//  3. Locality: a step with `same_node_as` runs only on the node that ran that earlier step. Its
//     chain's first step (the anchor) is placed only on nodes that could run every step bound to
//     it (total capacity and labels), so no job starts where it cannot finish.
//  4. Admission: an anchor step starts on a node only while that node's backlog (jobs whose
//     anchor ran there and whose first bound step has not started) is below prefetch x the number
//     of bound steps the node can run at once. Nodes therefore pull work at the pace of their own
//     bottleneck: a node with 2 GPUs takes about twice the jobs of a node with 1, and an idle GPU
//     elsewhere is never starved by a node hoarding inputs.
//  5. Labels: all of a step's labels must match the node's.
//  6. Failures: a failed or timed-out attempt is retried after an exponential backoff, preferring
//     another node; a lost node's attempts are re-run, and when a locality-bound step's input was
//     on the lost node the job goes back to the anchor step (lineage).
//  7. Pools: a pool resource is taken from the cluster-wide pool, whichever node runs the step.
//  Parked attempts (Park/Unpark) hold no resource and count against no admission backlog.
//  8. Resident workers: a worker step's demand is held by a worker (its grant, for its life), not
//     by each attempt; up to `worker_items` attempts of different jobs join one worker (the
//     emptiest live one with room; a new worker only when all are full), locality and admission
//     as above, admission counting a worker's items (prefetch x workers x worker_items). Idle
//     workers give their grant back after `worker_idle` seconds, at once on a draining node
//     (RetireIdleWorkers).
//
// Cost: each unbound step class keeps a NodeSet of the nodes that could take it now, refreshed
// when a node's free resources change; a placement is a FindNext from a rotating cursor, so it
// does not grow with the number of nodes. Locality-bound steps wait in per-node queues that are
// looked at only when that node changed.
//
// Not thread-safe: one driver thread owns a Scheduler.
#pragma once

#include <cstdint>
#include <limits>
#include <queue>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/node_set.h"
#include "core/resources.h"

namespace baton::core {

enum class Phase : uint8_t { kReady, kBackoff, kRunning, kSucceeded, kFailed, kCancelled };
enum class AttemptStatus : uint8_t { kOk, kFailed, kTimeout, kCancelled, kLost };

const char* PhaseName(Phase p);
const char* AttemptStatusName(AttemptStatus s);

inline constexpr double kNever = std::numeric_limits<double>::infinity();
inline constexpr uint32_t kNoWorker = std::numeric_limits<uint32_t>::max();

// One decision: start attempt `serial` of job `job`'s step `step` on `node`.
struct Placement {
  uint32_t job;
  uint32_t serial;        // identifies this attempt in Finish(); unique per job
  uint16_t step;
  uint16_t step_attempt;  // 1-based attempt number of this step (lost attempts count too)
  uint32_t node;
  uint64_t gpu_mask;      // granted GPU device ids as bits
  double deadline;        // kNever when the step has no timeout
  // A worker step's attempt joins resident worker `worker` (ids are never reused), whose grant
  // `gpu_mask` is; kNoWorker for an ordinary step.
  uint32_t worker = kNoWorker;
};

// A resident worker the core retired (idle past its step's worker_idle, or its node draining):
// its grant is free again; the driver stops its process.
struct WorkerRef {
  uint32_t worker;
  uint32_t node;
  uint32_t pipeline;
  uint16_t step;
};

// A running attempt, as returned by NodeLost, Cancel and Expired.
struct AttemptRef {
  uint32_t job;
  uint32_t serial;
  uint32_t node;
};

// What a Finish did to the job.
struct FinishResult {
  enum class Kind { kIgnored, kNextStepReady, kRetryScheduled, kRequeued, kSucceeded, kFailed, kCancelled };
  Kind kind = Kind::kIgnored;
  double retry_at = 0;       // kRetryScheduled; kRequeued after a node loss (its backoff)
  uint16_t node_losses = 0;  // kFailed because the step's node was lost that many times running it
};

class Scheduler {
 public:
  Scheduler();

  ResourceTable& resources() { return table_; }
  const ResourceTable& resources() const { return table_; }

  // Declares a cluster-wide pool of `capacity` (docs/design.md rule 7). REQUIRES: before any pipeline
  // or node uses `name` (checked by an assertion in debug builds).
  void SetPool(std::string_view name, double capacity);

  // Adds a pipeline. REQUIRES: same_node_as refers to an earlier step (the loader checks it).
  uint32_t AddPipeline(PipelineModel model);
  // Adds a node, or brings back a lost node of the same name (with fresh resources).
  uint32_t AddNode(NodeModel model);
  // A draining node takes no new placements (its running attempts go on); false undoes it. The
  // node's attempts that its agent hands back are then finished with AttemptStatus::kLost.
  void SetDraining(uint32_t node, bool draining);
  bool NodeDraining(uint32_t node) const { return nodes_[node].draining; }
  // Marks a node lost: its running attempts are returned (they are re-queued; the driver should
  // forget them), and jobs whose locality-bound input lived there go back to the anchor step.
  // A running attempt lost with its node counts as a node loss of its step (below): the job may
  // wait a backoff before it is ready again, or fails (phase kFailed) at the limit.
  std::vector<AttemptRef> NodeLost(uint32_t node, double now);
  // Node losses: an input that kills whatever runs it (a media file that crashes a decoder inside
  // the agent, a step that kills its parent) must not be placed on every node in turn forever.
  // Each loss of a running attempt with its node (NodeLost, or Finish with node_lost) counts for
  // its step; the job is re-queued at once after the first, after the step's backoff from the
  // second (doubling per loss, up to max_backoff), and at the `n`th loss of the same step
  // (default 3; 0: no limit) it fails. The
  // count survives going back to the anchor step (lineage) and ends when that step succeeds.
  void SetMaxNodeLosses(uint16_t n) { max_node_losses_ = n; }
  // The job's count and the step it counts for (a store persists them; RestoreNodeLosses).
  uint16_t NodeLosses(uint32_t job) const { return jobs_[job].losses; }
  uint16_t NodeLossStep(uint32_t job) const { return jobs_[job].lost_step; }
  void RestoreNodeLosses(uint32_t job, uint16_t step, uint16_t losses) {
    jobs_[job].lost_step = step;
    jobs_[job].losses = losses;
  }

  // Submits a job of `pipeline`; its first step is ready at once. Job ids are dense, in order.
  uint32_t Submit(uint32_t pipeline, double now);
  // A new job of `pipeline` in the place of `job`, an ended job (succeeded or cancelled) that its
  // backend has stored elsewhere and forgotten (a run whose memory follows the jobs in flight, not
  // every job). Its serial and ready token go on from the old job's, so a late report or a stale
  // queue entry of the old job never matches the new one. Returns false (and changes nothing)
  // when `job` has not ended so, or the pipelines differ in step count.
  bool Reuse(uint32_t job, uint32_t pipeline, double now);
  // Cancels a job. Returns its running attempt, if any, for the driver to stop; the job ends
  // when that attempt's Finish arrives (or at once when nothing runs).
  std::vector<AttemptRef> Cancel(uint32_t job);

  // Gives a failed job another go from the step that failed (its retry budget starts afresh).
  // Returns false when the job is not failed.
  bool Retry(uint32_t job, double now);

  // Restoring state after a driver restart (the cluster head rebuilds the core from Redis).
  //
  // Recreates a job at `step` whose earlier steps ran on `homes` (one entry per step, -1 when
  // unknown) and whose last handed-out serial was `serial` (new placements continue above it).
  // `phase` kReady (or kBackoff: ready now) queues the step, applying the same lineage rule as a
  // lost node: a bound step whose anchor's home is unknown or lost goes back to the anchor.
  // kSucceeded, kFailed and kCancelled record an ended job. Job ids stay dense, in call order,
  // shared with Submit. REQUIRES: homes.size() == the pipeline's step count.
  uint32_t RestoreJob(uint32_t pipeline, uint16_t step, const std::vector<int32_t>& homes, Phase phase,
                      uint32_t serial, double now);
  // Marks a restored ready job as running attempt `serial` (its `step_attempt`) on `node` with
  // the GPUs of `gpu_mask`, reserving its resources as a placement would. Returns false, leaving
  // the job ready, when the job is not ready, the node is lost, or the attempt no longer fits.
  bool RestoreRunning(uint32_t job, uint32_t node, uint32_t serial, uint16_t step_attempt, uint64_t gpu_mask,
                      double deadline);

  // Appends the placements possible now. Resources are reserved until Finish.
  void Decide(double now, std::vector<Placement>* out);
  // Records the end of an attempt. Stale reports (an attempt already lost or replaced) are ignored.
  // `node_lost` with kLost: the attempt went with its node's agent (a restart); it counts as a node
  // loss (SetMaxNodeLosses). A kLost without it (handed back by a draining node) counts nothing.
  FinishResult Finish(uint32_t job, uint32_t serial, AttemptStatus status, bool retryable, double now,
                      bool node_lost = false);
  // A running attempt waits outside the CPU (an llm step waiting for a rate, docs/design.md rule 1):
  // ReleaseCpu gives its node back the step's cpu demand so other steps can be placed there;
  // RetakeCpu takes it again when the wait is over. The retake never waits (the attempt is already
  // running and cannot be queued a second time): when others took the cpu meanwhile, the node is
  // over-committed for a moment and takes nothing new that needs cpu until enough ends. Every
  // other resource (memory, GPUs, pools) stays held. Both return false and change nothing when the
  // attempt is stale (not running, another serial) or already in that state; Finish, Cancel,
  // NodeLost and timeouts work the same on a released attempt (only what it holds is given back).
  bool ReleaseCpu(uint32_t job, uint32_t serial);
  bool RetakeCpu(uint32_t job, uint32_t serial);
  bool CpuReleased(uint32_t job) const { return jobs_[job].cpu_released; }
  // A running attempt is parked (docs/design.md "Parked attempts"): it handed its work to something
  // outside (an LLM batch) and waits without running. Park gives back everything it holds (cpu,
  // memory, GPUs, pools, custom resources) and takes its job out of its node's admission backlog,
  // so parked attempts count against neither resources nor prefetch; a parked attempt has no
  // deadline (Expired skips it). Unpark takes all of it back at once (over capacity if need be, as
  // RetakeCpu) when the attempt runs again. Finish, Cancel and NodeLost work on a parked attempt as
  // on a running one (giving back nothing). Both return false when stale or already so; a resident
  // worker's attempt cannot park.
  bool Park(uint32_t job, uint32_t serial);
  bool Unpark(uint32_t job, uint32_t serial);
  bool Parked(uint32_t job) const { return jobs_[job].parked; }

  // Running attempts whose deadline has passed (each reported once); the driver stops them and
  // reports Finish(kTimeout).
  void Expired(double now, std::vector<AttemptRef>* out);
  // Resident workers (StepModel::worker_items > 0). A worker starts when an attempt of its step is
  // placed on a node where no live worker of that step has room (fewer than worker_items attempts)
  // and the step's demand fits: it takes the demand (its grant: GPUs, cpu, pools) and keeps it
  // while it lives; attempts join a worker with room and hold nothing. A worker with no attempt
  // is retired (its grant freed) once idle for worker_idle seconds, or at once when its node
  // drains; RetireIdleWorkers appends those retired now for the driver to stop.
  void RetireIdleWorkers(double now, std::vector<WorkerRef>* out);
  struct WorkerView {
    uint32_t pipeline;
    uint16_t step;
    uint32_t node;
    uint64_t gpu_mask;
    uint16_t items;  // attempts in it now
    bool alive;
    double idle_since;  // when its last attempt ended (items == 0)
  };
  size_t worker_count() const { return workers_.size(); }
  const std::vector<uint32_t>& live_workers() const { return live_workers_; }
  WorkerView Worker(uint32_t id) const;
  // Earliest time at which Decide or Expired may have something new without any event: the next
  // retry backoff end or attempt deadline. kNever when none.
  double NextWakeup() const;

  // Why some step of the pipeline can run on no live node: one line naming the step, what it asks
  // and what the nodes offer; "" when every step could run somewhere.
  std::string UnrunnableStep(uint32_t pipeline) const;

  // Views.
  struct JobView {
    uint32_t pipeline;
    Phase phase;
    uint16_t step;
    uint16_t step_attempt;
    int32_t node;  // running node, else -1
    double ready_at;
  };
  JobView Job(uint32_t job) const;
  size_t job_count() const { return jobs_.size(); }
  size_t node_count() const { return nodes_.size(); }
  const NodeModel& NodeInfo(uint32_t node) const { return nodes_[node].model; }
  bool NodeAlive(uint32_t node) const { return nodes_[node].alive; }
  const ResourceVector& NodeFree(uint32_t node) const { return nodes_[node].free; }
  uint64_t NodeGpusBusy(uint32_t node) const;
  const PipelineModel& Pipeline(uint32_t p) const { return pipelines_[p].model; }
  int NodeIndex(std::string_view name) const;
  // Why a job is not running: "waiting for resources", "waiting for node X (same_node_as)", ...
  std::string WaitReason(uint32_t job, double now) const;
  // Node where `step` of `job` last succeeded, or -1.
  int32_t Home(uint32_t job, uint16_t step) const;

 private:
  struct PipelineState {
    PipelineModel model;
    std::vector<Demand> demand;       // per step
    std::vector<int> anchor;          // per step: root of its same_node_as chain (itself if none)
    std::vector<bool> is_anchor;      // some later step is bound to it
    int first_bound = -1;             // first step with same_node_as (admission), or -1
    int last_bound = -1;
    std::vector<uint32_t> class_of;   // per step: class index
  };
  struct NodeState {
    NodeModel model;
    bool alive = true;
    bool draining = false;
    ResourceVector total;
    ResourceVector free;
    std::vector<Amount> gpu_free;              // per device
    std::vector<int32_t> backlog;              // per pipeline
    std::vector<int32_t> admit_limit;          // per pipeline: prefetch x bound capacity
    std::vector<uint8_t> static_ok;            // per class: labels and totals allow it
    std::vector<std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<>>> bound_ready;  // per class
    std::vector<std::vector<uint32_t>> workers;  // per class: live resident workers
    bool dirty = false;
  };
  struct JobState {
    uint32_t pipeline;
    Phase phase;
    uint16_t step;
    uint16_t failures;      // failed attempts of the current step
    uint16_t step_attempt;  // attempts of the current step
    uint16_t losses = 0;     // node losses of step lost_step's running attempts (SetMaxNodeLosses)
    uint16_t lost_step = 0;
    uint32_t serial;
    uint32_t ready_token;
    int32_t node = -1;      // running on
    int32_t failed_node = -1;
    int32_t backlog_node = -1;
    uint64_t gpu_mask = 0;
    Amount gpu_amount = 0;  // GPU amount granted to the running attempt (required or preferred)
    double ready_at = 0;
    bool cancel_requested = false;
    bool cpu_released = false;  // the running attempt gave its cpu back (ReleaseCpu)
    bool parked = false;        // the running attempt holds nothing (Park)
    int32_t parked_backlog = -1;  // the backlog node it left when it parked
    uint32_t home_offset;   // into homes_
    uint32_t worker = kNoWorker;  // the resident worker the running attempt joined
  };
  struct WorkerState {
    uint32_t pipeline;
    uint16_t step;
    uint32_t node;
    uint32_t cls;
    uint64_t gpu_mask = 0;
    Amount gpu_amount = 0;
    uint16_t items = 0;
    bool alive = true;
    double idle_since = 0;
  };
  struct Class {
    uint32_t pipeline;
    uint16_t step;
    bool bound;
    NodeSet candidates;  // unbound classes only
    uint32_t cursor = 0;
    std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<>> ready;  // (job << 32 | token)
  };
  struct Timed {
    double at;
    uint32_t job;
    uint32_t serial;
    bool operator>(const Timed& o) const { return at > o.at; }
  };

  bool Fits(const NodeState& n, const Demand& d) const;
  bool PoolFits(const Demand& d) const;
  bool CanTake(uint32_t node, uint32_t cls) const;
  void Refresh(uint32_t node);
  void MarkDirty(uint32_t node);
  static JobState FreshJob(uint32_t pipeline, uint32_t home_offset);  // Submit and Reuse
  void MakeReady(uint32_t job, double now);
  void Place(uint32_t job, uint32_t node, uint32_t cls, double now, std::vector<Placement>* out);
  void Release(JobState& j, double now);
  uint32_t RoomyWorker(uint32_t node, uint32_t cls) const;  // a live worker with room, or kNoWorker
  uint32_t StartWorker(uint32_t node, uint32_t cls, double now);
  void Charge(NodeState& n, const Demand& d);  // takes d's node (not GPU) and pool entries
  void Uncharge(NodeState& n, const Demand& d, bool cpu_released);
  void RetireWorker(uint32_t worker);
  bool IsWorkerClass(uint32_t cls) const;
  void LeaveBacklog(JobState& j);
  void BackFromPark(JobState& j);  // the backlog a parked attempt left, taken again
  void UpdateBacklogOnStart(JobState& j, uint32_t node);
  void ResetToAnchor(JobState& j, uint32_t job, double now);
  void ToAnchor(JobState& j);  // ResetToAnchor without queuing the job
  bool NodeLoss(uint32_t job, bool to_anchor, double now, double* ready_at);
  void RecomputeStatic(uint32_t node);
  void TryPlaceBound(uint32_t node, uint32_t cls, double now, std::vector<Placement>* out);
  uint64_t GrantGpus(NodeState& n, Amount demand);
  std::string DescribeDemandGap(const PipelineState& p, int step) const;

  ResourceTable table_;
  ResourceVector pool_total_;
  ResourceVector pool_free_;
  std::vector<PipelineState> pipelines_;
  std::vector<NodeState> nodes_;
  std::vector<JobState> jobs_;
  std::vector<int32_t> homes_;
  std::vector<WorkerState> workers_;    // every worker ever started (ids never reused)
  std::vector<uint32_t> live_workers_;  // ids of the live ones
  std::vector<Class> classes_;
  std::vector<uint32_t> class_order_;  // classes by step index descending
  std::vector<uint32_t> dirty_;
  std::priority_queue<Timed, std::vector<Timed>, std::greater<>> backoff_;
  uint16_t max_node_losses_ = 3;  // SetMaxNodeLosses
  std::priority_queue<Timed, std::vector<Timed>, std::greater<>> deadlines_;
};

}  // namespace baton::core
