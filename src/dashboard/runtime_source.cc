#include "dashboard/runtime_source.h"

#include <algorithm>
#include <map>

namespace baton::dashboard {

Json EventToJson(const Event& e) {
  Json j = {{"type", EventTypeName(e.type)}, {"time", e.time}};
  if (!e.job.empty()) j["job"] = e.job;
  if (!e.step.empty()) j["step"] = e.step;
  if (!e.node.empty()) j["node"] = e.node;
  if (e.attempt > 0) j["attempt"] = e.attempt;
  if (!e.gpus.empty()) j["gpus"] = e.gpus;
  if (!e.status.empty()) j["status"] = e.status;
  if (!e.message.empty()) j["message"] = e.message;
  if (e.pid > 0) j["pid"] = e.pid;
  if (!e.data.is_null()) j["data"] = e.data;
  return j;
}

void EventFanout::Add(std::function<void(const Json&)> f) {
  std::lock_guard lock(mu_);
  subscribers_.push_back(std::move(f));
}

void EventFanout::OnEvent(const Event& event) {
  std::lock_guard lock(mu_);
  if (subscribers_.empty()) return;
  const Json j = EventToJson(event);
  for (auto& f : subscribers_) f(j);
}

Json DashboardSource::Overview() const {
  Json snap = Snapshot();
  std::map<std::string, size_t> counts;
  for (const char* s : {"ready", "backoff", "running", "succeeded", "failed", "cancelled"}) counts[s] = 0;
  std::map<std::pair<std::string, std::string>, size_t> at;
  for (const auto& j : snap["jobs"]) {
    const std::string state = j.value("state", "");
    ++counts[state];
    if (state == "ready" || state == "backoff" || state == "running") ++at[{j.value("step", ""), state}];
  }
  Json steps = Json::array();
  for (const auto& [key, n] : at) steps.push_back({{"step", key.first}, {"state", key.second}, {"jobs", n}});
  return {{"pipeline", snap.value("pipeline", "")}, {"time", snap.value("time", 0.0)}, {"total", snap["jobs"].size()},
          {"counts", counts}, {"steps", std::move(steps)}, {"nodes", snap.value("nodes", Json::array())},
          {"llm", snap.value("llm", Json::object())}};
}

Json DashboardSource::JobsPage(const JobsQuery& q) const {
  Json snap = Snapshot();
  Json page = Json::array();
  size_t total = 0;
  for (auto& j : snap["jobs"]) {
    const std::string state = j.value("state", "");
    if (!q.states.empty() && std::find(q.states.begin(), q.states.end(), state) == q.states.end()) continue;
    if (!q.text.empty() && j.value("id", "").find(q.text) == std::string::npos &&
        j.value("input", "").find(q.text) == std::string::npos)
      continue;
    if (total >= q.offset && page.size() < q.limit) page.push_back(std::move(j));
    ++total;
  }
  return {{"total", total}, {"jobs", std::move(page)}};
}

RuntimeSource::RuntimeSource(Runtime& runtime) : runtime_(runtime), fanout_(std::make_shared<EventFanout>()) {
  runtime_.AddSink(fanout_);
}

void RuntimeSource::Subscribe(std::function<void(const Json&)> sink) { fanout_->Add(std::move(sink)); }

}  // namespace baton::dashboard
