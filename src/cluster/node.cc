// The node agent: reads its placement stream, runs attempts through the driver kit's step host
// on a worker pool, reports results to the head's inbox, beats, serves artifacts, drains on
// SIGTERM, removes ended jobs' work folders. The `fetch` step is in fetch_step.cc.
// Over 500 lines: the reader loop, the reporter and the heartbeat threads share Impl's state
// (what runs, what was received, what is held for reconciliation) under one mutex; split, that
// state would move to a header every part includes.
#include "cluster/node.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "baton/pipeline.h"
#include "baton/thread_annotations.h"
#include "cluster/artifacts.h"
#include "cluster/fence.h"
#include "cluster/keys.h"
#include "cluster/protocol.h"
#include "driver/output.h"
#include "driver/scheduler_setup.h"
#include "driver/step_host.h"
#include "driver/work_cleaner.h"
#include "driver/worker_pool.h"
#include "rates/redis_limiter.h"

namespace baton::cluster {

namespace {

// "killed by signal N" (util/process.h) for the signals a supervisor stops a group with: SIGHUP,
// SIGINT, SIGKILL, SIGTERM.
bool KilledByStopSignal(const std::string& error) {
  const size_t at = error.rfind("killed by signal ");
  if (at == std::string::npos) return false;
  const int sig = std::atoi(error.c_str() + at + 17);
  return sig == SIGHUP || sig == SIGINT || sig == SIGKILL || sig == SIGTERM;
}

// Waits until `seconds` of `clock` have passed or `done()` holds, looking at both every 50 ms of
// real time at most (a FakeClock: every millisecond, for the time its test moves with Advance()).
void Pause(const Clock& clock, double seconds, const std::function<bool()>& done) {
  const double until = clock.Monotonic() + seconds;
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(mu);
  while (!done()) {
    const double left = until - clock.Monotonic();
    if (left <= 0) return;
    clock.WaitFor(cv, lock, std::min(left, 0.05));
  }
}
bool Never() { return false; }

}  // namespace

struct NodeAgent::Impl {
  struct Loaded {
    PipelineSpec spec;
    driver::StepList steps;
    std::shared_ptr<RateLimiter> rates;  // shared by every agent through Redis; budget per pipeline id
    std::string error;
  };
  struct Attempt {
    std::string entry;  // placement stream id
    protocol::RunAttempt msg;
    std::shared_ptr<CancelToken> cancel = std::make_shared<CancelToken>();
    std::atomic<bool> handed_back{false};  // stopped because the agent drains: not a failure
    bool finished = false;                 // guarded by Shared::mu; held until its result is in Redis
  };
  using Key = AgentReport::Key;  // job, serial, term
  struct Outbound {
    std::string entry;   // placement stream id to acknowledge ("" none)
    std::string result;  // encoded result ("" = ack only)
    std::optional<Key> held;  // released from `running` once the result is in Redis
  };
  // What attempt threads share with the agent's threads. Shared, so that an attempt still running
  // when the agent is gone (it ignored its stop) has somewhere to report.
  struct Shared {
    Mutex mu;
    CondVar cv;
    // Attempts this agent holds: running, or finished with the result not yet in Redis. The
    // registration lists them (the head reconciles, fence.h).
    std::map<Key, std::shared_ptr<Attempt>> running GUARDED_BY(mu);
    std::deque<Outbound> reports GUARDED_BY(mu);
    StreamId read GUARDED_BY(mu);  // the last placement entry read
    // Placement entries taken but not yet acknowledged: a re-read of the pending list after a
    // reconnect skips them (running, or reported and waiting for the ack).
    std::set<std::string> received GUARDED_BY(mu);
    // The agent was asked to stop (SIGTERM, `baton node drain`): set at once, from any thread.
    std::atomic<bool> stopping{false};
    const Clock* clock = &Clock::Real();  // the agent's (NodeOptions::clock)
    void Report(const std::string& entry, std::string result, std::optional<Key> held = std::nullopt) EXCLUDES(mu) {
      {
        MutexLock lock(&mu);
        reports.push_back({entry, std::move(result), std::move(held)});
      }
      cv.SignalAll();
    }
    // An attempt of `job` runs here (started, not yet returned).
    bool Running(const std::string& job) EXCLUDES(mu) {
      MutexLock lock(&mu);
      for (auto it = running.lower_bound(Key{job, 0, ""}); it != running.end() && std::get<0>(it->first) == job; ++it)
        if (!it->second->finished) return true;
      return false;
    }
    size_t Unfinished() EXCLUDES(mu) {
      MutexLock lock(&mu);
      size_t n = 0;
      for (const auto& [k, a] : running) n += !a->finished;
      return n;
    }
  };

