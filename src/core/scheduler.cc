// The scheduling core's implementation. Over 500 lines on purpose: Decide, Finish, the
// restore path and the node sets share private state (queues, backlogs, dirty nodes) whose
// invariants are easiest to keep in one file; scheduler.h describes the policy in order.
#include "core/scheduler.h"

#include <algorithm>
#include <cassert>
#include <cstdio>

namespace baton::core {

namespace {

constexpr int32_t kUnlimited = 1 << 30;

uint64_t Key(uint32_t job, uint32_t token) { return (uint64_t{job} << 32) | token; }

bool LabelsMatch(const Labels& want, const Labels& have) {
  for (const auto& [k, v] : want) {
    bool found = false;
    for (const auto& [hk, hv] : have) {
      if (hk == k && hv == v) {
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  return true;
}

// Whole-device count and the largest fraction of one device a demand needs.
bool GpuTotalsAllow(Amount devices, Amount demand) {
  if (demand == 0) return true;
  if (demand < kUnit) return devices >= kUnit;
  return devices >= demand;
}

}  // namespace

const char* PhaseName(Phase p) {
  switch (p) {
    case Phase::kReady: return "ready";
    case Phase::kBackoff: return "backoff";
    case Phase::kRunning: return "running";
    case Phase::kSucceeded: return "succeeded";
    case Phase::kFailed: return "failed";
    case Phase::kCancelled: return "cancelled";
  }
  return "?";
}

const char* AttemptStatusName(AttemptStatus s) {
  switch (s) {
    case AttemptStatus::kOk: return "ok";
    case AttemptStatus::kFailed: return "failed";
    case AttemptStatus::kTimeout: return "timeout";
    case AttemptStatus::kCancelled: return "cancelled";
    case AttemptStatus::kLost: return "lost";
  }
  return "?";
}

Scheduler::Scheduler() = default;

void Scheduler::SetPool(std::string_view name, double capacity) {
  // REQUIRES (scheduler.h): no pipeline or node uses `name` as a per-node resource already.
  assert((table_.Find(name) < 0 || table_.IsPool(table_.Find(name))) && "SetPool on a resource already used per node");
  ResourceId id = table_.Intern(name);
  table_.SetPool(id, true);
  pool_total_.Set(id, ToAmount(capacity));
  pool_free_.Set(id, ToAmount(capacity));
}

uint32_t Scheduler::AddPipeline(PipelineModel model) {
  const auto pid = static_cast<uint32_t>(pipelines_.size());
  PipelineState p;
  const int n = static_cast<int>(model.steps.size());
  for (int i = 0; i < n; ++i)
    assert(model.steps[i].same_node_as < i && "REQUIRES: same_node_as refers to an earlier step");
  p.anchor.resize(n);
  p.is_anchor.assign(n, false);
  for (int s = 0; s < n; ++s) {
    p.demand.push_back(Demand::From(model.steps[s].demand, table_));
    int a = s;
    while (model.steps[a].same_node_as >= 0 && model.steps[a].same_node_as < a) a = model.steps[a].same_node_as;
    p.anchor[s] = a;
    if (a != s) {
      p.is_anchor[a] = true;
      if (p.first_bound < 0) p.first_bound = s;
      p.last_bound = s;
    }
    Class c;
    c.pipeline = pid;
    c.step = static_cast<uint16_t>(s);
    c.bound = a != s;
    c.candidates.Resize(std::max<uint32_t>(64, static_cast<uint32_t>(nodes_.size())));
    p.class_of.push_back(static_cast<uint32_t>(classes_.size()));
    classes_.push_back(std::move(c));
  }
  p.model = std::move(model);
  pipelines_.push_back(std::move(p));

  class_order_.resize(classes_.size());
  for (uint32_t i = 0; i < classes_.size(); ++i) class_order_[i] = i;
  std::stable_sort(class_order_.begin(), class_order_.end(), [&](uint32_t a, uint32_t b) {
    if (classes_[a].step != classes_[b].step) return classes_[a].step > classes_[b].step;
    return classes_[a].pipeline < classes_[b].pipeline;
  });

  for (uint32_t i = 0; i < nodes_.size(); ++i) {
    nodes_[i].backlog.push_back(0);
    nodes_[i].admit_limit.push_back(0);
    RecomputeStatic(i);
    Refresh(i);
  }
  return pid;
}

void Scheduler::RecomputeStatic(uint32_t node) {
  NodeState& n = nodes_[node];
  n.static_ok.resize(classes_.size(), 0);
  n.bound_ready.resize(classes_.size());
  n.workers.resize(classes_.size());
  n.backlog.resize(pipelines_.size(), 0);
  n.admit_limit.resize(pipelines_.size(), 0);
  auto step_ok = [&](const PipelineState& p, int s) {
    const Demand& d = p.demand[s];
    if (!LabelsMatch(p.model.steps[s].labels, n.model.labels)) return false;
    for (const auto& e : d.node_entries)
      if (n.total.Get(e.id) < e.amount) return false;
    for (const auto& e : d.pool_entries)
      if (pool_total_.Get(e.id) < e.amount) return false;
    return GpuTotalsAllow(n.total.Get(kGpu), d.gpu);
  };
  for (uint32_t cls = 0; cls < classes_.size(); ++cls) {
    const Class& c = classes_[cls];
    const PipelineState& p = pipelines_[c.pipeline];
    bool ok = n.alive && step_ok(p, c.step);
    if (ok && p.is_anchor[c.step]) {
      for (int t = c.step + 1; t < static_cast<int>(p.anchor.size()) && ok; ++t)
        if (p.anchor[t] == c.step) ok = step_ok(p, t);
    }
    n.static_ok[cls] = ok;
  }
  for (uint32_t pid = 0; pid < pipelines_.size(); ++pid) {
    const PipelineState& p = pipelines_[pid];
    if (p.first_bound < 0) {
      n.admit_limit[pid] = kUnlimited;
      continue;
    }
    const Demand& d = p.demand[p.first_bound];
    int64_t cap = kUnlimited;
    for (const auto& e : d.node_entries) cap = std::min<int64_t>(cap, n.total.Get(e.id) / e.amount);
    if (d.gpu > 0) {
      const int64_t devices = n.total.Get(kGpu) / kUnit;
      cap = std::min<int64_t>(cap, d.gpu < kUnit ? devices * (kUnit / d.gpu) : n.total.Get(kGpu) / d.gpu);
    }
    // A resident worker takes up to worker_items attempts at once: prefetch enough to fill it.
    cap *= std::max(1, p.model.steps[p.first_bound].worker_items);
    n.admit_limit[pid] = static_cast<int32_t>(std::min<int64_t>(kUnlimited, cap * std::max(1, p.model.prefetch)));
  }
}

uint32_t Scheduler::AddNode(NodeModel model) {
  int existing = NodeIndex(model.name);
  uint32_t idx;
  if (existing >= 0) {
    idx = static_cast<uint32_t>(existing);
  } else {
    idx = static_cast<uint32_t>(nodes_.size());
    nodes_.emplace_back();
    for (auto& c : classes_)
      if (c.candidates.capacity() <= idx) c.candidates.Resize(std::max<uint32_t>(64, 2 * c.candidates.capacity()));
  }
  NodeState& n = nodes_[idx];
  n.alive = true;
  n.draining = false;  // a node that joins again (a new agent under the name) takes work
  n.total = ResourceVector(table_.size());
  for (ResourceId id : model.total.NonZero())
    if (!table_.IsPool(id)) n.total.Set(id, model.total.Get(id));
  n.free = n.total;
  n.gpu_free.assign(static_cast<size_t>(n.total.Get(kGpu) / kUnit), kUnit);
  n.model = std::move(model);
  std::fill(n.backlog.begin(), n.backlog.end(), 0);
  RecomputeStatic(idx);
  Refresh(idx);
  MarkDirty(idx);
  return idx;
}

int Scheduler::NodeIndex(std::string_view name) const {
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].model.name == name) return static_cast<int>(i);
  return -1;
}

bool Scheduler::Fits(const NodeState& n, const Demand& d) const {
  for (const auto& e : d.node_entries)
    if (n.free.Get(e.id) < e.amount) return false;
  if (d.gpu == 0) return true;
  if (d.gpu < kUnit) {
    for (Amount f : n.gpu_free)
      if (f >= d.gpu) return true;
    return false;
  }
  Amount whole = 0;
  for (Amount f : n.gpu_free)
    if (f == kUnit) whole += kUnit;
  return whole >= d.gpu;
}

bool Scheduler::PoolFits(const Demand& d) const {
  for (const auto& e : d.pool_entries)
    if (pool_free_.Get(e.id) < e.amount) return false;
  return true;
}

bool Scheduler::CanTake(uint32_t node, uint32_t cls) const {
  const NodeState& n = nodes_[node];
  if (!n.alive || n.draining || !n.static_ok[cls]) return false;
  const Class& c = classes_[cls];
  const PipelineState& p = pipelines_[c.pipeline];
  if (!Fits(n, p.demand[c.step]) && RoomyWorker(node, cls) == kNoWorker) return false;
  if (p.first_bound >= 0 && c.step == p.anchor[p.first_bound])
    return n.backlog[c.pipeline] < n.admit_limit[c.pipeline];
  return true;
}

void Scheduler::Refresh(uint32_t node) {
  for (uint32_t cls = 0; cls < classes_.size(); ++cls)
    if (!classes_[cls].bound) classes_[cls].candidates.Set(node, CanTake(node, cls));
}

void Scheduler::SetDraining(uint32_t node, bool draining) {
  NodeState& n = nodes_[node];
  if (n.draining == draining) return;
  n.draining = draining;
  Refresh(node);
  MarkDirty(node);
}

void Scheduler::MarkDirty(uint32_t node) {
  if (!nodes_[node].dirty) {
    nodes_[node].dirty = true;
    dirty_.push_back(node);
  }
}

// A job of `pipeline` at its first step, placed nowhere, its homes from `home_offset`.
Scheduler::JobState Scheduler::FreshJob(uint32_t pipeline, uint32_t home_offset) {
  JobState j{};
  j.pipeline = pipeline;
  j.phase = Phase::kReady;
  j.node = -1;
  j.failed_node = -1;
  j.backlog_node = -1;
  j.home_offset = home_offset;
  return j;
}

uint32_t Scheduler::Submit(uint32_t pipeline, double now) {
  const auto id = static_cast<uint32_t>(jobs_.size());
  jobs_.push_back(FreshJob(pipeline, static_cast<uint32_t>(homes_.size())));
  homes_.resize(homes_.size() + pipelines_[pipeline].model.steps.size(), -1);
  MakeReady(id, now);
  return id;
}

bool Scheduler::Reuse(uint32_t job, uint32_t pipeline, double now) {
  if (job >= jobs_.size()) return false;
  JobState& j = jobs_[job];
  const size_t steps = pipelines_[pipeline].model.steps.size();
  if ((j.phase != Phase::kSucceeded && j.phase != Phase::kCancelled) ||
      pipelines_[j.pipeline].model.steps.size() != steps)
    return false;
  LeaveBacklog(j);
  JobState fresh = FreshJob(pipeline, j.home_offset);
  fresh.serial = j.serial;            // serials and ready tokens go on: late messages of the
  fresh.ready_token = j.ready_token;  // place's earlier job are told apart
  j = fresh;
  std::fill_n(homes_.begin() + j.home_offset, steps, -1);
  MakeReady(job, now);
  return true;
}

void Scheduler::MakeReady(uint32_t job, double now) {
  JobState& j = jobs_[job];
  const PipelineState& p = pipelines_[j.pipeline];
  j.phase = Phase::kReady;
  j.ready_at = now;
  ++j.ready_token;
  const uint32_t cls = p.class_of[j.step];
  if (classes_[cls].bound) {
    const int32_t home = homes_[j.home_offset + p.anchor[j.step]];
    if (home < 0 || !nodes_[home].alive) {
      ResetToAnchor(j, job, now);
      return;
    }
    nodes_[home].bound_ready[cls].push(Key(job, j.ready_token));
    MarkDirty(static_cast<uint32_t>(home));
  } else {
    classes_[cls].ready.push(Key(job, j.ready_token));
  }
}

void Scheduler::ResetToAnchor(JobState& j, uint32_t job, double now) {
  ToAnchor(j);
  MakeReady(job, now);
}

void Scheduler::ToAnchor(JobState& j) {
  const PipelineState& p = pipelines_[j.pipeline];
  const int a = p.anchor[j.step];
  for (size_t s = a; s < p.anchor.size(); ++s) homes_[j.home_offset + s] = -1;
  j.step = static_cast<uint16_t>(a);
  j.failures = 0;
  j.step_attempt = 0;
  LeaveBacklog(j);
}

// The running attempt of `job` (released already) went with its node. Counts the loss for the
// step it ran; at the limit the job fails (true), else (from the second loss) it waits the step's
// backoff, doubled per loss, before it is ready again (MakeReady then applies lineage; `to_anchor`: the step's input
// went with the node, the job goes back to its anchor step now).
bool Scheduler::NodeLoss(uint32_t job, bool to_anchor, double now, double* ready_at) {
  JobState& j = jobs_[job];
  if (j.losses == 0 || j.lost_step != j.step) {
    j.lost_step = j.step;
    j.losses = 0;
  }
  if (j.losses < UINT16_MAX) ++j.losses;
  if (max_node_losses_ > 0 && j.losses >= max_node_losses_) {
    j.phase = Phase::kFailed;
    LeaveBacklog(j);
    return true;
  }
  const StepModel& step = pipelines_[j.pipeline].model.steps[j.step];
  if (to_anchor) ToAnchor(j);
  // The first loss re-queues at once (a machine that died is no reason to wait); from the second
  // on, the step's backoff, doubling.
  double delay = j.losses <= 1 ? 0 : step.backoff;
  for (int i = 2; i < j.losses && delay < step.max_backoff; ++i) delay *= 2;
  delay = std::min(delay, step.max_backoff);
  *ready_at = now + delay;
  if (delay <= 0) {
    MakeReady(job, now);
    return false;
  }
  j.phase = Phase::kBackoff;
  j.ready_at = now + delay;
  backoff_.push({j.ready_at, job, j.serial});
  return false;
}

void Scheduler::LeaveBacklog(JobState& j) {
  if (j.backlog_node >= 0) {
    NodeState& n = nodes_[j.backlog_node];
    --n.backlog[j.pipeline];
    const int32_t node = j.backlog_node;
    j.backlog_node = -1;
    if (n.alive) Refresh(static_cast<uint32_t>(node));
  }
}

uint64_t Scheduler::GrantGpus(NodeState& n, Amount demand) {
  if (demand == 0) return 0;
  n.free.Add(kGpu, -demand);
  if (demand < kUnit) {
    // Best fit: the busiest device that still has room, so whole devices stay free for others.
    size_t best = n.gpu_free.size();
    for (size_t i = 0; i < n.gpu_free.size(); ++i)
      if (n.gpu_free[i] >= demand && (best == n.gpu_free.size() || n.gpu_free[i] < n.gpu_free[best])) best = i;
    n.gpu_free[best] -= demand;
    return uint64_t{1} << best;
  }
  uint64_t mask = 0;
  Amount need = demand;
  for (size_t i = 0; i < n.gpu_free.size() && need > 0; ++i) {
    if (n.gpu_free[i] == kUnit) {
      n.gpu_free[i] = 0;
      mask |= uint64_t{1} << i;
      need -= kUnit;
    }
  }
  return mask;
}

void Scheduler::Place(uint32_t job, uint32_t node, uint32_t cls, double now, std::vector<Placement>* out) {
  JobState& j = jobs_[job];
  NodeState& n = nodes_[node];
  const PipelineState& p = pipelines_[j.pipeline];
  const Demand& d = p.demand[j.step];
  if (IsWorkerClass(cls)) {
    // Joins a live worker with room, or starts one that takes the step's demand as its grant.
    uint32_t w = RoomyWorker(node, cls);
    if (w == kNoWorker) w = StartWorker(node, cls, now);
    ++workers_[w].items;
    j.worker = w;
    j.gpu_mask = workers_[w].gpu_mask;
    j.gpu_amount = 0;
  } else {
    Charge(n, d);
    j.gpu_amount = d.gpu;
    if (d.gpu == 0 && p.model.steps[j.step].prefer_gpu > 0) {
      // Preferred, not required: take it only when a device has room now.
      const Amount want = p.model.steps[j.step].prefer_gpu;
      Demand probe;
      probe.gpu = want;
      if (Fits(n, probe)) j.gpu_amount = want;
    }
    j.gpu_mask = GrantGpus(n, j.gpu_amount);
  }
  j.phase = Phase::kRunning;
  j.node = static_cast<int32_t>(node);
  ++j.serial;
  ++j.step_attempt;
  const double timeout = p.model.steps[j.step].timeout;
  const double deadline = timeout > 0 ? now + timeout : kNever;
  if (timeout > 0) deadlines_.push({deadline, job, j.serial});
  UpdateBacklogOnStart(j, node);
  Refresh(node);
  out->push_back({job, j.serial, j.step, j.step_attempt, node, j.gpu_mask, deadline, j.worker});
}

void Scheduler::UpdateBacklogOnStart(JobState& j, uint32_t node) {
  // The anchor step starting puts the job in the node's admission backlog; its first bound step
  // starting takes it out (docs/design.md rule 4).
  const PipelineState& p = pipelines_[j.pipeline];
  if (p.first_bound < 0) return;
  if (j.step == p.anchor[p.first_bound] && j.backlog_node < 0) {
    j.backlog_node = static_cast<int32_t>(node);
    ++nodes_[node].backlog[j.pipeline];
  } else if (j.step == p.first_bound) {
    LeaveBacklog(j);
  }
}

void Scheduler::Charge(NodeState& n, const Demand& d) {
  for (const auto& e : d.node_entries) n.free.Add(e.id, -e.amount);
  for (const auto& e : d.pool_entries) pool_free_.Add(e.id, -e.amount);
}

void Scheduler::Uncharge(NodeState& n, const Demand& d, bool cpu_released) {
  for (const auto& e : d.pool_entries) pool_free_.Add(e.id, e.amount);
  if (!n.alive) return;  // a lost node comes back with fresh resources
  for (const auto& e : d.node_entries)
    if (!(cpu_released && e.id == kCpu)) n.free.Add(e.id, e.amount);
}

void Scheduler::Release(JobState& j, double now) {
  if (j.node < 0) return;
  if (j.parked) {  // holds nothing: Park gave it all back
    j.parked = false;
    j.parked_backlog = -1;
    j.node = -1;
    j.cpu_released = false;
    j.gpu_mask = 0;
    j.gpu_amount = 0;
    return;
  }
  NodeState& n = nodes_[j.node];
  const auto node = static_cast<uint32_t>(j.node);
  j.node = -1;
  if (j.worker != kNoWorker) {
    // The worker keeps its grant; the attempt leaves room in it.
    WorkerState& w = workers_[j.worker];
    j.worker = kNoWorker;
    j.gpu_mask = 0;
    if (!w.alive || !n.alive) return;
    if (--w.items == 0) w.idle_since = now;
    Refresh(node);
    MarkDirty(node);
    return;
  }
  const Demand& d = pipelines_[j.pipeline].demand[j.step];
  const bool cpu_released = j.cpu_released;
  j.cpu_released = false;
  Uncharge(n, d, cpu_released);
  if (!n.alive) return;
  const Amount g = j.gpu_amount;
  if (g > 0) {
    n.free.Add(kGpu, g);
    for (size_t i = 0; i < n.gpu_free.size(); ++i) {
      if (j.gpu_mask & (uint64_t{1} << i)) n.gpu_free[i] = g < kUnit ? n.gpu_free[i] + g : kUnit;
    }
  }
  j.gpu_mask = 0;
  j.gpu_amount = 0;
  Refresh(node);
  MarkDirty(node);
}

bool Scheduler::IsWorkerClass(uint32_t cls) const {
  const Class& c = classes_[cls];
  return pipelines_[c.pipeline].model.steps[c.step].worker_items > 0;
}

uint32_t Scheduler::RoomyWorker(uint32_t node, uint32_t cls) const {
  const NodeState& n = nodes_[node];
  if (cls >= n.workers.size()) return kNoWorker;
  const Class& c = classes_[cls];
  const int max = pipelines_[c.pipeline].model.steps[c.step].worker_items;
  // The emptiest live worker with room: a new worker starts only when every live one is full (a
  // load is dear), but among live ones items spread, so an idle worker's GPU does not wait while
  // another worker's batch runs.
  uint32_t best = kNoWorker;
  for (uint32_t w : n.workers[cls])
    if (workers_[w].items < max && (best == kNoWorker || workers_[w].items < workers_[best].items)) best = w;
  return best;
}

uint32_t Scheduler::StartWorker(uint32_t node, uint32_t cls, double now) {
  NodeState& n = nodes_[node];
  const Class& c = classes_[cls];
  const Demand& d = pipelines_[c.pipeline].demand[c.step];
  Charge(n, d);
  WorkerState w;
  w.pipeline = c.pipeline;
  w.step = c.step;
  w.node = node;
  w.cls = cls;
  w.gpu_amount = d.gpu;
  w.gpu_mask = GrantGpus(n, d.gpu);
  w.idle_since = now;
  const auto id = static_cast<uint32_t>(workers_.size());
  workers_.push_back(w);
  n.workers[cls].push_back(id);
  live_workers_.push_back(id);
  return id;
}

void Scheduler::RetireWorker(uint32_t id) {
  WorkerState& w = workers_[id];
  if (!w.alive) return;
  w.alive = false;
  NodeState& n = nodes_[w.node];
  auto& list = n.workers[w.cls];
  list.erase(std::remove(list.begin(), list.end(), id), list.end());
  live_workers_.erase(std::remove(live_workers_.begin(), live_workers_.end(), id), live_workers_.end());
  Uncharge(n, pipelines_[w.pipeline].demand[w.step], false);
  if (!n.alive) return;
  if (w.gpu_amount > 0) {
    n.free.Add(kGpu, w.gpu_amount);
    for (size_t i = 0; i < n.gpu_free.size(); ++i)
      if (w.gpu_mask & (uint64_t{1} << i)) n.gpu_free[i] = w.gpu_amount < kUnit ? n.gpu_free[i] + w.gpu_amount : kUnit;
  }
  Refresh(w.node);
  MarkDirty(w.node);
}

void Scheduler::RetireIdleWorkers(double now, std::vector<WorkerRef>* out) {
  for (size_t k = 0; k < live_workers_.size();) {
    const uint32_t id = live_workers_[k];
    const WorkerState& w = workers_[id];
    const double idle = pipelines_[w.pipeline].model.steps[w.step].worker_idle;
    if (w.items == 0 && (nodes_[w.node].draining || now >= w.idle_since + idle)) {
      out->push_back({id, w.node, w.pipeline, w.step});
      RetireWorker(id);  // removes it from live_workers_
      continue;
    }
    ++k;
  }
}

Scheduler::WorkerView Scheduler::Worker(uint32_t id) const {
  const WorkerState& w = workers_[id];
  return {w.pipeline, w.step, w.node, w.gpu_mask, w.items, w.alive, w.idle_since};
}

// The cpu share of a running attempt's demand (0 when it asks for none).
static Amount CpuOf(const Demand& d) {
  for (const auto& e : d.node_entries)
    if (e.id == kCpu) return e.amount;
  return 0;
}

bool Scheduler::ReleaseCpu(uint32_t job, uint32_t serial) {
  if (job >= jobs_.size()) return false;
  JobState& j = jobs_[job];
  if (j.phase != Phase::kRunning || j.serial != serial || j.cpu_released || j.node < 0 || j.worker != kNoWorker)
    return false;
  j.cpu_released = true;
  const auto node = static_cast<uint32_t>(j.node);
  NodeState& n = nodes_[node];
  const Amount cpu = CpuOf(pipelines_[j.pipeline].demand[j.step]);
  if (cpu == 0 || !n.alive) return true;
  n.free.Add(kCpu, cpu);
  Refresh(node);
  MarkDirty(node);
  return true;
}

bool Scheduler::RetakeCpu(uint32_t job, uint32_t serial) {
  if (job >= jobs_.size()) return false;
  JobState& j = jobs_[job];
  if (j.phase != Phase::kRunning || j.serial != serial || !j.cpu_released || j.node < 0) return false;
  j.cpu_released = false;
  const auto node = static_cast<uint32_t>(j.node);
  NodeState& n = nodes_[node];
  const Amount cpu = CpuOf(pipelines_[j.pipeline].demand[j.step]);
  if (cpu == 0 || !n.alive) return true;
  n.free.Add(kCpu, -cpu);  // may go below zero: Fits then refuses every cpu demand on this node
  Refresh(node);
  return true;
}

bool Scheduler::Park(uint32_t job, uint32_t serial) {
  if (job >= jobs_.size()) return false;
  JobState& j = jobs_[job];
  if (j.phase != Phase::kRunning || j.serial != serial || j.parked || j.node < 0 || j.worker != kNoWorker)
    return false;
  const auto node = static_cast<uint32_t>(j.node);
  NodeState& n = nodes_[node];
  Uncharge(n, pipelines_[j.pipeline].demand[j.step], j.cpu_released);
  j.cpu_released = false;
  if (n.alive && j.gpu_amount > 0) {
    n.free.Add(kGpu, j.gpu_amount);
    for (size_t i = 0; i < n.gpu_free.size(); ++i)
      if (j.gpu_mask & (uint64_t{1} << i))
        n.gpu_free[i] = j.gpu_amount < kUnit ? n.gpu_free[i] + j.gpu_amount : kUnit;
  }
  j.parked = true;
  j.parked_backlog = j.backlog_node;
  LeaveBacklog(j);
  if (n.alive) {
    Refresh(node);
    MarkDirty(node);
  }
  return true;
}

void Scheduler::BackFromPark(JobState& j) {
  if (j.parked_backlog >= 0 && j.backlog_node < 0 && nodes_[j.parked_backlog].alive) {
    j.backlog_node = j.parked_backlog;
    ++nodes_[j.backlog_node].backlog[j.pipeline];
    Refresh(static_cast<uint32_t>(j.backlog_node));
  }
  j.parked_backlog = -1;
}

bool Scheduler::Unpark(uint32_t job, uint32_t serial) {
  if (job >= jobs_.size()) return false;
  JobState& j = jobs_[job];
  if (j.phase != Phase::kRunning || j.serial != serial || !j.parked || j.node < 0) return false;
  j.parked = false;
  BackFromPark(j);
  const auto node = static_cast<uint32_t>(j.node);
  NodeState& n = nodes_[node];
  if (!n.alive) return true;
  Charge(n, pipelines_[j.pipeline].demand[j.step]);  // may go below zero, as RetakeCpu
  if (j.gpu_amount > 0) {
    n.free.Add(kGpu, -j.gpu_amount);
    for (size_t i = 0; i < n.gpu_free.size(); ++i)
      if (j.gpu_mask & (uint64_t{1} << i)) n.gpu_free[i] = j.gpu_amount < kUnit ? n.gpu_free[i] - j.gpu_amount : 0;
  }
  Refresh(node);
  return true;
}

void Scheduler::TryPlaceBound(uint32_t node, uint32_t cls, double now, std::vector<Placement>* out) {
  NodeState& n = nodes_[node];
  if (!n.alive || n.draining) return;
  auto& q = n.bound_ready[cls];
  const Class& c = classes_[cls];
  const PipelineState& p = pipelines_[c.pipeline];
  const Demand& d = p.demand[c.step];
  while (!q.empty()) {
    const uint64_t key = q.top();
    const auto job = static_cast<uint32_t>(key >> 32);
    const JobState& j = jobs_[job];
    if (j.phase != Phase::kReady || j.ready_token != static_cast<uint32_t>(key) || j.step != c.step ||
        j.pipeline != c.pipeline) {
      q.pop();
      continue;
    }
    if ((!Fits(n, d) || !PoolFits(d)) && RoomyWorker(node, cls) == kNoWorker) return;
    q.pop();
    Place(job, node, cls, now, out);
  }
}

void Scheduler::Decide(double now, std::vector<Placement>* out) {
  while (!backoff_.empty() && backoff_.top().at <= now) {
    const Timed t = backoff_.top();
    backoff_.pop();
    JobState& j = jobs_[t.job];
    if (j.phase == Phase::kBackoff && j.serial == t.serial) MakeReady(t.job, now);
  }
  for (uint32_t cls : class_order_) {
    Class& c = classes_[cls];
    if (c.bound) {
      for (uint32_t node : dirty_) TryPlaceBound(node, cls, now, out);
      continue;
    }
    const Demand& d = pipelines_[c.pipeline].demand[c.step];
    while (!c.ready.empty()) {
      const uint64_t key = c.ready.top();
      const auto job = static_cast<uint32_t>(key >> 32);
      const JobState& j = jobs_[job];
      if (j.phase != Phase::kReady || j.ready_token != static_cast<uint32_t>(key) || j.step != c.step ||
          j.pipeline != c.pipeline) {
        c.ready.pop();
        continue;
      }
      const bool worker = IsWorkerClass(cls);
      if (!worker && !PoolFits(d)) break;
      uint32_t node = c.candidates.FindNextWrapping(c.cursor);
      if (node == NodeSet::kNone) break;
      if (static_cast<int32_t>(node) == j.failed_node) {
        const uint32_t other = c.candidates.FindNextWrapping(node + 1);
        if (other != NodeSet::kNone) node = other;
      }
      // A new worker takes the pools; joining one does not.
      if (worker && RoomyWorker(node, cls) == kNoWorker && !PoolFits(d)) break;
      c.ready.pop();
      c.cursor = node + 1;
      Place(job, node, cls, now, out);
    }
  }
  for (uint32_t node : dirty_) nodes_[node].dirty = false;
  dirty_.clear();
}

FinishResult Scheduler::Finish(uint32_t job, uint32_t serial, AttemptStatus status, bool retryable, double now,
                               bool node_lost) {
  FinishResult r;
  if (job >= jobs_.size()) return r;
  JobState& j = jobs_[job];
  if (j.phase != Phase::kRunning || j.serial != serial) return r;
  const int32_t ran_on = j.node;
  if (j.parked) BackFromPark(j);
  Release(j, now);
  const PipelineState& p = pipelines_[j.pipeline];
  const StepModel& step = p.model.steps[j.step];
  const bool anchor_step = p.first_bound >= 0 && j.step == p.anchor[p.first_bound];
  if (j.cancel_requested || status == AttemptStatus::kCancelled) {
    j.phase = Phase::kCancelled;
    LeaveBacklog(j);
    r.kind = FinishResult::Kind::kCancelled;
    return r;
  }
  switch (status) {
    case AttemptStatus::kOk:
      homes_[j.home_offset + j.step] = ran_on;
      if (j.lost_step == j.step) j.losses = 0;  // a step earlier than the lost one leaves the count
      j.failures = 0;
      j.step_attempt = 0;
      j.failed_node = -1;
      if (j.step + 1u >= p.model.steps.size()) {
        j.phase = Phase::kSucceeded;
        LeaveBacklog(j);
        r.kind = FinishResult::Kind::kSucceeded;
        return r;
      }
      ++j.step;
      MakeReady(job, now);
      r.kind = FinishResult::Kind::kNextStepReady;
      return r;
    case AttemptStatus::kLost:
      if (anchor_step) LeaveBacklog(j);
      if (node_lost) {
        if (NodeLoss(job, false, now, &r.retry_at)) {
          r.kind = FinishResult::Kind::kFailed;
          r.node_losses = j.losses;
          return r;
        }
      } else {
        MakeReady(job, now);
      }
      r.kind = FinishResult::Kind::kRequeued;
      return r;
    case AttemptStatus::kFailed:
    case AttemptStatus::kTimeout:
    default:
      break;
  }
  ++j.failures;
  j.failed_node = ran_on;
  if (anchor_step) LeaveBacklog(j);
  if (retryable && j.failures <= step.retries) {
    double delay = step.backoff;
    for (int i = 1; i < j.failures && delay < step.max_backoff; ++i) delay *= 2;
    delay = std::min(delay, step.max_backoff);
    j.phase = Phase::kBackoff;
    j.ready_at = now + delay;
    backoff_.push({j.ready_at, job, j.serial});
    r.kind = FinishResult::Kind::kRetryScheduled;
    r.retry_at = j.ready_at;
    return r;
  }
  j.phase = Phase::kFailed;
  r.kind = FinishResult::Kind::kFailed;
  return r;
}

std::vector<AttemptRef> Scheduler::Cancel(uint32_t job) {
  std::vector<AttemptRef> running;
  if (job >= jobs_.size()) return running;
  JobState& j = jobs_[job];
  switch (j.phase) {
    case Phase::kRunning:
      j.cancel_requested = true;
      running.push_back({job, j.serial, static_cast<uint32_t>(j.node)});
      break;
    case Phase::kReady:
    case Phase::kBackoff:
      j.cancel_requested = true;
      j.phase = Phase::kCancelled;
      LeaveBacklog(j);
      break;
    default:
      break;
  }
  return running;
}

bool Scheduler::Retry(uint32_t job, double now) {
  if (job >= jobs_.size() || jobs_[job].phase != Phase::kFailed) return false;
  JobState& j = jobs_[job];
  j.failures = 0;
  j.step_attempt = 0;
  j.failed_node = -1;
  j.losses = 0;
  j.cancel_requested = false;
  MakeReady(job, now);
  return true;
}

uint32_t Scheduler::RestoreJob(uint32_t pipeline, uint16_t step, const std::vector<int32_t>& homes, Phase phase,
                               uint32_t serial, double now) {
  const auto id = static_cast<uint32_t>(jobs_.size());
  const PipelineState& p = pipelines_[pipeline];
  assert(homes.size() == p.model.steps.size() && "REQUIRES: one home per step");
  JobState j{};
  j.pipeline = pipeline;
  j.step = std::min<uint16_t>(step, static_cast<uint16_t>(p.model.steps.size() - 1));
  j.serial = serial;
  j.node = -1;
  j.failed_node = -1;
  j.backlog_node = -1;
  j.home_offset = static_cast<uint32_t>(homes_.size());
  homes_.resize(homes_.size() + p.model.steps.size(), -1);
  for (size_t s = 0; s < p.model.steps.size() && s < homes.size(); ++s) {
    const int32_t h = homes[s];
    homes_[j.home_offset + s] = h >= 0 && h < static_cast<int32_t>(nodes_.size()) ? h : -1;
  }
  jobs_.push_back(j);
  JobState& r = jobs_[id];
  if (phase == Phase::kSucceeded || phase == Phase::kFailed || phase == Phase::kCancelled) {
    r.phase = phase;
    r.cancel_requested = phase == Phase::kCancelled;
    return id;
  }
  MakeReady(id, now);  // may go back to the anchor (lineage)
  // A job between its anchor's success and its first bound step's start counts in the backlog of
  // the anchor's node, as it did before the restart.
  if (p.first_bound >= 0 && r.phase == Phase::kReady) {
    const int a = p.anchor[p.first_bound];
    const int32_t home = homes_[r.home_offset + a];
    if (r.step > a && r.step <= p.first_bound && home >= 0 && nodes_[home].alive) {
      r.backlog_node = home;
      ++nodes_[home].backlog[pipeline];
      Refresh(static_cast<uint32_t>(home));
    }
  }
  return id;
}

bool Scheduler::RestoreRunning(uint32_t job, uint32_t node, uint32_t serial, uint16_t step_attempt,
                               uint64_t gpu_mask, double deadline) {
  if (job >= jobs_.size() || node >= nodes_.size()) return false;
  JobState& j = jobs_[job];
  NodeState& n = nodes_[node];
  if (j.phase != Phase::kReady || !n.alive) return false;
  const PipelineState& p = pipelines_[j.pipeline];
  const uint32_t cls = p.class_of[j.step];
  if (classes_[cls].bound && homes_[j.home_offset + p.anchor[j.step]] != static_cast<int32_t>(node)) return false;
  const Demand& d = p.demand[j.step];
  const bool worker_step = IsWorkerClass(cls);
  uint32_t join = kNoWorker;  // a worker step's attempt joins the live worker with its grant
  if (worker_step)
    for (uint32_t w : n.workers[cls])
      if (workers_[w].gpu_mask == gpu_mask && workers_[w].items < p.model.steps[j.step].worker_items) join = w;
  if (join == kNoWorker) {
    for (const auto& e : d.node_entries)
      if (n.free.Get(e.id) < e.amount) return false;
    if (!PoolFits(d)) return false;
    // The granted devices must exist and have room for the demand (or for a preferred GPU).
    const Amount g = d.gpu > 0 ? d.gpu : (gpu_mask != 0 ? p.model.steps[j.step].prefer_gpu : 0);
    int granted = 0;
    for (size_t i = 0; i < 64; ++i) {
      if (!(gpu_mask & (uint64_t{1} << i))) continue;
      if (i >= n.gpu_free.size()) return false;
      if (n.gpu_free[i] < std::min(g, kUnit)) return false;
      ++granted;
    }
    if (g > 0 && granted != (g < kUnit ? 1 : static_cast<int>(g / kUnit))) return false;
    if (g == 0 && granted != 0) return false;
    for (const auto& e : d.node_entries) n.free.Add(e.id, -e.amount);
    for (const auto& e : d.pool_entries) pool_free_.Add(e.id, -e.amount);
    if (g > 0) {
      n.free.Add(kGpu, -g);
      for (size_t i = 0; i < n.gpu_free.size(); ++i)
        if (gpu_mask & (uint64_t{1} << i)) n.gpu_free[i] -= std::min(g, kUnit);
    }
    j.gpu_mask = gpu_mask;
    j.gpu_amount = g;
    if (worker_step) {  // the grant is the worker's, started here as it was before the restart
      WorkerState w;
      w.pipeline = j.pipeline;
      w.step = j.step;
      w.node = node;
      w.cls = cls;
      w.gpu_mask = gpu_mask;
      w.gpu_amount = g;
      join = static_cast<uint32_t>(workers_.size());
      workers_.push_back(w);
      n.workers[cls].push_back(join);
      live_workers_.push_back(join);
    }
  }
  if (join != kNoWorker) {
    ++workers_[join].items;
    j.worker = join;
    j.gpu_mask = gpu_mask;
    j.gpu_amount = 0;
  }
  j.phase = Phase::kRunning;
  j.node = static_cast<int32_t>(node);
  j.serial = std::max(j.serial, serial);
  j.step_attempt = step_attempt;
  if (deadline != kNever) deadlines_.push({deadline, job, j.serial});
  UpdateBacklogOnStart(j, node);
  Refresh(node);
  return true;
}

std::vector<AttemptRef> Scheduler::NodeLost(uint32_t node, double now) {
  std::vector<AttemptRef> lost;
  NodeState& n = nodes_[node];
  if (!n.alive) return lost;
  n.alive = false;
  for (auto& c : classes_)
    if (!c.bound) c.candidates.Erase(node);
  for (auto& list : n.workers) {
    for (uint32_t w : list) {
      workers_[w].alive = false;
      live_workers_.erase(std::remove(live_workers_.begin(), live_workers_.end(), w), live_workers_.end());
    }
    list.clear();
  }
  for (auto& q : n.bound_ready) q = {};
  for (uint32_t id = 0; id < jobs_.size(); ++id) {
    JobState& j = jobs_[id];
    if (j.phase == Phase::kSucceeded || j.phase == Phase::kFailed || j.phase == Phase::kCancelled) continue;
    if (j.backlog_node == static_cast<int32_t>(node)) j.backlog_node = -1;
    const PipelineState& p = pipelines_[j.pipeline];
    const bool bound_to_lost = p.anchor[j.step] != j.step &&
                               homes_[j.home_offset + p.anchor[j.step]] == static_cast<int32_t>(node);
    if (j.phase == Phase::kRunning && j.node == static_cast<int32_t>(node)) {
      lost.push_back({id, j.serial, node});
      Release(j, now);
      if (j.cancel_requested) {
        j.phase = Phase::kCancelled;
        continue;
      }
      // A bound step whose anchor's output went with the node goes back to the anchor now;
      // either way the job waits out its node-loss backoff, or fails at the limit (NodeLoss).
      double ready_at = 0;
      NodeLoss(id, bound_to_lost, now, &ready_at);
    } else if ((j.phase == Phase::kReady || j.phase == Phase::kBackoff) && bound_to_lost) {
      ResetToAnchor(j, id, now);
    }
  }
  std::fill(n.backlog.begin(), n.backlog.end(), 0);
  return lost;
}

void Scheduler::Expired(double now, std::vector<AttemptRef>* out) {
  while (!deadlines_.empty() && deadlines_.top().at <= now) {
    const Timed t = deadlines_.top();
    deadlines_.pop();
    const JobState& j = jobs_[t.job];
    if (j.phase == Phase::kRunning && j.serial == t.serial && !j.parked)
      out->push_back({t.job, t.serial, static_cast<uint32_t>(j.node)});
  }
}

double Scheduler::NextWakeup() const {
  double t = kNever;
  if (!backoff_.empty()) t = std::min(t, backoff_.top().at);
  if (!deadlines_.empty()) t = std::min(t, deadlines_.top().at);
  for (uint32_t id : live_workers_) {
    const WorkerState& w = workers_[id];
    if (w.items != 0) continue;
    t = std::min(t, nodes_[w.node].draining ? w.idle_since
                                             : w.idle_since + pipelines_[w.pipeline].model.steps[w.step].worker_idle);
  }
  return t;
}

Scheduler::JobView Scheduler::Job(uint32_t job) const {
  const JobState& j = jobs_[job];
  return {j.pipeline, j.phase, j.step, j.step_attempt, j.node, j.ready_at};
}

int32_t Scheduler::Home(uint32_t job, uint16_t step) const { return homes_[jobs_[job].home_offset + step]; }

uint64_t Scheduler::NodeGpusBusy(uint32_t node) const {
  uint64_t mask = 0;
  const auto& g = nodes_[node].gpu_free;
  for (size_t i = 0; i < g.size(); ++i)
    if (g[i] < kUnit) mask |= uint64_t{1} << i;
  return mask;
}

std::string Scheduler::DescribeDemandGap(const PipelineState& p, int s) const {
  const StepModel& step = p.model.steps[s];
  const Demand& d = p.demand[s];
  std::string why;
  auto add = [&](const std::string& part) { why += (why.empty() ? "" : "; ") + part; };
  if (!step.labels.empty()) {
    bool any = false;
    for (const auto& n : nodes_) any = any || (n.alive && LabelsMatch(step.labels, n.model.labels));
    if (!any) {
      std::string want;
      for (const auto& [k, v] : step.labels) want += (want.empty() ? "" : ",") + k + "=" + v;
      add("it needs labels " + want + ", which no node has");
    }
  }
  auto offered = [&](ResourceId id) {
    std::string list;
    int shown = 0;
    for (const auto& n : nodes_) {
      if (!n.alive) continue;
      if (shown++ == 4) {
        list += ", ...";
        break;
      }
      list += (list.empty() ? "" : ", ") + n.model.name + " " + FormatAmount(n.total.Get(id));
    }
    return list.empty() ? std::string("no live nodes") : list;
  };
  auto check = [&](ResourceId id, Amount want) {
    Amount best = 0;
    for (const auto& n : nodes_)
      if (n.alive) best = std::max(best, n.total.Get(id));
    const bool ok = id == kGpu ? [&] {
      for (const auto& n : nodes_)
        if (n.alive && GpuTotalsAllow(n.total.Get(kGpu), want)) return true;
      return false;
    }()
                               : best >= want;
    if (!ok)
      add("it asks " + table_.Name(id) + ": " + FormatAmount(want) + " but the nodes offer " + table_.Name(id) +
          ": " + offered(id));
  };
  for (const auto& e : d.node_entries) check(e.id, e.amount);
  if (d.gpu > 0) check(kGpu, d.gpu);
  for (const auto& e : d.pool_entries)
    if (pool_total_.Get(e.id) < e.amount)
      add("it asks pool " + table_.Name(e.id) + ": " + FormatAmount(e.amount) + " but the pool holds " +
          FormatAmount(pool_total_.Get(e.id)));
  return why;
}

std::string Scheduler::UnrunnableStep(uint32_t pipeline) const {
  const PipelineState& p = pipelines_[pipeline];
  for (size_t s = 0; s < p.model.steps.size(); ++s) {
    const uint32_t cls = p.class_of[s];
    bool any = false;
    for (const auto& n : nodes_) any = any || (n.alive && n.static_ok[cls]);
    if (any) continue;
    const std::string& name = p.model.steps[s].name;
    std::string why = DescribeDemandGap(p, static_cast<int>(s));
    if (why.empty() && p.is_anchor[s]) {
      for (size_t t = s + 1; t < p.anchor.size() && why.empty(); ++t) {
        if (p.anchor[t] != static_cast<int>(s)) continue;
        std::string gap = DescribeDemandGap(p, static_cast<int>(t));
        if (!gap.empty()) return "step '" + p.model.steps[t].name + "' can run on no node: " + gap;
      }
      why = "no single node can run it together with the steps bound to it by same_node_as";
    }
    if (why.empty()) why = "no node can run it";
    return "step '" + name + "' can run on no node: " + why;
  }
  return "";
}

std::string Scheduler::WaitReason(uint32_t job, double now) const {
  const JobState& j = jobs_[job];
  const PipelineState& p = pipelines_[j.pipeline];
  char buf[160];
  switch (j.phase) {
    case Phase::kRunning:
      if (j.parked) return "parked (holding nothing)";
      return "running on " + nodes_[j.node].model.name + (j.cpu_released ? " (holding no CPU)" : "");
    case Phase::kBackoff:
      std::snprintf(buf, sizeof buf, "retry backoff (%.1fs left)", std::max(0.0, j.ready_at - now));
      return buf;
    case Phase::kReady: {
      if (p.anchor[j.step] != j.step) {
        const int32_t home = homes_[j.home_offset + p.anchor[j.step]];
        return "waiting for node " + (home >= 0 ? nodes_[home].model.name : std::string("?")) + " (same_node_as " +
               p.model.steps[p.anchor[j.step]].name + ")";
      }
      if (p.first_bound >= 0 && j.step == p.anchor[p.first_bound]) return "waiting for admission (nodes busy)";
      return "waiting for resources";
    }
    default:
      return PhaseName(j.phase);
  }
}

}  // namespace baton::core
