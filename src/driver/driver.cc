// The Driver (driver.h). Over 500 lines: the attempt lifecycle's steps (Decide, Finish, Cancel,
// Expired, AbandonOverdue, NodeLost, Restore, Turn) share the job records and the core, and read
// best in one place; the views, the overview and the scheduler set-up are in their own files.
#include "driver/driver.h"

#include <algorithm>

#include <fmt/format.h>

#include "driver/scheduler_setup.h"
#include "driver/views.h"

namespace baton::driver {

const char* JobEndName(JobEnd end) {
  switch (end) {
    case JobEnd::kLive: return "";
    case JobEnd::kSucceeded: return "succeeded";
    case JobEnd::kFailed: return "failed";
    case JobEnd::kCancelled: return "cancelled";
  }
  return "";
}

namespace {

const std::shared_ptr<const Json>& EmptyResults() {
  static const auto empty = std::make_shared<const Json>(Json::object());
  return empty;
}
const std::shared_ptr<const std::vector<StepRun>>& EmptyHistory() {
  static const auto empty = std::make_shared<const std::vector<StepRun>>();
  return empty;
}

}  // namespace

void Driver::Emit(const Event& e) const {
  for (const auto& s : sinks_) s->OnEvent(e);
}

Event Driver::Make(Event::Type type, const JobRecord& j, int step, int node, double now) const {
  Event e{type};
  e.time = now;
  e.job = j.report.id;
  if (step >= 0) e.step = pipelines_[j.pipeline].spec.steps[step].name;
  if (node >= 0) e.node = nodes_[node].name;
  return e;
}

Result<uint32_t> Driver::AddPipeline(PipelineSpec spec, std::string id, const std::string* nodes_from) {
  Result<uint32_t> core_id = driver::AddPipeline(sched_, spec, nodes_from);
  if (!core_id.ok()) return core_id.status();
  pipelines_.push_back({std::move(spec), *core_id, std::move(id)});
  return static_cast<uint32_t>(pipelines_.size() - 1);
}

int Driver::PipelineIndex(const std::string& id) const {
  for (size_t i = 0; i < pipelines_.size(); ++i)
    if (pipelines_[i].id == id) return static_cast<int>(i);
  return -1;
}

uint32_t Driver::AddNode(const NodeSpec& node, double now, std::string address, int pid) {
  const uint32_t idx = sched_.AddNode(ToCoreNode(node, sched_.resources()));
  if (idx >= nodes_.size()) nodes_.resize(idx + 1);
  nodes_[idx] = {node.name, std::move(address), pid};
  node_index_[node.name] = idx;
  if (!sinks_.empty()) {
    Event e{Event::Type::kNodeJoined};
    e.time = now;
    e.node = node.name;
    e.message = nodes_[idx].address;
    Emit(e);
  }
  return idx;
}

int Driver::NodeIndex(const std::string& name) const {
  auto it = node_index_.find(name);
  return it == node_index_.end() ? -1 : static_cast<int>(it->second);
}

int Driver::JobIndex(const std::string& id) const {
  auto it = job_index_.find(id);
  return it == job_index_.end() ? -1 : static_cast<int>(it->second);
}

uint32_t Driver::Submit(std::string id, std::string input, uint32_t pipeline, double now, bool announce) {
  ++submitted_;
  uint32_t idx;
  JobRecord* slot = nullptr;
  if (!free_.empty() && sched_.Reuse(free_.back(), pipelines_[pipeline].core, now)) {
    idx = free_.back();
    free_.pop_back();
    slot = &jobs_[idx];
    ++(slot->end == JobEnd::kSucceeded ? gone_succeeded_ : gone_cancelled_);
    *slot = JobRecord{};
  } else {
    idx = sched_.Submit(pipelines_[pipeline].core, now);
    BATON_ASSERT(idx == jobs_.size(), "core job ids are dense and shared with the driver");
    slot = &jobs_.emplace_back();
  }
  JobRecord& j = *slot;
  j.report.id = std::move(id);
  j.report.input = std::move(input);
  j.pipeline = pipeline;
  j.results = EmptyResults();
  j.history = EmptyHistory();
  job_index_[j.report.id] = idx;
  if (announce && !sinks_.empty()) {
    Event e = Make(Event::Type::kJobSubmitted, j, -1, -1, now);
    e.message = j.report.input;
    Emit(e);
  }
  Changed(idx);
  return idx;
}

uint32_t Driver::Restore(RestoredJob r, double now) {
  const PipelineRecord& p = pipelines_[r.pipeline];
  const uint32_t idx = sched_.RestoreJob(p.core, r.step, r.homes, r.phase, r.serial, now);
  BATON_ASSERT(idx == jobs_.size(), "core job ids are dense and shared with the driver");
  JobRecord& j = jobs_.emplace_back();
  j.report.id = r.id;
  j.report.input = std::move(r.input);
  j.report.error = std::move(r.error);
  j.report.attempts = std::move(r.attempts);
  j.pipeline = r.pipeline;
  j.results = std::make_shared<const Json>(r.results.is_object() ? std::move(r.results) : Json::object());
  llm_total_.Add(rates::JobLlmUsage(*j.results));
  j.history = std::make_shared<const std::vector<StepRun>>(std::move(r.history));
  j.last_serial = r.serial;
  ++submitted_;
  job_index_[r.id] = idx;
  switch (r.phase) {
    case core::Phase::kSucceeded: j.end = JobEnd::kSucceeded; break;
    case core::Phase::kFailed: j.end = JobEnd::kFailed; break;
    case core::Phase::kCancelled: j.end = JobEnd::kCancelled; break;
    default: break;
  }
  j.report.status = JobEndName(j.end);
  if (j.end != JobEnd::kLive) ++ended_;
  if (r.node_losses > 0) sched_.RestoreNodeLosses(idx, r.lost_step, r.node_losses);
  if (r.in_flight) {
    InFlightAttempt& a = *r.in_flight;
    if (r.in_flight_lost_why.empty() && a.node < nodes_.size() &&
        sched_.RestoreRunning(idx, a.node, r.serial, a.step_attempt, MaskFromGpus(a.gpus), r.deadline)) {
      j.in_flight = a;
    } else {
      // The attempt cannot be honoured (its node is unknown or lost): it counts as lost; a late
      // result carries a serial the core no longer expects.
      const std::string node = a.node < nodes_.size() ? nodes_[a.node].name : r.in_flight_node;
      Record(idx, {p.spec.steps[a.step].name, node, "lost",
                   r.in_flight_lost_why.empty() ? "node " + node + " unknown after head restart" : r.in_flight_lost_why,
                   a.step_attempt, a.start, now, a.gpus, 0, {}});
    }
  }
  Changed(idx);
  return idx;
}

void Driver::Decide(double now, std::vector<core::Placement>* out) {
  const size_t first = out->size();
  sched_.Decide(now, out);
  for (size_t i = first; i < out->size(); ++i) {
    const core::Placement& p = (*out)[i];
    JobRecord& j = jobs_[p.job];
    InFlightAttempt& a = j.in_flight.emplace();
    a.serial = p.serial;
    a.step = p.step;
    a.step_attempt = p.step_attempt;
    a.node = p.node;
    a.gpus = GpusFromMask(p.gpu_mask);
    a.start = now;
    a.worker = p.worker;
    a.deadline = p.deadline;
    j.last_serial = p.serial;
    if (!sinks_.empty()) {
      Event e = Make(Event::Type::kAttemptStarted, j, p.step, static_cast<int>(p.node), now);
      e.attempt = p.step_attempt;
      e.gpus = a.gpus;
      e.pid = nodes_[p.node].pid;
      Emit(e);
    }
    Changed(p.job);
  }
}

std::vector<int32_t> Driver::Homes(uint32_t job, uint16_t upto_step) const {
  std::vector<int32_t> homes(upto_step);
  for (uint16_t s = 0; s < upto_step; ++s) homes[s] = sched_.Home(job, s);
  return homes;
}

void Driver::Record(uint32_t job, AttemptReport a) {
  JobRecord& j = jobs_[job];
  j.report.attempts.push_back(std::move(a));
  if (store_) store_->AttemptRecorded(job, j.report.attempts.back());
}

bool Driver::Finish(uint32_t job, uint32_t serial, AttemptOutcome o, double now) {
  if (job >= jobs_.size()) return false;
  JobRecord& j = jobs_[job];
  if (!j.in_flight || j.in_flight->serial != serial) return false;  // lost, abandoned or replaced
  if (o.kind == StepOutcome::Kind::kParked && !o.lost && !o.handed_back) {
    if (!j.in_flight->stop_requested && !j.in_flight->timed_out && !o.park_id.empty()) {
      ParkAttempt(job, o.park_id, o.park_poll, now);
      return true;
    }
    o.kind = o.park_id.empty() ? StepOutcome::Kind::kFailed : StepOutcome::Kind::kCancelled;
    if (o.park_id.empty()) o.error = "the step parked without a park id";
  }
  const InFlightAttempt a = std::move(*j.in_flight);
  j.in_flight.reset();
  const StepSpec& spec = pipelines_[j.pipeline].spec.steps[a.step];
  core::AttemptStatus status;
  if (o.lost) {
    status = core::AttemptStatus::kLost;
  } else if (o.handed_back) {
    status = core::AttemptStatus::kLost;
    o.error = "handed back by node " + nodes_[a.node].name + " (draining)" +
              (o.error.empty() || o.error == "cancelled" ? "" : ": " + o.error);
  } else switch (o.kind) {
    case StepOutcome::Kind::kOk: status = core::AttemptStatus::kOk; break;
    case StepOutcome::Kind::kCancelled:
      // Stopped although nobody here asked (an executor that stopped it on its own, a stale stop):
      // the job is not cancelled; the attempt is lost and re-queued without counting a try.
      status = a.timed_out            ? core::AttemptStatus::kTimeout
               : a.stop_requested     ? core::AttemptStatus::kCancelled
                                      : core::AttemptStatus::kLost;
      if (status == core::AttemptStatus::kLost && o.error.empty()) o.error = "stopped without being cancelled";
      break;
    default: status = a.timed_out ? core::AttemptStatus::kTimeout : core::AttemptStatus::kFailed; break;
  }
  std::string error = std::move(o.error);
  if (status == core::AttemptStatus::kTimeout)
    error = fmt::format("timed out after {}s", spec.timeout) +
            (o.kind == StepOutcome::Kind::kFailed && !error.empty() ? " (" + error + ")" : "");
  const double start = o.start >= 0 ? o.start : a.start;
  const double end = o.end >= 0 ? o.end : now;
  Record(job, {spec.name, nodes_[a.node].name, core::AttemptStatusName(status), error, a.step_attempt, start, end,
               a.gpus, o.start >= 0 ? a.start : 0, std::move(o.batch)});
  if (status == core::AttemptStatus::kOk) {
    // Copy on write: an attempt still holding the old results keeps them (use_count > 1).
    auto results =
        j.results.use_count() == 1 ? std::const_pointer_cast<Json>(j.results) : std::make_shared<Json>(*j.results);
    if (rates::LlmUsage u; o.result.is_object() && rates::LlmUsage::FromJson(o.result.value("usage", Json()), &u))
      llm_total_.Add(u);
    (*results)[spec.name] = std::move(o.result);
    j.results = std::move(results);
    auto history = j.history.use_count() == 1 ? std::const_pointer_cast<std::vector<StepRun>>(j.history)
                                              : std::make_shared<std::vector<StepRun>>(*j.history);
    history->push_back({spec.name, nodes_[a.node].name, a.step_attempt, end - start, a.gpus});
    j.history = std::move(history);
    ++j.results_version;
    if (!o.main_output.empty()) j.main_output = std::move(o.main_output);
  }
  if (!sinks_.empty()) {
    Event e = Make(Event::Type::kAttemptFinished, j, a.step, static_cast<int>(a.node), now);
    e.attempt = a.step_attempt;
    e.status = core::AttemptStatusName(status);
    e.message = error;
    e.gpus = a.gpus;
    e.pid = o.pid;
    Emit(e);
  }
  const bool retryable = status == core::AttemptStatus::kTimeout || o.retryable;
  const core::FinishResult r = sched_.Finish(job, serial, status, retryable, now, o.lost);
  switch (r.kind) {
    case core::FinishResult::Kind::kSucceeded: EndJob(job, JobEnd::kSucceeded, "", a.step, now); break;
    case core::FinishResult::Kind::kFailed:
      EndJob(job, JobEnd::kFailed,
             r.node_losses > 0 ? NodeLossError(spec.name, r.node_losses, error)
                               : fmt::format("{} failed after {} attempt{}: {}", spec.name, a.step_attempt,
                                             a.step_attempt == 1 ? "" : "s", error),
             a.step, now);
      break;
    case core::FinishResult::Kind::kCancelled: EndJob(job, JobEnd::kCancelled, "", a.step, now); break;
    case core::FinishResult::Kind::kRetryScheduled:
      if (!sinks_.empty()) {
        Event e = Make(Event::Type::kRetryScheduled, j, a.step, -1, now);
        e.attempt = a.step_attempt;
        e.message =
            fmt::format("in {:.1f}s (attempt {} of {})", r.retry_at - now, a.step_attempt + 1, spec.retries + 1);
        Emit(e);
      }
      break;
    default: break;
  }
  Changed(job);
  return true;
}

void Driver::EndJob(uint32_t job, JobEnd end, std::string error, int step, double now) {
  JobRecord& j = jobs_[job];
  if (j.end != JobEnd::kLive) return;
  // A cancelled job's reason was set by Cancel() ("cancelled", "run interrupted").
  if (end == JobEnd::kCancelled && error.empty()) error = j.report.error.empty() ? "cancelled" : j.report.error;
  j.end = end;
  ++ended_;
  j.report.status = JobEndName(end);
  j.report.error = std::move(error);
  if (!sinks_.empty()) {
    Event e = Make(end == JobEnd::kSucceeded ? Event::Type::kJobSucceeded
                   : end == JobEnd::kFailed  ? Event::Type::kJobFailed
                                             : Event::Type::kJobCancelled,
                   j, step, -1, now);
    e.message = end == JobEnd::kSucceeded ? j.main_output : j.report.error;
    Emit(e);
  }
  Changed(job);
}

std::vector<core::AttemptRef> Driver::Cancel(uint32_t job, const std::string& why, double now, double grace) {
  JobRecord& j = jobs_[job];
  if (j.end != JobEnd::kLive) return {};
  std::vector<core::AttemptRef> refs = sched_.Cancel(job);
  if (j.report.error.empty()) j.report.error = why;  // the reason EndJob gives when it ends
  for (size_t k = 0; k < refs.size();) {
    const core::AttemptRef r = refs[k];
    if (j.in_flight && j.in_flight->serial == r.serial && !j.in_flight->parked.empty()) {
      // Parked: nothing runs, so it ends now (its outside work is the step's to forget).
      j.in_flight->stop_requested = true;
      refs.erase(refs.begin() + static_cast<std::ptrdiff_t>(k));
      AttemptOutcome o;
      o.kind = StepOutcome::Kind::kCancelled;
      o.error = why;
      Finish(job, r.serial, std::move(o), now);
      if (j.end != JobEnd::kLive) return refs;
      continue;
    }
    ++k;
    if (j.in_flight && j.in_flight->serial == r.serial) {
      j.in_flight->abandon_at = std::min(j.in_flight->abandon_at, now + grace);
      j.in_flight->stop_requested = true;
      stopping_.push_back(job);
    }
  }
  if (sched_.Job(job).phase == core::Phase::kCancelled) EndJob(job, JobEnd::kCancelled, why, -1, now);
  Changed(job);
  return refs;
}

bool Driver::Retry(uint32_t job, double now) {
  JobRecord& j = jobs_[job];
  if (j.end != JobEnd::kFailed || !sched_.Retry(job, now)) return false;
  j.end = JobEnd::kLive;
  --ended_;
  j.report.status.clear();
  j.report.error.clear();
  if (!sinks_.empty()) {
    Event e = Make(Event::Type::kJobSubmitted, j, -1, -1, now);
    e.message = "retry requested";
    Emit(e);
  }
  Changed(job);
  return true;
}

void Driver::Expired(double now, double grace, std::vector<core::AttemptRef>* out) {
  expired_.clear();
  sched_.Expired(now, &expired_);
  for (const auto& r : expired_) {
    JobRecord& j = jobs_[r.job];
    if (!j.in_flight || j.in_flight->serial != r.serial) continue;
    j.in_flight->timed_out = true;
    j.in_flight->abandon_at = std::min(j.in_flight->abandon_at, now + grace);
    stopping_.push_back(r.job);
    out->push_back(r);
  }
}

size_t Driver::Turn(Transport& transport, double now, const TurnOptions& options) {
  turn_expired_.clear();
  Expired(now, options.grace, &turn_expired_);
  for (const auto& a : turn_expired_) transport.Stop(a);
  if (options.abandon) AbandonOverdue(now, false);
  turn_retired_.clear();
  sched_.RetireIdleWorkers(now, &turn_retired_);
  for (const auto& w : turn_retired_) transport.StopWorker(w);
  CheckParks(transport, now);
  if (!options.place) return 0;
  turn_placements_.clear();
  Decide(now, &turn_placements_);
  for (const auto& p : turn_placements_) transport.Start(p, now);
  return turn_placements_.size();
}

void Driver::AbandonOverdue(double now, bool all) {
  for (size_t k = 0; k < stopping_.size();) {
    const uint32_t job = stopping_[k];
    JobRecord& j = jobs_[job];
    if (!j.in_flight || j.in_flight->abandon_at == core::kNever) {
      stopping_[k] = stopping_.back();
      stopping_.pop_back();
      continue;
    }
    ++k;
    if (now < j.in_flight->abandon_at && !all) continue;
    // Its thread or agent may still finish; that outcome then carries a stale serial.
    AttemptOutcome o;
    o.error = "did not stop when told to; abandoned";
    Finish(job, j.in_flight->serial, std::move(o), now);
  }
}

double Driver::NextWakeup() const {
  double t = sched_.NextWakeup();
  for (const auto& [key, park] : parks_)
    if (!park.checking) t = std::min(t, park.next);
  for (uint32_t job : stopping_)
    if (jobs_[job].in_flight) t = std::min(t, jobs_[job].in_flight->abandon_at);
  return t;
}

std::string Driver::NodeLossError(const std::string& step, int losses, const std::string& last) {
  return fmt::format("{} failed: node lost {} times while running this (last: {})", step, losses, last);
}

void Driver::NodeLost(uint32_t node, const std::string& why, double now) {
  const auto refs = sched_.NodeLost(node, now);
  if (!sinks_.empty()) {
    Event e{Event::Type::kNodeLost};
    e.time = now;
    e.node = nodes_[node].name;
    e.message = why;
    Emit(e);
  }
  for (const auto& r : refs) {
    JobRecord& j = jobs_[r.job];
    if (!j.in_flight || j.in_flight->serial != r.serial) continue;
    const InFlightAttempt a = std::move(*j.in_flight);
    j.in_flight.reset();
    const std::string& step = pipelines_[j.pipeline].spec.steps[a.step].name;
    Record(r.job, {step, nodes_[a.node].name, "lost", "node " + nodes_[a.node].name + " lost: " + why, a.step_attempt,
                   a.start, now, a.gpus, 0, {}});
    if (!sinks_.empty()) {
      Event f = Make(Event::Type::kAttemptFinished, j, a.step, static_cast<int>(a.node), now);
      f.attempt = a.step_attempt;
      f.status = "lost";
      f.message = "node lost: " + why;
      f.gpus = a.gpus;
      Emit(f);
    }
    if (sched_.Job(r.job).phase == core::Phase::kCancelled) EndJob(r.job, JobEnd::kCancelled, "", -1, now);
    if (sched_.Job(r.job).phase == core::Phase::kFailed)  // the step's node was lost too often
      EndJob(r.job, JobEnd::kFailed, NodeLossError(step, sched_.NodeLosses(r.job), "node " + nodes_[a.node].name +
                                                                                    " lost: " + why),
             a.step, now);
  }
  // Lineage may have sent waiting jobs back to their anchor step: every live job may have moved.
  for (uint32_t j = 0; j < jobs_.size(); ++j)
    if (jobs_[j].end == JobEnd::kLive) Changed(j);
}

bool Driver::AttemptWaiting(uint32_t job, uint32_t serial, const std::string& what) {
  if (job >= jobs_.size()) return false;
  JobRecord& j = jobs_[job];
  if (!j.in_flight || j.in_flight->serial != serial || j.in_flight->waiting == what) return false;
  const bool changed = what.empty() ? sched_.RetakeCpu(job, serial)
                                    : (j.in_flight->waiting.empty() ? sched_.ReleaseCpu(job, serial) : true);
  if (!changed) return false;
  j.in_flight->waiting = what;
  Changed(job);
  return true;
}

void Driver::FinishReport(RunReport* out, bool all) {
  if (!all) {
    out->succeeded += static_cast<int>(gone_succeeded_);
    out->cancelled += static_cast<int>(gone_cancelled_);
    for (const auto& j : jobs_) {
      if (j.end == JobEnd::kSucceeded) ++out->succeeded;
      else if (j.end == JobEnd::kFailed) ++out->failed;
      else ++out->cancelled;
      if (j.end != JobEnd::kFailed) continue;
      out->jobs.push_back(j.report);
      out->jobs.back().results = *j.results;
    }
    return;
  }
  out->succeeded += static_cast<int>(gone_succeeded_);
  out->cancelled += static_cast<int>(gone_cancelled_);
  out->jobs.reserve(jobs_.size());
  for (auto& j : jobs_) {
    if (j.report.status == "succeeded") ++out->succeeded;
    else if (j.report.status == "failed") ++out->failed;
    else ++out->cancelled;
    j.report.results = *j.results;
    out->jobs.push_back(std::move(j.report));
  }
  final_ = out;
}

void Driver::Forget(uint32_t job) {
  JobRecord& j = jobs_[job];
  if ((j.end != JobEnd::kSucceeded && j.end != JobEnd::kCancelled) || j.in_flight) return;
  const auto it = job_index_.find(j.report.id);
  if (it == job_index_.end() || it->second != job) return;  // already forgotten
  job_index_.erase(it);
  ReleaseDetail(job);
  free_.push_back(job);
}

void Driver::ReleaseDetail(uint32_t job) {
  JobRecord& j = jobs_[job];
  if (j.end == JobEnd::kLive) return;
  std::vector<AttemptReport>().swap(j.report.attempts);
  j.results = EmptyResults();
  j.history = EmptyHistory();
  std::string().swap(j.main_output);
}

}  // namespace baton::driver

