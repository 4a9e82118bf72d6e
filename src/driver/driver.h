// Driver: the attempt lifecycle around the pure scheduling core, written once for every backend
// (the embedded runtime, the cluster head; docs/design.md "one driver kit"). Nomad's split: the core
// decides (placements), the Driver applies: it records what each job has in flight, turns an
// attempt's outcome into the core's Finish (ok / failed / timeout / cancelled / lost, retry with
// backoff, lineage), keeps every job's attempt history and step results, ends jobs, emits the
// events that logs, traces and the dashboard are built from, and renders the JSON views of jobs
// and nodes (views.h).
//
// A backend adds only what differs:
//   - a transport that carries placements to executors and outcomes back (a worker pool in the
//     embedded runtime, Redis streams to node agents in the cluster), and
//   - a store (JobStore below) told of every change it must persist (nothing in memory; Redis
//     hashes and lists in the cluster).
// Time is an argument (`now`, seconds on the backend's Clock), so a fake clock tests every timer.
//
// Every backend's loop (transport.h):
//   for (outcome arriving)  driver.Finish(job, serial, outcome, now);
//   driver.Turn(transport, now, {...});   // timeouts stopped, overdue abandoned, placements started
//
// Not thread-safe: one driver thread owns it (backends guard views with their own mutex).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "baton/events.h"
#include "baton/pipeline.h"
#include "baton/report.h"
#include "baton/status.h"
#include "core/scheduler.h"
#include "driver/transport.h"
#include "rates/llm_usage.h"

namespace baton::driver {

// How a job ended; kLive while it has work left.
enum class JobEnd : uint8_t { kLive, kSucceeded, kFailed, kCancelled };
const char* JobEndName(JobEnd end);  // "", "succeeded", "failed", "cancelled"

// The one attempt a job has in flight.
struct InFlightAttempt {
  uint32_t serial = 0;
  uint16_t step = 0;
  uint16_t step_attempt = 1;
  uint32_t node = 0;
  std::vector<int> gpus;
  double start = 0;                  // driver seconds when placed
  bool timed_out = false;            // past its deadline: whatever it reports counts as a timeout
  bool stop_requested = false;       // cancelled by the driver (Cancel): a "cancelled" outcome is expected
  double abandon_at = core::kNever;  // told to stop: given up on if still running after this
  std::string waiting;               // what it waits for outside the CPU ("rate openai_tokens"), "" none
  uint32_t worker = core::kNoWorker;  // the resident worker it joined (core::Placement::worker)
  std::string parked;                // the park id it waits for, holding nothing (core Park); "" none
  double parked_at = 0;              // driver seconds when it parked
  double deadline = core::kNever;    // its placement's deadline (kept for a woken attempt)
};

// What a transport reports about one attempt.
struct AttemptOutcome {
  StepOutcome::Kind kind = StepOutcome::Kind::kFailed;
  std::string error;
  bool retryable = true;
  Json result;               // kOk
  std::string main_output;   // StepOutcome::main_output
  std::string batch;         // StepOutcome::batch
  double start = -1;         // driver seconds; -1: the placement time
  double end = -1;           // driver seconds; -1: now
  int pid = 0;
  // Handed back unfinished by a draining node: re-queued without counting as a failed try
  // (recorded as "lost", error says why).
  bool handed_back = false;
  // Gone without an outcome (its node no longer holds it: see cluster/fence.h): recorded as
  // "lost" with `error` as the reason, re-queued without counting as a failed try.
  bool lost = false;
  std::string park_id;  // kParked: StepOutcome::park_id
  double park_poll = 0;

