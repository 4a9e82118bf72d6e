// The cluster head: the driver kit (src/driver) with Redis as its store (redis_store.h) and Redis
// streams to node agents as its transport (protocol.h). One loop turn = read the inbox, feed the
// driver, decide, write everything in one MULTI/EXEC.
#include "cluster/head.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "cluster/keys.h"
#include "cluster/leader.h"
#include "cluster/liveness.h"
#include "cluster/protocol.h"
#include "cluster/redis_store.h"
#include "driver/driver.h"
#include "driver/output.h"
#include "driver/views.h"

namespace baton::cluster {

struct Head::Impl {
  HeadOptions opts;
  Keys keys;
  const Clock& clock;
  std::vector<std::shared_ptr<EventSink>> sinks;
  std::shared_ptr<LogSink> log;
  std::atomic<bool> stop{false};

  mutable std::mutex mu;  // guards the driver and requests against Snapshot()/JobDetail()/requests
  std::unique_ptr<driver::Driver> driver;
  std::unique_ptr<RedisJobStore> store;
  std::vector<std::string> cancel_requests, retry_requests;
  NodeLiveness liveness;
  std::map<std::string, std::string> incarnation;  // node name -> incarnation placements go to
  // Driver time: seconds since the cluster's epoch, advanced by the monotonic clock.
  double epoch = 0, mono_base = 0, epoch_offset = 0;

  // One turn's transport writes.
  Redis db;
  std::vector<std::pair<std::string, std::string>> outgoing;  // node, message
  std::vector<std::string> acks;
  std::string nodes_view_written;
  bool check_nodes_now = false;  // an agent announced itself: look at the registrations this turn
  LeaderLock lock;

  explicit Impl(HeadOptions o)
      : opts(std::move(o)), keys(opts.prefix), clock(opts.clock ? *opts.clock : Clock::Real()),
        liveness(opts.heartbeat_timeout), lock(keys.head(), opts.heartbeat_timeout, clock) {}

  double Now() const { return clock.Monotonic() - mono_base + epoch_offset; }
  void Say(const std::string& s) const {
    if (log) log->Line("baton head: " + s);
  }

