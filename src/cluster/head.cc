// The cluster head: one loop turn = read the inbox, feed the core, decide, write one MULTI/EXEC.
#include "cluster/head.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "baton/pipeline.h"
#include "cluster/store.h"
#include "core/scheduler.h"
#include "runtime/core_model.h"
#include "runtime/output.h"

namespace baton::cluster {

namespace {

double WallNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string RandomHex(int bytes) {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < bytes; ++i) s += fmt::format("{:02x}", rd() & 0xff);
  return s;
}

Hash ToHash(const Reply& r) {
  Hash h;
  for (size_t i = 0; i + 1 < r.size(); i += 2) h[r.at(i).str()] = r.at(i + 1).str();
  return h;
}

core::Phase PhaseOf(const std::string& s) {
  if (s == "succeeded") return core::Phase::kSucceeded;
  if (s == "failed") return core::Phase::kFailed;
  if (s == "cancelled") return core::Phase::kCancelled;
  return core::Phase::kReady;
}

std::string Quote(const std::string& s) { return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string GpusText(const std::vector<int>& gpus) {
  std::string s = "[";
  for (size_t i = 0; i < gpus.size(); ++i) s += (i ? "," : "") + std::to_string(gpus[i]);
  return s + "]";
}

std::vector<int> MaskToGpus(uint64_t mask) {
  std::vector<int> g;
  for (int i = 0; i < 64; ++i)
    if (mask & (uint64_t{1} << i)) g.push_back(i);
  return g;
}

}  // namespace

struct Head::Impl {
  struct PipelineRec {
    std::string id;
    PipelineSpec spec;
    uint32_t core = 0;
    std::vector<std::string> step_names;
  };
  struct NodeRec {
    std::string name, incarnation, address;
    std::string home_json, inc_json;  // {"node":..,"address":..} and the quoted incarnation, for placements
    Json reg;
    int pid = 0;
    long long hb = -1;
    double last_change = 0;
  };
  struct Running {
    std::string node;
    uint32_t serial;
    uint16_t step;
    int step_attempt;
    std::vector<int> gpus;
    double placed;  // relative seconds
  };
  struct JobRec {
    std::string id, input, error;
    uint32_t pipeline;  // index into pipelines
    Json results = Json::object();
    // results as JSON text, encoded once per change (placements and the job hash both carry it);
    // results_unsaved: the hash in Redis does not have this text yet.
    std::string results_text = "{}";
    bool results_unsaved = false;
    size_t homes_written = 0;           // std::hash of the hash's homes field as last written
    std::vector<std::string> attempts;  // attempt JSON, as in Redis
    std::unique_ptr<Running> running;
    uint32_t serial = 0;
    int saved_step = -1;
    bool dirty = false;
    bool ended = false;
  };

  HeadOptions opts;
  Keys keys;
  std::vector<std::shared_ptr<EventSink>> sinks;
  std::shared_ptr<LogSink> log;
  std::atomic<bool> stop{false};

  mutable std::mutex mu;  // guards everything below against Snapshot()/JobDetail()/requests
  std::unique_ptr<core::Scheduler> sched;
  std::vector<PipelineRec> pipelines;
  std::map<std::string, uint32_t> pipeline_index;
  std::vector<NodeRec> nodes;  // by core node index
  std::map<std::string, uint32_t> node_index;
  std::vector<JobRec> jobs;    // by core job index
  std::map<std::string, uint32_t> job_index;
  std::vector<std::string> cancel_requests, retry_requests;
  double epoch = 0;
  std::string nodes_view_written;

  // One turn's writes.
  Redis db;
  std::vector<uint32_t> dirty;
  std::vector<std::pair<std::string, std::string>> attempt_appends;  // job id, JSON
  std::vector<std::pair<std::string, std::string>> outgoing;         // node, message JSON
  std::vector<std::string> acks;
  std::set<uint64_t> timed_out;  // job << 32 | serial
  std::string lock_token = RandomHex(8);

  explicit Impl(HeadOptions o) : opts(std::move(o)), keys(opts.prefix) {}

  double Now() const { return WallNow() - epoch; }
  void Emit(const Event& e) {
    for (auto& s : sinks) s->OnEvent(e);
  }
  Event Make(Event::Type t, const JobRec& j, int step = -1, const std::string& node = "") {
    Event e{t};
    e.time = Now();
    e.job = j.id;
    if (step >= 0) e.step = pipelines[j.pipeline].step_names[step];
    e.node = node;
    return e;
  }
  void MarkDirty(uint32_t j) {
    if (!jobs[j].dirty) {
      jobs[j].dirty = true;
      dirty.push_back(j);
    }
  }

