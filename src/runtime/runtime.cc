// The embedded runtime: one driver thread around the pure scheduling core, a pool of workers that
// run attempts, and events for everything else (see include/baton/runtime.h).
#include "baton/runtime.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "core/scheduler.h"
#include "rates/memory_limiter.h"
#include "runtime/core_model.h"
#include "runtime/output.h"
#include "runtime/worker_pool.h"

namespace baton {

const char* EventTypeName(Event::Type t) {
  switch (t) {
    case Event::Type::kJobSubmitted: return "job_submitted";
    case Event::Type::kAttemptStarted: return "attempt_started";
    case Event::Type::kAttemptFinished: return "attempt_finished";
    case Event::Type::kRetryScheduled: return "retry_scheduled";
    case Event::Type::kJobSucceeded: return "job_succeeded";
    case Event::Type::kJobFailed: return "job_failed";
    case Event::Type::kJobCancelled: return "job_cancelled";
    case Event::Type::kNodeJoined: return "node_joined";
    case Event::Type::kNodeLost: return "node_lost";
    case Event::Type::kProgress: return "progress";
    case Event::Type::kLog: return "log";
    case Event::Type::kRunFinished: return "run_finished";
  }
  return "?";
}

int RunReport::ExitCode() const {
  if (interrupted) return 130;
  return (failed > 0 || cancelled > 0) ? 1 : 0;
}

Json RunReport::ToJson() const {
  Json jobs_json = Json::array();
  for (const auto& j : jobs) {
    Json attempts = Json::array();
    for (const auto& a : j.attempts) {
      Json aj = {{"step", a.step}, {"attempt", a.attempt}, {"node", a.node}, {"status", a.status},
                 {"start", a.start}, {"end", a.end}, {"seconds", a.end - a.start}, {"gpus", a.gpus}};
      if (!a.error.empty()) aj["error"] = a.error;
      attempts.push_back(std::move(aj));
    }
    Json jj = {{"id", j.id}, {"input", j.input}, {"status", j.status}, {"attempts", attempts}};
    if (!j.error.empty()) jj["error"] = j.error;
    Json results = j.results;
    results.erase("_record");
    jj["results"] = results;
    jobs_json.push_back(std::move(jj));
  }
  return {{"seconds", seconds}, {"succeeded", succeeded}, {"failed", failed}, {"cancelled", cancelled},
          {"interrupted", interrupted}, {"exit_code", ExitCode()}, {"jobs", jobs_json}};
}

namespace {

void AppendString(std::string* out, const std::string& s) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      default:
        if (c < 0x20) *out += fmt::format("\\u{:04x}", c);
        else out->push_back(static_cast<char>(c));
    }
  }
  out->push_back('"');
}

}  // namespace

void RunReport::WriteJson(std::string* out) const {
  out->reserve(out->size() + jobs.size() * 512);
  *out += fmt::format("{{\n \"seconds\": {},\n \"succeeded\": {},\n \"failed\": {},\n \"cancelled\": {},\n"
                      " \"interrupted\": {},\n \"exit_code\": {},\n \"jobs\": [",
                      seconds, succeeded, failed, cancelled, interrupted, ExitCode());
  for (size_t i = 0; i < jobs.size(); ++i) {
    const JobReport& j = jobs[i];
    *out += i ? ",\n  {\"id\": " : "\n  {\"id\": ";
    AppendString(out, j.id);
    *out += ", \"input\": ";
    AppendString(out, j.input);
    *out += ", \"status\": ";
    AppendString(out, j.status);
    if (!j.error.empty()) {
      *out += ", \"error\": ";
      AppendString(out, j.error);
    }
    *out += ",\n   \"attempts\": [";
    for (size_t k = 0; k < j.attempts.size(); ++k) {
      const AttemptReport& a = j.attempts[k];
      *out += k ? ", {\"step\": " : "{\"step\": ";
      AppendString(out, a.step);
      *out += fmt::format(", \"attempt\": {}, \"node\": ", a.attempt);
      AppendString(out, a.node);
      *out += ", \"status\": ";
      AppendString(out, a.status);
      *out += fmt::format(", \"start\": {:.6f}, \"end\": {:.6f}, \"seconds\": {:.6f}, \"gpus\": [{}]", a.start, a.end,
                          a.end - a.start, fmt::join(a.gpus, ", "));
      if (!a.error.empty()) {
        *out += ", \"error\": ";
        AppendString(out, a.error);
      }
      *out += "}";
    }
    *out += "],\n   \"results\": {";
    bool first = true;
    for (const auto& [k, v] : j.results.items()) {
      if (k == "_record") continue;
      *out += first ? "" : ", ";
      first = false;
      AppendString(out, k);
      *out += ": ";
      *out += v.dump(-1, ' ', false, Json::error_handler_t::replace);
    }
    *out += "}}";
  }
  *out += "\n ]\n}\n";
}

