#include "cluster/client.h"

#include <chrono>
#include <map>

#include <fmt/format.h>

#include "cluster/artifacts.h"
#include "cluster/protocol.h"
#include "cluster/redis_store.h"
#include "util/clock.h"
#include "driver/views.h"

namespace baton::cluster {

namespace {

// The connection's error, if any.
Status Check(Redis& db) { return db.ok() ? Status::Ok() : Status::Unavailable(db.error()); }

Result<std::vector<std::string>> AllJobIds(Redis& db, const Keys& keys) {
  Reply r = db.Command({"LRANGE", keys.jobs(), "0", "-1"});
  if (Status st = Check(db); !st.ok()) return st;
  std::vector<std::string> ids;
  for (size_t i = 0; i < r.size(); ++i) ids.push_back(r.at(i).str());
  return ids;
}

// Step names per pipeline id, loaded once.
const std::vector<std::string>& StepNames(Redis& db, const Keys& keys,
                                          std::map<std::string, std::vector<std::string>>& cache,
                                          const std::string& pid, std::string* name = nullptr) {
  auto it = cache.find(pid);
  if (it != cache.end()) return it->second;
  Hash h = ToHash(db.Command({"HGETALL", keys.pipeline(pid)}));
  std::vector<std::string> names;
  if (auto spec = ParsePipeline(h["yaml"], h["file"]); spec.ok()) {
    for (const auto& s : spec->steps) names.push_back(s.name);
    if (name) *name = spec->name;
  }
  return cache[pid] = names;
}

}  // namespace

Result<std::vector<std::string>> SubmitJobs(Redis& db, const Keys& keys, const std::filesystem::path& pipeline_file,
                                            const std::string& yaml, const PipelineSpec& spec,
                                            const std::vector<std::string>& inputs) {
  const long long last = db.Command({"INCRBY", keys.job_seq(), std::to_string(inputs.size())}).integer();
  // The same pipeline text submitted again is stored once (thousands of submissions of one
  // pipeline cost one copy); its jobs share the pipeline id, and so its `budget:`.
  const std::string digest = Sha256Hex(spec.name + '\n' + yaml);
  std::string pid = db.Command({"HGET", keys.pipeline_index(), digest}).str();
  const bool fresh = pid.empty() || db.Command({"EXISTS", keys.pipeline(pid)}).integer() == 0;
  if (fresh) pid = std::to_string(db.Command({"INCR", keys.pipeline_seq()}).integer());
  if (Status st = Check(db); !st.ok()) return st;
  const long long first = last - static_cast<long long>(inputs.size());
  std::vector<std::string> ids;
  for (size_t i = 0; i < inputs.size(); ++i) ids.push_back(fmt::format("job-{}", first + static_cast<long long>(i)));
  constexpr size_t kChunk = 5000;
  for (size_t start = 0; start < ids.size(); start += kChunk) {
    const size_t end = std::min(ids.size(), start + kChunk);
    size_t n = 0;
    db.Append({"MULTI"});
    // `used`: the last job stored with the pipeline. The head removes a pipeline no job refers to
    // only while `used` is what it decided on (head_cleanup.cc), so this chunk's jobs keep it.
    if (start == 0 && fresh) {
      db.Append({"HSET", keys.pipeline(pid), "name", spec.name, "file", pipeline_file.string(), "yaml", yaml, "used",
                 ids[end - 1]});
      db.Append({"RPUSH", keys.pipelines(), pid});
      db.Append({"HSET", keys.pipeline_index(), digest, pid});
      n += 3;
    } else if (start == 0) {
      // Stored before: stored again if the head removed it after the look-up above (fields kept).
      for (const auto& [field, value] :
           {std::pair<std::string, std::string>{"name", spec.name}, {"file", pipeline_file.string()}, {"yaml", yaml}})
        db.Append({"HSETNX", keys.pipeline(pid), field, value});
      db.Append({"HSET", keys.pipeline(pid), "used", ids[end - 1]});
      db.Append({"LREM", keys.pipelines(), "0", pid});
      db.Append({"RPUSH", keys.pipelines(), pid});
      db.Append({"HSET", keys.pipeline_index(), digest, pid});
      n += 7;
    } else {
      db.Append({"HSET", keys.pipeline(pid), "used", ids[end - 1]});
      ++n;
    }
    std::vector<std::string> push = {"RPUSH", keys.jobs()};
    std::vector<std::string> list;
    for (size_t i = start; i < end; ++i) {
      db.Append({"HSET", keys.job(ids[i]), "input", inputs[i], "pipeline", pid, "state", "ready", "step", "0",
                 "serial", "0", "attempts", "0", "wait", "submitted"});
      ++n;
      push.push_back(ids[i]);
      list.push_back(ids[i]);
    }
    db.Append(push);
    db.Append({"XADD", keys.inbox(), "*", "m", protocol::Encode(protocol::SubmitJobs{pid, list})});
    db.Append({"EXEC"});
    n += 2;
    for (size_t i = 0; i < n + 1; ++i) db.Read();
    Reply exec = db.Read();
    if (Status st = Check(db); !st.ok()) return st;
    if (exec.null() || exec.is_error()) return Status::Unavailable("redis refused the submission: " + exec.str());
  }
  return ids;
}

Result<std::vector<std::string>> JobStates(Redis& db, const Keys& keys, const std::vector<std::string>& ids) {
  std::vector<std::string> out;
  for (const auto& id : ids) db.Append({"HGET", keys.job(id), "state"});
  for (size_t i = 0; i < ids.size(); ++i) out.push_back(db.Read().str());
  if (Status st = Check(db); !st.ok()) return st;
  return out;
}

Result<Json> ClusterSnapshot(Redis& db, const Keys& keys, const std::vector<std::string>* only) {
  std::vector<std::string> ids;
  if (only) {
    ids = *only;
  } else {
    Result<std::vector<std::string>> all = AllJobIds(db, keys);
    if (!all.ok()) return all.status();
    ids = std::move(*all);
  }
  std::map<std::string, std::vector<std::string>> cache;
  std::vector<Hash> hashes;
  std::vector<Json> attempts;
  for (const auto& id : ids) {
    db.Append({"HGETALL", keys.job(id)});
    db.Append({"LRANGE", keys.attempts(id), "0", "-1"});
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    hashes.push_back(ToHash(db.Read()));
    Reply list = db.Read();
    Json a = Json::array();
    for (size_t k = 0; k < list.size(); ++k) a.push_back(Json::parse(list.at(k).str(), nullptr, false));
    attempts.push_back(std::move(a));
  }
  if (Status st = Check(db); !st.ok()) return st;
  std::string pipeline_name;
  Json jobs = Json::array();
  Json llm = driver::EmptyLlm();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (hashes[i].empty()) continue;
    const auto& steps = StepNames(db, keys, cache, hashes[i]["pipeline"], &pipeline_name);
    jobs.push_back(JobJsonFromHash(ids[i], hashes[i], steps, false, attempts[i]));
    driver::AddLlm(jobs.back(), &llm);
  }
  Json nodes = Json::parse(
      db.Command({"GET", keys.view_nodes()}).str().empty() ? "[]" : db.Command({"GET", keys.view_nodes()}).str(),
      nullptr, false);
  if (Status st = Check(db); !st.ok()) return st;
  const double epoch = std::atof(db.Command({"GET", keys.epoch()}).str().c_str());
  const double now = epoch > 0 ? Clock::Real().Wall() - epoch : 0;
  return Json{{"schema", driver::kSchemaVersion}, {"pipeline", pipeline_name}, {"time", now}, {"jobs", jobs},
              {"nodes", nodes.is_array() ? nodes : Json::array()}, {"llm", std::move(llm)}};
}

