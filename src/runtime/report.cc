// The JSON forms of a run's results:
// summary.json (RunReport::ToJson and its streamed twin WriteJson, baton/report.h). Inputs files
// are read in src/config/inputs.cc; the Chrome trace is written by src/driver/output.cc.
#include "runtime/report.h"

#include <fstream>
#include <map>

#include <fmt/format.h>

#include "baton/runtime.h"
#include "driver/job_fields.h"
#include "driver/views.h"
#include "rates/llm_usage.h"

namespace baton {

int RunReport::ExitCode() const {
  if (!error.empty()) return 3;
  if (interrupted) return 130;
  return (failed > 0 || cancelled > 0) ? 1 : 0;
}

Json RunReport::ToJson() const {
  Json jobs_json = Json::array();
  for (const auto& j : jobs) {
    Json jj = Json::object();
    driver::ForEachJobField(j, driver::JsonFieldWriter{&jj});
    Json& attempts = jj["attempts"] = Json::array();
    for (const auto& a : j.attempts) attempts.push_back(driver::AttemptJson(a));
    if (const auto usage = rates::JobLlmUsage(j.results); usage.requests > 0) jj["llm"] = usage.ToJson();
    jj["results"] = j.results;
    jobs_json.push_back(std::move(jj));
  }
  Json summary = {{"schema", driver::kSchemaVersion},
                  {"seconds", seconds},
                  {"succeeded", succeeded},
                  {"failed", failed},
                  {"cancelled", cancelled},
                  {"interrupted", interrupted},
                  {"exit_code", ExitCode()},
                  {"llm", rates::SumLlmUsage(*this)},
                  {"jobs", jobs_json}};
  if (!error.empty()) summary["error"] = error;
  return summary;
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

namespace runtime {

namespace {

// Streams fields as `, "key": value` (the first without the comma), as the lists in
// driver/job_fields.h give them: times with microseconds, text escaped.
struct StreamFieldWriter {
  std::string* out;
  bool first = true;
  void Key(const char* key) {
    *out += first ? "\"" : ", \"";
    first = false;
    *out += key;
    *out += "\": ";
  }
  void operator()(const char* key, const std::string& v, bool written) {
    if (!written) return;
    Key(key);
    AppendString(out, v);
  }
  void operator()(const char* key, int v, bool written) {
    if (written) Key(key), *out += fmt::format("{}", v);
  }
  void operator()(const char* key, double v, bool written) {
    if (written) Key(key), *out += fmt::format("{:.6f}", v);
  }
  void operator()(const char* key, const std::vector<int>& v, bool written) {
    if (written) Key(key), *out += fmt::format("[{}]", fmt::join(v, ", "));
  }
};

}  // namespace

void AppendJobJson(const JobReport& j, const Json& results, std::string* out) {
  *out += "{";
  StreamFieldWriter job{out};
  driver::ForEachJobField(j, job);
  *out += ", \"attempts\": [";
  for (size_t k = 0; k < j.attempts.size(); ++k) {
    *out += k ? ", {" : "{";
    driver::ForEachAttemptField(j.attempts[k], StreamFieldWriter{out});
    *out += "}";
  }
  if (const auto usage = rates::JobLlmUsage(results); usage.requests > 0)
    *out += "], \"llm\": " + usage.ToJson().dump() + ", \"results\": {";
  else *out += "], \"results\": {";
  bool first = true;
  for (const auto& [k, v] : results.items()) {
    *out += first ? "" : ", ";
    first = false;
    AppendString(out, k);
    *out += ": ";
    *out += v.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  *out += "}}";
}

void WriteSummaryHead(const RunReport& r, const Json& llm, std::string* out) {
  *out += fmt::format(
      "{{\n \"schema\": {},\n \"seconds\": {},\n \"succeeded\": {},\n \"failed\": {},\n \"cancelled\": {},\n"
      " \"interrupted\": {},\n \"exit_code\": {},\n \"llm\": {},\n \"jobs\": [",
      driver::kSchemaVersion, r.seconds, r.succeeded, r.failed, r.cancelled, r.interrupted, r.ExitCode(), llm.dump());
  if (!r.error.empty()) {
    const size_t at = out->rfind(",\n \"llm\": ");
    std::string field = ",\n \"error\": ";
    AppendString(&field, r.error);
    out->insert(at, field);
  }
}

}  // namespace runtime

void RunReport::WriteJson(std::string* out) const {
  out->reserve(out->size() + jobs.size() * 512);
  runtime::WriteSummaryHead(*this, rates::SumLlmUsage(*this), out);
  for (size_t i = 0; i < jobs.size(); ++i) {
    *out += i ? ",\n  " : "\n  ";
    runtime::AppendJobJson(jobs[i], jobs[i].results, out);
  }
  *out += "\n ]\n}\n";
}

}  // namespace baton