std::vector<std::string> ReadInputs(const std::filesystem::path& file, std::vector<std::string>* warnings) {
  std::ifstream in(file);
  if (!in) throw LoadError(file.string() + ": cannot read inputs file (" + (std::filesystem::exists(file) ? "permission denied" : "no such file") + ")");
  std::vector<std::string> inputs;
  std::map<std::string, int> seen;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    line = start == std::string::npos ? "" : line.substr(start);
    if (line.empty()) {
      warnings->push_back(fmt::format("{}:{}: blank line skipped", file.string(), n));
      continue;
    }
    if (line[0] == '#') continue;
    // A relative path to a local file means this directory's file: steps run in their job folder.
    if (line.find("://") == std::string::npos && line[0] != '/') {
      std::error_code ec;
      if (std::filesystem::exists(line, ec)) line = std::filesystem::absolute(line).lexically_normal().string();
    }
    auto [it, fresh] = seen.emplace(line, n);
    if (!fresh) {
      warnings->push_back(fmt::format("{}:{}: duplicate of line {} skipped", file.string(), n, it->second));
      continue;
    }
    inputs.push_back(line);
  }
  if (inputs.empty()) throw LoadError(file.string() + ": no inputs (one URL or path per line)");
  return inputs;
}

struct Runtime::Impl {
  struct Attempt {
    uint32_t job;
    uint32_t serial;
    uint16_t step;
    int step_attempt;
    uint32_t node;
    std::vector<int> gpus;
    double start;
    double stop_at = core::kNever;  // timeout or stop: abandon if still running past this
    bool timed_out = false;
    CancelToken cancel;
    StepOutcome outcome;
    double end = 0;
    std::vector<int32_t> homes;  // per step: node that ran it (snapshot at launch)
  };
  struct JobRec {
    JobReport report;
    std::unique_ptr<Attempt> running;
    bool workdir_made_on[64] = {};
    bool terminal = false;
  };

  PipelineSpec pipeline;
  ClusterSpec cluster;
  RunOptions options;
  std::vector<std::unique_ptr<Step>> steps;
  std::vector<std::filesystem::path> node_workdirs;
  std::vector<std::string> node_names;
  std::unique_ptr<RateLimiter> rates;  // the run's rates and budget (issue 12)

  // Guards sched and jobs against Snapshot()/CancelJob(); recursive so that a sink may call
  // Snapshot() from OnEvent on the driver thread.
  mutable std::recursive_mutex state_mu;
  core::Scheduler sched;
  uint32_t pipeline_id = 0;
  std::vector<JobRec> jobs;
  std::map<std::string, uint32_t> job_index;
  size_t terminal = 0;

  std::vector<std::shared_ptr<EventSink>> sinks;
  std::shared_ptr<LogSink> log;
  WorkerPool pool;

  std::mutex done_mu;
  std::condition_variable done_cv;
  std::vector<Attempt*> done;
  std::atomic<size_t> done_count{0};

  std::atomic<bool> stop_requested{false};
  std::vector<uint32_t> cancel_requests;  // guarded by state_mu
  std::vector<uint32_t> cancelled_jobs;   // jobs whose running attempt was told to stop
  std::vector<uint32_t> retry_requests;   // guarded by state_mu
  bool running = false;                   // guarded by state_mu: Run() is in its loop
  bool finished = false;                  // guarded by state_mu: reports moved to final_report
  RunReport final_report;
  const JobReport& ReportOf(uint32_t i) const { return finished ? final_report.jobs[i] : jobs[i].report; }

  Json JobJson(uint32_t i, double now, bool detail) const;
  std::chrono::steady_clock::time_point t0;

