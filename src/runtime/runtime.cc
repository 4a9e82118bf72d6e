// The embedded runtime: the driver kit (src/driver) with an in-memory store and a worker pool as
// its transport (see include/baton/runtime.h and README.md).
#include "baton/runtime.h"
#include "driver/work_cleaner.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <condition_variable>
#include <mutex>

#include <fmt/format.h>

#include "util/clock.h"
#include "driver/driver.h"
#include "driver/output.h"
#include "driver/requests.h"
#include "driver/scheduler_setup.h"
#include "driver/step_host.h"
#include "baton/thread_annotations.h"
#include "driver/worker_pool.h"
#include "rates/llm_usage.h"
#include "rates/memory_limiter.h"
#include "runtime/report.h"
#include "runtime/resume.h"
#include "util/atomic_file.h"

namespace baton {

namespace {

// Outcomes travel from worker threads to the driver thread through this queue. It is shared with
// every attempt so that an abandoned attempt finishing after the Runtime is gone still has a
// queue to push into.
struct CompletionQueue {
  struct Completion {
    uint32_t job, serial;
    driver::AttemptOutcome outcome;
    bool wait_notice = false;  // not an end: the attempt started or ended a wait (`waiting`)
    std::string waiting;
    bool park_check = false;  // not an attempt's: Step::CheckPark's answer for `waiting` (the id)
    uint16_t step = 0;
    ParkCheck check;
  };
  Mutex mu;
  CondVar cv;
  std::vector<Completion> done GUARDED_BY(mu);
  std::atomic<size_t> count{0};

  void Push(Completion c) EXCLUDES(mu) {
    {
      MutexLock lock(&mu);
      done.push_back(std::move(c));
      count.fetch_add(1, std::memory_order_relaxed);
    }
    cv.Signal();
  }
};

}  // namespace

// The runtime's transport (driver/transport.h): attempts run as tasks on the worker pool.
struct Runtime::Impl : driver::Transport {
  PipelineSpec pipeline;
  ClusterSpec cluster;
  RunOptions options;
  driver::StepList steps;
  std::vector<std::filesystem::path> node_workdirs;
  // Shared with attempts (artifact lookup), so an abandoned one never reads the Runtime.
  std::shared_ptr<const std::vector<std::string>> step_names;
  std::shared_ptr<const std::vector<std::filesystem::path>> node_dirs;
  const Clock* clock = &Clock::Real();
  double t0 = 0;
  bool started = false;

  // Guards the driver and what goes with it against Snapshot()/CancelJob() from other threads;
  // recursive so that a sink may call Snapshot() from OnEvent on the driver thread.
  mutable RecursiveMutex state_mu;
  driver::Driver driver GUARDED_BY(state_mu);
  // Per job: the cancel token of its attempt in flight (the transport's handle to stop it).
  struct Launched {
    uint32_t serial = 0;
    std::shared_ptr<CancelToken> cancel;
    uint64_t workdir_made_on = 0;  // nodes where this job's folder exists (bit per node)
  };
  std::vector<Launched> launched GUARDED_BY(state_mu);
  driver::Requests requests;  // cancel, retry, stop from other threads (driver/requests.h)
  bool running GUARDED_BY(state_mu) = false;

  std::shared_ptr<driver::SinkList> sinks = std::make_shared<driver::SinkList>();
  std::shared_ptr<RateLimiter> rates;  // the run's rates and budget, shared with attempts
  rates::MemoryRateLimiter* memory_rates = nullptr;  // the same; journals its spending until ~Runtime
  std::shared_ptr<LogSink> log;
  std::shared_ptr<CompletionQueue> completions = std::make_shared<CompletionQueue>();
  WorkerPool pool;
  RunReport final_report GUARDED_BY(state_mu);
  runtime::JobLines lines;                         // OUT/jobs.jsonl
  TraceWriter trace;                               // --trace, drawn as attempts end
  std::unique_ptr<runtime::JournalStore> journal;  // the store: journal (when on) and lines
  std::vector<std::string> notices;
  Mutex fatal_mu;
  std::string fatal GUARDED_BY(fatal_mu);  // why the run stopped itself (the journal failed)
  // Streaming admission (RunOptions::next_input): jobs are read as the window has room.
  uint32_t pipeline_id = 0;
  bool admitting GUARDED_BY(state_mu) = false;
  size_t window = 0;