  NodeOptions opts;
  Keys keys;
  const Clock& clock;
  std::string incarnation;
  std::string token;
  std::string address;
  std::shared_ptr<LogSink> log;
  std::shared_ptr<const driver::SinkList> sinks;
  std::atomic<bool> stop{false};
  std::atomic<bool> quit{false};  // reporter: after the last attempt reported
  std::shared_ptr<Shared> shared = std::make_shared<Shared>();
  WorkerPool pool{WorkerPool::Spin::kNever};
  std::map<std::string, std::shared_ptr<Loaded>> pipelines;  // main thread only
  // Removes ended jobs' work folders (RemoveWork); null with --keep-work. Made in Run; its
  // thread holds `shared` by a shared_ptr of its own.
  std::unique_ptr<WorkCleaner> cleaner;
  Mutex reg_mu;
  Json registration GUARDED_BY(reg_mu);  // the heartbeat thread writes it out
  uint64_t beats GUARDED_BY(reg_mu) = 0;  // registrations written (the head orders reports by it)
  // The registration with what this agent holds and has read (the head reconciles with it).
  std::string RegistrationText() EXCLUDES(reg_mu) {
    Json holds = Json::array();
    std::string read;
    {
      MutexLock lock(&shared->mu);
      for (const auto& [k, a] : shared->running)
        holds.push_back(
            {{"job", std::get<0>(k)}, {"serial", std::get<1>(k)}, {"term", std::get<2>(k)}, {"done", a->finished}});
      read = shared->read.ToString();
    }
    MutexLock lock(&reg_mu);
    registration["holds"] = std::move(holds);
    registration["read"] = std::move(read);
    registration["beat"] = ++beats;
    return registration.dump();
  }

  explicit Impl(NodeOptions o)
      : opts(std::move(o)), keys(opts.prefix), clock(opts.clock ? *opts.clock : Clock::Real()) {
    shared->clock = &clock;
  }

  // Main thread: the resident workers' host state (Step::WorkerStates: loading, ready, busy,
  // items served, restarts, load time) into the registration, at most once per heartbeat; the
  // head shows it in its node views. Each entry names its pipeline id and step index.
  double workers_published = -1;
  void PublishWorkers() EXCLUDES(reg_mu) {
    const double now = clock.Monotonic();
    if (workers_published >= 0 && now - workers_published < opts.heartbeat) return;
    workers_published = now;
    Json workers = Json::array();
    for (const auto& [pid, p] : pipelines)
      for (size_t s = 0; s < p->steps.size(); ++s) {
        if (!p->steps[s]) continue;
        Json states = p->steps[s]->WorkerStates();
        if (!states.is_array()) continue;
        for (auto& w : states) {
          if (!w.is_object()) continue;
          w["pipeline"] = pid;
          w["step_index"] = s;
          workers.push_back(std::move(w));
        }
      }
    MutexLock lock(&reg_mu);
    if (workers.empty()) registration.erase("workers");
    else registration["workers"] = std::move(workers);
  }

  void Log(const std::string& s) {
    if (log) log->Line("baton node " + opts.name + ": " + s);
  }
  bool Connect(Redis& r, const std::atomic<bool>& until) {
    bool said = false;
    while (!until) {
      if (r.Connect(opts.redis)) return true;
      if (!said) Log(r.error() + "; retrying");
      said = true;
      Pause(clock, 0.2, Never);
    }
    return false;
  }
  std::shared_ptr<Loaded> Pipeline(Redis& db, const std::string& pid);
  Status ParseLoaded(const std::string& pid, Hash& h, Loaded* l);
  void Execute(std::shared_ptr<Attempt> a, std::shared_ptr<Loaded> p);
  void Reporter();
  void Heartbeat();

  // The name lease (PREFIX:lease:NAME = this incarnation, expiring after LeaseMs() unless renewed
  // by a heartbeat): two agents started with one --name would otherwise reset each other's
  // placement stream and incarnation on every start, and attempts would be lost over and over.
  long long LeaseMs() const { return std::max<long long>(1000, std::llround(opts.heartbeat * 5 * 1000)); }
  std::string TakeName(Redis& db, const std::string& machine);
  // Writes the registration (and, with `beat`, bumps the heartbeat counter) and renews the lease,
  // only while this agent holds the name; false (and `name_lost`) when another agent took it.
  bool Beat(Redis& db, bool beat);
  std::atomic<bool> name_lost{false};