  bool Load();
  void CheckNodes();
  void OnInbox(const std::string& entry_id, std::string_view text);
  void OnResults(const protocol::AttemptResults& m, double now);
  void OnSubmit(const protocol::SubmitJobs& m, double now);
  void Stop(const std::vector<core::AttemptRef>& refs);
  void Place(const core::Placement& p, double now);
  bool ReadInbox(bool pending, long block_ms, size_t* got);
  void ApplyRequests(double now);
  bool FlushTurn(double now);
  void Serve();
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
  if (!impl_->driver) return false;
  const int j = impl_->driver->JobIndex(id);
  if (j < 0 || impl_->driver->job(j).end != driver::JobEnd::kLive) return false;
  impl_->cancel_requests.push_back(id);
  return true;
}

bool Head::RetryJob(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  if (!impl_->driver) return false;
  const int j = impl_->driver->JobIndex(id);
  if (j < 0 || impl_->driver->job(j).end != driver::JobEnd::kFailed) return false;
  impl_->retry_requests.push_back(id);
  return true;
}

// Rebuilds the driver from Redis: the epoch, pipelines, registered nodes, jobs.
bool Head::Impl::Load() {
  driver = std::make_unique<driver::Driver>();
  store = std::make_unique<RedisJobStore>(*driver, keys, incarnation);
  driver->SetStore(store.get());
  for (const auto& s : sinks) driver->AddSink(s);
  liveness.Reset();
  incarnation.clear();
  outgoing.clear();
  acks.clear();
  nodes_view_written.clear();
  db.Append({"SETNX", keys.epoch(), fmt::format("{:.6f}", clock.Wall())});
  db.Append({"GET", keys.epoch()});
  db.Append({"SETNX", keys.token(), RandomHex(16)});
  db.Append({"XGROUP", "CREATE", keys.inbox(), "head", "0", "MKSTREAM"});
  db.Read();
  epoch = std::atof(db.Read().str().c_str());
  db.Read();
  db.Read();  // BUSYGROUP when it exists: fine
  if (!db.ok()) return false;
  mono_base = clock.Monotonic();
  epoch_offset = clock.Wall() - epoch;
  CheckNodes();  // nodes first: jobs name the nodes they ran on
  return store->LoadJobs(db, Now());
}

void Head::Impl::CheckNodes() {
  db.Append({"HGETALL", keys.nodes()});
  db.Append({"HGETALL", keys.hb()});
  Reply regs = db.Read();
  Hash hbs = ToHash(db.Read());
  if (!db.ok()) return;
  std::map<std::string, Json> registrations;
  for (size_t i = 0; i + 1 < regs.size(); i += 2) {
    Json reg = Json::parse(regs.at(i + 1).str(), nullptr, false);
    if (reg.is_object()) registrations[regs.at(i).str()] = std::move(reg);
  }
  const double now = Now();
  auto alive = [&](const std::string& name) {
    const int n = driver->NodeIndex(name);
    return n >= 0 && driver->scheduler().NodeAlive(n);
  };
  for (auto& c : liveness.Update(registrations, hbs, clock.Monotonic(), alive)) {
    if (c.kind == NodeLiveness::Change::Kind::kLost) {
      driver->NodeLost(driver->NodeIndex(c.name), c.why, now);
    } else if (c.kind == NodeLiveness::Change::Kind::kDraining) {
      if (const int n = driver->NodeIndex(c.name); n >= 0) driver->scheduler().SetDraining(n, true);
      Say("node " + c.name + " is draining: nothing new is placed there");
    } else {
      incarnation[c.name] = c.registration.value("incarnation", "");
      driver->AddNode(c.spec, now, c.registration.value("address", ""), c.registration.value("pid", 0));
    }
  }
}

void Head::Impl::Stop(const std::vector<core::AttemptRef>& refs) {
  for (const auto& r : refs) {
    const std::string& node = driver->nodes()[r.node].name;
    outgoing.emplace_back(node, protocol::Encode(protocol::StopAttempt{driver->job(r.job).report.id, r.serial, incarnation[node]}));
  }
}

void Head::Impl::OnResults(const protocol::AttemptResults& m, double now) {
  for (const auto& r : m.list) {
    const int j = driver->JobIndex(r.job);
    if (j < 0) continue;
    if (r.wait_notice) {
      driver->AttemptWaiting(j, r.serial, r.waiting);  // stale notices are ignored by serial
      continue;
    }
    driver::AttemptOutcome o;
    o.kind = r.kind;
    o.error = r.error;
    o.retryable = r.retryable;
    o.result = r.result;
    o.main_output = r.main_output;
    o.start = r.start > 0 ? r.start - epoch : -1;
    o.end = r.end > 0 ? r.end - epoch : -1;
    o.pid = r.pid;
    o.handed_back = r.handed_back;
    driver->Finish(j, r.serial, std::move(o), now);  // stale (lost or replaced attempt): ignored
  }
}

void Head::Impl::OnSubmit(const protocol::SubmitJobs& m, double now) {
  std::vector<std::string> fresh;
  for (const auto& id : m.jobs)
    if (driver->JobIndex(id) < 0) fresh.push_back(id);
  for (const auto& id : fresh) db.Append({"HGETALL", keys.job(id)});
  std::vector<Hash> hashes;
  for (size_t i = 0; i < fresh.size(); ++i) hashes.push_back(ToHash(db.Read()));
  for (size_t i = 0; i < fresh.size() && db.ok(); ++i) {
    if (hashes[i].empty()) continue;
    if (Status st = store->AddSubmitted(db, fresh[i], hashes[i], now); !st.ok())
      Say(fmt::format("job {} refused: {}", fresh[i], st.message()));
  }
}

void Head::Impl::OnInbox(const std::string& entry_id, std::string_view text) {
  acks.push_back(entry_id);
  auto msg = protocol::DecodeInboxMessage(text);
  if (!msg.ok()) {
    Say("inbox entry " + entry_id + " ignored: " + msg.error());
    return;
  }
  const double now = Now();
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, protocol::AttemptResults>) {
          OnResults(m, now);
        } else if constexpr (std::is_same_v<T, protocol::SubmitJobs>) {
          OnSubmit(m, now);
        } else if constexpr (std::is_same_v<T, protocol::JobCommand>) {
          const int j = driver->JobIndex(m.job);
          if (j < 0) return;
          if (m.kind == protocol::JobCommand::Kind::kCancel) Stop(driver->Cancel(j, "cancelled", now, core::kNever));
          else driver->Retry(j, now);
        } else if constexpr (std::is_same_v<T, protocol::NodeJoined>) {
          check_nodes_now = true;  // CheckNodes reads the registration at the end of this turn
        }
      },
      *msg);
}