  double Now() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }

  void Emit(const Event& e) {
    for (auto& s : sinks) s->OnEvent(e);
  }
  Event Make(Event::Type type, uint32_t job, int step = -1, int node = -1) {
    Event e{type};
    e.time = Now();
    e.job = jobs[job].report.id;
    if (step >= 0) e.step = pipeline.steps[step].name;
    if (node >= 0) e.node = node_names[node];
    return e;
  }

  void Launch(const core::Placement& p);
  void Complete(Attempt* a);
  void EndJob(uint32_t job, const std::string& status, const std::string& error, int step);
  std::string ProgressLine(double now) const;
};

Runtime::Runtime(PipelineSpec pipeline, ClusterSpec cluster, RunOptions options, StepRegistry& registry)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.pipeline = std::move(pipeline);
  m.cluster = std::move(cluster);
  m.options = std::move(options);
  const std::string file = m.pipeline.file.empty() ? std::string("pipeline") : m.pipeline.file.string();
  if (m.cluster.nodes.empty()) m.cluster.nodes.push_back(DetectLocalNode());

  // Steps: `uses` must be registered, `with` accepted by its factory.
  for (const auto& s : m.pipeline.steps) {
    if (!registry.Has(s.uses)) {
      std::string known;
      for (const auto& n : registry.Names()) known += (known.empty() ? "" : ", ") + n;
      throw LoadError(fmt::format("{}:{}: steps.{}.uses: unknown step kind '{}' (known: {})", file, s.line, s.name, s.uses, known));
    }
    try {
      m.steps.push_back(registry.Create(s.uses, s.with));
    } catch (const ConfigError& e) {
      throw LoadError(fmt::format("{}:{}: steps.{}.{}", file, s.line, s.name, e.what()));
    }
  }

  // The core's model.
  std::map<std::string, double> pools = m.pipeline.pools;
  for (const auto& [k, v] : m.cluster.pools) pools[k] = v;
  for (const auto& [k, v] : pools) m.sched.SetPool(k, v);
  m.rates = rates::NewMemoryLimiter(m.pipeline.rates, m.cluster.rates, m.pipeline.budget_usd);
  m.pipeline_id = m.sched.AddPipeline(ToCoreModel(m.pipeline, m.sched.resources()));
  if (m.cluster.nodes.size() > 64) throw LoadError("at most 64 nodes in one process; use cluster mode for more");
  for (const auto& n : m.cluster.nodes) {
    m.sched.AddNode(ToCoreNode(n, m.sched.resources()));
    m.node_names.push_back(n.name);
    m.node_workdirs.push_back(n.workdir.empty() ? m.options.out / "nodes" / n.name : n.workdir);
  }
  const std::string why = m.sched.Infeasible(m.pipeline_id);
  if (!why.empty()) {
    std::string nodes = m.cluster.file.empty() ? "this machine" : m.cluster.file.string();
    throw LoadError(fmt::format("{}: {} (nodes from {})", file, why, nodes));
  }

  m.log = std::make_shared<LogSink>(m.options.log_stream, m.options.log_format, m.options.progress_line);
  if (m.options.log_format != RunOptions::LogFormat::kNone || m.options.progress_line) m.sinks.push_back(m.log);
  m.jobs.resize(m.options.inputs.size());
  for (size_t i = 0; i < m.jobs.size(); ++i) {
    m.jobs[i].report.id = m.options.job_prefix + std::to_string(i);
    m.jobs[i].report.input = m.options.inputs[i];
    m.job_index[m.jobs[i].report.id] = static_cast<uint32_t>(i);
    m.sched.Submit(m.pipeline_id, 0);  // all ready at time 0; Snapshot() sees them before Run()
  }
}

Runtime::~Runtime() = default;

void Runtime::AddSink(std::shared_ptr<EventSink> sink) { impl_->sinks.push_back(std::move(sink)); }

void Runtime::RequestStop() { impl_->stop_requested.store(true); }

bool Runtime::CancelJob(const std::string& id) {
  std::lock_guard lock(impl_->state_mu);
  auto it = impl_->job_index.find(id);
  if (it == impl_->job_index.end() || impl_->jobs[it->second].terminal) return false;
  impl_->cancel_requests.push_back(it->second);
  impl_->done_cv.notify_one();
  return true;
}

