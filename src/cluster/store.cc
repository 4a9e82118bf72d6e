#include "cluster/store.h"

#include <algorithm>

namespace baton::cluster {

namespace {
std::string Get(const Hash& h, const char* k) {
  auto it = h.find(k);
  return it == h.end() ? std::string() : it->second;
}
Json ParseOr(const std::string& s, Json fallback) {
  if (s.empty()) return fallback;
  Json j = Json::parse(s, nullptr, false);
  return j.is_discarded() ? fallback : j;
}
}  // namespace

bool TerminalState(const std::string& state) {
  return state == "succeeded" || state == "failed" || state == "cancelled";
}

Json JobJson(const std::string& id, const Hash& h, const std::vector<std::string>& steps, bool detail,
             const Json& attempts) {
  const std::string state = Get(h, "state");
  const size_t step = steps.empty() ? 0 : std::min<size_t>(std::atoi(Get(h, "step").c_str()), steps.size() - 1);
  const Json homes = ParseOr(Get(h, "homes"), Json::array());
  const std::string node = Get(h, "node");
  Json steps_json = Json::array();
  for (size_t s = 0; s < steps.size(); ++s) {
    std::string st;
    if (state == "succeeded" || s < step) st = "done";
    else if (s > step) st = "pending";
    else st = state;
    Json sj = {{"name", steps[s]}, {"state", st}};
    if (s == step && state != "succeeded") sj["wait"] = Get(h, "wait");
    if (s < homes.size() && homes[s].is_string() && !homes[s].get<std::string>().empty()) sj["node"] = homes[s];
    if (s == step && !node.empty()) sj["node"] = node;
    if (s == step) sj["attempt"] = std::atoi(Get(h, "step_attempt").c_str());
    steps_json.push_back(std::move(sj));
  }
  Json jj = {{"id", id}, {"input", Get(h, "input")}, {"state", state}, {"step", steps.empty() ? "" : steps[step]},
             {"steps", steps_json}, {"attempts", std::atoi(Get(h, "attempts").c_str())}};
  if (!Get(h, "error").empty()) jj["error"] = Get(h, "error");
  if (detail) {
    Json list = attempts.is_array() ? attempts : Json::array();
    if (state == "running" && !node.empty()) {
      list.push_back({{"step", steps.empty() ? "" : steps[step]}, {"attempt", std::atoi(Get(h, "step_attempt").c_str())},
                      {"node", node}, {"status", "running"}, {"start", std::atof(Get(h, "start").c_str())},
                      {"gpus", ParseOr(Get(h, "gpus"), Json::array())}});
    }
    jj["attempts"] = list;
    Json results = ParseOr(Get(h, "results"), Json::object());
    if (results.is_object()) results.erase("_record");
    jj["results"] = results;
  }
  return jj;
}

}  // namespace baton::cluster
