#include "cluster/node.h"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "baton/pipeline.h"
#include "cluster/artifacts.h"
#include "cluster/store.h"
#include "runtime/output.h"

namespace baton::cluster {

namespace {

double WallNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class FetchStep : public Step {
 public:
  explicit FetchStep(const Json& with) {
    if (!with.contains("from") || !with["from"].is_string()) throw ConfigError("with.from: required, the earlier step that made the file");
    if (!with.contains("path") || !with["path"].is_string() || !SafeRelative(with["path"].get<std::string>()))
      throw ConfigError("with.path: required, a relative path inside that step's job folder");
    from_ = with["from"];
    path_ = with["path"];
    for (const auto& [k, v] : with.items())
      if (k != "from" && k != "path" && k[0] != '_') throw ConfigError("with." + k + ": unknown parameter (fetch takes from, path)");
  }
  StepOutcome Run(StepContext& ctx) const override {
    if (!ctx.artifact) return StepOutcome::Failure("no artifact access in this context", false);
    const auto p = ctx.artifact(from_, path_);
    return StepOutcome::Ok({{"path", p.string()}, {"bytes", std::filesystem::file_size(p)}, {"sha256", Sha256File(p)}});
  }

 private:
  std::string from_, path_;
};

// Elastic thread pool for attempts: a new thread starts when no thread is idle (attempts block on
// sleeps, subprocesses and the network, and their number is bounded by the node's resources, not by
// cores). Unlike runtime/worker_pool.h it never spins while idle: an agent shares its machine with
// other agents, the head and Redis, and spinning threads took most of an agent's CPU in the
// cluster bench (perf). Threads still running a task at destruction are detached.
class AttemptPool {
 public:
  AttemptPool() : s_(std::make_shared<State>()) {}
  ~AttemptPool() {
    bool abandoned;
    {
      std::lock_guard lock(s_->mu);
      s_->shutdown = true;
      abandoned = s_->busy > 0;
    }
    s_->cv.notify_all();
    for (auto& t : threads_) abandoned ? t.detach() : t.join();
  }
  void Submit(std::function<void()> task) {
    bool spawn;
    {
      std::lock_guard lock(s_->mu);
      s_->tasks.push_back(std::move(task));
      spawn = s_->idle < s_->tasks.size();
    }
    if (spawn) threads_.emplace_back(&AttemptPool::Loop, s_);  // Submit is called from one thread
    else s_->cv.notify_one();
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> tasks;
    size_t idle = 0, busy = 0;
    bool shutdown = false;
  };
  static void Loop(std::shared_ptr<State> s) {
    std::unique_lock lock(s->mu);
    while (true) {
      ++s->idle;
      s->cv.wait(lock, [&] { return s->shutdown || !s->tasks.empty(); });
      --s->idle;
      if (s->tasks.empty()) return;
      auto task = std::move(s->tasks.front());
      s->tasks.pop_front();
      ++s->busy;
      lock.unlock();
      task();
      task = nullptr;
      lock.lock();
      --s->busy;
    }
  }
  std::shared_ptr<State> s_;
  std::vector<std::thread> threads_;
};

}  // namespace

void RegisterClusterSteps(StepRegistry& registry) {
  if (!registry.Has("fetch")) registry.Register("fetch", [](const Json& w) { return std::make_unique<FetchStep>(w); });
}

struct NodeAgent::Impl {
  struct Loaded {
    PipelineSpec spec;
    std::vector<std::unique_ptr<Step>> steps;
    std::string error;
  };
  struct Attempt {
    std::string entry;  // placement stream id
    Json msg;
    CancelToken cancel;
    std::string job;
    uint32_t serial = 0;
  };

  NodeOptions opts;
  Keys keys;
  std::string incarnation;
  std::string token;
  std::string address;
  std::shared_ptr<LogSink> log;
  std::atomic<bool> stop{false};
  std::atomic<bool> quit{false};  // reporter: after the last attempt reported
  AttemptPool pool;
  std::map<std::string, std::shared_ptr<Loaded>> pipelines;  // main thread only

  std::mutex mu;  // running attempts and the report queue
  std::condition_variable cv;
  std::map<std::pair<std::string, uint32_t>, std::shared_ptr<Attempt>> running;
  std::deque<std::pair<std::string, std::string>> reports;  // placement entry id, result JSON ("" = ack only)
  Json registration;

  explicit Impl(NodeOptions o) : opts(std::move(o)), keys(opts.prefix) {}

