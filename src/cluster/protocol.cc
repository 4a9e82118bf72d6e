#include "cluster/protocol.h"

#include <climits>

#include <fmt/format.h>

#include "util/json_depth.h"

namespace baton::cluster::protocol {

namespace {

std::string Quote(std::string_view s) {
  return Json(std::string(s)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

const char* KindName(StepOutcome::Kind k) {
  return k == StepOutcome::Kind::kOk ? "ok" : k == StepOutcome::Kind::kCancelled ? "cancelled" : "failed";
}

// Field readers that say what is wrong ("run.serial: missing or not a number").
class Reader {
 public:
  Reader(const Json& j, const char* what) : j_(j), what_(what) {}
  const std::string& error() const { return error_; }
  std::string Str(const char* k, bool required = true) {
    auto it = j_.find(k);
    if (it != j_.end() && it->is_string()) return it->get<std::string>();
    if (required) Fail(k, "missing or not a string");
    return {};
  }
  double Num(const char* k, bool required = true) {
    auto it = j_.find(k);
    if (it != j_.end() && it->is_number()) return it->get<double>();
    if (required) Fail(k, "missing or not a number");
    return 0;
  }
  // A number that fits an int (a double outside int's range is UB to convert).
  int Int(const char* k, bool required = true) {
    const double v = Num(k, required);
    if (v >= INT_MIN && v <= INT_MAX) return static_cast<int>(v);
    Fail(k, "out of range");
    return 0;
  }
  uint32_t U32(const char* k) {
    auto it = j_.find(k);
    if (it != j_.end() && it->is_number_unsigned() && it->get<uint64_t>() <= UINT32_MAX) return it->get<uint32_t>();
    Fail(k, "missing or not an unsigned 32-bit number");
    return 0;
  }
  bool Has(const char* k) const { return j_.find(k) != j_.end(); }
  bool Bool(const char* k, bool dflt) {
    auto it = j_.find(k);
    return it != j_.end() && it->is_boolean() ? it->get<bool>() : dflt;
  }
  const Json* Array(const char* k) {
    auto it = j_.find(k);
    if (it != j_.end() && it->is_array()) return &*it;
    Fail(k, "missing or not an array");
    return nullptr;
  }
  void Fail(const char* k, const char* why) {
    if (error_.empty()) error_ = fmt::format("{}.{}: {}", what_, k, why);
  }

 private:
  const Json& j_;
  const char* what_;
  std::string error_;
};

Result<Json> Parse(std::string_view text) {
  if (JsonNestedDeeperThan(text, kMaxNesting))
    return Status::Invalid(fmt::format("protocol: message nested deeper than {} levels", kMaxNesting));
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::Invalid("protocol: message is not a JSON object");
  auto v = j.find("v");
  if (v == j.end() || !v->is_number_integer())
    return Status::Invalid(fmt::format("protocol: message without a version (this is version {})", kProtocolVersion));
  if (v->get<int64_t>() != kProtocolVersion)
    return Status::FailedPrecondition(
        fmt::format("protocol: version {} is not supported (this is version {}); run one Baton "
                    "version across the cluster",
                    v->get<int64_t>(), kProtocolVersion));
  if (auto t = j.find("t"); t == j.end() || !t->is_string()) return Status::Invalid("protocol: message without a type");
  return j;
}

Result<AttemptResult> DecodeResult(const Json& j) {
  if (!j.is_object()) return Status::Invalid("protocol: result is not an object");
  Reader r(j, "result");
  AttemptResult m;
  m.job = r.Str("job");
  m.serial = r.U32("serial");
  m.node = r.Str("node", false);
  m.incarnation = r.Str("inc", false);
  m.term = r.Str("term", false);
  m.pid = r.Int("pid", false);
  m.start = r.Num("start", false);
  m.end = r.Num("end", false);
  const std::string status = r.Str("status");
  if (status == "waiting") {
    m.wait_notice = true;
    m.waiting = r.Str("wait", false);
    if (!r.error().empty()) return Status::Invalid("protocol: " + r.error());
    return m;
  }
  if (status == "ok") m.kind = StepOutcome::Kind::kOk;
  else if (status == "cancelled") m.kind = StepOutcome::Kind::kCancelled;
  else if (status == "failed") m.kind = StepOutcome::Kind::kFailed;
  else r.Fail("status", "must be ok, failed, cancelled or waiting");
  m.retryable = r.Bool("retryable", true);
  if (auto it = j.find("result"); it != j.end()) m.result = *it;
  m.error = r.Str("error", false);
  m.main_output = r.Str("main_output", false);
  m.batch = r.Str("batch", false);
  m.handed_back = r.Bool("handed_back", false);
  if (!r.error().empty()) return Status::Invalid("protocol: " + r.error());
  return m;
}

}  // namespace

std::string HistoryJson(const std::vector<StepRun>& history) {
  std::string out = "[";
  for (size_t i = 0; i < history.size(); ++i) {
    const StepRun& h = history[i];
    out += fmt::format(R"({}{{"step":{},"node":{},"attempt":{},"seconds":{:.6f},"gpus":[{}]}})", i ? "," : "",
                       Quote(h.step), Quote(h.node), h.attempt, h.seconds, fmt::join(h.gpus, ","));
  }
  return out + "]";
}

std::string Encode(const RunAttempt& m, std::string_view results_json, std::string_view history_json) {
  std::string homes = "[";
  for (size_t s = 0; s < m.homes.size(); ++s) {
    if (s) homes += ',';
    homes += m.homes[s].node.empty()
                 ? std::string("null")
                 : fmt::format(R"({{"node":{},"address":{}}})", Quote(m.homes[s].node), Quote(m.homes[s].address));
  }
  homes += ']';
  return fmt::format(
      R"({{"v":{},"t":"run","job":{},"serial":{},"step":{},"attempt":{},"pipeline":{},"input":{},"results":{},)"
      R"("history":{},"homes":{},"gpus":[{}],{}"inc":{},"term":{},"placed":{:.6f}}})",
      kProtocolVersion, Quote(m.job), m.serial, m.step, m.attempt, Quote(m.pipeline), Quote(m.input), results_json,
      history_json, homes, fmt::join(m.gpus, ","), m.worker >= 0 ? fmt::format(R"("worker":{},)", m.worker) : "",
      Quote(m.incarnation), Quote(m.term), m.placed);
}

std::string Encode(const StopAttempt& m) {
  return fmt::format(R"({{"v":{},"t":"stop","job":{},"serial":{},"inc":{},"term":{}}})", kProtocolVersion, Quote(m.job),
                     m.serial, Quote(m.incarnation), Quote(m.term));
}

std::string Encode(const RetireWorker& m) {
  return fmt::format(R"({{"v":{},"t":"retire_worker","pipeline":{},"step":{},"worker":{},"inc":{}}})", kProtocolVersion,
                     Quote(m.pipeline), m.step, m.worker, Quote(m.incarnation));
}

std::string Encode(const AttemptResult& m) {
  if (m.wait_notice)
    return fmt::format(R"({{"job":{},"serial":{},"node":{},"inc":{},"term":{},"status":"waiting","wait":{}}})",
                       Quote(m.job), m.serial, Quote(m.node), Quote(m.incarnation), Quote(m.term), Quote(m.waiting));
  std::string s = fmt::format(
      R"({{"job":{},"serial":{},"node":{},"inc":{},"term":{},"pid":{},"start":{:.6f},"end":{:.6f},"status":"{}",)"
      R"("retryable":{})",
      Quote(m.job), m.serial, Quote(m.node), Quote(m.incarnation), Quote(m.term), m.pid, m.start, m.end,
      KindName(m.kind), m.retryable);
  if (m.kind == StepOutcome::Kind::kOk)
    s += ",\"result\":" + m.result.dump(-1, ' ', false, Json::error_handler_t::replace);
  else s += ",\"error\":" + Quote(m.error);
  if (!m.main_output.empty()) s += ",\"main_output\":" + Quote(m.main_output);
  if (!m.batch.empty()) s += ",\"batch\":" + Quote(m.batch);
  if (m.handed_back) s += ",\"handed_back\":true";
  return s + "}";
}

std::string Encode(const DrainNode& m) {
  return Json({{"v", kProtocolVersion}, {"t", "drain"}, {"reason", m.reason}}).dump();
}

std::string Encode(const RemoveWork& m) {
  return Json({{"v", kProtocolVersion}, {"t", "remove_work"}, {"jobs", m.jobs}}).dump();
}

std::string EncodeResults(const std::vector<std::string>& encoded) {
  std::string s = fmt::format(R"({{"v":{},"t":"results","list":[)", kProtocolVersion);
  for (size_t i = 0; i < encoded.size(); ++i) {
    if (i) s += ',';
    s += encoded[i];
  }
  return s + "]}";
}

std::string Encode(const NodeJoined& m) {
  return Json({{"v", kProtocolVersion}, {"t", "node"}, {"name", m.name}}).dump();
}

std::string Encode(const SubmitJobs& m) {
  return Json({{"v", kProtocolVersion}, {"t", "submit"}, {"pipeline", m.pipeline}, {"jobs", m.jobs}}).dump();
}

std::string Encode(const JobCommand& m) {
  return Json(
             {{"v", kProtocolVersion}, {"t", m.kind == JobCommand::Kind::kCancel ? "cancel" : "retry"}, {"job", m.job}})
      .dump();
}

Result<AgentMessage> DecodeAgentMessage(std::string_view text) {
  auto parsed = Parse(text);
  if (!parsed.ok()) return parsed.status();
  const Json& j = *parsed;
  const std::string t = j["t"].get<std::string>();
  if (t == "stop") {
    Reader r(j, "stop");
    StopAttempt m{r.Str("job"), r.U32("serial"), r.Str("inc"), r.Str("term", false)};
    if (!r.error().empty()) return Status::Invalid("protocol: " + r.error());
    return AgentMessage{std::move(m)};
  }
  if (t == "retire_worker") {
    Reader r(j, "retire_worker");
    RetireWorker m{r.Str("pipeline"), static_cast<uint16_t>(r.U32("step")), r.Int("worker"), r.Str("inc")};
    if (!r.error().empty()) return Status::Invalid("protocol: " + r.error());
    return AgentMessage{std::move(m)};
  }
  if (t == "drain") {
    Reader r(j, "drain");
    return AgentMessage{DrainNode{r.Str("reason", false)}};
  }
  if (t == "remove_work") {
    Reader r(j, "remove_work");
    RemoveWork m;
    if (const Json* jobs = r.Array("jobs"))
      for (const auto& id : *jobs) {
        if (!id.is_string()) return Status::Invalid("protocol: remove_work.jobs: not a list of strings");
        m.jobs.push_back(id.get<std::string>());
      }
    if (!r.error().empty()) return Status::Invalid("protocol: " + r.error());
    return AgentMessage{std::move(m)};
  }
  if (t != "run") return Status::Invalid("protocol: unknown message type '" + t + "' for an agent");
  Reader r(j, "run");
  RunAttempt m;
  m.job = r.Str("job");
  m.serial = r.U32("serial");
  m.step = static_cast<uint16_t>(r.U32("step"));
  m.attempt = r.Int("attempt");
  m.pipeline = r.Str("pipeline");
  m.input = r.Str("input");
  m.incarnation = r.Str("inc");
  m.term = r.Str("term", false);
  m.placed = r.Num("placed", false);
  if (auto it = j.find("results"); it != j.end() && it->is_object()) m.results = *it;
  if (const Json* h = r.Array("history")) {
    for (const auto& e : *h) {
      if (!e.is_object()) continue;
      // Field by field, so that a field of another type is an error, not an exception.
      Reader hr(e, "run.history[]");
      StepRun run{hr.Str("step", false), hr.Str("node", false), hr.Int("attempt", false), hr.Num("seconds", false), {}};
      if (!hr.error().empty()) return Status::Invalid("protocol: " + hr.error());
      if (e.find("attempt") == e.end()) run.attempt = 1;
      if (auto g = e.find("gpus"); g != e.end() && g->is_array())
        for (const auto& id : *g)
          if (id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() <= 63)
            run.gpus.push_back(id.get<int>());
      m.history.push_back(std::move(run));
    }
  }
  if (const Json* homes = r.Array("homes")) {
    for (const auto& h : *homes) {
      if (h.is_object()) {
        Reader home(h, "run.homes[]");
        m.homes.push_back(StepHome{home.Str("node", false), home.Str("address", false)});
      } else {
        m.homes.push_back(StepHome{});
      }
    }
  }
  if (const Json* gpus = r.Array("gpus"))
    for (const auto& g : *gpus) {
      if (!g.is_number_integer() || g.get<int64_t>() < 0 || g.get<int64_t>() > 63) {
        r.Fail("gpus", "must list device ids 0..63");
        break;
      }
      m.gpus.push_back(g.get<int>());
    }
  if (r.Has("worker")) m.worker = r.Int("worker");
  if (!r.error().empty()) return Status::Invalid("protocol: " + r.error());
  return AgentMessage{std::move(m)};
}

Result<InboxMessage> DecodeInboxMessage(std::string_view text) {
  auto parsed = Parse(text);
  if (!parsed.ok()) return parsed.status();
  const Json& j = *parsed;
  const std::string t = j["t"].get<std::string>();
  if (t == "results") {
    Reader r(j, "results");
    AttemptResults m;
    if (const Json* list = r.Array("list")) {
      for (const auto& e : *list) {
        auto one = DecodeResult(e);
        if (!one.ok()) return one.status();
        m.list.push_back(std::move(*one));
      }
    }
    if (!r.error().empty()) return Status::Invalid("protocol: " + r.error());
    return InboxMessage{std::move(m)};
  }
  if (t == "node") {
    Reader r(j, "node");
    NodeJoined m{r.Str("name")};
    if (!r.error().empty()) return Status::Invalid("protocol: " + r.error());
    return InboxMessage{std::move(m)};
  }
  if (t == "submit") {
    Reader r(j, "submit");
    SubmitJobs m;
    m.pipeline = r.Str("pipeline");
    if (const Json* jobs = r.Array("jobs"))
      for (const auto& id : *jobs)
        if (id.is_string()) m.jobs.push_back(id.get<std::string>());
    if (!r.error().empty()) return Status::Invalid("protocol: " + r.error());
    return InboxMessage{std::move(m)};
  }
  if (t == "cancel" || t == "retry") {
    Reader r(j, t.c_str());
    JobCommand m{t == "cancel" ? JobCommand::Kind::kCancel : JobCommand::Kind::kRetry, r.Str("job")};
    if (!r.error().empty()) return Status::Invalid("protocol: " + r.error());
    return InboxMessage{std::move(m)};
  }
  return Status::Invalid("protocol: unknown message type '" + t + "' for the head");
}

}  // namespace baton::cluster::protocol