  static AttemptOutcome From(StepOutcome o) {
    AttemptOutcome a;
    a.kind = o.kind;
    a.error = std::move(o.error);
    a.retryable = o.retryable;
    a.result = std::move(o.result);
    a.main_output = std::move(o.main_output);
    a.batch = std::move(o.batch);
    a.park_id = std::move(o.park_id);
    a.park_poll = o.park_poll;
    return a;
  }
};

struct PipelineRecord {
  PipelineSpec spec;
  uint32_t core = 0;  // the core's pipeline id
  std::string id;     // the backend's name for it (the cluster's pipeline id), "" embedded
};

struct NodeRecord {
  std::string name;
  std::string address;  // where its artifacts are served ("" embedded)
  int pid = 0;
};

struct JobRecord {
  JobReport report;                     // id, input, status ("" while live), error, attempts
  uint32_t pipeline = 0;                // index into pipelines()
  JobEnd end = JobEnd::kLive;
  std::string main_output;              // named in the end event
  // {"step": result} of succeeded steps, and their attempts: replaced on change, never mutated,
  // so an attempt in flight may hold the version it started with.
  std::shared_ptr<const Json> results;
  std::shared_ptr<const std::vector<StepRun>> history;
  uint32_t results_version = 0;         // bumped whenever results and history change
  std::optional<InFlightAttempt> in_flight;
  uint32_t last_serial = 0;             // the last attempt id handed out for this job
};

// Told of every change a backend must persist. Called on the driver thread.
class JobStore {
 public:
  virtual ~JobStore() = default;
  virtual void JobChanged(uint32_t job) = 0;                                     // state, step, in flight, results
  virtual void AttemptRecorded(uint32_t job, const AttemptReport& attempt) = 0;  // appended to the history
};

// A job as a backend reloads it (the cluster head after a restart).
struct RestoredJob {
  std::string id, input;
  uint32_t pipeline = 0;
  core::Phase phase = core::Phase::kReady;
  uint16_t step = 0;
  std::vector<int32_t> homes;  // per step: node that ran it, -1 unknown
  uint32_t serial = 0;
  std::string error;
  Json results = Json::object();
  std::vector<StepRun> history;
  std::vector<AttemptReport> attempts;
  // The attempt it had in flight, if any: honoured when its node is known and it still fits.
  std::optional<InFlightAttempt> in_flight;  // node: an index, or past the end when unknown
  std::string in_flight_node;                // its node's name (for the message when unknown)
  std::string in_flight_lost_why;            // set by the store when it knows the attempt is gone
  double deadline = core::kNever;
  // Node losses of step lost_step's running attempts so far (core::Scheduler::SetMaxNodeLosses).
  uint16_t node_losses = 0, lost_step = 0;
};

class Driver {
 public:
  Driver() = default;
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  void SetStore(JobStore* store) { store_ = store; }
  // Where node views get a resident worker's host-side state (Step::WorkerStates): the embedded
  // runtime asks its step objects, the head what the node's agent last registered. Called under
  // the backend's view lock.
  void SetWorkerState(std::function<Json(const core::WorkerRef& worker)> f) {
    worker_state_ = std::move(f);
  }
  void AddSink(std::shared_ptr<EventSink> sink) { sinks_.push_back(std::move(sink)); }
  bool has_sinks() const { return !sinks_.empty(); }
  void Emit(const Event& e) const;

  core::Scheduler& scheduler() { return sched_; }
  const core::Scheduler& scheduler() const { return sched_; }

  // A pipeline: its pools, its core model. With `nodes_from` set, refused when no node can run
  // one of its steps (the embedded runtime knows its nodes up front; a head may not yet).
  Result<uint32_t> AddPipeline(PipelineSpec spec, std::string id, const std::string* nodes_from);
  int PipelineIndex(const std::string& id) const;
  const std::vector<PipelineRecord>& pipelines() const { return pipelines_; }

  // A node, or a lost node back again (same name). Emits node_joined.
  uint32_t AddNode(const NodeSpec& node, double now, std::string address = "", int pid = 0);
  // A node is gone: its in-flight attempts are recorded as lost and re-queued by the core
  // (lineage), jobs cancelled meanwhile end. Emits node_lost and attempt_finished(lost).
  void NodeLost(uint32_t node, const std::string& why, double now);
  const std::vector<NodeRecord>& nodes() const { return nodes_; }
  int NodeIndex(const std::string& name) const;