Result<Json> ClusterJob(Redis& db, const Keys& keys, const std::string& id) {
  Hash h = ToHash(db.Command({"HGETALL", keys.job(id)}));
  if (Status st = Check(db); !st.ok()) return st;
  if (h.empty()) return Json(nullptr);
  std::map<std::string, std::vector<std::string>> cache;
  Reply list = db.Command({"LRANGE", keys.attempts(id), "0", "-1"});
  Json attempts = Json::array();
  for (size_t i = 0; i < list.size(); ++i) attempts.push_back(Json::parse(list.at(i).str(), nullptr, false));
  return JobJsonFromHash(id, h, StepNames(db, keys, cache, h["pipeline"]), true, attempts);
}

Result<RunReport> ClusterReport(Redis& db, const Keys& keys, std::vector<std::string>* node_names) {
  Result<std::vector<std::string>> all = AllJobIds(db, keys);
  if (!all.ok()) return all.status();
  const std::vector<std::string>& ids = *all;
  for (const auto& id : ids) {
    db.Append({"HMGET", keys.job(id), "input", "state", "error", "results"});
    db.Append({"LRANGE", keys.attempts(id), "0", "-1"});
  }
  RunReport report;
  std::map<std::string, bool> names;
  for (const auto& id : ids) {
    Reply h = db.Read();
    Reply list = db.Read();
    JobReport j;
    j.id = id;
    j.input = h.at(0).str();
    j.status = h.at(1).str();
    j.error = h.at(2).str();
    Json results = Json::parse(h.at(3).str().empty() ? "{}" : h.at(3).str(), nullptr, false);
    if (results.is_object()) j.results = results;
    for (size_t i = 0; i < list.size(); ++i) {
      Json a = Json::parse(list.at(i).str(), nullptr, false);
      if (!a.is_object()) continue;
      AttemptReport r = driver::AttemptFromJson(a);
      names[r.node] = true;
      j.attempts.push_back(std::move(r));
    }
    if (j.status == "succeeded") ++report.succeeded;
    else if (j.status == "failed") ++report.failed;
    else if (j.status == "cancelled") ++report.cancelled;
    for (const auto& a : j.attempts) report.seconds = std::max(report.seconds, a.end);
    report.jobs.push_back(std::move(j));
  }
  if (Status st = Check(db); !st.ok()) return st;
  Reply regs = db.Command({"HKEYS", keys.nodes()});
  for (size_t i = 0; i < regs.size(); ++i) names[regs.at(i).str()] = true;
  if (node_names) {
    node_names->clear();
    for (const auto& [n, _] : names)
      if (!n.empty()) node_names->push_back(n);
  }
  return report;
}

Result<bool> RequestCancel(Redis& db, const Keys& keys, const std::string& id) {
  if (db.Command({"EXISTS", keys.job(id)}).integer() != 1) return false;
  db.Command({"XADD", keys.inbox(), "*", "m",
              protocol::Encode(protocol::JobCommand{protocol::JobCommand::Kind::kCancel, id})});
  if (Status st = Check(db); !st.ok()) return st;
  return true;
}

Result<bool> RequestDrain(Redis& db, const Keys& keys, const std::string& node) {
  if (db.Command({"HEXISTS", keys.nodes(), node}).integer() != 1) return false;
  db.Command({"XADD", keys.place(node), "*", "m", protocol::Encode(protocol::DrainNode{"baton node drain"})});
  if (Status st = Check(db); !st.ok()) return st;
  return true;
}

}  // namespace baton::cluster