bool Runtime::RetryJob(const std::string& id) {
  std::lock_guard lock(impl_->state_mu);
  auto it = impl_->job_index.find(id);
  if (!impl_->running || it == impl_->job_index.end() || impl_->jobs[it->second].report.status != "failed") return false;
  impl_->retry_requests.push_back(it->second);
  impl_->done_cv.notify_one();
  return true;
}

const RunOptions& Runtime::options() const { return impl_->options; }

std::filesystem::path Runtime::JobWorkdir(const std::string& job_id, const std::string& node) const {
  for (size_t i = 0; i < impl_->node_names.size(); ++i)
    if (impl_->node_names[i] == node) return impl_->node_workdirs[i] / job_id;
  return {};
}

void Runtime::Impl::Launch(const core::Placement& p) {
  JobRec& j = jobs[p.job];
  auto a = std::make_unique<Attempt>();
  a->job = p.job;
  a->serial = p.serial;
  a->step = p.step;
  a->step_attempt = p.step_attempt;
  a->node = p.node;
  for (int g = 0; g < 64; ++g)
    if (p.gpu_mask & (uint64_t{1} << g)) a->gpus.push_back(g);
  a->start = Now();
  a->homes.resize(pipeline.steps.size());
  for (size_t s = 0; s < p.step; ++s) a->homes[s] = sched.Home(p.job, static_cast<uint16_t>(s));
  Attempt* raw = a.get();
  j.running = std::move(a);
  const bool make_dir = !j.workdir_made_on[p.node] && steps[p.step]->NeedsWorkdir();
  if (make_dir) j.workdir_made_on[p.node] = true;
  if (!sinks.empty()) {
    Event e = Make(Event::Type::kAttemptStarted, p.job, p.step, static_cast<int>(p.node));
    e.attempt = p.step_attempt;
    e.gpus = raw->gpus;
    Emit(e);
  }
  // Everything the worker reads is immutable while the attempt runs: the job's results change
  // only when this attempt's completion is processed on the driver thread.
  pool.Submit([this, raw, make_dir] {
    const JobRec& job = jobs[raw->job];
    StepContext ctx;
    ctx.job = job.report.id;
    ctx.step = pipeline.steps[raw->step].name;
    ctx.node = node_names[raw->node];
    ctx.attempt = raw->step_attempt;
    ctx.input = job.report.input;
    ctx.results = &job.report.results;
    ctx.workdir = node_workdirs[raw->node] / job.report.id;
    ctx.outdir = options.out;
    ctx.gpus = raw->gpus;
    ctx.cancel = &raw->cancel;
    ctx.rates = rates.get();
    if (!sinks.empty()) {
      ctx.log = [this, &ctx](LogLevel level, std::string_view msg) {
        Event e{Event::Type::kLog};
        e.time = Now();
        e.job = ctx.job;
        e.step = ctx.step;
        e.node = ctx.node;
        e.attempt = ctx.attempt;
        e.status = level == LogLevel::kWarn ? "warn" : level == LogLevel::kError ? "error" : level == LogLevel::kDebug ? "debug" : "info";
        e.message = std::string(msg);
        Emit(e);
      };
      ctx.progress = [this, &ctx](const Json& data) {
        Event e{Event::Type::kProgress};
        e.time = Now();
        e.job = ctx.job;
        e.step = ctx.step;
        e.node = ctx.node;
        e.data = data;
        Emit(e);
      };
    }
    ctx.artifact = [this, &ctx, raw](std::string_view step, std::string_view relative) {
      // One process: the producing node's job folder is on this machine.
      const int idx = pipeline.StepIndex(std::string(step));
      const int home = idx < 0 ? -1 : raw->homes[idx];
      std::filesystem::path base = home >= 0 ? node_workdirs[home] / ctx.job : ctx.workdir;
      std::filesystem::path p = base / std::string(relative);
      if (!std::filesystem::exists(p)) throw std::runtime_error("artifact " + std::string(step) + ":" + std::string(relative) + " not found");
      return p;
    };
    try {
      if (make_dir) std::filesystem::create_directories(ctx.workdir);
      raw->outcome = steps[raw->step]->Run(ctx);
    } catch (const std::exception& e) {
      raw->outcome = StepOutcome::Failure(std::string("step threw: ") + e.what());
    } catch (...) {
      raw->outcome = StepOutcome::Failure("step threw an unknown exception");
    }
    raw->end = Now();
    {
      std::lock_guard lock(done_mu);
      done.push_back(raw);
      done_count.fetch_add(1, std::memory_order_relaxed);
    }
    done_cv.notify_one();
  });
}