  // The parts of Run, on its thread (flow at NodeAgent::Run).
  void Prepare();
  void Register(Redis& db, const std::string& machine);
  void Serve(Redis& db);
  void BeginDrain(Redis& db);
  bool Dispatch(Redis& db, const Reply& entry);
  bool Control(const std::string& id, const protocol::AgentMessage& msg);
  void HandBackUnstarted(const std::string& id, const protocol::RunAttempt& msg);
  void HandBackRunning();
  void Deregister(Redis& db);
  bool draining = false;      // Run's thread only
  double drain_deadline = 0;  // on `clock`
};

// KEYS: lease, nodes, hb; ARGV: incarnation, lease ms, name, registration, "1" to bump the counter.
constexpr const char* kBeatScript = R"(
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[3], ARGV[3], 1) end
return 1)";
// KEYS: lease, nodes, hb; ARGV: incarnation, name. Leaving: what is ours goes, a successor's stays.
constexpr const char* kLeaveScript = R"(
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1)";
// KEYS: lease; ARGV: the dead holder's incarnation, ours, lease ms.
constexpr const char* kTakeOverScript = R"(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1)";

bool NodeAgent::Impl::Beat(Redis& db, bool beat) {
  if (name_lost) return false;
  Reply r = db.Command({"EVAL", kBeatScript, "3", keys.lease(opts.name), keys.nodes(), keys.hb(), incarnation,
                        std::to_string(LeaseMs()), opts.name, RegistrationText(), beat ? "1" : "0"});
  if (!db.ok() || r.is_error() || r.integer() != 0) return true;  // a dropped connection is retried by the caller
  if (!name_lost.exchange(true)) {
    Log("another agent took over the name " + opts.name +
        " (this one missed its heartbeats for longer than the name's lease); leaving without running more here");
    stop = true;
  }
  return false;
}

// Returns "" once this agent holds the name; otherwise the line that says who does. The name is
// free when no lease is held; a lease is stale when its holder died (its process is gone from
// this machine, or its lease expires unrenewed); its holder is alive when its heartbeat counter
// moves or its lease is renewed.
std::string NodeAgent::Impl::TakeName(Redis& db, const std::string& machine) {
  const std::string lease = keys.lease(opts.name);
  const std::string ms = std::to_string(LeaseMs());
  std::string first_beat;
  long long last_ttl = -1;
  bool looked = false, said = false;
  while (!stop) {
    Reply set = db.Command({"SET", lease, incarnation, "NX", "PX", ms});
    if (!db.ok()) return "cannot register: " + db.error();
    if (set.str() == "OK") return "";
    const std::string holder = db.Command({"GET", lease}).str();
    const long long ttl = db.Command({"PTTL", lease}).integer();
    const std::string beat = db.Command({"HGET", keys.hb(), opts.name}).str();
    const Json reg = Json::parse(db.Command({"HGET", keys.nodes(), opts.name}).str(), nullptr, false);
    if (!db.ok()) return "cannot register: " + db.error();
    long long pid = 0;
    std::string host, inc;
    if (reg.is_object()) {
      if (auto it = reg.find("pid"); it != reg.end() && it->is_number_integer()) pid = it->get<long long>();
      if (auto it = reg.find("host"); it != reg.end() && it->is_string()) host = it->get<std::string>();
      if (auto it = reg.find("incarnation"); it != reg.end() && it->is_string()) inc = it->get<std::string>();
    }
    const std::string who = fmt::format("pid {} on {}", pid > 0 ? std::to_string(pid) : "?", host.empty() ? "?" : host);
    // Its process is gone from this machine: the name is free now, not when the lease expires.
    if (!holder.empty() && inc == holder && host == machine && pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 &&
        errno == ESRCH) {
      if (db.Command({"EVAL", kTakeOverScript, "1", lease, holder, incarnation, ms}).integer() == 1) {
        Log(fmt::format("took over the name from an agent that died ({})", who));
        return "";
      }
      continue;
    }
    const std::string live = fmt::format("node {} is already registered by a live agent ({}); stop it or use --name",
                                         opts.name, who);
    if (ttl == -1) return live;  // a lease that never expires: held
    if (looked && (beat != first_beat || (ttl >= 0 && ttl > last_ttl))) return live;  // it beats, or renewed
    if (!looked) {
      first_beat = beat;
      looked = true;
    }
    if (ttl >= 0) last_ttl = ttl;
    if (!said)
      Log(fmt::format("the name {} is held by an agent ({}) that may have died; waiting up to {:.1f}s for its lease "
                      "to expire",
                      opts.name, who, ttl >= 0 ? static_cast<double>(ttl) / 1000 : 0.0));
    said = true;
    Pause(clock, std::min(opts.heartbeat / 4, 0.25), Never);
  }
  return "stopped before registering";
}

