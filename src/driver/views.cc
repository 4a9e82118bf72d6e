#include "driver/views.h"

#include <algorithm>

#include "rates/llm_usage.h"

namespace baton::driver {

Json AttemptJson(const AttemptReport& a) {
  Json j = {{"step", a.step}, {"attempt", a.attempt}, {"node", a.node}, {"status", a.status},
            {"start", a.start}, {"gpus", a.gpus}};
  if (a.status != "running") {
    j["end"] = a.end;
    j["seconds"] = a.end - a.start;
  }
  if (!a.error.empty()) j["error"] = a.error;
  if (a.placed > 0 && a.placed != a.start) j["placed"] = a.placed;
  return j;
}

AttemptReport AttemptFromJson(const Json& j) {
  AttemptReport a;
  if (!j.is_object()) return a;
  a.step = j.value("step", "");
  a.node = j.value("node", "");
  a.status = j.value("status", "");
  a.error = j.value("error", "");
  a.attempt = j.value("attempt", 0);
  a.start = j.value("start", 0.0);
  a.end = j.value("end", 0.0);
  a.placed = j.value("placed", 0.0);
  if (auto g = j.find("gpus"); g != j.end() && g->is_array())
    for (const auto& id : *g)
      if (id.is_number_integer()) a.gpus.push_back(id.get<int>());
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
    if (in.state == "succeeded" || s < step) st = "done";
    else if (s > step) st = "pending";
    else st = in.state;
    Json sj = {{"name", names[s]}, {"state", st}};
    if (s == step && in.state != "succeeded") sj["wait"] = in.wait;
    if (s < in.homes.size() && !in.homes[s].empty()) sj["node"] = in.homes[s];
    if (s == step && !in.node.empty()) sj["node"] = in.node;
    if (s == step) sj["attempt"] = in.step_attempt;
    steps.push_back(std::move(sj));
  }
  Json list = Json::array();
  if (in.attempts)
    for (const auto& a : *in.attempts) list.push_back(AttemptJson(a));
  if (in.running) list.push_back(AttemptJson(*in.running));
  Json j = {{"id", in.id}, {"input", in.input}, {"state", in.state}, {"step", names.empty() ? "" : names[step]},
            {"steps", std::move(steps)}, {"attempts", std::move(list)}};
  if (!in.error.empty()) j["error"] = in.error;
  if (!in.llm.is_null()) j["llm"] = in.llm;
  if (detail) j["results"] = in.results && in.results->is_object() ? *in.results : Json::object();
  return j;
}

}  // namespace baton::driver