void Runtime::Impl::EndJob(uint32_t job, const std::string& status, const std::string& error, int step) {
  JobRec& j = jobs[job];
  if (j.terminal) return;
  j.terminal = true;
  ++terminal;
  j.report.status = status;
  j.report.error = error;
  if (!sinks.empty()) {
    Event e = Make(status == "succeeded" ? Event::Type::kJobSucceeded
                   : status == "failed"  ? Event::Type::kJobFailed
                                         : Event::Type::kJobCancelled,
                   job, step);
    e.message = error;
    if (status == "succeeded") {
      // Name the job's main output when a step reported one (a document's report, say).
      for (auto it = j.report.results.rbegin(); it != j.report.results.rend(); ++it) {
        if (it->is_object() && it->contains("markdown")) {
          e.message = (*it)["markdown"].get<std::string>();
          break;
        }
      }
    }
    Emit(e);
  }
}

void Runtime::Impl::Complete(Attempt* a) {
  JobRec& j = jobs[a->job];
  std::unique_ptr<Attempt> owned = std::move(j.running);
  if (owned.get() != a) {  // abandoned earlier (ignored cancel); the job moved on
    j.running = std::move(owned);
    return;
  }
  const double now = Now();
  core::AttemptStatus status;
  std::string status_name;
  switch (a->outcome.kind) {
    case StepOutcome::Kind::kOk: status = core::AttemptStatus::kOk; break;
    case StepOutcome::Kind::kCancelled:
      status = a->timed_out ? core::AttemptStatus::kTimeout : core::AttemptStatus::kCancelled;
      break;
    default: status = a->timed_out ? core::AttemptStatus::kTimeout : core::AttemptStatus::kFailed; break;
  }
  std::string error = a->outcome.error;
  if (status == core::AttemptStatus::kTimeout)
    error = fmt::format("timed out after {}s", pipeline.steps[a->step].timeout) +
            (a->outcome.kind == StepOutcome::Kind::kFailed && !a->outcome.error.empty() ? " (" + a->outcome.error + ")" : "");
  const std::string& step_name = pipeline.steps[a->step].name;
  AttemptReport rep{step_name, node_names[a->node], core::AttemptStatusName(status), error, a->step_attempt,
                    a->start, a->end > 0 ? a->end : now, a->gpus};
  j.report.attempts.push_back(rep);
  if (status == core::AttemptStatus::kOk) {
    j.report.results[step_name] = std::move(a->outcome.result);
    Json& record = j.report.results["_record"];
    if (!record.is_array()) record = Json::array();
    record.push_back({{"step", step_name}, {"node", rep.node}, {"attempt", rep.attempt},
                      {"seconds", rep.end - rep.start}, {"status", "ok"}, {"gpus", rep.gpus}});
  }
  if (!sinks.empty()) {
    Event e = Make(Event::Type::kAttemptFinished, a->job, a->step, static_cast<int>(a->node));
    e.attempt = a->step_attempt;
    e.status = rep.status;
    e.message = error;
    e.gpus = a->gpus;
    Emit(e);
  }
  const bool retryable = status == core::AttemptStatus::kTimeout || a->outcome.retryable;
  const core::FinishResult r = sched.Finish(a->job, a->serial, status, retryable, now);
  switch (r.kind) {
    case core::FinishResult::Kind::kSucceeded: EndJob(a->job, "succeeded", "", a->step); break;
    case core::FinishResult::Kind::kFailed:
      EndJob(a->job, "failed", fmt::format("{} failed after {} attempt{}: {}", step_name, a->step_attempt,
                                           a->step_attempt == 1 ? "" : "s", error),
             a->step);
      break;
    case core::FinishResult::Kind::kCancelled:
      EndJob(a->job, "cancelled", stop_requested ? "run interrupted" : "cancelled", a->step);
      break;
    case core::FinishResult::Kind::kRetryScheduled:
      if (!sinks.empty()) {
        Event e = Make(Event::Type::kRetryScheduled, a->job, a->step);
        e.attempt = a->step_attempt;
        e.message = fmt::format("in {:.1f}s (attempt {} of {})", r.retry_at - now, a->step_attempt + 1,
                                pipeline.steps[a->step].retries + 1);
        Emit(e);
      }
      break;
    default: break;
  }
}

