// What the cluster head forgets and removes: finished jobs past the retention period (exported,
// then deleted in the turn's fenced write), pipelines no job in Redis refers to any more, the keys
// of agents dead past --forget-nodes, and the agents' work folders of ended jobs.
#include <limits>
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
    if (const int j = driver->JobIndex(id); j >= 0) {  // no longer refers to its pipeline (SweepPipelines)
      if (forgotten.size() <= static_cast<size_t>(j)) forgotten.resize(j + 1, false);
      forgotten[j] = true;
    }
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

void Head::Impl::Sweep() {
  if (swept_term != fence.term()) {  // a reload: a new driver, whose jobs and nodes are seen afresh
    swept_term = fence.term();
    forgotten.clear();
    dead_since.clear();
  }
  if (opts.retain > 0) {
    // Pipelines first: the jobs earlier sweeps removed are in Redis's past by now (a turn whose
    // write failed made the head reload, and a reload clears `forgotten`).
    SweepPipelines();
    SweepRetention(Now());
  }
  if (opts.forget_nodes > 0) SweepDeadNodes();
  double every = 60;
  if (opts.retain > 0) every = std::min(every, opts.retain / 4);
  if (opts.forget_nodes > 0) every = std::min(every, opts.forget_nodes / 4);
  next_sweep = clock.Monotonic() + every;
}

namespace {

// KEYS: the head lock, PREFIX:pipeline:ID, PREFIX:pipelines, PREFIX:pipeline:by-digest, the
// pipeline's budget keys (3). ARGV: the head's token, ID, the `used` the head decided on, digests.
// Fenced like the turn's write; a submission that named the pipeline since (its MULTI sets `used`
// to its last job, client.cc) keeps it.
constexpr const char* kRemovePipeline = R"(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED') end
if (redis.call('HGET', KEYS[2], 'used') or '') ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[2], KEYS[5], KEYS[6], KEYS[7])
redis.call('LREM', KEYS[3], 0, ARGV[2])
for i = 4, #ARGV do
  if redis.call('HGET', KEYS[4], ARGV[i]) == ARGV[2] then redis.call('HDEL', KEYS[4], ARGV[i]) end
end
return 1)";

// KEYS: the head lock, PREFIX:lease:NODE, PREFIX:nodes, PREFIX:hb, PREFIX:place:NODE. ARGV: the
// head's token, NODE, the dead incarnation. An agent that took the name meanwhile (its lease) or
// registered anew (another incarnation) keeps everything.
constexpr const char* kForgetNode = R"(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED') end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local reg = redis.call('HGET', KEYS[3], ARGV[2])
if reg and (ARGV[3] == '' or not string.find(reg, ARGV[3], 1, true)) then return 0 end
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('DEL', KEYS[5])
return 1)";

}  // namespace