void Head::Impl::Place(const core::Placement& p, double now) {
  const driver::JobRecord& j = driver->job(p.job);
  const driver::NodeRecord& n = driver->nodes()[p.node];
  protocol::RunAttempt m;
  m.job = j.report.id;
  m.serial = p.serial;
  m.step = p.step;
  m.attempt = p.step_attempt;
  m.pipeline = driver->pipelines()[j.pipeline].id;
  m.input = j.report.input;
  for (int32_t h : driver->Homes(p.job, p.step))
    m.homes.push_back(h >= 0 ? protocol::StepHome{driver->nodes()[h].name, driver->nodes()[h].address} : protocol::StepHome{});
  m.gpus = j.in_flight->gpus;
  m.incarnation = incarnation[n.name];
  m.placed = clock.Wall();
  (void)now;
  outgoing.emplace_back(n.name, protocol::Encode(m, store->ResultsText(p.job), store->HistoryText(p.job)));
}

bool Head::Impl::ReadInbox(bool pending, long block_ms, size_t* got) {
  std::vector<std::string> argv = {"XREADGROUP", "GROUP", "head", "head", "COUNT", "4096"};
  if (!pending) argv.insert(argv.end(), {"BLOCK", std::to_string(block_ms)});
  argv.insert(argv.end(), {"STREAMS", keys.inbox(), pending ? "0" : ">"});
  db.SetTimeout(2.0 + block_ms / 1000.0);
  Reply r = db.Command(argv);
  if (!db.ok()) return false;
  std::lock_guard guard(mu);
  *got = 0;
  if (!r.is_array() || r.size() == 0) return true;
  Reply entries = r.at(0).at(1);
  *got = entries.size();
  for (size_t i = 0; i < entries.size(); ++i) {
    Reply e = entries.at(i);
    Reply fields = e.at(1);
    std::string text;
    for (size_t f = 0; f + 1 < fields.size(); f += 2)
      if (fields.at(f).str() == "m") text = fields.at(f + 1).str();
    OnInbox(e.at(0).str(), text);
  }
  return true;
}

void Head::Impl::ApplyRequests(double now) {
  for (const auto& id : cancel_requests)
    if (const int j = driver->JobIndex(id); j >= 0) Stop(driver->Cancel(j, "cancelled", now, core::kNever));
  cancel_requests.clear();
  for (const auto& id : retry_requests)
    if (const int j = driver->JobIndex(id); j >= 0) driver->Retry(j, now);
  retry_requests.clear();
}

