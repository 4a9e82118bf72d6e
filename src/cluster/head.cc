// The cluster head: the driver kit (src/driver) with Redis as its store (redis_store.h) and Redis
// streams to node agents as its transport (protocol.h). One loop turn = read the inbox, feed the
// driver, decide, write everything in one fenced script (only while this head holds the lease).
// Its state (Head::Impl) is in head_impl.h; what the head forgets and removes (retention, agents'
// work folders) is in head_cleanup.cc.
#include "cluster/head.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "cluster/client.h"
#include "cluster/head_impl.h"
#include "driver/views.h"

namespace baton::cluster {

namespace {

// Counts the driver's events before any other sink sees them: Head::Overview() knows whether
// the published overview predates an event its caller may have seen.
class CountingSink : public EventSink {
 public:
  explicit CountingSink(std::atomic<uint64_t>& n) : n_(n) {}
  void OnEvent(const Event&) override { n_.fetch_add(1); }

 private:
  std::atomic<uint64_t>& n_;
};

}  // namespace

Head::Head(HeadOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->log = std::make_shared<LogSink>(impl_->opts.log_stream, impl_->opts.log_format, false);
  if (impl_->opts.log_format != LogFormat::kNone) impl_->sinks.push_back(impl_->log);
}
Head::~Head() = default;
void Head::AddSink(std::shared_ptr<EventSink> sink) { impl_->sinks.push_back(std::move(sink)); }
void Head::RequestStop() { impl_->stop = true; }

void Head::Impl::YieldToLoop(const std::atomic<int>& waiting) {
  for (int i = 0; i < 1000 && waiting.load() > 0; ++i) std::this_thread::yield();
}

bool Head::CancelJob(const std::string& id) {
  Impl::YieldToLoop(impl_->loop_waiting);
  MutexLock lock(&impl_->mu);
  if (!impl_->driver) return false;
  const int j = impl_->driver->JobIndex(id);
  if (j < 0 || impl_->driver->job(j).end != driver::JobEnd::kLive) return false;
  impl_->requests.Cancel(id);
  return true;
}

bool Head::RetryJob(const std::string& id) {
  Impl::YieldToLoop(impl_->loop_waiting);
  MutexLock lock(&impl_->mu);
  if (!impl_->driver) return false;
  const int j = impl_->driver->JobIndex(id);
  if (j < 0 || impl_->driver->job(j).end != driver::JobEnd::kFailed) return false;
  impl_->requests.Retry(id);
  return true;
}

// Rebuilds the driver from Redis: the epoch, pipelines, registered nodes, jobs.
Status Head::Impl::Load() {
  driver = std::make_unique<driver::Driver>();
  driver->scheduler().SetMaxNodeLosses(static_cast<uint16_t>(std::clamp(opts.max_node_losses, 0, 65535)));
  fence.NewTerm(RandomHex(8));
  store = std::make_unique<RedisJobStore>(*driver, keys, incarnation, fence);
  driver->SetStore(store.get());
  driver->SetWorkerState([this](const core::WorkerRef& ref) -> Json {
    mu.AssertHeld();  // node views are built under the head's lock
    const auto reg = agent_workers.find(driver->nodes()[ref.node].name);
    if (reg == agent_workers.end()) return Json();
    std::string pid;
    for (const auto& p : driver->pipelines())
      if (p.core == ref.pipeline) pid = p.id;
    for (const auto& w : reg->second)
      if (w.value("pipeline", "") == pid && w.value("step_index", -1) == ref.step &&
          w.value("worker", -1) == static_cast<int>(ref.worker))
        return w;
    return Json();
  });
  driver->AddSink(std::make_shared<CountingSink>(events_seen));  // first: before any sink sees an event
  for (const auto& s : sinks) driver->AddSink(s);
  generation.fetch_add(1);
  partial_entry.clear();  // a submission admitted in part is read again from its start (known jobs skipped)
  partial_done = 0;
  liveness.Reset();
  incarnation.clear();
  outgoing.clear();
  removals.clear();
  makes_work.clear();  // pipeline indices are the new driver's
  acks.clear();
  expiring.clear();
  nodes_view_written.clear();
  // Driver time is seconds since the cluster's epoch on Redis's clock (TIME), advanced by this
  // head's monotonic clock: a wall-clock jump on a head's machine moves nothing, and a standby
  // that takes over on another machine continues the same timeline.
  Reply time = db.Command({"TIME"});
  if (!db.ok()) return Status::Unavailable(db.error());
  if (time.size() < 2) return Status::Unavailable("redis TIME gave no time");
  const double redis_now = std::atof(time.at(0).str().c_str()) + std::atof(time.at(1).str().c_str()) / 1e6;
  db.Append({"SETNX", keys.epoch(), fmt::format("{:.6f}", redis_now)});
  db.Append({"GET", keys.epoch()});
  db.Append({"SETNX", keys.token(), RandomHex(16)});
  db.Append({"XGROUP", "CREATE", keys.inbox(), "head", "0", "MKSTREAM"});
  db.Read();
  epoch = std::atof(db.Read().str().c_str());
  db.Read();
  db.Read();  // BUSYGROUP when it exists: fine
  if (!db.ok()) return Status::Unavailable(db.error());
  mono_base = clock.Monotonic();
  epoch_offset = redis_now - epoch;
  CheckNodes(false);  // nodes first: jobs name the nodes they ran on
  // Where each node's placement stream stands: an attempt found in flight was placed at or before.
  std::map<std::string, StreamId> last_entry;
  for (const auto& [name, inc] : incarnation) {
    Reply info = db.Command({"XINFO", "STREAM", keys.place(name)});
    for (size_t i = 0; i + 1 < info.size(); i += 2)
      if (info.at(i).str() == "last-generated-id") last_entry[name] = StreamId::Parse(info.at(i + 1).str());
  }
  RedisJobStore::LoadHooks hooks;
  // The hooks and callbacks below run inside the call they are passed to, under this thread's
  // lock: AssertHeld says so to the analysis, which looks at a lambda on its own.
  hooks.in_flight = [&](uint32_t job, const std::string& term, const std::string& inc) {
    mu.AssertHeld();
    const auto& a = *driver->job(job).in_flight;
    const std::string& node = driver->nodes()[a.node].name;
    fence.Restored(job, a.serial, a.node, term, inc, last_entry.count(node) ? last_entry[node] : StreamId{});
  };
  // A long reload must not lose the lease (a standby would take over under it).
  hooks.keep_alive = [&] { return lock.RenewIfDue(db); };
  return store->LoadJobs(db, Now(), hooks);
}

// Liveness of every agent, then (in the loop, not while loading: no job is known yet)
// reconciliation with what they hold.
void Head::Impl::CheckNodes(bool reconcile) {
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
  agent_workers.clear();  // what each agent's resident workers last said of themselves (node views)
  for (const auto& [name, reg] : registrations)
    if (auto w = reg.find("workers"); w != reg.end() && w->is_array()) agent_workers[name] = *w;
  const double now = Now();
  auto alive = [&](const std::string& name) {
    mu.AssertHeld();  // called by liveness.Update below, under this thread's lock
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
  if (reconcile) Reconcile(registrations, now);
}

// What the agents hold against what the head counts in flight (fence.h).
void Head::Impl::Reconcile(const std::map<std::string, Json>& registrations, double now) {
  std::map<uint32_t, AgentReport> reports;
  for (const auto& [name, reg] : registrations) {
    const int n = driver->NodeIndex(name);
    auto inc = incarnation.find(name);
    if (n < 0 || !driver->scheduler().NodeAlive(n) || inc == incarnation.end()) continue;
    AgentReport r = AgentReport::FromRegistration(reg);
    if (r.incarnation == inc->second) reports.emplace(static_cast<uint32_t>(n), std::move(r));
  }
  AttemptFence::Callbacks cb;
  // Called by fence.Reconcile below, under this thread's lock.
  cb.in_flight = [&](uint32_t job, uint32_t serial, uint32_t node) {
    mu.AssertHeld();
    const auto& f = driver->job(job).in_flight;
    return f && f->serial == serial && f->node == node;
  };
  cb.job_id = [&](uint32_t job) -> const std::string& {
    mu.AssertHeld();
    return driver->job(job).report.id;
  };
  cb.job_index = [&](const std::string& id) {
    mu.AssertHeld();
    return driver->JobIndex(id);
  };
  const AttemptFence::Verdict v = fence.Reconcile(reports, cb);
  for (const auto& [job, serial] : v.lost) {
    const std::string& node = driver->nodes()[driver->job(job).in_flight->node].name;
    driver::AttemptOutcome o;
    o.kind = StepOutcome::Kind::kCancelled;
    o.lost = true;
    o.error = "node " + node + " no longer runs it (reconciled with the agent's report)";
    Say(fmt::format("job {}: {}", driver->job(job).report.id, o.error));
    driver->Finish(job, serial, std::move(o), now);
  }
  for (const auto& [node, key] : v.stop) {
    const auto& [job, serial, term] = key;
    const std::string& name = driver->nodes()[node].name;
    Say(fmt::format("node {} runs attempt {} of job {} that the head does not want: stopping it", name, serial, job));
    outgoing.push_back({name, protocol::Encode(protocol::StopAttempt{job, serial, incarnation[name], term})});
  }
}

void Head::Impl::Stop(const core::AttemptRef& r) {
  const std::string& node = driver->nodes()[r.node].name;
  outgoing.push_back({node, protocol::Encode(protocol::StopAttempt{driver->job(r.job).report.id, r.serial,
                                                                   incarnation[node], fence.TermOf(r.job)})});
}

void Head::Impl::StopWorker(const core::WorkerRef& w) {
  const std::string& node = driver->nodes()[w.node].name;
  for (const auto& p : driver->pipelines())  // w.pipeline is the core's id
    if (p.core == w.pipeline)
      outgoing.push_back({node, protocol::Encode(protocol::RetireWorker{p.id, w.step, static_cast<int>(w.worker),
                                                                        incarnation[node]})});
}

void Head::Impl::OnResults(const protocol::AttemptResults& m, double now) {
  for (const auto& r : m.list) {
    const int j = driver->JobIndex(r.job);
    // Only the job's current attempt, from the node and incarnation it was placed on: a stale
    // copy, an attempt of an earlier term, a result from an agent that restarted are ignored.
    if (j < 0 || !fence.Accept(j, r.serial, r.term, driver->NodeIndex(r.node), r.incarnation)) continue;
    if (r.wait_notice) {
      driver->AttemptWaiting(j, r.serial, r.waiting);
      continue;
    }
    driver::AttemptOutcome o;
    o.kind = r.kind;
    o.error = r.error;
    o.retryable = r.retryable;
    o.result = r.result;
    o.main_output = r.main_output;
    o.batch = r.batch;
    o.start = r.start > 0 ? r.start - epoch : -1;
    o.end = r.end > 0 ? r.end - epoch : -1;
    o.pid = r.pid;
    o.handed_back = r.handed_back;
    driver->Finish(j, r.serial, std::move(o), now);  // stale (lost or replaced attempt): ignored
  }
}

// A submission's jobs not yet known, at most admit_left of them this turn; the rest of the entry
// waits, unacknowledged, for the next turns, which go on from where this one stopped (jobs known
// by then are skipped, so none is admitted twice, and a job refused here is not asked again).
// The hashes are read kAdmitChunk at a time, the lease renewed between chunks.
bool Head::Impl::OnSubmit(const std::string& entry_id, const protocol::SubmitJobs& m, double now) {
  size_t next = entry_id == partial_entry ? std::min(partial_done, m.jobs.size()) : 0;
  std::vector<std::string> fresh;
  for (; next < m.jobs.size(); ++next) {
    if (driver->JobIndex(m.jobs[next]) >= 0) continue;
    if (fresh.size() >= admit_left) break;
    fresh.push_back(m.jobs[next]);
  }
  for (size_t start = 0; start < fresh.size(); start += kAdmitChunk) {
    if (!KeepLease()) return false;
    const size_t end = std::min(fresh.size(), start + kAdmitChunk);
    for (size_t i = start; i < end; ++i) db.Append({"HGETALL", keys.job(fresh[i])});
    std::vector<Hash> hashes;
    for (size_t i = start; i < end; ++i) hashes.push_back(ToHash(db.Read()));
    for (size_t i = start; i < end && db.ok(); ++i) {
      if (hashes[i - start].empty()) continue;
      if (Status st = store->AddSubmitted(db, fresh[i], hashes[i - start], now); !st.ok())
        Say(fmt::format("job {} refused: {}", fresh[i], st.message()));
    }
    if (!db.ok()) return false;
  }
  admit_left -= fresh.size();
  admitted += fresh.size();
  if (next == m.jobs.size()) {
    partial_entry.clear();
    return true;
  }
  partial_entry = entry_id;
  partial_done = next;
  return false;
}

bool Head::Impl::KeepLease() {
  if (lease_lost) return false;
  const uint64_t before = lock.renewals();
  if (!lock.RenewIfDue(db)) {
    lease_lost = true;
    Say("lost the head lock; this turn writes nothing; reloading");
    return false;
  }
  renewals.fetch_add(lock.renewals() - before);
  return true;
}

bool Head::Impl::OnInbox(const std::string& entry_id, std::string_view text) {
  auto msg = protocol::DecodeInboxMessage(text);
  if (!msg.ok()) {
    Say("inbox entry " + entry_id + " ignored: " + msg.error());
    acks.push_back(entry_id);
    return true;
  }
  const double now = Now();
  bool whole = true;
  std::visit(
      [&](const auto& m) {
        mu.AssertHeld();  // std::visit calls it here, under this thread's lock
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, protocol::AttemptResults>) {
          OnResults(m, now);
        } else if constexpr (std::is_same_v<T, protocol::SubmitJobs>) {
          whole = OnSubmit(entry_id, m, now);
        } else if constexpr (std::is_same_v<T, protocol::JobCommand>) {
          const int j = driver->JobIndex(m.job);
          if (j < 0) return;
          if (m.kind == protocol::JobCommand::Kind::kCancel)
            StopAll(driver->Cancel(j, "cancelled", now, opts.cancel_grace));
          else driver->Retry(j, now);
        } else if constexpr (std::is_same_v<T, protocol::NodeJoined>) {
          check_nodes_now = true;  // CheckNodes reads the registration at the end of this turn
        }
      },
      *msg);
  if (whole) acks.push_back(entry_id);  // acknowledged with the turn's fenced write
  return whole;
}

void Head::Impl::Start(const core::Placement& p, double now) {
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
    m.homes.push_back(h >= 0 ? protocol::StepHome{driver->nodes()[h].name, driver->nodes()[h].address}
                             : protocol::StepHome{});
  m.gpus = j.in_flight->gpus;
  m.worker = driver::ExecutorWorkerId(j.in_flight->worker);
  m.incarnation = incarnation[n.name];
  m.term = fence.term();
  m.placed = clock.Wall();
  (void)now;
  fence.Placed(p.job, p.serial, p.node, m.incarnation);
  outgoing.push_back({n.name, protocol::Encode(m, store->ResultsText(p.job), store->HistoryText(p.job)), p.job});
}

bool Head::Impl::ReadInbox(bool pending, size_t count, long block_ms, size_t* got, size_t* applied) {
  std::vector<std::string> argv = {"XREADGROUP", "GROUP", "head", "head", "COUNT", std::to_string(count)};
  if (!pending) argv.insert(argv.end(), {"BLOCK", std::to_string(block_ms)});
  argv.insert(argv.end(), {"STREAMS", keys.inbox(), pending ? "0" : ">"});
  db.SetTimeout(2.0 + block_ms / 1000.0);
  Reply r = db.Command(argv);
  if (!db.ok()) return false;
  loop_waiting.fetch_add(1);
  MutexLock guard(&mu);
  loop_waiting.fetch_sub(1);
  *got = 0;
  *applied = 0;
  admit_left = std::max<size_t>(1, opts.turn_jobs);
  admitted = 0;
  const size_t read = r.is_array() && r.size() > 0 ? r.at(0).at(1).size() : 0;
  *got = read;
  for (size_t i = 0; i < read; ++i) {
    // Between entries: a turn that applies thousands of results or submissions keeps its lease.
    if (!KeepLease()) return false;
    Reply e = r.at(0).at(1).at(i);
    Reply fields = e.at(1);
    std::string text;
    for (size_t f = 0; f + 1 < fields.size(); f += 2)
      if (fields.at(f).str() == "m") text = fields.at(f + 1).str();
    if (!OnInbox(e.at(0).str(), text)) {
      if (lease_lost || !db.ok()) return false;
      // This turn's budget is spent: this entry (in part) and those after it stay in the pending
      // list, unacknowledged, and are read again (from "0") on the next turn, in order.
      break;
    }
    ++*applied;
  }
  // Read to the end, and applied: what agents reported before now has been seen (the fence's
  // reconciliation waits for this before it calls an attempt lost).
  if (!pending && *applied == read && read < count) fence.InboxDrained();
  return true;
}

void Head::Impl::ApplyRequests(double now) {
  // The head never stops a run (its stop ends its loop; the jobs stay in Redis); a cancelled
  // attempt whose agent has not reported it stopped within the grace is given up on (Serve).
  requests.Apply(*driver, *this, now, opts.cancel_grace, "");
}

// Everything of one turn in one fenced write: job records, attempt histories, placements and
// stops, inbox acknowledgements, the nodes view, retention deletes.
bool Head::Impl::FlushTurn(double now) {
  const std::string view = driver->NodesJson().dump();
  const bool view_changed = view != nodes_view_written;
  CommandBatch cmds;
  store->AppendTurn(cmds, now);
  // In the same fenced write as the job's end: its nodes remove its work folder.
  for (uint32_t job : store->ended()) RemoveWork(job);
  for (auto& [n, jobs] : removals)
    outgoing.push_back({driver->nodes()[n].name, protocol::Encode(protocol::RemoveWork{std::move(jobs)})});
  removals.clear();
  for (auto& c : expiring) cmds.Add(c);
  expiring.clear();
  for (auto& o : outgoing) cmds.Add({"XADD", keys.place(o.node), "*", "m", o.message});
  if (view_changed) cmds.Add({"SET", keys.view_nodes(), view});
  // Last: the inbox entries this turn applied are acknowledged only when everything they caused
  // was written (the script stops at a refused command).
  if (!acks.empty()) {
    std::vector<std::string> ack = {"XACK", keys.inbox(), "head"}, del = {"XDEL", keys.inbox()};
    ack.insert(ack.end(), acks.begin(), acks.end());
    del.insert(del.end(), acks.begin(), acks.end());
    cmds.Add(ack);
    cmds.Add(del);
  }
  acks.clear();
  if (cmds.empty()) {
    outgoing.clear();
    return true;
  }
  // A long turn renews before its write (not between: the write is one script).
  if (!KeepLease()) {
    outgoing.clear();
    return false;
  }
  // Fenced (LeaderLock::WriteFenced): a head that stalled past its lease, and woke after a
  // standby took over, writes nothing. A script runs atomically: a head killed at any moment
  // leaves a turn boundary.
  Reply r = lock.WriteFenced(db, cmds);
  // A very large turn (a submission of 100k jobs) leaves its encoding's pages with the allocator:
  // give them back, so the head's footprint is its state, not its largest turn.
  if (cmds.encoded().size() > (16u << 20)) {
    cmds = CommandBatch();
    malloc_trim(0);
  }
  if (!db.ok()) {
    outgoing.clear();
    return false;
  }
  if (r.is_error()) {
    const bool fenced = r.str().rfind("FENCED", 0) == 0;
    Say(fenced ? "another head took over while this one was stalled; writing nothing"
               : "redis refused the turn: " + r.str() + "; reloading and retrying");
    outgoing.clear();
    refused_pause = !fenced;
    return false;
  }
  if (r.size() != 2 || r.at(1).size() > 0) {
    // A refused command (Redis out of memory, say): the script stopped there, the inbox entries
    // of this turn stay unacknowledged. The head's memory is ahead of Redis now: reload from
    // Redis and apply them again, after a pause so that a Redis that stays full is not hammered.
    Say("redis refused a write of this turn (" + (r.size() == 2 ? r.at(1).at(0).str() : r.str()) +
        "); reloading and retrying (docs/operations.md, \"Redis\")");
    outgoing.clear();
    refused_pause = true;
    return false;
  }
  Reply ids = r.at(0);
  size_t k = 0;
  for (const auto& o : outgoing)
    if (k < ids.size()) {
      const std::string id = ids.at(k++).str();
      if (o.job >= 0) fence.Delivered(static_cast<uint32_t>(o.job), StreamId::Parse(id));
    }
  outgoing.clear();
  nodes_view_written = view;
  // Persisted: a finished job's results (a transcript, say) and attempts leave the head's memory;
  // its detail is read back from Redis (JobDetail).
  for (uint32_t job : store->TakeEnded()) {
    driver->ReleaseDetail(job);
    store->Forget(job);
  }
  return true;
}

// Turns until the connection or the lock is lost, or Stop.
void Head::Impl::Serve() {
  bool pending = true;  // first re-read what this consumer received but never acknowledged
  bool read_pending = false;  // the last turn read the pending list
  size_t pending_count = kInboxBatch;  // entries a read of the pending list asks for
  double next_check = 0, next_pending = 0;
  const double check_every = std::min(0.25, opts.heartbeat_timeout / 4);
  // The same abandon as the embedded runtime's (driver::Driver::AbandonOverdue): an attempt told
  // to stop that its agent still runs after the grace (a step that ignores cancel) is given up on.
  driver::Driver::TurnOptions turn;
  turn.grace = opts.cancel_grace;
  turn.abandon = opts.cancel_grace < core::kNever;
  lease_lost = false;
  while (!stop && db.ok()) {
    const uint64_t renewed_before = renewals.load();
    if (!KeepLease()) return;
    double wait;
    {
      loop_waiting.fetch_add(1);
      MutexLock guard(&mu);
      loop_waiting.fetch_sub(1);
      wait = std::min(driver->NextWakeup() - Now(), next_check - clock.Monotonic());
    }
    // Now and then the pending list again: entries a stalled head (same consumer name) read and
    // then, fenced, could not acknowledge are this head's to apply. Never twice in a row: when
    // every turn takes longer than the interval, new entries are still read every other turn.
    if (!pending && !read_pending && clock.Monotonic() >= next_pending) pending = true;
    size_t got = 0, applied = 0;
    read_pending = pending;
    const long block = std::clamp<long>(static_cast<long>(wait * 1000), 1, 100);
    if (!ReadInbox(pending, pending ? pending_count : kInboxBatch, block, &got, &applied)) return;
    if (applied < got) {
      // What this turn left is in the pending list: the next turn reads it first, fewer entries
      // when they were large (a backlog of 5,000-job submissions is not re-read whole each turn).
      pending = true;
      pending_count = std::clamp<size_t>(2 * (applied + 1), 16, kInboxBatch);
    } else if (pending && got > 0) {
      pending_count = std::min(kInboxBatch, 2 * pending_count);
    } else if (pending && got == 0) {
      pending_count = kInboxBatch;
      pending = false;
      next_pending = clock.Monotonic() + 1.0;
    }
    loop_waiting.fetch_add(1);
    MutexLock guard(&mu);
    loop_waiting.fetch_sub(1);
    double now = Now();
    ApplyRequests(now);
    if (check_nodes_now || clock.Monotonic() >= next_check) {
      check_nodes_now = false;
      if (!KeepLease()) return;
      CheckNodes();
      next_check = clock.Monotonic() + check_every;
    }
    if (clock.Monotonic() >= next_sweep) {  // retention, pipelines, dead agents (head_cleanup.cc)
      if (!KeepLease()) return;
      Sweep();
    }
    now = Now();
    driver->Turn(*this, now, turn);
    if (!FlushTurn(now)) return;
    turns.fetch_add(1);
    const uint64_t renewed = renewals.load() - renewed_before;
    if (renewed > most_renewals.load()) most_renewals.store(renewed);
    if (admitted > most_admitted.load()) most_admitted.store(admitted);
    PublishOverview();
  }
}

// After a committed turn, while someone looks (Head::Overview in the last minute): a new overview
// when events happened since the last one, or a second passed; at most 4 a second.
void Head::Impl::PublishOverview() {
  const double t = clock.Monotonic(), asked = overview_asked.load();
  if (asked < 0 || t - asked > 60) return;
  const uint64_t events = events_seen.load();
  bool stale;
  {
    MutexLock guard(&view_mu);
    stale = !published || published_events < events;
  }
  if (last_publish >= 0 && (t - last_publish < 0.25 || (!stale && t - last_publish < 1.0))) return;
  const auto& pipelines = driver->pipelines();
  auto view =
      std::make_shared<const Json>(driver->Overview(pipelines.empty() ? "" : pipelines.back().spec.name, Now()));
  last_publish = t;
  published_count.fetch_add(1);
  MutexLock guard(&view_mu);
  published = std::move(view);
  published_events = events;
  published_at = t;
  view_cv.SignalAll();
}

// Redis that evicts keys when full loses the cluster's state (a job's hash, a stream) without an
// error: only `noeviction` refuses writes instead, which the head survives (FlushTurn).
void Head::Impl::WarnIfRedisEvicts() {
  Reply r = db.Command({"CONFIG", "GET", "maxmemory-policy"});
  if (!db.ok() || r.size() < 2) return;  // CONFIG renamed or denied by an ACL: nothing to say
  const std::string policy = r.at(1).str();
  if (policy == "noeviction") return;
  Say("WARNING: Redis's maxmemory-policy is " + policy +
      ": when it reaches maxmemory it deletes keys, and the cluster loses jobs, attempts or streams without an "
      "error. Set `maxmemory-policy noeviction` (docs/operations.md, \"Redis\")");
}

int Head::Impl::Loop() {
  bool said_waiting = false, said_lock = false, said_policy = false;
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
      MutexLock guard(&mu);
      if (!Load().ok()) continue;  // Redis failed or the lease was lost: the loop tries again
      Say(fmt::format("{} (prefix {}): {} jobs, {} nodes, {} pipelines loaded", opts.redis.Redacted(), opts.prefix,
                      driver->job_count(), driver->nodes().size(), driver->pipelines().size()));
      if (opts.on_ready) opts.on_ready();
    }
    if (!said_policy) WarnIfRedisEvicts();
    said_policy = true;
    said_waiting = said_lock = false;
    Serve();
    if (refused_pause) {
      // Redis refused a turn: give it a moment (well inside the lease) before reloading.
      refused_pause = false;
      std::this_thread::sleep_for(std::chrono::duration<double>(std::min(0.5, opts.heartbeat_timeout / 6)));
    }
    if (!stop && !db.ok()) Say("redis connection lost (" + db.error() + "); reconnecting and reloading state");
  }
  lock.Release(db);
  return 0;
}