std::string Runtime::Impl::ProgressLine(double now) const {
  const size_t n = pipeline.steps.size();
  std::vector<int> running(n, 0), waiting(n, 0);
  int ok = 0, failed = 0, cancelled = 0;
  double progress = 0;
  for (uint32_t i = 0; i < jobs.size(); ++i) {
    const auto v = sched.Job(i);
    switch (v.phase) {
      case core::Phase::kSucceeded: ++ok; progress += 1; continue;
      case core::Phase::kFailed: ++failed; progress += 1; continue;
      case core::Phase::kCancelled: ++cancelled; progress += 1; continue;
      case core::Phase::kRunning: ++running[v.step]; break;
      default: ++waiting[v.step]; break;
    }
    progress += static_cast<double>(v.step) / static_cast<double>(n);
  }
  std::string line = fmt::format("[{:.0f}s] {}/{} done", now, ok, jobs.size());
  if (failed) line += fmt::format(", {} failed", failed);
  if (cancelled) line += fmt::format(", {} cancelled", cancelled);
  for (size_t s = 0; s < n; ++s)
    if (running[s] || waiting[s]) line += fmt::format(" | {} {} run {} wait", pipeline.steps[s].name, running[s], waiting[s]);
  if (progress > 0 && progress < jobs.size()) line += fmt::format(" | ETA {:.0f}s", now / progress * (jobs.size() - progress));
  return line;
}