  double Now() const { return started ? clock->Monotonic() - t0 : 0; }

  void Start();
  void ApplyRequests(double now) REQUIRES(state_mu);
  // The Transport's calls come from the driver, under state_mu.
  void Start(const core::Placement& p, double now) override REQUIRES(state_mu);  // a task on the pool
  void Stop(const core::AttemptRef& ref) override REQUIRES(state_mu);            // its cancel token
  void StopWorker(const core::WorkerRef& w) override { steps[w.step]->RetireWorker(static_cast<int>(w.worker)); }
  bool CheckPark(uint32_t pipeline, uint16_t step, const std::string& id) override;  // a task on the pool
  // Parked attempts and the steps' batches for views: adds "parked" and "batches" when any.
  void AddParks(Json* view, double now) const REQUIRES(state_mu);
  void WaitForCompletions(std::vector<CompletionQueue::Completion>* batch);
  void ApplyCompletions(std::vector<CompletionQueue::Completion>* batch);
  void Release() REQUIRES(state_mu);
  void Admit(double now) REQUIRES(state_mu);
  Json SavedJob(const std::string& id);  // a job's line in jobs.jsonl by its number; null when none
  void WriteOutputs();
  Status WriteSummary(const RunReport& report) REQUIRES(state_mu);
  void JournalFailed(const Status& st);
};

// The journal cannot keep what happens any more: a resumed run would repeat work and, worse, not
// know of money spent. So the run stops as on Ctrl-C (its jobs resume next time from what the
// journal holds), the budget admits no new LLM request, and the run's status says why.
void Runtime::Impl::JournalFailed(const Status& st) {
  const std::string why = "the journal failed: " + st.message();
  {
    MutexLock lock(&fatal_mu);
    if (!fatal.empty()) return;
    fatal = why + "; run stopped (run again on the same --out to resume from what the journal holds)";
  }
  if (memory_rates) memory_rates->RefuseBudget(why);
  if (log) log->Line("baton: error: " + why + "; stopping");
  requests.Stop();
  completions->cv.Signal();
}

Runtime::Runtime() : impl_(std::make_unique<Impl>()) {}

Status Runtime::Load(PipelineSpec pipeline, ClusterSpec cluster, RunOptions options, StepRegistry& registry) {
  Impl& m = *impl_;
  RecursiveLock lock(&m.state_mu);  // nothing else runs yet; held so the analysis sees every access
  m.pipeline = std::move(pipeline);
  m.cluster = std::move(cluster);
  m.options = std::move(options);
  if (m.options.clock) m.clock = m.options.clock;
  if (m.cluster.nodes.empty()) m.cluster.nodes.push_back(DetectLocalNode());
  if (m.cluster.nodes.size() > 64)
    return Status::Invalid("at most 64 nodes in one process; use cluster mode for more");

  auto steps = driver::CreateSteps(m.pipeline, registry);
  if (!steps.ok()) return steps.status();
  m.steps = std::move(*steps);
  m.driver.SetWorkerState([&m](const core::WorkerRef& ref) -> Json {
    const Json all = m.steps[ref.step]->WorkerStates();
    if (all.is_array())
      for (const auto& w : all)
        if (w.value("worker", -1) == static_cast<int>(ref.worker)) return w;
    return Json();
  });
  for (const auto& [k, v] : m.cluster.pools) m.driver.scheduler().SetPool(k, v);
  for (const auto& n : m.cluster.nodes) {
    m.driver.AddNode(n, 0);
    m.node_workdirs.push_back(n.workdir.empty() ? m.options.out / "nodes" / n.name : n.workdir);
  }
  std::vector<std::string> names;
  for (const auto& s : m.pipeline.steps) names.push_back(s.name);
  m.step_names = std::make_shared<const std::vector<std::string>>(std::move(names));
  m.node_dirs = std::make_shared<const std::vector<std::filesystem::path>>(m.node_workdirs);
  const std::string nodes_from = m.cluster.file.empty() ? "this machine" : m.cluster.file.string();
  auto pid = m.driver.AddPipeline(m.pipeline, "", &nodes_from);
  if (!pid.ok()) return pid.status();

  // Only where some step makes a work folder: a sink turns events on, which costs no-op runs.
  bool makes_work = false;
  for (const auto& st : m.steps) makes_work = makes_work || st->NeedsWorkdir();
  if (!m.options.keep_work && makes_work)
    m.sinks->push_back(std::make_shared<WorkCleaner>(m.node_workdirs, m.options.out));
  m.log = std::make_shared<LogSink>(m.options.log_stream, m.options.log_format, m.options.progress_line);
  if (m.options.log_format != RunOptions::LogFormat::kNone || m.options.progress_line) m.sinks->push_back(m.log);
  auto journal =
      runtime::AddJobs(m.driver, *pid, m.pipeline, m.steps, m.options, m.node_workdirs, &m.lines, &m.notices);
  if (!journal.ok()) return journal.status();
  m.journal = std::move(*journal);
  // The budget is the output folder's: it starts from what earlier runs in it spent, and every
  // request's cost is journaled for the next one.
  auto limiter = rates::NewMemoryLimiter(m.pipeline.rates, m.cluster.rates, m.pipeline.budget_usd);
  m.memory_rates = limiter.get();
  if (m.journal->journaling())
    limiter->Resume(m.journal->spent_before(), [store = m.journal.get()](double usd) { store->AppendSpent(usd); });
  m.rates = std::move(limiter);
  // What steps made durable in earlier runs on this output folder (an llm step's batches).
  for (size_t s = 0; s < m.steps.size(); ++s) {
    const auto found = m.journal->past_notes().find(m.pipeline.steps[s].name);
    if (found == m.journal->past_notes().end()) continue;
    std::vector<Json> notes;
    for (const auto& text : found->second) {
      Json n = Json::parse(text, nullptr, false);
      if (!n.is_discarded()) notes.push_back(std::move(n));
    }
    m.steps[s]->RestoreNotes(notes);
  }
  m.journal->OnFailure([&m](const Status& st) { m.JournalFailed(st); });
  m.launched.resize(m.driver.job_count());
  m.pipeline_id = *pid;
  m.admitting = m.journal->streaming();
  double cpus = 0;
  for (const auto& n : m.cluster.nodes) cpus += n.cpus;
  m.window = m.options.admit_window > 0 ? m.options.admit_window
                                        : std::max<size_t>(4096, static_cast<size_t>(4 * cpus));
  return Status::Ok();
}

Result<std::unique_ptr<Runtime>> Runtime::Create(PipelineSpec pipeline, ClusterSpec cluster, RunOptions options,
                                                 StepRegistry& registry) {
  std::unique_ptr<Runtime> runtime(new Runtime());
  // Every refusal is the caller's input (pipeline, nodes, output folder): kInvalidArgument.
  if (Status loaded = runtime->Load(std::move(pipeline), std::move(cluster), std::move(options), registry);
      !loaded.ok())
    return Status::Invalid(loaded.message());
  return runtime;
}

Runtime::~Runtime() {
  // An abandoned attempt may settle a request after the journal is gone.
  if (impl_->memory_rates) impl_->memory_rates->StopRecording();
}

void Runtime::AddSink(std::shared_ptr<EventSink> sink) { impl_->sinks->push_back(std::move(sink)); }

void Runtime::RequestStop() {
  impl_->requests.Stop();
  impl_->completions->cv.Signal();
}

bool Runtime::CancelJob(const std::string& id) {
  RecursiveLock lock(&impl_->state_mu);
  const int j = impl_->driver.JobIndex(id);
  if (j < 0 || impl_->driver.job(j).end != driver::JobEnd::kLive) return false;
  impl_->requests.Cancel(id);
  impl_->completions->cv.Signal();
  return true;
}

bool Runtime::RetryJob(const std::string& id) {
  RecursiveLock lock(&impl_->state_mu);
  const int j = impl_->driver.JobIndex(id);
  if (!impl_->running || j < 0 || impl_->driver.job(j).end != driver::JobEnd::kFailed) return false;
  impl_->requests.Retry(id);
  impl_->completions->cv.Signal();
  return true;
}

const RunOptions& Runtime::options() const { return impl_->options; }

const std::vector<std::string>& Runtime::notices() const { return impl_->notices; }

std::filesystem::path Runtime::JobWorkdir(const std::string& job_id, const std::string& node) const {
  RecursiveLock lock(&impl_->state_mu);
  const int n = impl_->driver.NodeIndex(node);
  return n < 0 ? std::filesystem::path() : impl_->node_workdirs[n] / job_id;
}

void Runtime::Impl::Start() {
  RecursiveLock lock(&state_mu);
  std::filesystem::create_directories(options.out);
  for (const auto& d : node_workdirs) std::filesystem::create_directories(d);
  if (Status st = lines.Open(options.out / "jobs.jsonl"); !st.ok() && log) log->Line("baton: " + st.message());
  if (Status st = lines.OpenIndex(options.out / ".baton" / "jobs.index"); !st.ok() && log)
    log->Line("baton: " + st.message());
  if (!options.trace.empty()) {
    std::vector<std::string> names;
    for (const auto& n : driver.nodes()) names.push_back(n.name);
    if (Status st = trace.Open(options.trace, names); st.ok()) journal->SetTrace(&trace);
    else if (log) log->Line("baton: " + st.message());
  }
  t0 = clock->Monotonic();
  started = true;
  running = true;
  for (auto& s : *sinks) driver.AddSink(s);
  if (!driver.has_sinks()) return;
  for (const auto& n : driver.nodes()) {
    Event e{Event::Type::kNodeJoined};
    e.node = n.name;
    driver.Emit(e);
  }
  for (uint32_t i = 0; i < driver.job_count(); ++i) {
    Event e{Event::Type::kJobSubmitted};
    e.job = driver.job(i).report.id;
    e.message = driver.job(i).report.input;
    driver.Emit(e);
  }
}

// Cancel and retry requests from other threads, and Ctrl-C.
void Runtime::Impl::ApplyRequests(double now) {
  if (requests.Apply(driver, *this, now, options.cancel_grace, runtime::kInterrupted).stopped_now && log)
    log->Line("baton: stopping: no new attempts; waiting for running ones to end (Ctrl-C again to quit now)");
}

void Runtime::Impl::Stop(const core::AttemptRef& r) {
  if (launched[r.job].serial == r.serial && launched[r.job].cancel) launched[r.job].cancel->cancel();
}

void Runtime::Impl::Start(const core::Placement& p, double now) {
  const driver::JobRecord& j = driver.job(p.job);
  Launched& l = launched[p.job];
  l.serial = p.serial;
  l.cancel = std::make_shared<CancelToken>();
  auto spec = std::make_shared<driver::AttemptSpec>();
  spec->step = steps[p.step];
  spec->job = j.report.id;
  spec->step_name = pipeline.steps[p.step].name;
  spec->node = driver.nodes()[p.node].name;
  spec->input = j.report.input;
  spec->attempt = p.step_attempt;
  spec->results = j.results;
  spec->history = j.history;
  spec->workdir = node_workdirs[p.node] / j.report.id;
  spec->outdir = options.out;
  spec->gpus = j.in_flight->gpus;
  spec->worker = driver::ExecutorWorkerId(p.worker);
  spec->make_workdir = !(l.workdir_made_on & (uint64_t{1} << p.node));
  if (spec->make_workdir && steps[p.step]->NeedsWorkdir()) l.workdir_made_on |= uint64_t{1} << p.node;
  // One process: the producing node's job folder is on this machine. Resolved only when a step
  // asks, from what the attempt owns (the homes at launch, shared names and folders).
  spec->artifact = [homes = driver.Homes(p.job, p.step), names = step_names, dirs = node_dirs, job = j.report.id,
                    workdir = spec->workdir](std::string_view step,
                                             std::string_view relative) -> Result<std::filesystem::path> {
    std::filesystem::path base = workdir;
    for (size_t s = 0; s < homes.size(); ++s)
      if ((*names)[s] == step && homes[s] >= 0) base = (*dirs)[homes[s]] / job;
    std::filesystem::path path = base / std::string(relative);
    if (!std::filesystem::exists(path))
      return Status::NotFound("artifact " + std::string(step) + ":" + std::string(relative) + " not found");
    return path;
  };
  spec->sinks = sinks;
  spec->rates = rates;
  spec->on_wait = [queue = completions, job = p.job, serial = p.serial](const std::string& what) {
    queue->Push({job, serial, {}, true, what, false, 0, {}});
  };
  spec->clock = clock;
  spec->t0 = t0;
  (void)now;
  pool.Submit([spec, cancel = l.cancel, queue = completions, job = p.job, serial = p.serial]() mutable {
    driver::AttemptOutcome outcome = driver::AttemptOutcome::From(driver::RunAttempt(*spec, *cancel));
    outcome.end = spec->clock->Monotonic() - spec->t0;
    spec.reset();  // release the results before the driver copies them on write
    queue->Push({job, serial, std::move(outcome), false, {}, false, 0, {}});
  });
}

bool Runtime::Impl::CheckPark(uint32_t, uint16_t step, const std::string& id) {
  auto ctx = std::make_shared<ParkContext>();
  ctx->id = id;
  ctx->step = pipeline.steps[step].name;
  ctx->outdir = options.out;
  ctx->rates = rates.get();
  if (journal->journaling())
    ctx->note = [store = journal.get(), name = ctx->step](const Json& note) { return store->AppendNote(name, note); };
  pool.Submit([ctx, rates = rates, object = steps[step], queue = completions, step]() {
    ParkCheck check;
    try {
      check = object->CheckPark(*ctx);
    } catch (const std::exception& e) {  // asked again later
      check.done = false;
      check.poll_in = 5;
    }
    queue->Push({0, 0, {}, false, ctx->id, true, step, std::move(check)});
  });
  return true;
}

void Runtime::Impl::AddParks(Json* view, double now) const {
  Json batches = Json::array();
  for (size_t s = 0; s < steps.size(); ++s) {
    const Json states = steps[s]->ParkStates();
    if (!states.is_array()) continue;
    for (Json b : states) {
      b["step"] = pipeline.steps[s].name;
      batches.push_back(std::move(b));
    }
  }
  if (!batches.empty()) (*view)["batches"] = std::move(batches);
  Json parked = driver.ParksJson(now);
  if (!parked.empty()) (*view)["parked"] = std::move(parked);
}

void Runtime::Impl::WaitForCompletions(std::vector<CompletionQueue::Completion>* batch) {
  CompletionQueue& q = *completions;
  // Spin briefly first: completions of short attempts arrive within microseconds.
  for (int i = 0; i < 2000 && q.count.load(std::memory_order_relaxed) == 0; ++i) CpuRelax();
  MutexLock lock(&q.mu);
  if (q.done.empty() && !requests.stop_requested()) {
    double wake;
    {
      RecursiveLock state(&state_mu);
      wake = std::min(driver.NextWakeup(), Now() + 0.1);
    }
    // Clock::WaitFor takes a std::unique_lock: it adopts the held mutex and leaves it held.
    std::unique_lock<std::mutex> native(q.mu.native(), std::adopt_lock);
    clock->WaitFor(q.cv.native(), native, wake - Now());
    native.release();
  }
  batch->swap(q.done);
  q.count.store(0, std::memory_order_relaxed);
}

void Runtime::Impl::ApplyCompletions(std::vector<CompletionQueue::Completion>* batch) {
  RecursiveLock lock(&state_mu);
  const double now = Now();
  for (auto& c : *batch) {
    if (c.wait_notice) {
      driver.AttemptWaiting(c.job, c.serial, c.waiting);
      continue;
    }
    if (c.park_check) {
      driver.ParkChecked(*this, 0, c.step, c.waiting, std::move(c.check), now);
      continue;
    }
    if (launched[c.job].serial == c.serial) launched[c.job].cancel.reset();
    driver.Finish(c.job, c.serial, std::move(c.outcome), now);
  }
  batch->clear();
  Release();
}

void Runtime::Impl::Release() {
  for (uint32_t job : journal->released()) {
    driver.ReleaseDetail(job);
    if (journal->streaming()) driver.Forget(job);  // its place goes to the next job admitted
  }
  journal->released().clear();
}

// Streaming admission: inputs read while fewer than `window` jobs are live; none after a stop.
void Runtime::Impl::Admit(double now) {
  if (admitting && requests.stopped()) admitting = false;
  std::string input;
  while (admitting && driver.live_count() < window) {
    if (!options.next_input(&input)) {
      admitting = false;
      break;
    }
    const uint32_t job = journal->Admit(driver, pipeline_id, std::move(input), now, options.job_prefix);
    if (job >= launched.size()) launched.resize(job + 1);
    else launched[job].workdir_made_on = 0;  // the place's earlier job had its own folders
    input.clear();
  }
}

void Runtime::Impl::WriteOutputs() {
  RecursiveLock lock(&state_mu);
  RunReport& report = final_report;
  report.seconds = Now();
  report.interrupted = requests.stopped();
  if (Status st = journal->Flush(); !st.ok()) JournalFailed(st);
  {
    MutexLock fatal_lock(&fatal_mu);
    report.error = fatal;
  }
  Release();
  driver.FinishReport(&report, options.keep_finished);
  if (Status st = WriteSummary(report); !st.ok() && log) log->Line("baton: " + st.message());
  if (trace.is_open()) {
    journal->SetTrace(nullptr);
    if (Status st = trace.Close(); !st.ok() && log) log->Line("baton: " + st.message());
  }
  if (driver.has_sinks()) {
    Event e{Event::Type::kRunFinished};
    e.time = report.seconds;
    e.message = fmt::format("{} succeeded, {} failed, {} cancelled", report.succeeded, report.failed, report.cancelled);
    driver.Emit(e);
  }
}

// summary.json: counts, the LLM total, the failed jobs (their lines in jobs.jsonl, else from the
// report) and where every job is (jobs.jsonl), so its size follows the failures, not the run;
// streamed to a temporary file renamed over the target.
Status Runtime::Impl::WriteSummary(const RunReport& report) {
  if (Status st = lines.Flush(); !st.ok()) return st;
  rates::LlmUsage llm = journal->released_llm();
  rates::LlmUsage in_report;
  if (rates::LlmUsage::FromJson(rates::SumLlmUsage(report), &in_report)) llm.Add(in_report);
  const std::filesystem::path file = options.out / "summary.json", tmp = options.out / ".summary.json.tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return Status::Unavailable(tmp.string() + ": cannot write");
  Json llm_json = llm.ToJson();
  Json parks;
  AddParks(&parks, report.seconds);
  if (parks.contains("batches")) llm_json["batches"] = parks["batches"];  // the llm step's batches, if any
  std::string buf = fmt::format(
      "{{\n \"schema\": {},\n \"seconds\": {},\n \"jobs\": {},\n \"succeeded\": {},\n \"failed\": {},\n"
      " \"cancelled\": {},\n \"interrupted\": {},\n \"exit_code\": {},\n{} \"llm\": {},\n"
      " \"jobs_file\": \"jobs.jsonl\",\n \"failed_jobs\": [",
      runtime::kSummarySchema, report.seconds, report.succeeded + report.failed + report.cancelled, report.succeeded,
      report.failed, report.cancelled, report.interrupted, report.ExitCode(),
      report.error.empty() ? "" : " \"error\": " + Json(report.error).dump() + ",\n", llm_json.dump());
  Status st;
  bool first = true;
  for (const JobReport& job : report.jobs) {
    if (job.status != "failed") continue;
    buf += first ? "\n  " : ",\n  ";
    first = false;
    const int i = driver.JobIndex(job.id);
    const bool lined = i >= 0 && lines.Has(i);
    if (lined) st = lines.Read(i, &buf);
    if (!lined || !st.ok()) runtime::AppendJobJson(job, job.results, &buf);
    if (buf.size() >= (1u << 20)) {
      std::fwrite(buf.data(), 1, buf.size(), f);
      buf.clear();
    }
  }
  buf += first ? "]\n}\n" : "\n ]\n}\n";
  std::fwrite(buf.data(), 1, buf.size(), f);
  const bool ok = std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  std::fclose(f);
  if (!ok) return Status::Unavailable(tmp.string() + ": write failed");
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) return Status::Unavailable(file.string() + ": " + ec.message());
  return Status::Ok();
}