  bool Load();
  bool EnsurePipeline(const std::string& pid);
  uint32_t AddNodeToCore(const std::string& name, const Json& reg);
  void AddJob(const std::string& id, const Hash& h);
  void CheckNodes();
  void LoseNode(uint32_t idx, const std::string& why);
  void OnMessage(const std::string& id, const Json& m);
  void OnResult(const Json& m);
  void DoCancel(const std::string& job_id);
  void DoRetry(const std::string& job_id);
  void EndJob(uint32_t j, const std::string& state, const std::string& error, int step);
  void Place(const core::Placement& p);
  Hash JobHash(uint32_t j) const;
  std::string HomesText(uint32_t j) const;
  void AppendJobWrite(uint32_t j);
  Json NodesJson() const;
  bool FlushTurn();
  bool HoldLock(bool first);
  int Loop();
};

Head::Head(HeadOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->log = std::make_shared<LogSink>(impl_->opts.log_stream, impl_->opts.log_format, false);
  if (impl_->opts.log_format != RunOptions::LogFormat::kNone) impl_->sinks.push_back(impl_->log);
}
Head::~Head() = default;
void Head::AddSink(std::shared_ptr<EventSink> sink) { impl_->sinks.push_back(std::move(sink)); }
void Head::RequestStop() { impl_->stop = true; }

bool Head::CancelJob(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->job_index.find(id);
  if (it == impl_->job_index.end() || impl_->jobs[it->second].ended) return false;
  impl_->cancel_requests.push_back(id);
  return true;
}

bool Head::RetryJob(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->job_index.find(id);
  if (it == impl_->job_index.end() || impl_->sched->Job(it->second).phase != core::Phase::kFailed) return false;
  impl_->retry_requests.push_back(id);
  return true;
}

bool Head::Impl::EnsurePipeline(const std::string& pid) {
  if (pipeline_index.count(pid)) return true;
  Hash h = ToHash(db.Command({"HGETALL", keys.pipeline(pid)}));
  if (!db.ok()) return false;
  if (h.empty()) return false;
  PipelineRec rec;
  rec.id = pid;
  try {
    rec.spec = ParsePipeline(h["yaml"], h["file"]);
  } catch (const std::exception& e) {
    if (log) log->Line(fmt::format("baton head: pipeline {} cannot be loaded: {}", pid, e.what()));
    return false;
  }
  for (const auto& [k, v] : rec.spec.pools)
    if (sched->resources().Find(k) < 0 || !sched->resources().IsPool(sched->resources().Find(k))) sched->SetPool(k, v);
  for (const auto& st : rec.spec.steps) rec.step_names.push_back(st.name);
  rec.core = sched->AddPipeline(ToCoreModel(rec.spec, sched->resources()));
  pipeline_index[pid] = static_cast<uint32_t>(pipelines.size());
  pipelines.push_back(std::move(rec));
  return true;
}

uint32_t Head::Impl::AddNodeToCore(const std::string& name, const Json& reg) {
  core::NodeModel nm;
  nm.name = name;
  nm.total.Set(core::kCpu, core::ToAmount(reg.value("cpus", 1.0)));
  nm.total.Set(core::kGpu, core::ToAmount(reg.value("gpus", 0.0)));
  nm.total.Set(core::kMemory, core::ToAmount(reg.value("memory", 0.0)));
  if (reg.contains("resources") && reg["resources"].is_object())
    for (const auto& [k, v] : reg["resources"].items())
      if (v.is_number()) nm.total.Set(sched->resources().Intern(k), core::ToAmount(v.get<double>()));
  if (reg.contains("labels") && reg["labels"].is_object())
    for (const auto& [k, v] : reg["labels"].items()) nm.labels.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
  const uint32_t idx = sched->AddNode(std::move(nm));
  if (idx >= nodes.size()) nodes.resize(idx + 1);
  NodeRec& n = nodes[idx];
  n.name = name;
  n.reg = reg;
  n.incarnation = reg.value("incarnation", "");
  n.address = reg.value("address", "");
  n.home_json = Json({{"node", name}, {"address", n.address}}).dump(-1, ' ', false, Json::error_handler_t::replace);
  n.inc_json = Quote(n.incarnation);
  n.pid = reg.value("pid", 0);
  n.last_change = Now();
  node_index[name] = idx;
  Event e{Event::Type::kNodeJoined};
  e.time = Now();
  e.node = name;
  e.message = n.address;
  Emit(e);
  return idx;
}

void Head::Impl::AddJob(const std::string& id, const Hash& h) {
  auto pit = h.find("pipeline");
  if (pit == h.end() || !EnsurePipeline(pit->second)) return;
  const uint32_t pidx = pipeline_index[pit->second];
  const PipelineRec& p = pipelines[pidx];
  auto get = [&](const char* k) {
    auto it = h.find(k);
    return it == h.end() ? std::string() : it->second;
  };
  JobRec rec;
  rec.id = id;
  rec.input = get("input");
  rec.homes_written = std::hash<std::string>()(get("homes"));
  rec.pipeline = pidx;
  rec.error = get("error");
  rec.serial = static_cast<uint32_t>(std::atoll(get("serial").c_str()));
  Json results = Json::parse(get("results").empty() ? "{}" : get("results"), nullptr, false);
  rec.results = results.is_object() ? results : Json::object();
  rec.results_text = rec.results.dump(-1, ' ', false, Json::error_handler_t::replace);
  const std::string state = get("state").empty() ? "ready" : get("state");
  const int step = std::atoi(get("step").c_str());
  std::vector<int32_t> homes(p.step_names.size(), -1);
  Json hj = Json::parse(get("homes").empty() ? "[]" : get("homes"), nullptr, false);
  for (size_t s = 0; s < homes.size() && hj.is_array() && s < hj.size(); ++s) {
    if (!hj[s].is_string()) continue;
    auto it = node_index.find(hj[s].get<std::string>());
    if (it != node_index.end()) homes[s] = static_cast<int32_t>(it->second);
  }
  const auto idx = static_cast<uint32_t>(jobs.size());
  const core::Phase phase = PhaseOf(state);
  const uint32_t core_id = sched->RestoreJob(p.core, static_cast<uint16_t>(step), homes, phase, rec.serial, Now());
  (void)core_id;  // == idx: ids are dense in both
  rec.ended = phase != core::Phase::kReady;
  rec.saved_step = step;
  jobs.push_back(std::move(rec));
  job_index[id] = idx;
  if (state == "running") {
    const std::string node = get("node");
    auto nit = node_index.find(node);
    uint64_t mask = 0;
    Json gpus = Json::parse(get("gpus").empty() ? "[]" : get("gpus"), nullptr, false);
    if (gpus.is_array())
      for (const auto& g : gpus) if (g.is_number_integer() && g.get<int>() < 64) mask |= uint64_t{1} << g.get<int>();
    const int step_attempt = std::atoi(get("step_attempt").c_str());
    const double timeout = p.spec.steps[std::min<size_t>(step, p.spec.steps.size() - 1)].timeout;
    const double start = std::atof(get("start").c_str());
    if (nit != node_index.end() &&
        sched->RestoreRunning(idx, nit->second, jobs[idx].serial, static_cast<uint16_t>(step_attempt), mask,
                              timeout > 0 ? start + timeout : core::kNever)) {
      jobs[idx].running = std::make_unique<Running>(Running{node, jobs[idx].serial, static_cast<uint16_t>(step),
                                                            step_attempt, MaskToGpus(mask), start});
    } else {
      // The attempt cannot be honoured (its node is unknown): it counts as lost; its late result,
      // if any, carries a serial the core no longer expects.
      Json a = {{"step", p.step_names[step]}, {"attempt", step_attempt}, {"node", node}, {"status", "lost"},
                {"start", start}, {"end", Now()}, {"gpus", gpus}, {"error", "node " + node + " unknown after head restart"}};
      jobs[idx].attempts.push_back(a.dump());
      attempt_appends.emplace_back(id, jobs[idx].attempts.back());
      MarkDirty(idx);
    }
  } else if (phase == core::Phase::kReady && (state != "ready" || sched->Job(idx).step != step)) {
    MarkDirty(idx);  // backoff became ready now, or lineage sent it back to its anchor
  }
}

bool Head::Impl::Load() {
  sched = std::make_unique<core::Scheduler>();
  pipelines.clear();
  pipeline_index.clear();
  nodes.clear();
  node_index.clear();
  jobs.clear();
  job_index.clear();
  dirty.clear();
  attempt_appends.clear();
  outgoing.clear();
  acks.clear();
  timed_out.clear();
  nodes_view_written.clear();
  db.Append({"SETNX", keys.epoch(), fmt::format("{:.6f}", WallNow())});
  db.Append({"GET", keys.epoch()});
  db.Append({"SETNX", keys.token(), RandomHex(16)});
  db.Append({"XGROUP", "CREATE", keys.inbox(), "head", "0", "MKSTREAM"});
  db.Append({"LRANGE", keys.pipelines(), "0", "-1"});
  db.Append({"HGETALL", keys.nodes()});
  db.Append({"HGETALL", keys.hb()});
  db.Append({"LRANGE", keys.jobs(), "0", "-1"});
  db.Read();
  epoch = std::atof(db.Read().str().c_str());
  db.Read();
  db.Read();  // BUSYGROUP when it exists: fine
  Reply pids = db.Read();
  Reply regs = db.Read();
  Hash hbs = ToHash(db.Read());
  Reply ids = db.Read();
  if (!db.ok()) return false;
  for (size_t i = 0; i < pids.size(); ++i) EnsurePipeline(pids.at(i).str());
  for (size_t i = 0; i + 1 < regs.size(); i += 2) {
    Json reg = Json::parse(regs.at(i + 1).str(), nullptr, false);
    if (reg.is_discarded()) continue;
    const uint32_t idx = AddNodeToCore(regs.at(i).str(), reg);
    nodes[idx].hb = std::atoll(hbs[nodes[idx].name].c_str());
  }
  // Jobs, in submission order, their hashes read in pipelined batches.
  constexpr size_t kBatch = 2000;
  for (size_t i = 0; i < ids.size(); i += kBatch) {
    const size_t end = std::min(ids.size(), i + kBatch);
    for (size_t k = i; k < end; ++k) db.Append({"HGETALL", keys.job(ids.at(k).str())});
    for (size_t k = i; k < end; ++k) {
      Hash h = ToHash(db.Read());
      if (!db.ok()) return false;
      AddJob(ids.at(k).str(), h);
    }
    // Attempt histories (for JobDetail and counts).
    for (size_t k = i; k < end; ++k) db.Append({"LRANGE", keys.attempts(ids.at(k).str()), "0", "-1"});
    for (size_t k = i; k < end; ++k) {
      Reply r = db.Read();
      auto it = job_index.find(ids.at(k).str());
      if (it == job_index.end()) continue;
      auto& list = jobs[it->second].attempts;
      std::vector<std::string> stored;
      for (size_t a = 0; a < r.size(); ++a) stored.push_back(r.at(a).str());
      list.insert(list.begin(), stored.begin(), stored.end());
    }
  }
  return db.ok();
}

void Head::Impl::EndJob(uint32_t j, const std::string& state, const std::string& error, int step) {
  JobRec& rec = jobs[j];
  if (rec.ended) return;
  rec.ended = true;
  rec.error = error;
  Event e = Make(state == "succeeded" ? Event::Type::kJobSucceeded
                 : state == "failed"  ? Event::Type::kJobFailed
                                      : Event::Type::kJobCancelled,
                 rec, step);
  e.message = error;
  if (state == "succeeded") {
    for (auto it = rec.results.rbegin(); it != rec.results.rend(); ++it)
      if (it->is_object() && it->contains("markdown") && (*it)["markdown"].is_string()) {
        e.message = (*it)["markdown"].get<std::string>();
        break;
      }
  }
  Emit(e);
}

void Head::Impl::LoseNode(uint32_t idx, const std::string& why) {
  const double now = Now();
  const auto refs = sched->NodeLost(idx, now);
  Event e{Event::Type::kNodeLost};
  e.time = now;
  e.node = nodes[idx].name;
  e.message = why;
  Emit(e);
  for (const auto& r : refs) {
    JobRec& rec = jobs[r.job];
    if (!rec.running || rec.running->serial != r.serial) continue;
    const Running& a = *rec.running;
    Json aj = {{"step", pipelines[rec.pipeline].step_names[a.step]}, {"attempt", a.step_attempt}, {"node", a.node},
               {"status", "lost"}, {"start", a.placed}, {"end", now}, {"gpus", a.gpus}, {"placed", a.placed},
               {"error", "node " + a.node + " lost: " + why}};
    rec.attempts.push_back(aj.dump());
    attempt_appends.emplace_back(rec.id, rec.attempts.back());
    Event f = Make(Event::Type::kAttemptFinished, rec, a.step, a.node);
    f.attempt = a.step_attempt;
    f.status = "lost";
    f.message = "node lost: " + why;
    Emit(f);
    rec.running.reset();
    if (sched->Job(r.job).phase == core::Phase::kCancelled) EndJob(r.job, "cancelled", "cancelled", -1);
  }
  // Lineage may have sent waiting jobs back to their anchor step: persist those too.
  for (uint32_t j = 0; j < jobs.size(); ++j)
    if (!jobs[j].ended && sched->Job(j).step != jobs[j].saved_step) MarkDirty(j);
  for (const auto& r : refs) MarkDirty(r.job);
}

void Head::Impl::CheckNodes() {
  db.Append({"HGETALL", keys.nodes()});
  db.Append({"HGETALL", keys.hb()});
  Reply regs = db.Read();
  Hash hbs = ToHash(db.Read());
  if (!db.ok()) return;
  const double now = Now();
  std::set<std::string> present;
  for (size_t i = 0; i + 1 < regs.size(); i += 2) {
    const std::string name = regs.at(i).str();
    Json reg = Json::parse(regs.at(i + 1).str(), nullptr, false);
    if (reg.is_discarded()) continue;
    present.insert(name);
    const long long hb = std::atoll(hbs[name].c_str());
    auto it = node_index.find(name);
    if (it == node_index.end()) {
      nodes[AddNodeToCore(name, reg)].hb = hb;
      continue;
    }
    NodeRec& n = nodes[it->second];
    if (reg.value("incarnation", "") != n.incarnation) {
      // The agent restarted: whatever the old one ran is gone.
      if (sched->NodeAlive(it->second)) LoseNode(it->second, "agent restarted");
      AddNodeToCore(name, reg);
      nodes[it->second].hb = hb;
      continue;
    }
    if (hb != n.hb) {
      n.hb = hb;
      n.last_change = now;
      if (!sched->NodeAlive(it->second)) AddNodeToCore(name, reg);
    }
  }
  for (uint32_t i = 0; i < nodes.size(); ++i) {
    if (!sched->NodeAlive(i)) continue;
    if (!present.count(nodes[i].name)) LoseNode(i, "left the cluster");
    else if (now - nodes[i].last_change > opts.heartbeat_timeout)
      LoseNode(i, fmt::format("no heartbeat for {:.1f}s", now - nodes[i].last_change));
  }
}

void Head::Impl::OnResult(const Json& m) {
  auto it = job_index.find(m.value("job", ""));
  if (it == job_index.end()) return;
  const uint32_t j = it->second;
  JobRec& rec = jobs[j];
  const auto serial = m.value("serial", 0u);
  if (!rec.running || rec.running->serial != serial) return;  // stale: lost or replaced attempt
  const Running a = *rec.running;
  rec.running.reset();
  const std::string st = m.value("status", "failed");
  const bool was_timed_out = timed_out.erase((uint64_t{j} << 32) | serial) > 0;
  core::AttemptStatus status = st == "ok"          ? core::AttemptStatus::kOk
                               : was_timed_out     ? core::AttemptStatus::kTimeout
                               : st == "cancelled" ? core::AttemptStatus::kCancelled
                                                   : core::AttemptStatus::kFailed;
  const PipelineRec& p = pipelines[rec.pipeline];
  const std::string& step_name = p.step_names[a.step];
  std::string error = m.value("error", "");
  if (status == core::AttemptStatus::kTimeout) error = fmt::format("timed out after {}s", p.spec.steps[a.step].timeout);
  const double start = m.value("start", 0.0) - epoch, end = m.value("end", 0.0) - epoch;
  Json aj = {{"step", step_name}, {"attempt", a.step_attempt}, {"node", a.node}, {"status", core::AttemptStatusName(status)},
             {"start", start}, {"end", end}, {"gpus", a.gpus}, {"placed", a.placed}};
  if (!error.empty()) aj["error"] = error;
  rec.attempts.push_back(aj.dump());
  attempt_appends.emplace_back(rec.id, rec.attempts.back());
  if (status == core::AttemptStatus::kOk) {
    rec.results[step_name] = m.contains("result") ? m["result"] : Json::object();
    Json& record = rec.results["_record"];
    if (!record.is_array()) record = Json::array();
    record.push_back({{"step", step_name}, {"node", a.node}, {"attempt", a.step_attempt},
                      {"seconds", end - start}, {"status", "ok"}, {"gpus", a.gpus}});
    rec.results_text = rec.results.dump(-1, ' ', false, Json::error_handler_t::replace);
    rec.results_unsaved = true;
  }
  Event e = Make(Event::Type::kAttemptFinished, rec, a.step, a.node);
  e.attempt = a.step_attempt;
  e.status = core::AttemptStatusName(status);
  e.message = error;
  e.gpus = a.gpus;
  e.pid = m.value("pid", 0);
  Emit(e);
  const bool retryable = status == core::AttemptStatus::kTimeout || m.value("retryable", true);
  const core::FinishResult r = sched->Finish(j, serial, status, retryable, Now());
  MarkDirty(j);
  switch (r.kind) {
    case core::FinishResult::Kind::kSucceeded: EndJob(j, "succeeded", "", a.step); break;
    case core::FinishResult::Kind::kFailed:
      EndJob(j, "failed", fmt::format("{} failed after {} attempt{}: {}", step_name, a.step_attempt,
                                      a.step_attempt == 1 ? "" : "s", error), a.step);
      break;
    case core::FinishResult::Kind::kCancelled: EndJob(j, "cancelled", "cancelled", a.step); break;
    case core::FinishResult::Kind::kRetryScheduled: {
      Event rt = Make(Event::Type::kRetryScheduled, rec, a.step);
      rt.attempt = a.step_attempt;
      rt.message = fmt::format("in {:.1f}s (attempt {} of {})", r.retry_at - Now(), a.step_attempt + 1,
                               p.spec.steps[a.step].retries + 1);
      Emit(rt);
      break;
    }
    default: break;
  }
}

void Head::Impl::DoCancel(const std::string& job_id) {
  auto it = job_index.find(job_id);
  if (it == job_index.end()) return;
  const uint32_t j = it->second;
  for (const auto& r : sched->Cancel(j)) {
    const JobRec& rec = jobs[r.job];
    if (rec.running)
      outgoing.emplace_back(rec.running->node, Json({{"t", "cancel"}, {"job", rec.id}, {"serial", r.serial},
                                                     {"inc", nodes[r.node].incarnation}}).dump());
  }
  if (sched->Job(j).phase == core::Phase::kCancelled) EndJob(j, "cancelled", "cancelled", -1);
  MarkDirty(j);
}

void Head::Impl::DoRetry(const std::string& job_id) {
  auto it = job_index.find(job_id);
  if (it == job_index.end()) return;
  if (sched->Retry(it->second, Now())) {
    JobRec& rec = jobs[it->second];
    rec.ended = false;
    rec.error.clear();
    Event e = Make(Event::Type::kJobSubmitted, rec);
    e.message = "retry requested";
    Emit(e);
    MarkDirty(it->second);
  }
}

void Head::Impl::OnMessage(const std::string& id, const Json& m) {
  const std::string t = m.value("t", "");
  if (t == "result") {
    OnResult(m);
  } else if (t == "results") {  // a node agent's batch (node.cc Reporter)
    if (m.contains("list") && m["list"].is_array())
      for (const auto& r : m["list"])
        if (r.is_object()) OnResult(r);
  } else if (t == "submit") {
    std::vector<std::string> fresh;
    if (m.contains("jobs") && m["jobs"].is_array())
      for (const auto& j : m["jobs"])
        if (j.is_string() && !job_index.count(j.get<std::string>())) fresh.push_back(j.get<std::string>());
    for (const auto& j : fresh) db.Append({"HGETALL", keys.job(j)});
    std::vector<Hash> hashes;
    for (size_t i = 0; i < fresh.size(); ++i) hashes.push_back(ToHash(db.Read()));
    for (size_t i = 0; i < fresh.size() && db.ok(); ++i) {
      if (hashes[i].empty()) continue;
      AddJob(fresh[i], hashes[i]);
      auto it = job_index.find(fresh[i]);
      if (it == job_index.end()) continue;
      Event e = Make(Event::Type::kJobSubmitted, jobs[it->second]);
      e.message = jobs[it->second].input;
      Emit(e);
    }
  } else if (t == "cancel") {
    DoCancel(m.value("job", ""));
  } else if (t == "retry") {
    DoRetry(m.value("job", ""));
  }
  // "node": a join notice; CheckNodes runs after this batch.
  acks.push_back(id);
}

void Head::Impl::Place(const core::Placement& p) {
  JobRec& rec = jobs[p.job];
  const PipelineRec& pl = pipelines[rec.pipeline];
  const NodeRec& n = nodes[p.node];
  const double now = Now();
  rec.running = std::make_unique<Running>(Running{n.name, p.serial, p.step, p.step_attempt, MaskToGpus(p.gpu_mask), now});
  rec.serial = p.serial;
  // The message is assembled from pieces encoded once (results, input, node records) rather
  // than built as a Json tree and dumped: this ran for every step and was a fifth of the head's
  // CPU in the cluster bench.
  std::string homes = "[";
  for (uint16_t s = 0; s < p.step; ++s) {
    const int32_t h = sched->Home(p.job, s);
    if (s) homes += ',';
    homes += h >= 0 ? nodes[h].home_json : "null";
  }
  homes += ']';
  std::string msg = fmt::format(
      R"({{"t":"run","job":{},"serial":{},"step":{},"attempt":{},"pipeline":{},"input":{},"results":{},"homes":{},"gpus":{},"inc":{},"placed":{:.6f}}})",
      Quote(rec.id), p.serial, p.step, p.step_attempt, Quote(pl.id), Quote(rec.input), rec.results_text, homes,
      GpusText(rec.running->gpus), n.inc_json, WallNow());
  outgoing.emplace_back(n.name, std::move(msg));
  MarkDirty(p.job);
  if (!sinks.empty()) {
    Event e = Make(Event::Type::kAttemptStarted, rec, p.step, n.name);
    e.attempt = p.step_attempt;
    e.gpus = rec.running->gpus;
    e.pid = n.pid;
    Emit(e);
  }
}

std::string Head::Impl::HomesText(uint32_t j) const {
  const PipelineRec& p = pipelines[jobs[j].pipeline];
  Json homes = Json::array();
  for (uint16_t s = 0; s < p.step_names.size(); ++s) {
    const int32_t h = sched->Home(j, s);
    homes.push_back(h >= 0 ? nodes[h].name : "");
  }
  return homes.dump();
}

Hash Head::Impl::JobHash(uint32_t j) const {
  const JobRec& rec = jobs[j];
  const auto v = sched->Job(j);
  const PipelineRec& p = pipelines[rec.pipeline];
  Hash h;
  h["state"] = core::PhaseName(v.phase);
  h["step"] = std::to_string(v.step);
  h["step_attempt"] = std::to_string(rec.running ? rec.running->step_attempt : v.step_attempt);
  h["serial"] = std::to_string(rec.serial);
  h["node"] = rec.running ? rec.running->node : "";
  h["gpus"] = rec.running ? Json(rec.running->gpus).dump() : "[]";
  h["start"] = rec.running ? fmt::format("{:.6f}", rec.running->placed) : "";
  h["homes"] = HomesText(j);
  h["results"] = rec.results_text;
  h["error"] = rec.error;
  h["attempts"] = std::to_string(rec.attempts.size());
  h["wait"] = v.phase == core::Phase::kReady || v.phase == core::Phase::kBackoff ? sched->WaitReason(j, Now()) : "";
  h["input"] = rec.input;
  h["pipeline"] = p.id;
  return h;
}

Json Head::Impl::NodesJson() const {
  Json out = Json::array();
  const auto& table = sched->resources();
  for (uint32_t n = 0; n < sched->node_count(); ++n) {
    const auto& info = sched->NodeInfo(n);
    Json total = Json::object(), used = Json::object();
    for (core::ResourceId id : info.total.NonZero()) {
      if (table.IsPool(id)) continue;
      total[table.Name(id)] = core::ToDouble(info.total.Get(id));
      used[table.Name(id)] = sched->NodeAlive(n) ? core::ToDouble(info.total.Get(id) - sched->NodeFree(n).Get(id)) : 0.0;
    }
    Json labels = Json::object();
    for (const auto& [k, v] : info.labels) labels[k] = v;
    Json gpus = Json::array();
    const uint64_t busy = sched->NodeGpusBusy(n);
    for (int g = 0; g < static_cast<int>(info.total.Get(core::kGpu) / core::kUnit); ++g)
      gpus.push_back({{"id", g}, {"busy", (busy >> g) & 1}});
    out.push_back({{"name", info.name}, {"alive", sched->NodeAlive(n)}, {"total", total}, {"used", used},
                   {"labels", labels}, {"gpus", gpus}, {"address", n < nodes.size() ? nodes[n].address : ""}});
  }
  return out;
}

// HSET of the fields of job j that a turn can change. input and pipeline never change after
// submission; results and homes are written only when they differ from what Redis holds (the
// full record was re-encoded every turn before, the head's largest cost in the cluster bench).
void Head::Impl::AppendJobWrite(uint32_t j) {
  JobRec& rec = jobs[j];
  const auto v = sched->Job(j);
  std::vector<std::string> argv;
  argv.reserve(26);
  argv = {"HSET", keys.job(rec.id), "state", core::PhaseName(v.phase), "step", std::to_string(v.step),
          "step_attempt", std::to_string(rec.running ? rec.running->step_attempt : v.step_attempt),
          "serial", std::to_string(rec.serial), "node", rec.running ? rec.running->node : "",
          "gpus", rec.running ? GpusText(rec.running->gpus) : "[]",
          "start", rec.running ? fmt::format("{:.6f}", rec.running->placed) : "", "error", rec.error,
          "attempts", std::to_string(rec.attempts.size()),
          "wait", v.phase == core::Phase::kReady || v.phase == core::Phase::kBackoff ? sched->WaitReason(j, Now()) : ""};
  std::string homes = HomesText(j);
  if (const size_t h = std::hash<std::string>()(homes); h != rec.homes_written) {
    argv.push_back("homes");
    argv.push_back(std::move(homes));
    rec.homes_written = h;
  }
  if (rec.results_unsaved) {
    argv.push_back("results");
    argv.push_back(rec.results_text);
    rec.results_unsaved = false;
  }
  db.Append(argv);
  rec.dirty = false;
  rec.saved_step = v.step;
}

bool Head::Impl::FlushTurn() {
  const std::string view = NodesJson().dump();
  const bool view_changed = view != nodes_view_written;
  if (dirty.empty() && attempt_appends.empty() && outgoing.empty() && acks.empty() && !view_changed) return true;
  size_t n = 0;
  db.Append({"MULTI"});
  ++n;
  for (uint32_t j : dirty) {
    AppendJobWrite(j);
    ++n;
  }
  // Attempt records, one RPUSH per job and turn.
  for (size_t i = 0; i < attempt_appends.size();) {
    std::vector<std::string> argv = {"RPUSH", keys.attempts(attempt_appends[i].first)};
    size_t k = i;
    for (; k < attempt_appends.size() && attempt_appends[k].first == attempt_appends[i].first; ++k)
      argv.push_back(std::move(attempt_appends[k].second));
    db.Append(argv);
    ++n;
    i = k;
  }
  for (const auto& [node, m] : outgoing) {
    db.Append({"XADD", keys.place(node), "*", "m", m});
    ++n;
  }
  if (!acks.empty()) {
    std::vector<std::string> ack = {"XACK", keys.inbox(), "head"};
    std::vector<std::string> del = {"XDEL", keys.inbox()};
    ack.insert(ack.end(), acks.begin(), acks.end());
    del.insert(del.end(), acks.begin(), acks.end());
    db.Append(ack);
    db.Append(del);
    n += 2;
  }
  if (view_changed) {
    db.Append({"SET", keys.view_nodes(), view});
    ++n;
  }
  db.Append({"EXEC"});
  for (size_t i = 0; i < n; ++i) {
    Reply r = db.Read();
    if (r.is_error()) {
      if (log) log->Line("baton head: redis refused a write: " + r.str());
    }
  }
  Reply exec = db.Read();
  dirty.clear();
  attempt_appends.clear();
  outgoing.clear();
  acks.clear();
  if (!db.ok() || exec.null() || exec.is_error()) return false;
  nodes_view_written = view;
  return true;
}

bool Head::Impl::HoldLock(bool first) {
  const std::string ttl = std::to_string(static_cast<long long>(std::max(1.0, opts.heartbeat_timeout) * 1000));
  if (first) {
    Reply r = db.Command({"SET", keys.head(), lock_token, "NX", "PX", ttl});
    if (r.str() == "OK") return true;
    // Ours from before a reconnect?
    return db.Command({"GET", keys.head()}).str() == lock_token &&
           db.Command({"PEXPIRE", keys.head(), ttl}).integer() == 1;
  }
  Reply r = db.Command({"EVAL",
                        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
                        "else return 0 end",
                        "1", keys.head(), lock_token, ttl});
  return r.integer() == 1;
}

int Head::Impl::Loop() {
  bool said_waiting = false, said_lock = false;
  while (!stop) {
    if (!db.Connect(opts.redis)) {
      if (!said_waiting && log) log->Line("baton head: " + db.error() + "; retrying");
      said_waiting = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    if (!HoldLock(true)) {
      if (!said_lock && log) log->Line("baton head: another head holds " + keys.head() + "; waiting for it to go away");
      said_lock = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    {
      std::lock_guard lock(mu);
      if (!Load()) continue;
      if (log)
        log->Line(fmt::format("baton head: {} (prefix {}): {} jobs, {} nodes, {} pipelines loaded", opts.redis.Redacted(),
                              opts.prefix, jobs.size(), nodes.size(), pipelines.size()));
      if (opts.on_ready) opts.on_ready();
    }
    said_waiting = said_lock = false;
    bool pending = true;  // first re-read what this consumer received but never acknowledged
    double next_check = 0, next_lock = 0;
    const double check_every = std::min(0.25, opts.heartbeat_timeout / 4);
    std::vector<core::Placement> placements;
    std::vector<core::AttemptRef> refs;
    while (!stop && db.ok()) {
      double now = Now();
      if (now >= next_lock) {
        if (!HoldLock(false)) {
          if (log) log->Line("baton head: lost the head lock; reloading");
          break;
        }
        next_lock = now + std::max(1.0, opts.heartbeat_timeout) / 3;
      }
      double wait;
      {
        std::lock_guard lock(mu);
        wait = std::min(sched->NextWakeup(), next_check) - now;
      }
      const long block_ms = std::clamp<long>(static_cast<long>(wait * 1000), 1, 100);
      std::vector<std::string> argv = {"XREADGROUP", "GROUP", "head", "head", "COUNT", "4096"};
      if (!pending) {
        argv.push_back("BLOCK");
        argv.push_back(std::to_string(block_ms));
      }
      argv.insert(argv.end(), {"STREAMS", keys.inbox(), pending ? "0" : ">"});
      db.SetTimeout(2.0 + block_ms / 1000.0);
      Reply r = db.Command(argv);
      if (!db.ok()) break;
      std::lock_guard lock(mu);
      size_t got = 0;
      if (r.is_array() && r.size() > 0) {
        Reply entries = r.at(0).at(1);
        got = entries.size();
        for (size_t i = 0; i < entries.size(); ++i) {
          Reply e = entries.at(i);
          const std::string id = e.at(0).str();
          Reply fields = e.at(1);
          Json m;
          for (size_t f = 0; f + 1 < fields.size(); f += 2)
            if (fields.at(f).str() == "m") m = Json::parse(fields.at(f + 1).str(), nullptr, false);
          if (m.is_object()) OnMessage(id, m);
          else acks.push_back(id);
        }
      }
      if (pending && got == 0) pending = false;
      for (const auto& id : cancel_requests) DoCancel(id);
      cancel_requests.clear();
      for (const auto& id : retry_requests) DoRetry(id);
      retry_requests.clear();
      now = Now();
      if (now >= next_check) {
        CheckNodes();
        next_check = now + check_every;
      }
      refs.clear();
      sched->Expired(now, &refs);
      for (const auto& x : refs) {
        const JobRec& rec = jobs[x.job];
        if (!rec.running || rec.running->serial != x.serial) continue;
        timed_out.insert((uint64_t{x.job} << 32) | x.serial);
        outgoing.emplace_back(rec.running->node, Json({{"t", "cancel"}, {"job", rec.id}, {"serial", x.serial},
                                                       {"inc", nodes[x.node].incarnation}}).dump());
      }
      placements.clear();
      sched->Decide(now, &placements);
      for (const auto& p : placements) Place(p);
      if (!FlushTurn()) break;
    }
    if (!stop && log) log->Line("baton head: redis connection lost (" + db.error() + "); reconnecting and reloading state");
  }
  if (db.ok()) db.Command({"EVAL", "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end",
                           "1", keys.head(), lock_token});
  return 0;
}

int Head::Run() { return impl_->Loop(); }

Json Head::Snapshot() const {
  const Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  Json jobs = Json::array();
  if (!m.sched) return {{"pipeline", ""}, {"time", 0}, {"jobs", jobs}, {"nodes", Json::array()}};
  for (uint32_t j = 0; j < m.jobs.size(); ++j)
    jobs.push_back(JobJson(m.jobs[j].id, m.JobHash(j), m.pipelines[m.jobs[j].pipeline].step_names, false, nullptr));
  return {{"pipeline", m.pipelines.empty() ? "" : m.pipelines.back().spec.name}, {"time", m.Now()}, {"jobs", jobs},
          {"nodes", m.NodesJson()}};
}

Json Head::JobDetail(const std::string& id) const {
  const Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  auto it = m.job_index.find(id);
  if (!m.sched || it == m.job_index.end()) return nullptr;
  const auto& rec = m.jobs[it->second];
  Json attempts = Json::array();
  for (const auto& a : rec.attempts) attempts.push_back(Json::parse(a, nullptr, false));
  return JobJson(id, m.JobHash(it->second), m.pipelines[rec.pipeline].step_names, true, attempts);
}

}  // namespace baton::cluster