const RunReport& Runtime::Run() {
  Impl& m = *impl_;
  m.t0 = std::chrono::steady_clock::now();
  std::filesystem::create_directories(m.options.out);
  for (const auto& d : m.node_workdirs) std::filesystem::create_directories(d);
  {
    std::lock_guard lock(m.state_mu);
    m.running = true;
    for (size_t i = 0; i < m.node_names.size(); ++i) {
      if (m.sinks.empty()) break;
      Event e{Event::Type::kNodeJoined};
      e.node = m.node_names[i];
      m.Emit(e);
    }
    for (uint32_t i = 0; i < m.jobs.size(); ++i) {
      if (!m.sinks.empty()) {
        Event e = m.Make(Event::Type::kJobSubmitted, i);
        e.message = m.jobs[i].report.input;
        m.Emit(e);
      }
    }
  }
  std::vector<core::Placement> placements;
  std::vector<core::AttemptRef> refs;
  std::vector<Impl::Attempt*> batch;
  bool stopping = false;
  double stop_deadline = core::kNever;
  double next_progress = 0;
  const double kGrace = m.options.cancel_grace;  // how long a cancelled attempt may take to end
  while (true) {
    {
      std::lock_guard lock(m.state_mu);
      const double now = m.Now();
      for (uint32_t job : m.cancel_requests) {
        for (const auto& r : m.sched.Cancel(job)) {
          if (auto& a = m.jobs[r.job].running) {
            a->cancel.cancel();
            a->stop_at = now + kGrace;
            m.cancelled_jobs.push_back(r.job);
          }
        }
        if (m.sched.Job(job).phase == core::Phase::kCancelled) m.EndJob(job, "cancelled", "cancelled", -1);
      }
      m.cancel_requests.clear();
      for (uint32_t job : m.retry_requests) {
        if (!stopping && m.jobs[job].terminal && m.sched.Retry(job, now)) {
          m.jobs[job].terminal = false;
          --m.terminal;
          m.jobs[job].report.status.clear();
          m.jobs[job].report.error.clear();
          if (!m.sinks.empty()) {
            Event e = m.Make(Event::Type::kJobSubmitted, job);
            e.message = "retry requested";
            m.Emit(e);
          }
        }
      }
      m.retry_requests.clear();
      if (m.stop_requested && !stopping) {
        stopping = true;
        stop_deadline = now + kGrace;
        if (m.log) m.log->Line("baton: stopping: no new attempts; waiting for running ones to end (Ctrl-C again to quit now)");
        for (uint32_t i = 0; i < m.jobs.size(); ++i) {
          if (m.jobs[i].terminal) continue;
          for (const auto& r : m.sched.Cancel(i)) {
            if (auto& a = m.jobs[r.job].running) {
              a->cancel.cancel();
              a->stop_at = now + kGrace;
              m.cancelled_jobs.push_back(r.job);
            }
          }
          if (m.sched.Job(i).phase == core::Phase::kCancelled) m.EndJob(i, "cancelled", "run interrupted", -1);
        }
      }
      refs.clear();
      m.sched.Expired(now, &refs);
      for (const auto& r : refs) {
        if (auto& a = m.jobs[r.job].running; a && a->serial == r.serial) {
          a->timed_out = true;
          a->cancel.cancel();
          a->stop_at = now + kGrace;
          m.cancelled_jobs.push_back(r.job);
        }
      }
      // Attempts that ignore cancellation are abandoned after the grace period: their job moves
      // on (timeout) or ends (stop), and their thread's late completion is ignored.
      for (size_t k = 0; k < m.cancelled_jobs.size();) {
        const uint32_t i = m.cancelled_jobs[k];
        auto& a = m.jobs[i].running;
        if (!a || a->stop_at == core::kNever) {
          m.cancelled_jobs[k] = m.cancelled_jobs.back();
          m.cancelled_jobs.pop_back();
          continue;
        }
        ++k;
        if (now < a->stop_at && !(stopping && now >= stop_deadline)) continue;
        Impl::Attempt* stuck = a.release();  // leaked on purpose: its thread may still use it
        auto copy = std::make_unique<Impl::Attempt>();
        copy->job = stuck->job;
        copy->serial = stuck->serial;
        copy->step = stuck->step;
        copy->step_attempt = stuck->step_attempt;
        copy->node = stuck->node;
        copy->gpus = stuck->gpus;
        copy->start = stuck->start;
        copy->timed_out = stuck->timed_out;
        copy->end = now;
        copy->outcome = StepOutcome::Failure(fmt::format("did not stop within {:.0f}s of being cancelled; abandoned", kGrace));
        Impl::Attempt* raw = copy.get();
        a = std::move(copy);
        m.Complete(raw);
      }
      if (!stopping) {
        placements.clear();
        m.sched.Decide(now, &placements);
        for (const auto& p : placements) m.Launch(p);
      }
      if (m.options.progress_line && now >= next_progress) {
        m.log->SetProgress(m.ProgressLine(now));
        next_progress = now + 0.2;
      }
      if (m.terminal == m.jobs.size()) {
        m.running = false;
        break;
      }
    }
    // Wait for completions, the next retry/deadline, or a periodic look at stop/cancel requests.
    {
      // Spin briefly first: completions of short attempts arrive within microseconds.
      for (int i = 0; i < 2000 && m.done_count.load(std::memory_order_relaxed) == 0; ++i) __builtin_ia32_pause();
      std::unique_lock lock(m.done_mu);
      if (m.done.empty()) {
        const double now = m.Now();
        double wake = std::min(m.sched.NextWakeup(), now + 0.1);
        m.done_cv.wait_for(lock, std::chrono::duration<double>(std::max(0.0, wake - now)));
      }
      batch.swap(m.done);
      m.done_count.store(0, std::memory_order_relaxed);
    }
    std::lock_guard lock(m.state_mu);
    for (Impl::Attempt* a : batch) m.Complete(a);
    batch.clear();
  }
  if (m.options.progress_line) m.log->SetProgress("");

  std::lock_guard lock(m.state_mu);
  RunReport& report = m.final_report;
  report.seconds = m.Now();
  report.interrupted = stopping;
  report.jobs.reserve(m.jobs.size());
  for (auto& j : m.jobs) {
    if (j.report.status == "succeeded") ++report.succeeded;
    else if (j.report.status == "failed") ++report.failed;
    else ++report.cancelled;
    report.jobs.push_back(std::move(j.report));
  }
  m.finished = true;
  std::string summary;
  report.WriteJson(&summary);
  WriteFileAtomic(m.options.out / "summary.json", summary);
  if (!m.options.trace.empty()) WriteChromeTrace(m.options.trace, report, m.node_names);
  if (!m.sinks.empty()) {
    Event e{Event::Type::kRunFinished};
    e.time = report.seconds;
    e.message = fmt::format("{} succeeded, {} failed, {} cancelled", report.succeeded, report.failed, report.cancelled);
    m.Emit(e);
  }
  return report;
}