// One turn: requests, timeouts, abandoned attempts, new placements; then wait for outcomes.
const RunReport& Runtime::Run() {
  Impl& m = *impl_;
  m.Start();
  std::vector<CompletionQueue::Completion> batch;
  double next_progress = 0;
  driver::Driver::TurnOptions turn;
  turn.grace = m.options.cancel_grace;
  turn.abandon = true;
  while (true) {
    {
      RecursiveLock lock(&m.state_mu);
      const double now = m.Now();
      m.ApplyRequests(now);
      m.Admit(now);
      turn.place = !m.requests.stopped();
      m.driver.Turn(m, now, turn);
      m.Release();
      if (m.options.progress_line && now >= next_progress) {
        m.log->SetProgress(m.driver.ProgressLine(now));
        next_progress = now + 0.2;
      }
      if (m.driver.all_ended() && !m.admitting) {
        m.running = false;
        break;
      }
    }
    m.WaitForCompletions(&batch);
    m.ApplyCompletions(&batch);
  }
  if (m.options.progress_line) m.log->SetProgress("");
  m.WriteOutputs();
  return m.final_report;
}

Json Runtime::JobDetail(const std::string& id) const {
  RecursiveLock lock(&impl_->state_mu);
  Json detail = impl_->driver.JobDetail(id, impl_->Now());
  const int j = impl_->driver.JobIndex(id);
  if (j < 0) return impl_->SavedJob(id);  // left memory (streaming): its line in jobs.jsonl, by number
  // A finished job whose detail left memory: its attempts and results come from jobs.jsonl.
  if (j >= 0 && !impl_->options.keep_finished && impl_->lines.Has(j) && detail.is_object() &&
      detail.value("attempts", Json::array()).empty()) {
    std::string line;
    if (impl_->lines.Read(j, &line).ok()) {
      Json saved = Json::parse(line, nullptr, false);
      if (saved.is_object()) {
        detail["attempts"] = saved["attempts"];
        detail["results"] = saved["results"];
      }
    }
  }
  return detail;
}