  void Log(const std::string& s) {
    if (log) log->Line("baton node " + opts.name + ": " + s);
  }
  bool Connect(Redis& r, const std::atomic<bool>& until) {
    bool said = false;
    while (!until) {
      if (r.Connect(opts.redis)) return true;
      if (!said) Log(r.error() + "; retrying");
      said = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  }
  std::shared_ptr<Loaded> Pipeline(Redis& db, const std::string& pid);
  void Execute(std::shared_ptr<Attempt> a, std::shared_ptr<Loaded> p);
  void Report(const std::string& entry, const std::string& result) {
    {
      std::lock_guard lock(mu);
      reports.emplace_back(entry, result);
    }
    cv.notify_all();
  }
  void Reporter();
  void Heartbeat();
};

NodeAgent::NodeAgent(NodeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
NodeAgent::~NodeAgent() = default;
void NodeAgent::RequestStop() {
  impl_->stop = true;
  impl_->cv.notify_all();
}

std::shared_ptr<NodeAgent::Impl::Loaded> NodeAgent::Impl::Pipeline(Redis& db, const std::string& pid) {
  auto it = pipelines.find(pid);
  if (it != pipelines.end()) return it->second;
  auto l = std::make_shared<Loaded>();
  Reply r = db.Command({"HGETALL", keys.pipeline(pid)});
  if (!db.ok()) return nullptr;
  Hash h;
  for (size_t i = 0; i + 1 < r.size(); i += 2) h[r.at(i).str()] = r.at(i + 1).str();
  try {
    if (h.empty()) throw std::runtime_error("pipeline " + pid + " is not in redis");
    l->spec = ParsePipeline(h["yaml"], h["file"]);
    for (const auto& s : l->spec.steps) {
      try {
        l->steps.push_back(StepRegistry::Global().Create(s.uses, s.with));
      } catch (const std::exception& e) {
        l->steps.push_back(nullptr);
        if (l->error.empty()) l->error = "step " + s.name + ": " + e.what();
      }
    }
  } catch (const std::exception& e) {
    l->error = e.what();
  }
  pipelines[pid] = l;
  return l;
}

void NodeAgent::Impl::Execute(std::shared_ptr<Attempt> a, std::shared_ptr<Loaded> p) {
  pool.Submit([this, a, p] {
    const Json& m = a->msg;
    const int step = m.value("step", 0);
    Json result = {{"t", "result"}, {"job", a->job}, {"serial", a->serial}, {"node", opts.name}, {"pid", getpid()},
                   {"start", WallNow()}, {"placed", m.value("placed", 0.0)}};
    StepOutcome outcome;
    if (!p->error.empty() || step < 0 || step >= static_cast<int>(p->steps.size()) || !p->steps[step]) {
      outcome = StepOutcome::Failure(fmt::format("node {} cannot run this step: {}", opts.name, p->error), false);
    } else {
      StepContext ctx;
      ctx.job = a->job;
      ctx.step = p->spec.steps[step].name;
      ctx.node = opts.name;
      ctx.attempt = m.value("attempt", 1);
      ctx.input = m.value("input", "");
      const Json results = m.contains("results") ? m["results"] : Json::object();
      ctx.results = &results;
      ctx.workdir = opts.workdir / a->job;
      ctx.outdir = opts.workdir / "out";
      if (m.contains("gpus")) ctx.gpus = m["gpus"].get<std::vector<int>>();
      ctx.cancel = &a->cancel;
      ctx.log = [this, &ctx](LogLevel level, std::string_view msg) {
        Event e{Event::Type::kLog};
        e.job = ctx.job;
        e.step = ctx.step;
        e.node = ctx.node;
        e.attempt = ctx.attempt;
        e.status = level == LogLevel::kWarn ? "warn" : level == LogLevel::kError ? "error" : "info";
        e.message = std::string(msg);
        if (log) log->OnEvent(e);
      };
      ctx.progress = [](const Json&) {};
      const Json homes = m.contains("homes") ? m["homes"] : Json::array();
      ctx.artifact = [this, &ctx, &homes, p](std::string_view from, std::string_view relative) {
        const std::string rel(relative);
        if (!SafeRelative(rel)) throw std::runtime_error("artifact path '" + rel + "' is not a clean relative path");
        const int idx = p->spec.StepIndex(std::string(from));
        const Json home = idx >= 0 && idx < static_cast<int>(homes.size()) ? homes[idx] : Json();
        if (!home.is_object() || home.value("node", "") == opts.name) {
          auto local = ctx.workdir / rel;
          if (!std::filesystem::exists(local))
            throw std::runtime_error("artifact " + std::string(from) + ":" + rel + " not found on " + opts.name);
          return local;
        }
        const auto dest = ctx.workdir / ".fetched" / std::string(from) / rel;
        FetchArtifact(home.value("address", ""), token, ctx.job, rel, dest, opts.max_artifact_bytes);
        return dest;
      };
      try {
        // Steps that never touch their folder (sleep) skip the mkdir, as in the embedded runtime.
        if (p->steps[step]->NeedsWorkdir()) std::filesystem::create_directories(ctx.workdir);
        outcome = p->steps[step]->Run(ctx);
      } catch (const std::exception& e) {
        outcome = StepOutcome::Failure(std::string("step threw: ") + e.what());
      } catch (...) {
        outcome = StepOutcome::Failure("step threw an unknown exception");
      }
    }
    result["end"] = WallNow();
    result["status"] = outcome.kind == StepOutcome::Kind::kOk ? "ok" : outcome.kind == StepOutcome::Kind::kCancelled ? "cancelled" : "failed";
    result["retryable"] = outcome.retryable;
    if (outcome.ok()) result["result"] = outcome.result;
    else result["error"] = outcome.error;
    {
      std::lock_guard lock(mu);
      running.erase({a->job, a->serial});
    }
    Report(a->entry, result.dump(-1, ' ', false, Json::error_handler_t::replace));
  });
}

// Sends results (XADD to the head's inbox) then acknowledges and deletes their placements, in
// pipelined batches; on a Redis failure keeps them and retries after reconnecting.
void NodeAgent::Impl::Reporter() {
  Redis db;
  std::vector<std::pair<std::string, std::string>> batch;
  while (true) {
    {
      std::unique_lock lock(mu);
      cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return !reports.empty() || quit; });
      if (reports.empty() && quit) return;
      while (!reports.empty()) {
        batch.push_back(std::move(reports.front()));
        reports.pop_front();
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
    std::vector<std::string> ids;
    std::string list;
    size_t in_list = 0;
    auto send = [&] {
      if (in_list == 0) return;
      db.Append({"XADD", keys.inbox(), "*", "m", "{\"t\":\"results\",\"list\":[" + list + "]}"});
      list.clear();
      in_list = 0;
    };
    for (const auto& [entry, res] : batch) {
      if (!res.empty()) {
        if (in_list) list += ',';
        list += res;
        if (++in_list == kResultsPerEntry) send();
      }
      if (!entry.empty()) ids.push_back(entry);
    }
    send();
    if (!ids.empty()) {
      std::vector<std::string> ack = {"XACK", keys.place(opts.name), "node"}, del = {"XDEL", keys.place(opts.name)};
      ack.insert(ack.end(), ids.begin(), ids.end());
      del.insert(del.end(), ids.begin(), ids.end());
      db.Append(ack);
      db.Append(del);
    }
    if (db.Flush()) {
      batch.clear();
    } else if (!db.ok()) {
      // Connection lost: results may or may not have arrived; the head ignores duplicates by serial.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    } else {
      batch.clear();
    }
  }
}

void NodeAgent::Impl::Heartbeat() {
  Redis db;
  while (!stop) {
    if (!db.ok() && !Connect(db, stop)) return;
    db.Append({"HSET", keys.nodes(), opts.name, registration.dump()});
    db.Append({"HINCRBY", keys.hb(), opts.name, "1"});
    db.Flush();
    for (int i = 0; i < 20 && !stop; ++i) std::this_thread::sleep_for(std::chrono::duration<double>(opts.heartbeat / 20));
  }
}

int NodeAgent::Run() {
  Impl& m = *impl_;
  m.log = std::make_shared<LogSink>(m.opts.log_stream, m.opts.log_format, false);
  std::random_device rd;
  m.incarnation = fmt::format("{:08x}{:08x}-{}", rd(), rd(), getpid());
  std::filesystem::create_directories(m.opts.workdir);
  Redis db;
  if (!m.Connect(db, m.stop)) return 0;
  db.Command({"SET", m.keys.token(), fmt::format("{:08x}{:08x}{:08x}{:08x}", rd(), rd(), rd(), rd()), "NX"});
  m.token = db.Command({"GET", m.keys.token()}).str();

  std::string host = m.opts.address;
  int port = 0;
  if (size_t colon = host.rfind(':'); colon != std::string::npos) {
    port = std::atoi(host.c_str() + colon + 1);
    host = host.substr(0, colon);
  }
  if (host.empty()) {
    char name[256] = {0};
    gethostname(name, sizeof name - 1);
    host = name;
  }
  ArtifactServer server(std::filesystem::absolute(m.opts.workdir), m.token, m.opts.max_artifact_bytes);
  const int bound = server.Start(m.opts.listen, port);
  if (bound < 0) {
    std::fprintf(stderr, "baton node: cannot serve artifacts on %s:%d (in use?)\n", m.opts.listen.c_str(), port);
    return 2;
  }
  m.address = host + ":" + std::to_string(bound);

  Json res = Json::object();
  for (const auto& [k, v] : m.opts.resources) res[k] = v;
  Json labels = Json::object();
  for (const auto& [k, v] : m.opts.labels) labels[k] = v;
  m.registration = {{"name", m.opts.name}, {"incarnation", m.incarnation}, {"cpus", m.opts.cpus}, {"gpus", m.opts.gpus},
                    {"memory", m.opts.memory}, {"resources", res}, {"labels", labels}, {"address", m.address},
                    {"workdir", std::filesystem::absolute(m.opts.workdir).string()}, {"pid", getpid()},
                    {"started", WallNow()}};
  // A fresh placement stream: whatever a previous incarnation left is the head's to re-run.
  const std::string stream = m.keys.place(m.opts.name);
  db.Append({"DEL", stream});
  db.Append({"XGROUP", "CREATE", stream, "node", "$", "MKSTREAM"});
  db.Append({"HSET", m.keys.nodes(), m.opts.name, m.registration.dump()});
  db.Append({"HINCRBY", m.keys.hb(), m.opts.name, "1"});
  db.Append({"XADD", m.keys.inbox(), "*", "m", Json({{"t", "node"}, {"name", m.opts.name}}).dump()});
  db.Flush();
  m.Log(fmt::format("registered at {} (prefix {}): cpus {} gpus {} address {} workdir {}", m.opts.redis.Redacted(),
                    m.opts.prefix, m.opts.cpus, m.opts.gpus, m.address, m.opts.workdir.string()));
  if (m.opts.on_ready) m.opts.on_ready();
  std::thread reporter([&m] { m.Reporter(); });
  std::thread heartbeat([&m] { m.Heartbeat(); });

  while (!m.stop) {
    if (!db.ok()) {
      if (!m.Connect(db, m.stop)) break;
      db.Command({"XGROUP", "CREATE", stream, "node", "$", "MKSTREAM"});  // after a Redis without our stream
    }
    db.SetTimeout(3.0);
    Reply r = db.Command({"XREADGROUP", "GROUP", "node", m.opts.name, "COUNT", "256", "BLOCK", "200", "STREAMS", stream, ">"});
    if (r.is_error() && r.str().find("NOGROUP") != std::string::npos) {
      db.Command({"XGROUP", "CREATE", stream, "node", "$", "MKSTREAM"});
      continue;
    }
    if (!r.is_array() || r.size() == 0) continue;
    Reply entries = r.at(0).at(1);
    for (size_t i = 0; i < entries.size(); ++i) {
      Reply e = entries.at(i);
      const std::string id = e.at(0).str();
      Json msg;
      Reply fields = e.at(1);
      for (size_t f = 0; f + 1 < fields.size(); f += 2)
        if (fields.at(f).str() == "m") msg = Json::parse(fields.at(f + 1).str(), nullptr, false);
      if (!msg.is_object() || msg.value("inc", "") != m.incarnation) {
        m.Report(id, "");  // for an earlier incarnation (or garbage): acknowledge, do not run
        continue;
      }
      const std::string t = msg.value("t", "");
      if (t == "cancel") {
        std::lock_guard lock(m.mu);
        auto it = m.running.find({msg.value("job", ""), msg.value("serial", 0u)});
        if (it != m.running.end()) it->second->cancel.cancel();
        m.reports.emplace_back(id, "");
        continue;
      }
      if (t != "run") {
        m.Report(id, "");
        continue;
      }
      auto a = std::make_shared<Impl::Attempt>();
      a->entry = id;
      a->job = msg.value("job", "");
      a->serial = msg.value("serial", 0u);
      a->msg = std::move(msg);
      auto p = m.Pipeline(db, a->msg.value("pipeline", ""));
      if (!p) break;  // redis went away; the placement stays pending and is re-read... by the head's node-lost path
      {
        std::lock_guard lock(m.mu);
        m.running[{a->job, a->serial}] = a;
      }
      m.Execute(a, p);
    }
  }
  // Leaving: stop attempts, report them, deregister so the head re-runs nothing twice.
  {
    std::lock_guard lock(m.mu);
    for (auto& [k, a] : m.running) a->cancel.cancel();
  }
  for (int i = 0; i < 100; ++i) {
    {
      std::lock_guard lock(m.mu);
      if (m.running.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  m.quit = true;
  m.cv.notify_all();
  heartbeat.join();
  reporter.join();
  if (!db.ok()) db.Connect(m.opts.redis);
  db.Append({"HDEL", m.keys.nodes(), m.opts.name});
  db.Append({"HDEL", m.keys.hb(), m.opts.name});
  db.Flush();
  server.Stop();
  m.Log("left the cluster");
  return 0;
}

}  // namespace baton::cluster