// Everything of one turn in one MULTI/EXEC: job records, attempt histories, placements and stops,
// inbox acknowledgements, the nodes view. A head killed at any moment leaves a turn boundary.
bool Head::Impl::FlushTurn(double now) {
  const std::string view = driver->NodesJson().dump();
  const bool view_changed = view != nodes_view_written;
  size_t n = 1;
  db.Append({"MULTI"});
  n += store->AppendTurn(db, now);
  for (const auto& [node, m] : outgoing) {
    db.Append({"XADD", keys.place(node), "*", "m", m});
    ++n;
  }
  if (!acks.empty()) {
    std::vector<std::string> ack = {"XACK", keys.inbox(), "head"}, del = {"XDEL", keys.inbox()};
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
  outgoing.clear();
  acks.clear();
  if (n == 1) {  // nothing to write: take MULTI back
    db.Append({"DISCARD"});
    db.Read();
    db.Read();
    return db.ok();
  }
  db.Append({"EXEC"});
  for (size_t i = 0; i < n; ++i)
    if (Reply r = db.Read(); r.is_error()) Say("redis refused a write: " + r.str());
  Reply exec = db.Read();
  if (!db.ok() || exec.null() || exec.is_error()) return false;
  nodes_view_written = view;
  return true;
}

// Turns until the connection or the lock is lost, or Stop.
void Head::Impl::Serve() {
  bool pending = true;  // first re-read what this consumer received but never acknowledged
  double next_check = 0;
  const double check_every = std::min(0.25, opts.heartbeat_timeout / 4);
  std::vector<core::Placement> placements;
  std::vector<core::AttemptRef> expired;
  while (!stop && db.ok()) {
    if (!lock.RenewIfDue(db)) {
      Say("lost the head lock; reloading");
      return;
    }
    double wait;
    {
      std::lock_guard guard(mu);
      wait = std::min(driver->NextWakeup() - Now(), next_check - clock.Monotonic());
    }
    size_t got = 0;
    if (!ReadInbox(pending, std::clamp<long>(static_cast<long>(wait * 1000), 1, 100), &got)) return;
    if (pending && got == 0) pending = false;
    std::lock_guard guard(mu);
    double now = Now();
    ApplyRequests(now);
    if (check_nodes_now || clock.Monotonic() >= next_check) {
      check_nodes_now = false;
      CheckNodes();
      next_check = clock.Monotonic() + check_every;
    }
    now = Now();
    expired.clear();
    driver->Expired(now, core::kNever, &expired);
    Stop(expired);
    placements.clear();
    driver->Decide(now, &placements);
    for (const auto& p : placements) Place(p, now);
    if (!FlushTurn(now)) return;
  }
}

int Head::Impl::Loop() {
  bool said_waiting = false, said_lock = false;
  while (!stop) {
    if (!db.Connect(opts.redis)) {
      if (!said_waiting) Say(db.error() + "; retrying");
      said_waiting = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    if (!lock.Acquire(db)) {
      if (!said_lock) Say("another head holds " + keys.head() + "; waiting for it to go away");
      said_lock = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    {
      std::lock_guard guard(mu);
      if (!Load()) continue;
      Say(fmt::format("{} (prefix {}): {} jobs, {} nodes, {} pipelines loaded", opts.redis.Redacted(), opts.prefix,
                      driver->job_count(), driver->nodes().size(), driver->pipelines().size()));
      if (opts.on_ready) opts.on_ready();
    }
    said_waiting = said_lock = false;
    Serve();
    if (!stop) Say("redis connection lost (" + db.error() + "); reconnecting and reloading state");
  }
  lock.Release(db);
  return 0;
}

int Head::Run() { return impl_->Loop(); }

Json Head::Snapshot() const {
  const Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (!m.driver) return driver::Driver().Snapshot("", 0);
  const auto& pipelines = m.driver->pipelines();
  return m.driver->Snapshot(pipelines.empty() ? "" : pipelines.back().spec.name, m.Now());
}

Json Head::JobDetail(const std::string& id) const {
  const Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  return m.driver ? m.driver->JobDetail(id, m.Now()) : Json();
}

}  // namespace baton::cluster