  // Room for `jobs` jobs in all (a backend that knows its job count up front: no reallocation).
  void Reserve(size_t jobs) { jobs_.reserve(jobs); }
  // A new job; its first step is ready at once. Emits job_submitted when `announce`. It takes the
  // place of a forgotten job (Forget) when there is one, else a new index.
  uint32_t Submit(std::string id, std::string input, uint32_t pipeline, double now, bool announce = true);
  // A job reloaded from a store. Returns its index; the in-flight attempt is dropped (recorded as
  // lost) when it cannot be honoured.
  uint32_t Restore(RestoredJob job, double now);
  int JobIndex(const std::string& id) const;
  size_t job_count() const { return jobs_.size(); }  // indices (places); a place may have held several jobs
  const JobRecord& job(uint32_t j) const { return jobs_[j]; }
  size_t ended_count() const { return ended_; }             // jobs of the run that ended, forgotten ones too
  size_t submitted_count() const { return submitted_; }     // jobs of the run, forgotten ones too
  size_t live_count() const { return submitted_ - ended_; }
  bool all_ended() const { return ended_ == submitted_; }
  // A succeeded or cancelled job that a backend has stored elsewhere (the runtime's jobs.jsonl) and
  // released (ReleaseDetail) leaves the driver: its id no longer resolves (JobIndex), and the next
  // Submit takes its place (the views show it until then). Counts and the LLM total keep it. A run
  // that forgets its ended jobs holds memory for the jobs in flight, not for every job. No-op for
  // a live or failed job (a retry needs it).
  void Forget(uint32_t job);
  // Jobs of the run that succeeded in an earlier run and never enter the driver (a resume skips
  // them without restoring them): counted as succeeded and ended, like forgotten ones.
  void CountSettled(size_t jobs) {
    submitted_ += jobs;
    ended_ += jobs;
    gone_succeeded_ += jobs;
  }
  // The index the next Submit returns.
  uint32_t NextIndex() const { return free_.empty() ? static_cast<uint32_t>(jobs_.size()) : free_.back(); }

  // Placements possible now; each is recorded as the job's in-flight attempt (attempt_started).
  void Decide(double now, std::vector<core::Placement>* out);
  // Nodes that ran each earlier step of the placed job (for artifact access), -1 unknown.
  std::vector<int32_t> Homes(uint32_t job, uint16_t upto_step) const;

  // The outcome of attempt `serial` of `job`. False (and nothing changes) when stale: the
  // attempt was lost, abandoned or replaced meanwhile.
  bool Finish(uint32_t job, uint32_t serial, AttemptOutcome outcome, double now);

  // Attempt `serial` of `job` waits for `what` ("rate openai_tokens") outside the CPU: its cpu
  // goes back to its node (core ReleaseCpu) and views say "waiting for rate openai_tokens"; an
  // empty `what` ends the wait (core RetakeCpu). Transports call it when the step host reports a
  // progress event {"waiting": ...} (step_host.h). False when stale or already so.
  bool AttemptWaiting(uint32_t job, uint32_t serial, const std::string& what);
  // Parked attempts (docs/design.md "Parked attempts"). An outcome of kind kParked given to Finish
  // parks the attempt (core Park: it holds nothing) on its step's park id; the driver keeps one
  // timer per park id, not per attempt, and Turn asks Transport::CheckPark when it is due. The
  // answer comes back here: not done, the timer is set again; done, each attempt parked on the id
  // ends with its job's outcome, or is woken (core Unpark, Transport::Start of the same attempt)
  // when the answer has none for it. Cancel ends a parked attempt at once.
  void ParkChecked(Transport& transport, uint32_t pipeline, uint16_t step, const std::string& id, ParkCheck check,
                   double now);
  // The park ids with attempts parked now: [{"step", "id", "attempts", "since", "next_check"}].
  Json ParksJson(double now) const;
  size_t parked_count() const;
  // Why a job's current step is not (fully) running: the in-flight attempt's wait, else the core's.
  std::string WaitText(uint32_t job, double now) const;

  // Cancels a job (`why`: "cancelled", "run interrupted"). Returns its in-flight attempt for the
  // transport to stop (the job ends when that attempt reports); ends the job at once otherwise.
  // `grace`: how long the attempt may take to stop before AbandonOverdue gives up on it.
  std::vector<core::AttemptRef> Cancel(uint32_t job, const std::string& why, double now, double grace);
  // Gives a failed job another go from its failed step. False when it is not failed.
  bool Retry(uint32_t job, double now);
  // Appends in-flight attempts past their deadline (each once): marked timed out, to be stopped.
  void Expired(double now, double grace, std::vector<core::AttemptRef>* out);
  // Attempts told to stop that have not within their grace: ended as failed ("did not stop within
  // Ns of being cancelled; abandoned"); their late outcome is ignored. With `all`, every
  // stopping attempt is given up now (the end of a run).
  void AbandonOverdue(double now, bool all);
  // One turn of a backend's loop, after the outcomes that arrived were applied: attempts past
  // their deadline are stopped through `transport`; resident workers idle past their timeout
  // (or on a draining node) are retired and stopped through it; with `abandon`, attempts that did not stop
  // within `grace` are given up (AbandonOverdue); with `place`, the core's placements now are
  // started through `transport`. Returns how many were started.
  struct TurnOptions {
    double grace = core::kNever;  // --cancel-grace of `baton run` and of `baton head`
    bool abandon = false;
    bool place = true;            // false while a run stops (no new attempts)
  };
  size_t Turn(Transport& transport, double now, const TurnOptions& options);
  // Earliest time something may change without an event: a retry, a deadline, an abandon.
  double NextWakeup() const;