Json Runtime::Snapshot() const {
  RecursiveLock lock(&impl_->state_mu);
  Json snap = impl_->driver.Snapshot(impl_->pipeline.name, impl_->Now());
  impl_->AddParks(&snap, impl_->Now());
  return snap;
}

Json Runtime::Overview() const {
  RecursiveLock lock(&impl_->state_mu);
  Json view = impl_->driver.Overview(impl_->pipeline.name, impl_->Now());
  impl_->AddParks(&view, impl_->Now());
  return view;
}

// A streamed run's jobs are numbered in input order: a page is read by number, a live job from the
// driver, one that left memory from jobs.jsonl (its index). A filtered page walks the numbers too:
// a line is checked as text first (its `"state": "..."`, the text anywhere in it) and parsed only
// when it may match. A filter of states that stay in memory (ready, backoff, running, failed)
// reads nothing from disk; one that needs disk stops reading once its page is full when the
// counts give its total (states only), and reads every line for a text (about a second per
// million jobs).
Json Runtime::JobsPage(const JobsQuery& query) const {
  Impl& m = *impl_;
  RecursiveLock lock(&m.state_mu);
  if (!m.journal->streaming()) return m.driver.JobsPage(query, m.Now());
  const double now = m.Now();
  const size_t jobs = m.driver.submitted_count();
  const bool filtered = !query.states.empty() || !query.text.empty();
  auto wanted = [&](const std::string& state) {
    return query.states.empty() || std::find(query.states.begin(), query.states.end(), state) != query.states.end();
  };
  // Succeeded and cancelled jobs leave memory; the other states are all in the driver.
  const bool on_disk = !filtered || wanted("succeeded") || wanted("cancelled");
  size_t known_total = SIZE_MAX;  // matches, when the counts give them without reading every line
  if (!filtered) {
    known_total = jobs;
  } else if (query.text.empty()) {
    const Json counts = m.driver.Overview("", now).value("counts", Json::object());
    known_total = 0;
    for (const auto& s : query.states) known_total += counts.value(s, size_t{0});
  }
  Json page = Json::array();
  size_t matched = 0;
  std::string line;
  auto take = [&](Json job) {
    if (matched++ >= query.offset && page.size() < query.limit) {
      job.erase("results");
      page.push_back(std::move(job));
    }
  };
  if (!on_disk) return m.driver.JobsPage(query, now);  // every match is in memory
  if (!filtered) matched = query.offset;               // a page by number starts at its offset
  for (size_t n = matched; n < jobs; ++n) {
    if (page.size() >= query.limit && known_total != SIZE_MAX) break;  // the counts give the total
    const std::string id = m.options.job_prefix + std::to_string(n);
    const int j = m.driver.JobIndex(id);
    if (j >= 0) {
      Json job = m.driver.JobJson(static_cast<uint32_t>(j), now, false);
      if (!job.is_object() || !wanted(job.value("state", ""))) continue;
      if (!query.text.empty() && job.value("id", "").find(query.text) == std::string::npos &&
          job.value("input", "").find(query.text) == std::string::npos)
        continue;
      take(std::move(job));
      continue;
    }
    line.clear();
    if (!m.lines.ReadNumber(static_cast<uint32_t>(n), &line).ok()) continue;
    if (filtered) {
      if (!query.text.empty() && line.find(query.text) == std::string::npos) continue;
      bool may = query.states.empty();
      for (const auto& s : query.states) may = may || line.find("\"state\": \"" + s + "\"") != std::string::npos;
      if (!may) continue;
    }
    Json job = Json::parse(line, nullptr, false);
    if (!job.is_object() || job.value("id", "") != id || !wanted(job.value("state", ""))) continue;
    if (!query.text.empty() && job.value("id", "").find(query.text) == std::string::npos &&
        job.value("input", "").find(query.text) == std::string::npos)
      continue;
    take(std::move(job));
  }
  return {{"total", known_total != SIZE_MAX ? known_total : matched}, {"jobs", std::move(page)}};
}

Json Runtime::Impl::SavedJob(const std::string& id) {
  const std::string& prefix = options.job_prefix;
  if (id.size() <= prefix.size() || id.compare(0, prefix.size(), prefix) != 0 ||
      id.find_first_not_of("0123456789", prefix.size()) != std::string::npos || id.size() - prefix.size() > 9)
    return Json();
  std::string line;
  if (!lines.ReadNumber(static_cast<uint32_t>(std::stoul(id.substr(prefix.size()))), &line).ok()) return Json();
  Json saved = Json::parse(line, nullptr, false);
  if (!saved.is_object() || saved.value("id", "") != id) return Json();
  return saved;
}

}  // namespace baton