Json Runtime::Impl::JobJson(uint32_t i, double now, bool detail) const {
  const JobReport& rep = ReportOf(i);
  const JobRec& j = jobs[i];
  const auto v = sched.Job(i);
  Json steps_json = Json::array();
  for (size_t s = 0; s < pipeline.steps.size(); ++s) {
    std::string state;
    if (v.phase == core::Phase::kSucceeded || s < v.step) state = "done";
    else if (s > v.step) state = "pending";
    else state = core::PhaseName(v.phase);
    Json sj = {{"name", pipeline.steps[s].name}, {"state", state}};
    if (s == v.step && v.phase != core::Phase::kSucceeded) sj["wait"] = sched.WaitReason(i, now);
    const int32_t home = sched.Home(i, static_cast<uint16_t>(s));
    if (home >= 0) sj["node"] = node_names[home];
    if (s == v.step && v.node >= 0) sj["node"] = node_names[v.node];
    if (s == v.step) sj["attempt"] = v.step_attempt;
    steps_json.push_back(std::move(sj));
  }
  Json jj = {{"id", rep.id}, {"input", rep.input}, {"state", core::PhaseName(v.phase)},
             {"step", pipeline.steps[std::min<size_t>(v.step, pipeline.steps.size() - 1)].name},
             {"steps", steps_json}, {"attempts", rep.attempts.size()}};
  if (!rep.error.empty()) jj["error"] = rep.error;
  if (detail) {
    Json attempts = Json::array();
    for (const auto& a : rep.attempts) {
      Json aj = {{"step", a.step}, {"attempt", a.attempt}, {"node", a.node}, {"status", a.status},
                 {"start", a.start}, {"end", a.end}, {"gpus", a.gpus}};
      if (!a.error.empty()) aj["error"] = a.error;
      attempts.push_back(std::move(aj));
    }
    if (j.running) {
      const auto& a = *j.running;
      attempts.push_back({{"step", pipeline.steps[a.step].name}, {"attempt", a.step_attempt}, {"node", node_names[a.node]},
                          {"status", "running"}, {"start", a.start}, {"gpus", a.gpus}});
    }
    jj["attempts"] = attempts;
    Json results = rep.results;
    results.erase("_record");
    jj["results"] = results;
  }
  return jj;
}

Json Runtime::JobDetail(const std::string& id) const {
  const Impl& m = *impl_;
  std::lock_guard lock(m.state_mu);
  auto it = m.job_index.find(id);
  if (it == m.job_index.end()) return nullptr;
  return m.JobJson(it->second, m.t0.time_since_epoch().count() == 0 ? 0 : m.Now(), true);
}

Json Runtime::Snapshot() const {
  const Impl& m = *impl_;
  std::lock_guard lock(m.state_mu);
  const double now = m.t0.time_since_epoch().count() == 0 ? 0 : m.Now();
  Json jobs = Json::array();
  for (uint32_t i = 0; i < m.jobs.size(); ++i) jobs.push_back(m.JobJson(i, now, false));
  Json nodes = Json::array();
  const auto& table = m.sched.resources();
  for (uint32_t n = 0; n < m.sched.node_count(); ++n) {
    const auto& info = m.sched.NodeInfo(n);
    Json total = Json::object(), used = Json::object();
    for (core::ResourceId id : info.total.NonZero()) {
      if (table.IsPool(id)) continue;
      total[table.Name(id)] = core::ToDouble(info.total.Get(id));
      used[table.Name(id)] = core::ToDouble(info.total.Get(id) - m.sched.NodeFree(n).Get(id));
    }
    Json labels = Json::object();
    for (const auto& [k, v] : info.labels) labels[k] = v;
    Json gpus = Json::array();
    const uint64_t busy = m.sched.NodeGpusBusy(n);
    for (int g = 0; g < static_cast<int>(info.total.Get(core::kGpu) / core::kUnit); ++g)
      gpus.push_back({{"id", g}, {"busy", (busy >> g) & 1}});
    nodes.push_back({{"name", info.name}, {"alive", m.sched.NodeAlive(n)}, {"total", total}, {"used", used},
                     {"labels", labels}, {"gpus", gpus}});
  }
  return {{"pipeline", m.pipeline.name}, {"time", now}, {"jobs", jobs}, {"nodes", nodes}};
}

}  // namespace baton
