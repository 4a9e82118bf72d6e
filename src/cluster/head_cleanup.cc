// What the cluster head forgets and removes: finished jobs past the retention period (exported,
// then deleted in the turn's fenced write), and the agents' work folders of ended jobs.
#include <set>

#include "cluster/head_impl.h"
#include "driver/scheduler_setup.h"

namespace baton::cluster {

// Whether a job of this pipeline can leave a work folder: a step that needs one (sleep steps do
// not). Asked once per pipeline; a step this binary cannot create counts as making one.
bool Head::Impl::MakesWork(uint32_t pipeline) {
  if (makes_work.size() <= pipeline) makes_work.resize(pipeline + 1, -1);
  if (makes_work[pipeline] < 0) {
    auto steps = driver::CreateSteps(driver->pipelines()[pipeline].spec, StepRegistry::Global());
    bool any = !steps.ok();
    if (steps.ok())
      for (const auto& s : *steps) any = any || s->NeedsWorkdir();
    makes_work[pipeline] = any ? 1 : 0;
  }
  return makes_work[pipeline] == 1;
}

// Tells every live node that ran an attempt of `job` to remove the job's work folder (the agent
// waits for an attempt of it still running there). A node that is gone keeps it: its stream
// starts afresh when it comes back.
void Head::Impl::RemoveWork(uint32_t job) {
  if (opts.keep_work) return;
  const driver::JobRecord& j = driver->job(job);
  if (!MakesWork(j.pipeline)) return;  // nothing to remove: no message
  std::set<int> nodes;
  for (const auto& a : j.report.attempts) nodes.insert(driver->NodeIndex(a.node));
  if (j.history)
    for (const auto& h : *j.history) nodes.insert(driver->NodeIndex(h.node));
  if (j.in_flight) nodes.insert(static_cast<int>(j.in_flight->node));
  for (int n : nodes) {
    if (n < 0 || n >= static_cast<int>(driver->nodes().size()) || !driver->scheduler().NodeAlive(n)) continue;
    removals[n].push_back(j.report.id);  // one message per node per turn (FlushTurn)
  }
}

// Finished jobs older than --retain leave Redis (exported first when --export is set). Reads the
// ended jobs by end time (PREFIX:ended, written with each job's end), the oldest first, a window
// at a time, so jobs that never end, however many and however old, hold nothing up; the deletes
// go into this turn's fenced write.
void Head::Impl::SweepRetention(double now) {
  constexpr int kWindow = 1000;
  Reply ids = db.Command({"ZRANGEBYSCORE", keys.ended(), "-inf", fmt::format("{:.3f}", now - opts.retain), "LIMIT",
                          "0", std::to_string(kWindow)});
  if (!db.ok() || ids.size() == 0) return;
  for (size_t i = 0; i < ids.size(); ++i) db.Append({"HMGET", keys.job(ids.at(i).str()), "state", "ended"});
  std::vector<std::string> expired, failed, unindexed;
  for (size_t i = 0; i < ids.size(); ++i) {
    Reply r = db.Read();
    if (r.size() < 2) continue;
    const std::string state = r.at(0).str(), ended = r.at(1).str();
    if (TerminalState(state) && !ended.empty() && std::atof(ended.c_str()) + opts.retain <= now) {
      expired.push_back(ids.at(i).str());
      if (state == "failed") failed.push_back(ids.at(i).str());
    } else if (state.empty()) {
      expired.push_back(ids.at(i).str());  // an indexed id without its hash: drop the id
    } else if (!TerminalState(state)) {
      unindexed.push_back(ids.at(i).str());  // retried since: live again (its next end indexes it anew)
    }
  }
  if (!db.ok()) return;
  for (const auto& id : unindexed) expiring.push_back({"ZREM", keys.ended(), id});
  if (expired.empty()) return;
  if (!opts.export_file.empty()) {
    std::map<std::string, std::vector<std::string>> steps;
    std::string lines;
    for (const auto& id : expired) {
      db.Append({"HGETALL", keys.job(id)});
      db.Append({"LRANGE", keys.attempts(id), "0", "-1"});
    }
    for (const auto& id : expired) {
      Hash h = ToHash(db.Read());
      Reply list = db.Read();
      if (h.empty()) continue;
      auto& names = steps[h["pipeline"]];
      if (names.empty()) {
        const int p = driver->PipelineIndex(h["pipeline"]);
        if (p >= 0)
          for (const auto& st : driver->pipelines()[p].spec.steps) names.push_back(st.name);
      }
      Json attempts = Json::array();
      for (size_t a = 0; a < list.size(); ++a) attempts.push_back(Json::parse(list.at(a).str(), nullptr, false));
      lines +=
          JobJsonFromHash(id, h, names, true, attempts).dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
    }
    if (!db.ok()) return;
    FILE* f = std::fopen(opts.export_file.c_str(), "a");
    if (f == nullptr || std::fwrite(lines.data(), 1, lines.size(), f) != lines.size() || std::fflush(f) != 0 ||
        fsync(fileno(f)) != 0) {
      if (f) std::fclose(f);
      Say("cannot append to the export file " + opts.export_file + ": finished jobs are kept until it works");
      return;
    }
    std::fclose(f);
  }
  for (const auto& id : expired) {
    expiring.push_back({"DEL", keys.job(id), keys.attempts(id)});
    expiring.push_back({"LREM", keys.jobs(), "1", id});
    expiring.push_back({"ZREM", keys.ended(), id});
  }
  // A failed job's work folders were kept for debugging; forgotten, the job has no use for them.
  for (const auto& id : failed)
    if (const int j = driver->JobIndex(id); j >= 0 && driver->job(j).end == driver::JobEnd::kFailed) RemoveWork(j);
  Say(fmt::format("{} finished job{} older than the retention period removed from redis{}", expired.size(),
                  expired.size() == 1 ? "" : "s",
                  opts.export_file.empty() ? "" : " (exported to " + opts.export_file + ")"));
}

}  // namespace baton::cluster