namespace baton::driver {

bool Driver::Parked(uint32_t job, uint32_t serial, const std::string& id) const {
  const JobRecord& j = jobs_[job];
  return j.in_flight && j.in_flight->serial == serial && j.in_flight->parked == id;
}

void Driver::ParkAttempt(uint32_t job, const std::string& id, double poll, double now) {
  JobRecord& j = jobs_[job];
  InFlightAttempt& a = *j.in_flight;
  if (!sched_.Park(job, a.serial)) {  // a resident worker's attempt
    AttemptOutcome o;
    o.error = "a resident worker's attempt cannot park";
    o.retryable = false;
    Finish(job, a.serial, std::move(o), now);
    return;
  }
  a.parked = id;
  a.parked_at = now;
  a.waiting.clear();
  ParkState& park = parks_[{j.pipeline, a.step, id}];
  if (park.attempts.empty() && !park.checking) park.since = now;
  park.attempts.emplace_back(job, a.serial);
  park.next = std::min(park.next, now + std::max(0.0, poll));
  if (!sinks_.empty()) {
    Event e = Make(Event::Type::kProgress, j, a.step, static_cast<int>(a.node), now);
    e.attempt = a.step_attempt;
    e.data = {{"parked", id}};
    Emit(e);
  }
  Changed(job);
}

void Driver::CheckParks(Transport& transport, double now) {
  for (auto it = parks_.begin(); it != parks_.end();) {
    ParkState& park = it->second;
    // Copies, not bindings: the entry may be erased below before `id` is last used (TSan found
    // the use after free), and clang does not capture structured bindings in lambdas.
    const uint32_t pipeline = std::get<0>(it->first);
    const uint16_t step = std::get<1>(it->first);
    const std::string id = std::get<2>(it->first);
    std::erase_if(park.attempts, [&](const auto& a) { return !Parked(a.first, a.second, id); });
    if (park.attempts.empty() && !park.checking) {
      it = parks_.erase(it);
      continue;
    }
    if (!park.checking && park.next <= now) {
      if (transport.CheckPark(pipeline, step, id)) {
        park.checking = true;
        park.next = core::kNever;
      } else {
        const auto attempts = std::move(park.attempts);
        it = parks_.erase(it);
        for (const auto& [job, serial] : attempts) {
          AttemptOutcome o;
          o.error = "this backend cannot wait for parked attempts (park id " + id + ")";
          o.retryable = false;
          Finish(job, serial, std::move(o), now);
        }
        continue;
      }
    }
    ++it;
  }
}

void Driver::ParkChecked(Transport& transport, uint32_t pipeline, uint16_t step, const std::string& id,
                         ParkCheck check, double now) {
  auto it = parks_.find({pipeline, step, id});
  if (it == parks_.end()) return;
  ParkState& park = it->second;
  park.checking = false;
  if (!check.done) {
    park.next = std::min(park.next, now + std::max(0.0, check.poll_in));
    return;
  }
  const auto attempts = std::move(park.attempts);
  parks_.erase(it);
  for (const auto& [job, serial] : attempts) {
    if (!Parked(job, serial, id)) continue;
    JobRecord& j = jobs_[job];
    auto found = check.outcomes.find(j.report.id);
    if (found != check.outcomes.end()) {
      AttemptOutcome o = AttemptOutcome::From(std::move(found->second));
      o.end = now;
      j.in_flight->parked.clear();
      if (o.kind == StepOutcome::Kind::kParked) {  // parked again, on another id
        sched_.Unpark(job, serial);
        Finish(job, serial, std::move(o), now);
        continue;
      }
      Finish(job, serial, std::move(o), now);
      continue;
    }
    // Woken: it runs again, holding its resources again.
    InFlightAttempt& a = *j.in_flight;
    sched_.Unpark(job, serial);
    a.parked.clear();
    core::Placement p{job, serial, a.step, a.step_attempt, a.node, 0, a.deadline, a.worker};
    for (int g : a.gpus) p.gpu_mask |= uint64_t{1} << g;
    Changed(job);
    transport.Start(p, now);
  }
}

Json Driver::ParksJson(double now) const {
  Json out = Json::array();
  for (const auto& [key, park] : parks_) {
    const auto& [pipeline, step, id] = key;
    size_t n = 0;
    for (const auto& [job, serial] : park.attempts) n += Parked(job, serial, id) ? 1 : 0;
    out.push_back({{"step", pipelines_[pipeline].spec.steps[step].name},
                   {"id", id},
                   {"attempts", n},
                   {"since", park.since},
                   {"seconds", now - park.since},
                   {"checking", park.checking}});
  }
  return out;
}

size_t Driver::parked_count() const {
  size_t n = 0;
  for (const auto& j : jobs_) n += j.in_flight && !j.in_flight->parked.empty() ? 1 : 0;
  return n;
}

}  // namespace baton::driver