  // Views (views.h has the shapes).
  Json JobJson(uint32_t job, double now, bool detail) const;
  Json NodesJson() const;
  // The snapshot (views.h "snapshot": schema, pipeline, time, jobs, nodes) and one job's detail
  // (null when unknown): what every backend's Snapshot()/JobDetail() serve.
  Json Snapshot(const std::string& pipeline_name, double now) const;
  Json JobDetail(const std::string& id, double now) const;
  std::string ProgressLine(double now) const;
  // For views of large runs (overview.cc): Runtime::Overview()/JobsPage() shapes, one cheap pass
  // over the scheduler's job states and a JSON object only for the jobs of the page.
  Json Overview(const std::string& pipeline_name, double now) const;
  Json JobsPage(const JobsQuery& query, double now) const;
  // JobsPage's filtered scan over job indices [from, to) only, so that a caller can scan a large
  // run in slices, letting go of its lock between them (the cluster head): `*matched` counts the
  // matching jobs seen so far, `*page` gets those at positions [offset, offset + limit).
  void ScanJobs(const JobsQuery& query, double now, size_t from, size_t to, size_t* matched, Json* page) const;
  // Moves every job's report into `out` (results included); views keep working from it. With
  // `all` false (a run whose ended jobs left memory): counts every job and copies only the failed
  // jobs' reports (their ids, errors, attempts); views keep working from the records.
  void FinishReport(RunReport* out, bool all = true);
  // Frees an ended job's attempts, results and history once a backend has stored them elsewhere
  // (the runtime's jobs.jsonl): views then show it without them. No-op for a live job.
  void ReleaseDetail(uint32_t job);

 private:
  Event Make(Event::Type type, const JobRecord& j, int step = -1, int node = -1, double now = 0) const;
  void EndJob(uint32_t job, JobEnd end, std::string error, int step, double now);
  // The job's error when its step's node was lost too often (core::Scheduler::SetMaxNodeLosses).
  static std::string NodeLossError(const std::string& step, int losses, const std::string& last);
  void Record(uint32_t job, AttemptReport a);
  void Changed(uint32_t job) {
    if (store_) store_->JobChanged(job);
  }
  const JobReport& ReportOf(uint32_t j) const { return final_ ? final_->jobs[j] : jobs_[j].report; }
  void ParkAttempt(uint32_t job, const std::string& id, double poll, double now);
  void CheckParks(Transport& transport, double now);
  struct ParkState {
    std::vector<std::pair<uint32_t, uint32_t>> attempts;  // (job, serial); stale entries skipped
    double since = 0;
    double next = core::kNever;  // when to ask CheckPark
    bool checking = false;       // asked; the answer has not come back
  };
  using ParkKey = std::tuple<uint32_t, uint16_t, std::string>;  // pipeline, step, id
  bool Parked(uint32_t job, uint32_t serial, const std::string& id) const;

  core::Scheduler sched_;
  std::vector<PipelineRecord> pipelines_;
  std::vector<NodeRecord> nodes_;
  std::map<std::string, uint32_t> node_index_;
  std::vector<JobRecord> jobs_;
  std::map<std::string, uint32_t> job_index_;
  std::vector<uint32_t> stopping_;  // jobs whose in-flight attempt was told to stop
  std::vector<core::AttemptRef> expired_, turn_expired_;  // scratch for Expired, Turn
  std::vector<core::Placement> turn_placements_;           // scratch for Turn
  std::vector<core::WorkerRef> turn_retired_;              // scratch for Turn
  size_t ended_ = 0;
  size_t submitted_ = 0;
  std::vector<uint32_t> free_;                  // places of forgotten jobs, for Submit
  size_t gone_succeeded_ = 0, gone_cancelled_ = 0;  // forgotten jobs whose place a new job took
  JobStore* store_ = nullptr;
  std::vector<std::shared_ptr<EventSink>> sinks_;
  const RunReport* final_ = nullptr;
  std::function<Json(const core::WorkerRef& worker)> worker_state_;
  std::map<ParkKey, ParkState> parks_;
  rates::LlmUsage llm_total_;  // LLM usage of every succeeded step so far, kept as results leave memory
};

}  // namespace baton::driver