// Pipelines (PREFIX:pipeline:ID, its PREFIX:pipelines and by-digest entries, its budget) that no
// job in Redis refers to any more: every job of it was removed by retention, so it is older than
// the retention period. A submission in flight (its jobs stored, not yet read by the head) keeps
// it: the pipeline's `used` names the last job stored with it, and it goes only when the head
// knows that job or it is gone from Redis, and only while `used` is still what the head read. A
// pipeline this head cannot load is never touched (jobs it could not load may refer to it).
void Head::Impl::SweepPipelines() {
  const auto& pipes = driver->pipelines();
  if (pipes.empty()) return;
  std::vector<size_t> refs(pipes.size(), 0);
  for (uint32_t j = 0; j < driver->job_count(); ++j)
    if (j >= forgotten.size() || !forgotten[j]) ++refs[driver->job(j).pipeline];
  std::vector<std::string> candidates;
  for (size_t p = 0; p < pipes.size(); ++p)
    if (refs[p] == 0 && !pipes[p].id.empty()) candidates.push_back(pipes[p].id);
  if (candidates.empty()) return;
  for (const auto& id : candidates) db.Append({"HMGET", keys.pipeline(id), "used", "name"});
  std::vector<Reply> stored;
  for (size_t i = 0; i < candidates.size(); ++i) stored.push_back(db.Read());
  if (!db.ok()) return;
  std::vector<std::pair<std::string, std::string>> removable;  // id, used
  std::vector<std::string> names;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Reply& r = stored[i];
    if (r.size() < 2 || r.at(1).null()) continue;  // gone already
    const std::string used = r.at(0).str();
    if (!used.empty() && driver->JobIndex(used) < 0 && db.Command({"EXISTS", keys.job(used)}).integer() != 0)
      continue;  // its last submission is stored, not yet read from the inbox: it is referred to
    removable.emplace_back(candidates[i], used);
    names.push_back(r.at(1).str());
  }
  if (!db.ok() || removable.empty()) return;
  const Hash digests = ToHash(db.Command({"HGETALL", keys.pipeline_index()}));
  if (!db.ok()) return;
  for (size_t i = 0; i < removable.size(); ++i) {
    const auto& [id, used] = removable[i];
    const std::string budget = opts.prefix + ":budget:pipeline-" + id;  // rates::RedisRateLimiter's
    std::vector<std::string> argv = {"EVAL",
                                     kRemovePipeline,
                                     "7",
                                     keys.head(),
                                     keys.pipeline(id),
                                     keys.pipelines(),
                                     keys.pipeline_index(),
                                     budget,
                                     budget + ":held",
                                     budget + ":until",
                                     lock.token(),
                                     id,
                                     used};
    for (const auto& [digest, pid] : digests)
      if (pid == id) argv.push_back(digest);
    Reply r = db.Command(argv);
    if (!db.ok() || r.is_error()) return;  // fenced or disconnected: the turn finds out
    if (r.integer() == 1)
      Say(fmt::format("pipeline {} ({}) removed from redis: no job refers to it any more", id, names[i]));
  }
}

// Agents dead (no heartbeat, or left) for --forget-nodes: their registration (PREFIX:nodes), heartbeat
// counter (PREFIX:hb) and placement stream (PREFIX:place:NODE) leave Redis, unless a live job's
// attempt or artifact is still on the node (then it waits). Dead since the first sweep that saw it so,
// on this head (a reload counts again). An agent of that name back later registers afresh.
void Head::Impl::SweepDeadNodes() {
  constexpr double kDone = std::numeric_limits<double>::infinity();
  const double mono = clock.Monotonic();
  std::vector<uint32_t> due;
  for (uint32_t n = 0; n < driver->nodes().size(); ++n) {
    const std::string& name = driver->nodes()[n].name;
    if (driver->scheduler().NodeAlive(n)) {
      dead_since.erase(name);
      continue;
    }
    auto [it, fresh] = dead_since.emplace(name, mono);
    if (!fresh && mono - it->second >= opts.forget_nodes) due.push_back(n);
  }
  if (due.empty()) return;
  std::set<int32_t> held;  // nodes live jobs still point at
  for (uint32_t j = 0; j < driver->job_count(); ++j) {
    const driver::JobRecord& rec = driver->job(j);
    if (rec.end != driver::JobEnd::kLive) continue;
    if (rec.in_flight) held.insert(static_cast<int32_t>(rec.in_flight->node));
    const size_t steps = driver->pipelines()[rec.pipeline].spec.steps.size();
    for (size_t s = 0; s < steps; ++s) held.insert(driver->scheduler().Home(j, static_cast<uint16_t>(s)));
  }
  for (uint32_t n : due) {
    if (held.count(static_cast<int32_t>(n))) continue;
    const std::string name = driver->nodes()[n].name;
    auto inc = incarnation.find(name);
    Reply r = db.Command({"EVAL", kForgetNode, "5", keys.head(), keys.lease(name), keys.nodes(), keys.hb(),
                          keys.place(name), lock.token(), name, inc == incarnation.end() ? "" : inc->second});
    if (!db.ok() || r.is_error()) return;  // fenced or disconnected: the turn finds out
    dead_since[name] = kDone;              // once; back alive, it counts afresh
    if (r.integer() == 1)
      Say(fmt::format("node {} dead for longer than {:.0f}s: its keys removed from redis", name, opts.forget_nodes));
  }
}

}  // namespace baton::cluster
