#include "driver/output.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <stdexcept>

#include <fmt/format.h>

#include "util/atomic_file.h"

namespace baton {

std::string FormatLocalTime(double unix_seconds) {
  const auto t = static_cast<time_t>(unix_seconds);
  struct tm tm_buf;
  localtime_r(&t, &tm_buf);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm_buf);
  return buf;
}

namespace {

double WallNow() {  // display only
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string GpuList(const std::vector<int>& gpus) {
  std::string s = "[";
  for (size_t i = 0; i < gpus.size(); ++i) s += (i ? ", " : "") + std::to_string(gpus[i]);
  return s + "]";
}

}  // namespace

LogSink::LogSink(FILE* stream, LogFormat format, bool progress_line)
    : stream_(stream), format_(format), progress_line_(progress_line), pid_(getpid()) {}

void LogSink::WriteLocked(const std::string& text) {
  if (progress_line_ && !progress_.empty()) fputs("\r\033[K", stream_);
  fputs(text.c_str(), stream_);
  if (progress_line_ && !progress_.empty()) fputs(progress_.c_str(), stream_);
  fflush(stream_);
}

void LogSink::Line(const std::string& text) {
  std::lock_guard lock(mu_);
  WriteLocked(text + "\n");
}

void LogSink::SetProgress(const std::string& line) {
  if (!progress_line_) return;
  std::lock_guard lock(mu_);
  fputs("\r\033[K", stream_);
  progress_ = line;
  fputs(progress_.c_str(), stream_);
  fflush(stream_);
}

void LogSink::OnEvent(const Event& e) {
  if (format_ == LogFormat::kNone) return;
  if (e.type == Event::Type::kProgress) return;  // the dashboard's, not the log's
  const double wall = WallNow();
  if (format_ == LogFormat::kJson) {
    Json j = {{"time", FormatLocalTime(wall)}, {"t", e.time}, {"event", EventTypeName(e.type)}};
    if (!e.job.empty()) j["job"] = e.job;
    if (!e.step.empty()) j["step"] = e.step;
    if (!e.node.empty()) j["node"] = e.node;
    if (e.attempt) j["attempt"] = e.attempt;
    if (e.type == Event::Type::kAttemptStarted) j["gpus"] = e.gpus;
    if (!e.status.empty()) j["status"] = e.status;
    if (!e.message.empty()) j["message"] = e.message;
    j["pid"] = e.pid ? e.pid : pid_;
    std::lock_guard lock(mu_);
    WriteLocked(j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n");
    return;
  }
  std::string line;
  const std::string stamp = FormatLocalTime(wall);
  const int pid = e.pid ? e.pid : pid_;
  switch (e.type) {
    case Event::Type::kAttemptStarted:
      line = fmt::format("({} pid={}) [{}] [{}] {} running on node {}, GPUs: {}{}\n", e.step, pid, stamp, e.job, e.step,
                         e.node, GpuList(e.gpus), e.attempt > 1 ? fmt::format(" (attempt {})", e.attempt) : "");
      break;
    case Event::Type::kAttemptFinished:
      if (e.status == "ok") return;  // the next start line says enough
      line = fmt::format("({} pid={}) [{}] [{}] {} {} on node {} (attempt {}): {}\n", e.step, pid, stamp, e.job, e.step,
                         e.status, e.node, e.attempt, e.message);
      break;
    case Event::Type::kRetryScheduled:
      line = fmt::format("(baton) [{}] [{}] {} will retry {}\n", stamp, e.job, e.step, e.message);
      break;
    case Event::Type::kJobSucceeded:
      line = fmt::format("(baton) [{}] [{}] done{}\n", stamp, e.job, e.message.empty() ? "" : ": " + e.message);
      break;
    case Event::Type::kJobFailed:
      line = fmt::format("(baton) [{}] [{}] FAILED at {}: {}\n", stamp, e.job, e.step, e.message);
      break;
    case Event::Type::kJobCancelled:
      line = fmt::format("(baton) [{}] [{}] cancelled{}\n", stamp, e.job, e.message.empty() ? "" : ": " + e.message);
      break;
    case Event::Type::kNodeLost:
      line = fmt::format("(baton) [{}] node {} lost: {}\n", stamp, e.node, e.message);
      break;
    case Event::Type::kLog:
      line = fmt::format("({} pid={}) [{}] [{}] {}{}\n", e.step, pid, stamp, e.job,
                         e.status == "warn" ? "warning: " : e.status == "error" ? "error: " : "", e.message);
      break;
    default:
      return;
  }
  std::lock_guard lock(mu_);
  WriteLocked(line);
}

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

LogFormat ParseLogFormat(const std::string& name) {
  if (name == "json") return LogFormat::kJson;
  if (name == "none") return LogFormat::kNone;
  return LogFormat::kText;
}

TraceWriter::~TraceWriter() { Close().IgnoreError(); }

Status TraceWriter::Open(const std::filesystem::path& file, const std::vector<std::string>& node_names) {
  file_ = file;
  f_ = std::fopen(file.c_str(), "w");
  if (!f_) return error_ = Status::Unavailable(file.string() + ": cannot write the trace");
  buf_ = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [";
  for (size_t i = 0; i < node_names.size(); ++i) {
    const int pid = static_cast<int>(i) + 1;
    nodes_[node_names[i]].pid = pid;
    Append({{"name", "process_name"}, {"ph", "M"}, {"pid", pid}, {"tid", 0}, {"args", {{"name", node_names[i]}}}});
    Append({{"name", "process_sort_index"}, {"ph", "M"}, {"pid", pid}, {"tid", 0}, {"args", {{"sort_index", i}}}});
  }
  return Status::Ok();
}

void TraceWriter::Append(const Json& event) {
  buf_ += first_ ? "\n" : ",\n";
  first_ = false;
  buf_ += event.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (buf_.size() >= (1u << 16)) WriteOut();
}

void TraceWriter::WriteOut() {
  if (f_ && !buf_.empty() && std::fwrite(buf_.data(), 1, buf_.size(), f_) != buf_.size() && error_.ok())
    error_ = Status::Unavailable(file_.string() + ": trace write failed");
  buf_.clear();
}

void TraceWriter::Add(const std::string& job, const AttemptReport& a) {
  if (!f_) return;
  if (a.batch.empty()) {
    Bar(a.node, a.start, a.end, a.gpus, job + " " + a.step, a.step,
        {{"job", job}, {"step", a.step}, {"node", a.node}, {"attempt", a.attempt}, {"status", a.status},
         {"gpus", a.gpus}});
    return;
  }
  // A worker serves one batch at a time: an attempt of its next batch closes the one open.
  const std::string key = a.node + '\n' + a.step + '\n' + a.batch.substr(0, a.batch.find('.'));
  auto it = open_batches_.find(key);
  if (it != open_batches_.end() && it->second.batch != a.batch) {
    DrawBatch(it->second);
    open_batches_.erase(it);
    it = open_batches_.end();
  }
  if (it == open_batches_.end()) {
    Batch b;
    b.node = a.node;
    b.step = a.step;
    b.batch = a.batch;
    b.start = a.start;
    b.end = a.end;
    b.gpus = a.gpus;
    it = open_batches_.emplace(key, std::move(b)).first;
  }
  Batch& b = it->second;
  b.start = std::min(b.start, a.start);
  b.end = std::max(b.end, a.end);
  b.jobs.push_back(job);
  b.attempts.push_back(a.attempt);
  b.statuses.push_back(a.status);
}

void TraceWriter::DrawBatch(const Batch& b) {
  Bar(b.node, b.start, b.end, b.gpus, fmt::format("{} batch of {}", b.step, b.jobs.size()), b.step,
      {{"step", b.step}, {"node", b.node}, {"gpus", b.gpus}, {"batch", b.batch}, {"jobs", b.jobs},
       {"attempts", b.attempts}, {"statuses", b.statuses}});
}

void TraceWriter::Bar(const std::string& node, double start, double end, const std::vector<int>& gpus,
                      std::string name, const std::string& step, Json args) {
  Node& n = nodes_[node];
  if (n.pid == 0) {
    n.pid = static_cast<int>(nodes_.size());
    Append({{"name", "process_name"}, {"ph", "M"}, {"pid", n.pid}, {"tid", 0}, {"args", {{"name", node}}}});
  }
  int tid;
  if (!gpus.empty()) {
    tid = 1000 + gpus.front();
  } else {
    // Attempts come in the order they end: a lane whose last attempt ended by this one's start
    // holds no attempt that overlaps it.
    size_t lane = 0;
    while (lane < n.lane_end.size() && n.lane_end[lane] > start + 1e-9) ++lane;
    if (lane == n.lane_end.size()) n.lane_end.push_back(0);
    n.lane_end[lane] = std::max(n.lane_end[lane], end);
    tid = static_cast<int>(lane) + 1;
  }
  if (std::find(n.named.begin(), n.named.end(), tid) == n.named.end()) {
    n.named.push_back(tid);
    Append({{"name", "thread_name"},
            {"ph", "M"},
            {"pid", n.pid},
            {"tid", tid},
            {"args", {{"name", tid >= 1000 ? "GPU " + std::to_string(tid - 1000) : "slot " + std::to_string(tid)}}}});
  }
  Append({{"name", std::move(name)},
          {"cat", step},
          {"ph", "X"},
          {"pid", n.pid},
          {"tid", tid},
          {"ts", static_cast<int64_t>(start * 1e6)},
          {"dur", std::max<int64_t>(1, static_cast<int64_t>((end - start) * 1e6))},
          {"args", std::move(args)}});
}

Status TraceWriter::Close() {
  if (!f_) return error_;
  for (const auto& [key, b] : open_batches_) DrawBatch(b);
  open_batches_.clear();
  buf_ += "\n]}\n";
  WriteOut();
  if (std::fclose(f_) != 0 && error_.ok()) error_ = Status::Unavailable(file_.string() + ": trace write failed");
  f_ = nullptr;
  return error_;
}

Status WriteChromeTrace(const std::filesystem::path& file, const RunReport& report,
                        const std::vector<std::string>& node_names) {
  struct Item {
    const JobReport* job;
    const AttemptReport* a;
  };
  // A bar of the trace: one attempt, or the attempts one worker served in one batch.
  struct Bar {
    std::vector<Item> items;
    double start = 0, end = 0;
  };
  std::map<std::string, int> pid_of;
  Json events = Json::array();
  for (size_t i = 0; i < node_names.size(); ++i) {
    pid_of[node_names[i]] = static_cast<int>(i) + 1;
    events.push_back(
        {{"name", "process_name"}, {"ph", "M"}, {"pid", i + 1}, {"tid", 0}, {"args", {{"name", node_names[i]}}}});
    events.push_back(
        {{"name", "process_sort_index"}, {"ph", "M"}, {"pid", i + 1}, {"tid", 0}, {"args", {{"sort_index", i}}}});
  }
  std::map<std::string, std::vector<Item>> by_node;
  for (const auto& j : report.jobs)
    for (const auto& a : j.attempts) by_node[a.node].push_back({&j, &a});
  for (auto& [node, items] : by_node) {
    if (!pid_of.count(node)) {
      const int pid = static_cast<int>(pid_of.size()) + 1;
      pid_of[node] = pid;
      events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", pid}, {"tid", 0}, {"args", {{"name", node}}}});
    }
    const int pid = pid_of[node];
    std::vector<Bar> bars;
    std::map<std::pair<std::string, std::string>, size_t> batch_bar;  // (step, batch) -> index in bars
    for (const auto& it : items) {
      if (it.a->batch.empty()) {
        bars.push_back({{it}, it.a->start, it.a->end});
        continue;
      }
      auto [at, fresh] = batch_bar.try_emplace({it.a->step, it.a->batch}, bars.size());
      if (fresh) bars.push_back({{}, it.a->start, it.a->end});
      Bar& b = bars[at->second];
      b.items.push_back(it);
      b.start = std::min(b.start, it.a->start);
      b.end = std::max(b.end, it.a->end);
    }
    std::sort(bars.begin(), bars.end(), [](const Bar& x, const Bar& y) { return x.start < y.start; });
    std::vector<double> lane_end;  // CPU lanes: greedy interval colouring
    std::map<int, bool> named;
    for (const auto& bar : bars) {
      const Item& it = bar.items.front();
      int tid;
      if (!it.a->gpus.empty()) {
        tid = 1000 + it.a->gpus.front();
      } else {
        size_t lane = 0;
        while (lane < lane_end.size() && lane_end[lane] > bar.start + 1e-9) ++lane;
        if (lane == lane_end.size()) lane_end.push_back(0);
        lane_end[lane] = bar.end;
        tid = static_cast<int>(lane) + 1;
      }
      if (!named[tid]) {
        named[tid] = true;
        events.push_back(
            {{"name", "thread_name"},
             {"ph", "M"},
             {"pid", pid},
             {"tid", tid},
             {"args", {{"name", tid >= 1000 ? "GPU " + std::to_string(tid - 1000) : "slot " + std::to_string(tid)}}}});
      }
      Json args = {{"step", it.a->step}, {"node", it.a->node}, {"gpus", it.a->gpus}};
      std::string name;
      if (it.a->batch.empty()) {
        name = it.job->id + " " + it.a->step;
        args["job"] = it.job->id;
        args["attempt"] = it.a->attempt;
        args["status"] = it.a->status;
      } else {
        name = fmt::format("{} batch of {}", it.a->step, bar.items.size());
        args["batch"] = it.a->batch;
        Json jobs = Json::array(), attempts = Json::array(), statuses = Json::array();
        for (const Item& m : bar.items) {
          jobs.push_back(m.job->id);
          attempts.push_back(m.a->attempt);
          statuses.push_back(m.a->status);
        }
        args["jobs"] = std::move(jobs);
        args["attempts"] = std::move(attempts);
        args["statuses"] = std::move(statuses);
      }
      events.push_back({{"name", std::move(name)},
                        {"cat", it.a->step},
                        {"ph", "X"},
                        {"pid", pid},
                        {"tid", tid},
                        {"ts", static_cast<int64_t>(bar.start * 1e6)},
                        {"dur", std::max<int64_t>(1, static_cast<int64_t>((bar.end - bar.start) * 1e6))},
                        {"args", std::move(args)}});
    }
  }
  Json trace = {{"traceEvents", events}, {"displayTimeUnit", "ms"}};
  return WriteFileAtomically(file, trace.dump(1));
}

}  // namespace baton
