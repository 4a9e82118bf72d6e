// Driver::Overview and Driver::JobsPage: the dashboard's view of a large run (driver.h).
#include <algorithm>
#include <map>

#include "driver/driver.h"
#include "driver/views.h"

namespace baton::driver {

Json Driver::Overview(const std::string& pipeline_name, double now) const {
  static const char* const kStates[] = {"ready", "backoff", "running", "succeeded", "failed", "cancelled"};
  std::map<std::string, size_t> counts;
  for (const char* s : kStates) counts[s] = 0;
  counts["succeeded"] = gone_succeeded_;  // forgotten jobs whose place a new job took
  counts["cancelled"] = gone_cancelled_;
  std::map<std::pair<uint32_t, uint16_t>, std::map<std::string, size_t>> at;  // (pipeline, step) -> state -> n
  for (uint32_t i = 0; i < jobs_.size(); ++i) {
    const auto v = sched_.Job(i);
    const char* state = core::PhaseName(v.phase);
    ++counts[state];
    if (v.phase != core::Phase::kSucceeded && v.phase != core::Phase::kFailed && v.phase != core::Phase::kCancelled)
      ++at[{jobs_[i].pipeline, v.step}][state];
  }
  Json steps = Json::array();
  for (const auto& [key, by_state] : at) {
    const auto& names = pipelines_[key.first].spec.steps;
    const std::string step = key.second < names.size() ? names[key.second].name : "";
    for (const auto& [state, n] : by_state) steps.push_back({{"step", step}, {"state", state}, {"jobs", n}});
  }
  return {{"schema", kSchemaVersion}, {"pipeline", pipeline_name}, {"time", now}, {"total", submitted_},
          {"counts", counts}, {"steps", std::move(steps)}, {"nodes", NodesJson()},
          {"llm", llm_total_.ToJson()}};
}

Json Driver::JobsPage(const JobsQuery& q, double now) const {
  Json page = Json::array();
  size_t total = 0;
  if (q.states.empty() && q.text.empty()) {
    total = jobs_.size();
    for (size_t i = q.offset; i < total && page.size() < q.limit; ++i)
      page.push_back(JobJson(static_cast<uint32_t>(i), now, false));
    return {{"total", total}, {"jobs", std::move(page)}};
  }
  ScanJobs(q, now, 0, jobs_.size(), &total, &page);
  return {{"total", total}, {"jobs", std::move(page)}};
}

void Driver::ScanJobs(const JobsQuery& q, double now, size_t from, size_t to, size_t* matched, Json* page) const {
  for (size_t k = from; k < std::min(to, jobs_.size()); ++k) {
    const auto i = static_cast<uint32_t>(k);
    if (!q.states.empty()) {
      const std::string state = core::PhaseName(sched_.Job(i).phase);
      if (std::find(q.states.begin(), q.states.end(), state) == q.states.end()) continue;
    }
    if (!q.text.empty()) {
      const JobReport& rep = ReportOf(i);
      if (rep.id.find(q.text) == std::string::npos && rep.input.find(q.text) == std::string::npos) continue;
    }
    if (*matched >= q.offset && page->size() < q.limit) page->push_back(JobJson(i, now, false));
    ++*matched;
  }
}

}  // namespace baton::driver