int Head::Run() { return impl_->Loop(); }

Json Head::Snapshot() const {
  const Impl& m = *impl_;
  MutexLock lock(&m.mu);
  if (!m.driver) return driver::Driver().Snapshot("", 0);
  const auto& pipelines = m.driver->pipelines();
  return m.driver->Snapshot(pipelines.empty() ? "" : pipelines.back().spec.name, m.Now());
}

Json Head::Overview() const {
  const Impl& m = *impl_;
  const double asked = m.clock.Monotonic();
  m.overview_asked.store(asked);
  // Events this caller may have seen (the dashboard's) are counted before it saw them: an
  // overview built before them, or more than a second ago (nobody asked for a while), is waited
  // past, up to a second (the loop publishes after its turn; a caller on the loop's own thread, a
  // sink, gets the older one after that second).
  const uint64_t events = m.events_seen.load();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  const bool loaded = m.generation.load() > 0;  // a standby has nothing to publish: no wait
  MutexLock lock(&m.view_mu);
  while (loaded && (!m.published || m.published_events < events || m.published_at + 1.0 < asked)) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) break;
    m.view_cv.WaitFor(&m.view_mu, left);
  }
  if (!m.published) return driver::Driver().Overview("", 0);  // not loaded yet
  return *m.published;
}

Json Head::JobsPage(const JobsQuery& query) const {
  const Impl& m = *impl_;
  Impl::YieldToLoop(m.loop_waiting);
  MutexLock lock(&m.mu);
  if (!m.driver) return driver::Driver().JobsPage(query, 0);
  if (query.states.empty() && query.text.empty()) return m.driver->JobsPage(query, m.Now());  // one page's jobs
  // A filtered page scans every job: in slices, the lock let go between them (the loop goes
  // first when it waits). A reload in between (a new driver) starts the scan again.
  size_t matched = 0, from = 0;
  Json page = Json::array();
  uint64_t generation = m.generation.load();
  while (from < m.driver->job_count()) {
    m.driver->ScanJobs(query, m.Now(), from, from + kPageSlice, &matched, &page);
    from += kPageSlice;
    lock.Unlock();
    Impl::YieldToLoop(m.loop_waiting);
    lock.Lock();
    if (!m.driver) return driver::Driver().JobsPage(query, 0);
    if (m.generation.load() != generation) {
      generation = m.generation.load();
      matched = from = 0;
      page = Json::array();
    }
  }
  return {{"total", matched}, {"jobs", std::move(page)}};
}

Head::Counters Head::GetCounters() const {
  const Impl& m = *impl_;
  Counters c;
  c.turns = m.turns.load();
  c.lease_renewals = m.renewals.load();
  c.most_renewals_in_a_turn = m.most_renewals.load();
  c.most_admitted_in_a_turn = m.most_admitted.load();
  c.overviews_published = m.published_count.load();
  return c;
}

Json Head::JobDetail(const std::string& id) const {
  const Impl& m = *impl_;
  {
    Impl::YieldToLoop(m.loop_waiting);
    MutexLock lock(&m.mu);
    if (!m.driver) return Json();
    const int j = m.driver->JobIndex(id);
    if (j < 0) return Json();
    const driver::JobEnd end = m.driver->job(j).end;
    if (end != driver::JobEnd::kSucceeded && end != driver::JobEnd::kCancelled) return m.driver->JobDetail(id, m.Now());
  }
  // A finished job's detail left the head's memory when it was persisted: read it back from
  // Redis (a connection of this caller's thread, as `baton status JOB` does).
  Redis db;
  if (!db.Connect(m.opts.redis)) return Json();
  Result<Json> job = ClusterJob(db, m.keys, id);
  return job.ok() ? std::move(*job) : Json();
}

}  // namespace baton::cluster
