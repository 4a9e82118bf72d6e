#include "driver/views.h"

#include <algorithm>

#include <fmt/format.h>

#include "driver/driver.h"
#include "driver/job_fields.h"
#include "driver/scheduler_setup.h"
#include "rates/llm_usage.h"

namespace baton::driver {

Json AttemptJson(const AttemptReport& a) {
  Json j = Json::object();
  ForEachAttemptField(a, JsonFieldWriter{&j});
  return j;
}

AttemptReport AttemptFromJson(const Json& j) {
  AttemptReport a;
  if (j.is_object()) ForEachAttemptField(a, JsonFieldReader{&j});
  return a;
}

Json JobLlm(const Json& results) {
  const rates::LlmUsage u = rates::JobLlmUsage(results);
  return u.requests > 0 ? u.ToJson() : Json();
}

Json EmptyLlm() { return rates::LlmUsage{}.ToJson(); }

void AddLlm(const Json& job_view, Json* total) {
  rates::LlmUsage sum, one;
  rates::LlmUsage::FromJson(*total, &sum);
  if (const auto it = job_view.find("llm"); it != job_view.end() && rates::LlmUsage::FromJson(*it, &one)) sum.Add(one);
  *total = sum.ToJson();
}

Json JobView(const JobViewInput& in, bool detail) {
  static const std::vector<std::string> kNone;
  const auto& names = in.step_names ? *in.step_names : kNone;
  const size_t step = names.empty() ? 0 : std::min(in.step, names.size() - 1);
  Json steps = Json::array();
  for (size_t s = 0; s < names.size(); ++s) {
    std::string st;
    if (in.status == "succeeded" || s < step) st = "done";
    else if (s > step) st = "pending";
    else st = in.status;
    Json sj = {{"name", names[s]}, {"state", st}};
    if (s == step && in.status != "succeeded") sj["wait"] = in.wait;
    if (s < in.homes.size() && !in.homes[s].empty()) sj["node"] = in.homes[s];
    if (s == step && !in.node.empty()) sj["node"] = in.node;
    if (s == step) sj["attempt"] = in.step_attempt;
    steps.push_back(std::move(sj));
  }
  Json list = Json::array();
  if (in.attempts)
    for (const auto& a : *in.attempts) list.push_back(AttemptJson(a));
  if (in.running) list.push_back(AttemptJson(*in.running));
  Json j = Json::object();
  ForEachJobField(in, JsonFieldWriter{&j});
  j["step"] = names.empty() ? "" : names[step];
  j["steps"] = std::move(steps);
  j["attempts"] = std::move(list);
  if (!in.llm.is_null()) j["llm"] = in.llm;
  if (detail) j["results"] = in.results && in.results->is_object() ? *in.results : Json::object();
  return j;
}

// The Driver's views (driver.h "Views"): they read the job records and the core, and render
// through the functions above.

std::string Driver::WaitText(uint32_t job, double now) const {
  const JobRecord& j = jobs_[job];
  if (j.in_flight && !j.in_flight->waiting.empty()) return "waiting for " + j.in_flight->waiting;
  if (j.in_flight && !j.in_flight->parked.empty())
    return fmt::format("parked in {} for {:.0f}s (holding nothing)", j.in_flight->parked, now - j.in_flight->parked_at);
  return sched_.WaitReason(job, now);
}

Json Driver::JobJson(uint32_t i, double now, bool detail) const {
  const JobRecord& j = jobs_[i];
  const JobReport& rep = ReportOf(i);
  const PipelineRecord& p = pipelines_[j.pipeline];
  const auto v = sched_.Job(i);
  static thread_local std::vector<std::string> names;
  names.clear();
  for (const auto& s : p.spec.steps) names.push_back(s.name);
  JobViewInput in;
  in.id = rep.id;
  in.input = rep.input;
  in.status = core::PhaseName(v.phase);
  in.step = v.step;
  in.step_names = &names;
  for (uint16_t s = 0; s < names.size(); ++s) {
    const int32_t h = sched_.Home(i, s);
    in.homes.push_back(h >= 0 ? nodes_[h].name : "");
  }
  if (v.node >= 0) in.node = nodes_[v.node].name;
  in.step_attempt = v.step_attempt;
  if (v.phase != core::Phase::kSucceeded) in.wait = WaitText(i, now);
  in.error = rep.error;
  in.attempts = &rep.attempts;
  if (j.in_flight) {
    const InFlightAttempt& a = *j.in_flight;
    in.running = AttemptReport{
        p.spec.steps[a.step].name, nodes_[a.node].name, "running", "", a.step_attempt, a.start, 0, a.gpus, 0, ""};
  }
  const Json* results = final_ ? &rep.results : j.results.get();
  if (detail) in.results = results;
  if (results) in.llm = JobLlm(*results);
  return JobView(in, detail);
}

Json Driver::NodesJson() const {
  Json out = Json::array();
  const auto& table = sched_.resources();
  for (uint32_t n = 0; n < sched_.node_count(); ++n) {
    const auto& info = sched_.NodeInfo(n);
    const bool alive = sched_.NodeAlive(n);
    Json total = Json::object(), used = Json::object();
    for (core::ResourceId id : info.total.NonZero()) {
      if (table.IsPool(id)) continue;
      total[table.Name(id)] = core::ToDouble(info.total.Get(id));
      used[table.Name(id)] = alive ? core::ToDouble(info.total.Get(id) - sched_.NodeFree(n).Get(id)) : 0.0;
    }
    Json labels = Json::object();
    for (const auto& [k, v] : info.labels) labels[k] = v;
    Json gpus = Json::array();
    const uint64_t busy = sched_.NodeGpusBusy(n);
    for (int g = 0; g < static_cast<int>(info.total.Get(core::kGpu) / core::kUnit); ++g)
      gpus.push_back({{"id", g}, {"busy", (busy >> g) & 1}});
    Json node = {{"name", info.name}, {"alive", alive},   {"total", total},
                 {"used", used},      {"labels", labels}, {"gpus", gpus}};
    if (sched_.NodeDraining(n)) node["draining"] = true;
    if (n < nodes_.size() && !nodes_[n].address.empty()) node["address"] = nodes_[n].address;
    out.push_back(std::move(node));
  }
  // Resident workers (core rule 8): the core's view (grant, items in it), with the host's state
  // (starting/ready/busy, items served, restarts, load time) where the backend can see it.
  for (uint32_t w : sched_.live_workers()) {  // not every worker ever started: a view stays small
    const core::Scheduler::WorkerView v = sched_.Worker(w);
    if (v.node >= out.size()) continue;
    const PipelineRecord* p = nullptr;
    for (const auto& rec : pipelines_)
      if (rec.core == v.pipeline) p = &rec;
    Json worker = {{"worker", w}, {"step", p ? p->spec.steps[v.step].name : ""}, {"gpus", GpusFromMask(v.gpu_mask)},
                   {"items", v.items}};
    if (worker_state_)
      if (Json host = worker_state_({w, v.node, v.pipeline, v.step}); host.is_object())
        for (const auto& [k, val] : host.items())
          if (k != "worker" && k != "step" && k != "gpus" && k != "pipeline" && k != "step_index")
            worker[k == "items" ? "items_served" : k] = val;
    Json& node = out[v.node];
    if (!node.contains("workers")) node["workers"] = Json::array();
    node["workers"].push_back(std::move(worker));
  }
  return out;
}

Json Driver::Snapshot(const std::string& pipeline_name, double now) const {
  Json jobs = Json::array();
  for (uint32_t i = 0; i < jobs_.size(); ++i) jobs.push_back(JobJson(i, now, false));
  return {{"schema", kSchemaVersion}, {"pipeline", pipeline_name}, {"time", now}, {"jobs", std::move(jobs)},
          {"nodes", NodesJson()}, {"llm", llm_total_.ToJson()}};
}

Json Driver::JobDetail(const std::string& id, double now) const {
  const int j = JobIndex(id);
  return j < 0 ? Json() : JobJson(j, now, true);
}

std::string Driver::ProgressLine(double now) const {
  if (pipelines_.empty()) return "";
  const auto& steps = pipelines_.front().spec.steps;
  const size_t n = steps.size();
  std::vector<int> running(n, 0), waiting(n, 0);
  size_t ok = gone_succeeded_, failed = 0, cancelled = gone_cancelled_;  // forgotten jobs' places were taken
  double progress = static_cast<double>(ok + cancelled);
  for (uint32_t i = 0; i < jobs_.size(); ++i) {
    const auto v = sched_.Job(i);
    switch (v.phase) {
      case core::Phase::kSucceeded: ++ok; progress += 1; continue;
      case core::Phase::kFailed: ++failed; progress += 1; continue;
      case core::Phase::kCancelled: ++cancelled; progress += 1; continue;
      case core::Phase::kRunning: ++running[std::min<size_t>(v.step, n - 1)]; break;
      default: ++waiting[std::min<size_t>(v.step, n - 1)]; break;
    }
    progress += static_cast<double>(v.step) / static_cast<double>(n);
  }
  std::string line = fmt::format("[{:.0f}s] {}/{} done", now, ok, submitted_);
  if (failed) line += fmt::format(", {} failed", failed);
  if (cancelled) line += fmt::format(", {} cancelled", cancelled);
  for (size_t s = 0; s < n; ++s)
    if (running[s] || waiting[s]) line += fmt::format(" | {} {} run {} wait", steps[s].name, running[s], waiting[s]);
  if (progress > 0 && progress < static_cast<double>(submitted_))
    line += fmt::format(" | ETA {:.0f}s", now / progress * (static_cast<double>(submitted_) - progress));
  return line;
}

}  // namespace baton::driver