NodeAgent::NodeAgent(NodeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
NodeAgent::~NodeAgent() = default;
void NodeAgent::RequestStop() {
  impl_->stop = true;
  impl_->shared->stopping = true;
  impl_->shared->cv.SignalAll();
}

// Pipeline `pid` from its hash: its spec, steps and rates into `l`; an error when it cannot run.
Status NodeAgent::Impl::ParseLoaded(const std::string& pid, Hash& h, Loaded* l) {
  if (h.empty()) return Status::NotFound("pipeline " + pid + " is not in redis");
  auto spec = ParsePipeline(h["yaml"], h["file"]);
  if (!spec.ok()) return spec.status();
  l->spec = std::move(*spec);
  auto steps = driver::CreateSteps(l->spec, StepRegistry::Global());
  if (steps.ok()) l->steps = std::move(*steps);
  else l->error = steps.error();
  l->rates = std::make_shared<rates::RedisRateLimiter>(opts.redis, opts.prefix, l->spec.rates, l->spec.budget_usd,
                                                       "pipeline-" + pid);
  return Status::Ok();
}

std::shared_ptr<NodeAgent::Impl::Loaded> NodeAgent::Impl::Pipeline(Redis& db, const std::string& pid) {
  auto it = pipelines.find(pid);
  if (it != pipelines.end()) return it->second;
  auto l = std::make_shared<Loaded>();
  Hash h = cluster::ToHash(db.Command({"HGETALL", keys.pipeline(pid)}));
  if (!db.ok()) return nullptr;
  if (Status st = ParseLoaded(pid, h, l.get()); !st.ok()) l->error = st.message();
  pipelines[pid] = l;
  return l;
}

void NodeAgent::Impl::Execute(std::shared_ptr<Attempt> a, std::shared_ptr<Loaded> p) {
  const protocol::RunAttempt& m = a->msg;
  auto spec = std::make_shared<driver::AttemptSpec>();
  spec->job = m.job;
  spec->node = opts.name;
  spec->input = m.input;
  spec->attempt = m.attempt;
  spec->results = std::make_shared<const Json>(m.results);
  spec->history = std::make_shared<const std::vector<StepRun>>(m.history);
  spec->workdir = opts.workdir / m.job;
  spec->outdir = opts.workdir / "out";
  spec->gpus = m.gpus;
  spec->worker = m.worker;
  spec->sinks = sinks;
  spec->rates = p->rates;
  spec->on_wait = [shared = shared, job = m.job, serial = m.serial, node = opts.name, inc = incarnation,
                   term = m.term](const std::string& what) {
    protocol::AttemptResult n;
    n.job = job;
    n.serial = serial;
    n.node = node;
    n.incarnation = inc;
    n.term = term;
    n.wait_notice = true;
    n.waiting = what;
    shared->Report("", protocol::Encode(n));  // to the head with the results, in order
  };
  spec->t0 = 0;
  std::string cannot;
  if (!p->error.empty()) cannot = p->error;
  else if (m.step >= p->steps.size()) cannot = fmt::format("step {} is not in the pipeline", m.step);
  else {
    spec->step = p->steps[m.step];
    spec->step_name = p->spec.steps[m.step].name;
  }
  spec->artifact = [name = opts.name, token = token, max = opts.max_artifact_bytes, homes = m.homes, spec_p = p,
                    workdir = spec->workdir, job = m.job,
                    results = spec->results](std::string_view from,
                                             std::string_view relative) -> Result<std::filesystem::path> {
    const std::string rel(relative);
    if (!SafeRelative(rel)) return Status::Invalid("artifact path '" + rel + "' is not a clean relative path");
    const int idx = spec_p->spec.StepIndex(std::string(from));
    const protocol::StepHome home =
        idx >= 0 && idx < static_cast<int>(homes.size()) ? homes[idx] : protocol::StepHome{};
    if (home.node.empty() || home.node == name) {
      auto local = workdir / rel;
      if (!std::filesystem::exists(local))
        return Status::NotFound("artifact " + std::string(from) + ":" + rel + " not found on " + name);
      return local;
    }
    const auto dest = workdir / ".fetched" / std::string(from) / rel;
    // The digest the producing step recorded for this file, when its result names it.
    std::string recorded;
    if (auto r = results->find(std::string(from)); r != results->end() && r->is_object()) {
      const std::string path = r->value("path", "");
      if (path.size() > rel.size() && path.compare(path.size() - rel.size(), rel.size(), rel) == 0 &&
          path[path.size() - rel.size() - 1] == '/')
        recorded = r->value("sha256", "");
    }
    if (Status fetched = FetchArtifact(home.address, token, job, rel, dest, max, recorded); !fetched.ok())
      return fetched;
    return dest;
  };
  pool.Submit([a, spec, cannot, shared = shared, node = opts.name, inc = incarnation] {
    protocol::AttemptResult r;
    r.job = a->msg.job;
    r.serial = a->msg.serial;
    r.node = node;
    r.incarnation = inc;
    r.term = a->msg.term;
    r.pid = getpid();
    r.start = shared->clock->Wall();
    StepOutcome outcome =
        cannot.empty() ? driver::RunAttempt(*spec, *a->cancel)
                       : StepOutcome::Failure(fmt::format("node {} cannot run this step: {}", node, cannot), false);
    r.end = shared->clock->Wall();
    if (outcome.kind == StepOutcome::Kind::kParked)  // the head cannot wait for parked attempts yet
      outcome = StepOutcome::Failure("this backend cannot wait for parked attempts (park id " + outcome.park_id +
                                         "; the llm step's mode: batch needs `baton run` for now)",
                                     false);
    // A child killed by a stop signal that the agent did not send (its cancel is not set) while the
    // agent stops: systemd's KillMode=control-group, or Slurm signalling the whole step, sends the
    // agent's SIGTERM to its children too, perhaps a moment before the agent sees its own. That is
    // the drain's doing, not a failed try: handed back (waiting a second for the agent's signal).
    if (!outcome.ok() && !a->cancel->cancelled() && KilledByStopSignal(outcome.error))
      Pause(*shared->clock, 1.0, [&shared] { return shared->stopping.load(); });
    r.handed_back = (a->handed_back || (shared->stopping && KilledByStopSignal(outcome.error))) && !outcome.ok();
    r.kind = outcome.kind;
    r.retryable = outcome.retryable;
    r.result = std::move(outcome.result);
    r.error = std::move(outcome.error);
    r.main_output = std::move(outcome.main_output);
    r.batch = std::move(outcome.batch);
    // Finished and queued for the reporter at once: an agent leaving once nothing is unfinished
    // (HandBackRunning) must find this result queued, or its reporter would quit without it.
    std::string encoded = protocol::Encode(r);
    {
      MutexLock lock(&shared->mu);
      a->finished = true;
      shared->reports.push_back({a->entry, std::move(encoded), Key{r.job, r.serial, r.term}});
    }
    shared->cv.SignalAll();
  });
}

// Sends results (XADD to the head's inbox) then acknowledges and deletes their placements, in
// pipelined batches; on a Redis failure keeps them and retries after reconnecting.
void NodeAgent::Impl::Reporter() {
  Redis db;
  // Connected from the start, not at the first batch: an agent whose first report is what it
  // hands back as it leaves (`quit` already set) would otherwise give up connecting and drop it.
  if (!Connect(db, quit)) return;
  std::vector<Outbound> batch;
  while (true) {
    {
      MutexLock lock(&shared->mu);
      if (shared->reports.empty() && !quit) shared->cv.WaitFor(&shared->mu, std::chrono::milliseconds(200));
      if (shared->reports.empty() && quit) return;
      while (!shared->reports.empty()) {
        batch.push_back(std::move(shared->reports.front()));
        shared->reports.pop_front();
      }
    }
    if (batch.empty()) continue;
    while (!db.ok()) {
      if (!Connect(db, quit)) return;
    }
    // All results of a batch travel in one inbox entry ({"t":"results","list":[...]}): one XADD,
    // and one entry for the head to read and acknowledge, instead of one per result. The entry is
    // written before the placements are acknowledged, so a crash in between re-runs nothing that
    // reported (the head ignores a second copy by serial) and loses nothing.
    constexpr size_t kResultsPerEntry = 512;
    std::vector<std::string> ids, list;
    auto send = [&] {
      if (list.empty()) return;
      db.Append({"XADD", keys.inbox(), "*", "m", protocol::EncodeResults(list)});
      list.clear();
    };
    for (const auto& o : batch) {
      if (!o.result.empty()) {
        list.push_back(o.result);
        if (list.size() == kResultsPerEntry) send();
      }
      if (!o.entry.empty()) ids.push_back(o.entry);
    }
    send();
    if (!ids.empty()) {
      std::vector<std::string> ack = {"XACK", keys.place(opts.name), "node"}, del = {"XDEL", keys.place(opts.name)};
      ack.insert(ack.end(), ids.begin(), ids.end());
      del.insert(del.end(), ids.begin(), ids.end());
      db.Append(ack);
      db.Append(del);
    }
    // Kept and sent again until Redis accepted every command: on a lost connection or an error
    // reply alike (the head ignores a second copy of a result by its serial).
    if (db.Flush()) {
      {
        MutexLock lock(&shared->mu);
        for (const auto& id : ids) shared->received.erase(id);
        for (const auto& o : batch)
          if (o.held) shared->running.erase(*o.held);
      }
      batch.clear();
    } else {
      if (db.ok()) Log("redis refused a result batch; sending it again");
      Pause(clock, db.ok() ? 1.0 : 0.1, Never);
    }
  }
}

// Beats until the agent has drained and leaves (`quit`), so that the head keeps counting a
// draining agent alive while its attempts finish.
void NodeAgent::Impl::Heartbeat() {
  Redis db;
  while (!quit) {
    if (!db.ok() && !Connect(db, quit)) return;
    if (!Beat(db, true)) return;  // the name is another agent's now
    Pause(clock, opts.heartbeat, [this] { return quit.load(); });
  }
}

// Run's flow: Prepare (log, incarnation, work folder) -> connect -> TakeName -> the artifact
// server -> Register (registration, a fresh placement stream, NodeJoined) -> the reporter and
// heartbeat threads -> Serve (read placements and Dispatch each; BeginDrain on RequestStop or
// DrainNode; until drained or the name is lost) -> Leave (hand back what runs, stop the threads,
// deregister).
int NodeAgent::Run() {
  Impl& m = *impl_;
  m.Prepare();
  Redis db;
  if (!m.Connect(db, m.stop)) return 0;
  char machine_name[256] = {0};
  gethostname(machine_name, sizeof machine_name - 1);
  const std::string machine = machine_name;
  if (const std::string refused = m.TakeName(db, machine); !refused.empty()) {
    if (m.stop) return 0;
    std::fprintf(stderr, "baton node: %s\n", refused.c_str());
    return 2;
  }
  std::random_device rd;
  db.Command({"SET", m.keys.token(), fmt::format("{:08x}{:08x}{:08x}{:08x}", rd(), rd(), rd(), rd()), "NX"});
  m.token = db.Command({"GET", m.keys.token()}).str();

  std::string host = m.opts.address;
  int port = 0;
  if (size_t colon = host.rfind(':'); colon != std::string::npos) {
    port = std::atoi(host.c_str() + colon + 1);
    host = host.substr(0, colon);
  }
  if (host.empty()) host = machine;
  ArtifactServer server(std::filesystem::absolute(m.opts.workdir), m.token, m.opts.max_artifact_bytes);
  const int bound = server.Start(m.opts.listen, port);
  if (bound < 0) {
    std::fprintf(stderr, "baton node: cannot serve artifacts on %s:%d (in use?)\n", m.opts.listen.c_str(), port);
    db.Command({"EVAL", kLeaveScript, "3", m.keys.lease(m.opts.name), m.keys.nodes(), m.keys.hb(), m.incarnation,
                m.opts.name});
    return 2;
  }
  m.address = host + ":" + std::to_string(bound);
  m.Register(db, machine);
  std::thread reporter([&m] { m.Reporter(); });
  std::thread heartbeat([&m] { m.Heartbeat(); });
  m.Serve(db);
  m.HandBackRunning();
  m.quit = true;
  m.shared->cv.SignalAll();
  heartbeat.join();
  reporter.join();
  m.Deregister(db);
  server.Stop();
  m.Log("left the cluster");
  return m.name_lost ? 2 : 0;
}

// Before connecting: the log, a fresh incarnation id, the work folder and its cleaner.
void NodeAgent::Impl::Prepare() {
  log = std::make_shared<LogSink>(opts.log_stream, opts.log_format, false);
  sinks = std::make_shared<const driver::SinkList>(driver::SinkList{log});
  std::random_device rd;
  incarnation = fmt::format("{:08x}{:08x}-{}", rd(), rd(), getpid());
  std::filesystem::create_directories(opts.workdir);
  // Absolute: steps get WORKDIR/JOB as their work folder ({workdir} of a command step, whose
  // own working directory is elsewhere), and the cleaner's paths must not follow a chdir.
  opts.workdir = std::filesystem::absolute(opts.workdir);
  if (!opts.keep_work)
    cleaner = std::make_unique<WorkCleaner>(std::vector<std::filesystem::path>{opts.workdir}, opts.workdir / "out",
                                            [shared = shared](const std::string& job) { return shared->Running(job); });
}

// Holding the name, serving artifacts at `address`: writes the registration, starts a fresh
// placement stream, beats once and tells the head it joined.
void NodeAgent::Impl::Register(Redis& db, const std::string& machine) {
  NodeSpec self;
  self.name = opts.name;
  self.cpus = opts.cpus;
  self.gpus = opts.gpus;
  self.memory = opts.memory;
  self.resources = opts.resources;
  self.labels = opts.labels;
  {
    MutexLock lock(&reg_mu);
    registration = driver::NodeSpecToJson(self);
    registration.update({{"incarnation", incarnation}, {"address", address},
                         {"workdir", std::filesystem::absolute(opts.workdir).string()}, {"pid", getpid()},
                         {"host", machine},
                         {"started", clock.Wall()}});
  }
  // A fresh placement stream: whatever a previous incarnation left is the head's to re-run.
  const std::string stream = keys.place(opts.name);
  db.Append({"DEL", stream});
  db.Append({"XGROUP", "CREATE", stream, "node", "$", "MKSTREAM"});
  db.Append({"EVAL", kBeatScript, "3", keys.lease(opts.name), keys.nodes(), keys.hb(), incarnation,
             std::to_string(LeaseMs()), opts.name, RegistrationText(), "1"});
  db.Append({"XADD", keys.inbox(), "*", "m", protocol::Encode(protocol::NodeJoined{opts.name})});
  db.Flush();
  Log(fmt::format("registered at {} (prefix {}): cpus {} gpus {} address {} workdir {}", opts.redis.Redacted(),
                  opts.prefix, opts.cpus, opts.gpus, address, opts.workdir.string()));
  if (opts.on_ready) opts.on_ready();
}

// Serving, then draining (SIGTERM, `baton node drain`): the registration says "draining" so
// the head places nothing new here; attempts still arriving are handed back at once; running
// ones may finish until the drain deadline; then Serve returns (HandBackRunning does the rest).
void NodeAgent::Impl::Serve(Redis& db) {
  const std::string stream = keys.place(opts.name);
  bool read_pending = false;  // after a reconnect: first what was delivered here but never acknowledged
  while (true) {
    // The name (and with it the placement stream and its consumer) is another agent's now: read
    // nothing more; what still runs is handed back (its results carry a stale incarnation).
    if (name_lost) break;
    PublishWorkers();
    if (stop && !draining) BeginDrain(db);
    if (draining && (shared->Unfinished() == 0 || clock.Monotonic() >= drain_deadline)) break;
    if (!db.ok()) {
      if (!Connect(db, quit)) break;
      db.Command({"XGROUP", "CREATE", stream, "node", "$", "MKSTREAM"});  // after a Redis without our stream
      read_pending = true;
    }
    db.SetTimeout(3.0);
    Reply r = read_pending
                  ? db.Command({"XREADGROUP", "GROUP", "node", opts.name, "COUNT", "100000", "STREAMS", stream, "0"})
                  : db.Command({"XREADGROUP", "GROUP", "node", opts.name, "COUNT", "256", "BLOCK", "200", "STREAMS",
                                stream, ">"});
    if (r.is_error() && r.str().find("NOGROUP") != std::string::npos) {
      db.Command({"XGROUP", "CREATE", stream, "node", "$", "MKSTREAM"});
      continue;
    }
    read_pending = false;  // one pass over the pending list, then new entries
    if (!r.is_array() || r.size() == 0 || r.at(0).at(1).size() == 0) continue;
    Reply entries = r.at(0).at(1);
    for (size_t i = 0; i < entries.size(); ++i)
      if (!Dispatch(db, entries.at(i))) break;  // redis went away: the rest is re-read after the reconnect
  }
}

// No new attempts from now on; running ones may finish until drain_timeout of the clock has passed.
void NodeAgent::Impl::BeginDrain(Redis& db) {
  draining = true;
  shared->stopping = true;
  drain_deadline = clock.Monotonic() + opts.drain_timeout;
  {
    MutexLock lock(&reg_mu);
    registration["draining"] = true;
  }
  if (db.ok()) Beat(db, false);
  Log(fmt::format("draining: no new attempts; {} running may finish within {:.0f}s, then the rest are handed back",
                  shared->Unfinished(), opts.drain_timeout));
}

// One placement entry: a message to the agent (Control) or an attempt to run. False when Redis
// went away before the attempt's pipeline was read (the entry stays pending).
bool NodeAgent::Impl::Dispatch(Redis& db, const Reply& e) {
  const std::string id = e.at(0).str();
  {
    MutexLock lock(&shared->mu);
    shared->read = std::max(shared->read, StreamId::Parse(id));
    if (!shared->received.insert(id).second) return true;  // already running or reported
  }
  std::string text;
  Reply fields = e.at(1);
  for (size_t f = 0; f + 1 < fields.size(); f += 2)
    if (fields.at(f).str() == "m") text = fields.at(f + 1).str();
  auto msg = protocol::DecodeAgentMessage(text);
  if (!msg.ok()) {
    Log("placement " + id + " ignored: " + msg.error());
    shared->Report(id, "");
    return true;
  }
  if (Control(id, *msg)) return true;
  auto a = std::make_shared<Attempt>();
  a->entry = id;
  a->msg = std::move(std::get<protocol::RunAttempt>(*msg));
  if (a->msg.incarnation != incarnation) {
    shared->Report(id, "");  // for an earlier incarnation: acknowledge, do not run
    return true;
  }
  if (draining || stop) {  // placed before the head saw the drain: hand it back unstarted
    HandBackUnstarted(id, a->msg);
    return true;
  }
  auto p = Pipeline(db, a->msg.pipeline);
  if (!p) {  // redis went away: the placement stays pending, re-read after the reconnect
    MutexLock lock(&shared->mu);
    shared->received.erase(id);
    return false;
  }
  // A job that runs again here (retried after it ended): its folder is no longer to be removed.
  if (cleaner) cleaner->Keep(a->msg.job);
  {
    MutexLock lock(&shared->mu);
    shared->running[Key{a->msg.job, a->msg.serial, a->msg.term}] = a;
  }
  Execute(a, p);
  return true;
}

// The messages that are not attempts: stop one, retire a worker, remove jobs' work folders,
// drain. True when `msg` was one of them (done and acknowledged).
bool NodeAgent::Impl::Control(const std::string& id, const protocol::AgentMessage& msg) {
  if (auto* stop_one = std::get_if<protocol::StopAttempt>(&msg)) {
    MutexLock lock(&shared->mu);
    if (stop_one->incarnation == incarnation)
      for (auto& [k, a] : shared->running)
        if (std::get<0>(k) == stop_one->job && std::get<1>(k) == stop_one->serial &&
            (stop_one->term.empty() || std::get<2>(k) == stop_one->term))
          a->cancel->cancel();
    shared->reports.push_back({id, "", std::nullopt});
    return true;
  }
  if (auto* rw = std::get_if<protocol::RetireWorker>(&msg)) {
    // The head gave the worker's grant back: it shuts down now (its own idle timer is a
    // backstop for a head that is gone). A pipeline not loaded here has no such worker.
    if (rw->incarnation == incarnation)
      if (auto it = pipelines.find(rw->pipeline);
          it != pipelines.end() && rw->step < it->second->steps.size() && it->second->steps[rw->step])
        it->second->steps[rw->step]->RetireWorker(rw->worker);
    shared->Report(id, "");
    return true;
  }
  if (auto* rm = std::get_if<protocol::RemoveWork>(&msg)) {
    if (cleaner)
      for (const auto& job : rm->jobs) cleaner->Remove(job);  // after any attempt of it that still runs here
    shared->Report(id, "");
    return true;
  }
  if (auto* drain = std::get_if<protocol::DrainNode>(&msg)) {
    Log("drain requested" + (drain->reason.empty() ? std::string() : ": " + drain->reason));
    stop = true;
    shared->stopping = true;
    shared->Report(id, "");
    return true;
  }
  return false;
}

void NodeAgent::Impl::HandBackUnstarted(const std::string& id, const protocol::RunAttempt& msg) {
  protocol::AttemptResult back;
  back.job = msg.job;
  back.serial = msg.serial;
  back.node = opts.name;
  back.incarnation = incarnation;
  back.term = msg.term;
  back.pid = getpid();
  back.start = back.end = clock.Wall();
  back.kind = StepOutcome::Kind::kCancelled;
  back.handed_back = true;
  back.error = "not started";
  shared->Report(id, protocol::Encode(back));
}

// Leaving: stop what still runs (handed back: re-queued, not failed), waiting up to 5 seconds
// for it to report.
void NodeAgent::Impl::HandBackRunning() {
  {
    MutexLock lock(&shared->mu);
    for (auto& [k, a] : shared->running) {
      a->handed_back = true;
      a->cancel->cancel();
    }
  }
  Pause(clock, 5.0, [this] { return shared->Unfinished() == 0; });
}

// Deregisters (the reporter has sent every result), so the head re-runs nothing twice. Only what
// is this agent's: after losing the name, the registration is the successor's.
void NodeAgent::Impl::Deregister(Redis& db) {
  if (!db.ok()) db.Connect(opts.redis);
  db.Append({"EVAL", kLeaveScript, "3", keys.lease(opts.name), keys.nodes(), keys.hb(), incarnation, opts.name});
  db.Flush();
}

}  // namespace baton::cluster
