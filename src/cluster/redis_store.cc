#include "cluster/redis_store.h"

#include <algorithm>
#include <functional>

#include <fmt/format.h>

#include "driver/scheduler_setup.h"
#include "driver/views.h"

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

core::Phase PhaseOf(const std::string& s) {
  if (s == "succeeded") return core::Phase::kSucceeded;
  if (s == "failed") return core::Phase::kFailed;
  if (s == "cancelled") return core::Phase::kCancelled;
  return core::Phase::kReady;
}

std::string GpusText(const std::vector<int>& gpus) { return fmt::format("[{}]", fmt::join(gpus, ",")); }

std::vector<StepRun> HistoryFrom(const Json& j) {
  std::vector<StepRun> out;
  if (!j.is_array()) return out;
  for (const auto& e : j) {
    if (!e.is_object()) continue;
    StepRun r{e.value("step", ""), e.value("node", ""), e.value("attempt", 1), e.value("seconds", 0.0), {}};
    if (auto g = e.find("gpus"); g != e.end() && g->is_array())
      for (const auto& id : *g)
        if (id.is_number_integer()) r.gpus.push_back(id.get<int>());
    out.push_back(std::move(r));
  }
  return out;
}

std::string EncodeHistory(const std::vector<StepRun>& history) {
  Json a = Json::array();
  for (const auto& h : history)
    a.push_back({{"step", h.step}, {"node", h.node}, {"attempt", h.attempt}, {"seconds", h.seconds}, {"gpus", h.gpus}});
  return a.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

Hash ToHash(const Reply& r) {
  Hash h;
  for (size_t i = 0; i + 1 < r.size(); i += 2) h[r.at(i).str()] = r.at(i + 1).str();
  return h;
}

bool TerminalState(const std::string& state) {
  return state == "succeeded" || state == "failed" || state == "cancelled";
}

void RedisJobStore::JobChanged(uint32_t job) {
  if (loading_) return;
  Saved& s = At(job);
  if (!s.dirty) {
    s.dirty = true;
    dirty_.push_back(job);
  }
}

void RedisJobStore::AttemptRecorded(uint32_t job, const AttemptReport& a) {
  Saved& s = At(job);
  attempts_.emplace_back(job, driver::AttemptJson(a).dump(-1, ' ', false, Json::error_handler_t::replace));
  if (!s.dirty) {
    s.dirty = true;
    dirty_.push_back(job);
  }
}

void RedisJobStore::Encode(uint32_t job) {
  Saved& s = At(job);
  const driver::JobRecord& j = d_.job(job);
  if (s.version != j.results_version) {
    s.version = j.results_version;
    if (j.results->empty() && j.history->empty()) {
      s.encoded.reset();
    } else {
      if (!s.encoded) s.encoded = std::make_unique<Encoded>();
      s.encoded->results = j.results->dump(-1, ' ', false, Json::error_handler_t::replace);
      s.encoded->history = EncodeHistory(*j.history);
    }
    s.results_unsaved = true;
  }
}

const std::string& RedisJobStore::ResultsText(uint32_t job) {
  static const std::string kEmpty = "{}";
  Encode(job);
  return saved_[job].encoded ? saved_[job].encoded->results : kEmpty;
}

const std::string& RedisJobStore::HistoryText(uint32_t job) {
  static const std::string kEmpty = "[]";
  Encode(job);
  return saved_[job].encoded ? saved_[job].encoded->history : kEmpty;
}

std::string RedisJobStore::IncarnationOf(const std::string& node) const {
  auto it = incarnations_.find(node);
  return it == incarnations_.end() ? std::string() : it->second;
}

std::string RedisJobStore::HomesText(uint32_t job) const {
  const auto& steps = d_.pipelines()[d_.job(job).pipeline].spec.steps;
  Json homes = Json::array();
  for (uint16_t s = 0; s < steps.size(); ++s) {
    const int32_t h = d_.scheduler().Home(job, s);
    homes.push_back(h >= 0 ? d_.nodes()[h].name : "");
  }
  return homes.dump();
}

Result<uint32_t> RedisJobStore::EnsurePipeline(Redis& db, const std::string& id) {
  if (const int p = d_.PipelineIndex(id); p >= 0) return static_cast<uint32_t>(p);
  Hash h = ToHash(db.Command({"HGETALL", keys_.pipeline(id)}));
  if (!db.ok()) return Status::Unavailable(db.error());
  if (h.empty()) return Status::NotFound("pipeline " + id + " is not in redis");
  auto spec = ParsePipeline(h["yaml"], h["file"]);
  if (!spec.ok()) return Status::Invalid(fmt::format("pipeline {} cannot be loaded: {}", id, spec.error()));
  return d_.AddPipeline(std::move(*spec), id, nullptr);
}

Status RedisJobStore::AddSubmitted(Redis& db, const std::string& id, const Hash& h, double now) {
  auto p = EnsurePipeline(db, Get(h, "pipeline"));
  if (!p.ok()) {
    // Refused, not dropped: the submitter's `submit --wait` and `status` see why.
    db.Command({"HSET", keys_.job(id), "state", "failed", "error", p.error(), "wait", ""});
    return p.status();
  }
  d_.Submit(id, Get(h, "input"), *p, now);
  return Status::Ok();
}

Status RedisJobStore::LoadJobs(Redis& db, double now, const LoadHooks& hooks) {
  saved_.clear();
  dirty_.clear();
  ended_.clear();
  attempts_.clear();
  Reply pids = db.Command({"LRANGE", keys_.pipelines(), "0", "-1"});
  Reply ids = db.Command({"LRANGE", keys_.jobs(), "0", "-1"});
  if (!db.ok()) return Status::Unavailable(db.error());
  for (size_t i = 0; i < pids.size(); ++i) EnsurePipeline(db, pids.at(i).str()).status().IgnoreError();
  // Jobs, in submission order, their hashes and attempt lists read in pipelined batches.
  constexpr size_t kBatch = 2000;
  for (size_t i = 0; i < ids.size(); i += kBatch) {
    if (hooks.keep_alive && !hooks.keep_alive()) return Status::FailedPrecondition("the head lease was lost");
    const size_t end = std::min(ids.size(), i + kBatch);
    for (size_t k = i; k < end; ++k) {
      db.Append({"HGETALL", keys_.job(ids.at(k).str())});
      db.Append({"LRANGE", keys_.attempts(ids.at(k).str()), "0", "-1"});
    }
    for (size_t k = i; k < end; ++k) {
      const std::string id = ids.at(k).str();
      Hash h = ToHash(db.Read());
      Reply list = db.Read();
      if (!db.ok()) return Status::Unavailable(db.error());
      const int p = d_.PipelineIndex(Get(h, "pipeline"));
      if (h.empty() || p < 0) continue;
      const auto& steps = d_.pipelines()[p].spec.steps;
      driver::RestoredJob r;
      r.id = id;
      r.input = Get(h, "input");
      r.pipeline = static_cast<uint32_t>(p);
      const std::string state = Get(h, "state").empty() ? "ready" : Get(h, "state");
      r.phase = PhaseOf(state);
      r.step =
          static_cast<uint16_t>(std::min<long>(std::atol(Get(h, "step").c_str()), static_cast<long>(steps.size()) - 1));
      r.serial = static_cast<uint32_t>(std::atoll(Get(h, "serial").c_str()));
      r.error = Get(h, "error");
      if (const std::string losses = Get(h, "losses"); losses.find(':') != std::string::npos) {
        r.lost_step = static_cast<uint16_t>(std::clamp(std::atol(losses.c_str()), 0L, 65535L));
        r.node_losses = static_cast<uint16_t>(std::clamp(std::atol(losses.c_str() + losses.find(':') + 1), 0L, 65535L));
      }
      r.results = ParseOr(Get(h, "results"), Json::object());
      r.history = HistoryFrom(ParseOr(Get(h, "history"), Json::array()));
      r.homes.assign(steps.size(), -1);
      const Json homes = ParseOr(Get(h, "homes"), Json::array());
      for (size_t s = 0; s < steps.size() && s < homes.size(); ++s)
        if (homes[s].is_string()) r.homes[s] = d_.NodeIndex(homes[s].get<std::string>());
      for (size_t a = 0; a < list.size(); ++a)
        r.attempts.push_back(driver::AttemptFromJson(ParseOr(list.at(a).str(), Json())));
      if (state == "running") {
        driver::InFlightAttempt a;
        a.serial = r.serial;
        a.step = r.step;
        a.step_attempt = static_cast<uint16_t>(std::atoi(Get(h, "step_attempt").c_str()));
        const int node = d_.NodeIndex(Get(h, "node"));
        a.node = node < 0 ? UINT32_MAX : static_cast<uint32_t>(node);
        const Json gpus = ParseOr(Get(h, "gpus"), Json::array());
        for (const auto& g : gpus)
          if (g.is_number_integer()) a.gpus.push_back(g.get<int>());
        a.start = std::atof(Get(h, "start").c_str());
        const double timeout = steps[r.step].timeout;
        r.deadline = timeout > 0 ? a.start + timeout : core::kNever;
        r.in_flight = std::move(a);
        r.in_flight_node = Get(h, "node");
        // Placed on an agent incarnation that is gone (the agent restarted, or left, while no
        // head watched): nothing runs it; without this it would show "running" forever.
        auto inc = incarnations_.find(r.in_flight_node);
        if (inc == incarnations_.end() || inc->second != Get(h, "inc"))
          r.in_flight_lost_why = "agent " + r.in_flight_node + " restarted or left while the head was down";
      }
      loading_ = true;
      const size_t recorded_before = r.attempts.size();
      const uint32_t serial = r.serial;
      const uint32_t j = d_.Restore(std::move(r), now);
      loading_ = false;
      if (hooks.in_flight && d_.job(j).in_flight && d_.job(j).in_flight->serial == serial)
        hooks.in_flight(j, Get(h, "term"), Get(h, "inc"));
      Saved& s = At(j);
      if (TerminalState(state) && !Get(h, "ended").empty()) {
        s.in_ended_index = true;
        index_on_load_.emplace_back(Get(h, "ended"), id);
      }
      s.homes_hash = std::hash<std::string>()(Get(h, "homes"));
      Encode(j);
      s.results_unsaved = false;
      const auto v = d_.scheduler().Job(j);
      // Rewritten only where the restore changed it: an attempt that could not be honoured, a
      // backoff that became ready, lineage sending the job back to its anchor.
      if (d_.job(j).report.attempts.size() != recorded_before || core::PhaseName(v.phase) != state ||
          v.step != std::atoi(Get(h, "step").c_str()))
        JobChanged(j);
    }
  }
  return db.ok() ? Status::Ok() : Status::Unavailable(db.error());
}

void RedisJobStore::AppendTurn(CommandBatch& out, double now) {
  if (!index_on_load_.empty()) {
    std::vector<std::string> argv = {"ZADD", keys_.ended(), "NX"};
    for (auto& [score, id] : index_on_load_) argv.insert(argv.end(), {std::move(score), std::move(id)});
    out.Add(argv);
    index_on_load_.clear();
  }
  for (uint32_t job : dirty_) {
    Saved& s = saved_[job];
    s.dirty = false;
    const driver::JobRecord& rec = d_.job(job);
    const auto v = d_.scheduler().Job(job);
    const driver::InFlightAttempt* a = rec.in_flight ? &*rec.in_flight : nullptr;
    const bool waiting = v.phase == core::Phase::kReady || v.phase == core::Phase::kBackoff;
    std::vector<std::string> argv = {
        "HSET",         keys_.job(rec.report.id),
        "state",        core::PhaseName(v.phase),
        "step",         std::to_string(v.step),
        "step_attempt", std::to_string(a ? a->step_attempt : v.step_attempt),
        "serial",       std::to_string(rec.last_serial),
        "node",         a ? d_.nodes()[a->node].name : "",
        "gpus",         a ? GpusText(a->gpus) : "[]",
        "start",        a ? fmt::format("{:.6f}", a->start) : "",
        "inc",          a ? IncarnationOf(d_.nodes()[a->node].name) : "",
        "term",         a ? fence_.TermOf(job) : "",
        "error",        rec.report.error,
        "attempts",     std::to_string(rec.report.attempts.size()),
        "wait",         waiting || (a && !a->waiting.empty()) ? d_.WaitText(job, now) : "",
        "ended",        rec.end != driver::JobEnd::kLive ? fmt::format("{:.3f}", now) : "",
        // STEP:N node losses of step STEP's running attempts (core::Scheduler::SetMaxNodeLosses)
        "losses",       fmt::format("{}:{}", d_.scheduler().NodeLossStep(job), d_.scheduler().NodeLosses(job))};
    std::string homes = HomesText(job);
    if (const size_t hh = std::hash<std::string>()(homes); hh != s.homes_hash) {
      argv.push_back("homes");
      argv.push_back(std::move(homes));
      s.homes_hash = hh;
    }
    Encode(job);
    if (s.results_unsaved) {
      argv.insert(argv.end(), {"results", ResultsText(job), "history", HistoryText(job)});
      s.results_unsaved = false;
    }
    out.Add(argv);
    // The retention index: ended jobs by end time (head_cleanup.cc); a retried job leaves it.
    if (rec.end != driver::JobEnd::kLive) {
      if (!s.in_ended_index) out.Add({"ZADD", keys_.ended(), fmt::format("{:.3f}", now), rec.report.id});
      s.in_ended_index = true;
    } else if (s.in_ended_index) {
      out.Add({"ZREM", keys_.ended(), rec.report.id});
      s.in_ended_index = false;
    }
    if (rec.end == driver::JobEnd::kSucceeded || rec.end == driver::JobEnd::kCancelled) ended_.push_back(job);
  }
  dirty_.clear();
  // One RPUSH per job and turn (attempts_ is in recording order; a job's entries are grouped).
  std::stable_sort(attempts_.begin(), attempts_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < attempts_.size();) {
    const uint32_t job = attempts_[i].first;
    std::vector<std::string> argv = {"RPUSH", keys_.attempts(d_.job(job).report.id)};
    for (; i < attempts_.size() && attempts_[i].first == job; ++i) argv.push_back(std::move(attempts_[i].second));
    out.Add(argv);
  }
  attempts_.clear();
}

Json JobJsonFromHash(const std::string& id, const Hash& h, const std::vector<std::string>& steps, bool detail,
                     const Json& attempts) {
  driver::JobViewInput in;
  in.id = id;
  in.input = Get(h, "input");
  in.status = Get(h, "state");
  in.step = static_cast<size_t>(std::max(0, std::atoi(Get(h, "step").c_str())));
  in.step_names = &steps;
  const Json homes = ParseOr(Get(h, "homes"), Json::array());
  for (const auto& e : homes) in.homes.push_back(e.is_string() ? e.get<std::string>() : "");
  in.node = Get(h, "node");
  in.step_attempt = std::atoi(Get(h, "step_attempt").c_str());
  in.wait = Get(h, "wait");
  in.error = Get(h, "error");
  std::vector<AttemptReport> list;
  // The results text is parsed for a snapshot only when an llm step left its usage there.
  const std::string results_text = Get(h, "results");
  const bool usage = results_text.find("\"usage\"") != std::string::npos;
  const Json results = detail || usage ? ParseOr(results_text, Json::object()) : Json::object();
  if (usage) in.llm = driver::JobLlm(results);
  if (attempts.is_array())
    for (const auto& a : attempts) list.push_back(driver::AttemptFromJson(a));
  in.attempts = &list;
  {
    if (in.status == "running" && !in.node.empty()) {
      AttemptReport r;
      r.step = steps.empty() ? "" : steps[std::min(in.step, steps.size() - 1)];
      r.attempt = in.step_attempt;
      r.node = in.node;
      r.status = "running";
      r.start = std::atof(Get(h, "start").c_str());
      const Json gpus = ParseOr(Get(h, "gpus"), Json::array());
      for (const auto& g : gpus)
        if (g.is_number_integer()) r.gpus.push_back(g.get<int>());
      in.running = std::move(r);
    }
    if (detail) in.results = &results;
  }
  return driver::JobView(in, detail);
}

}  // namespace baton::cluster
