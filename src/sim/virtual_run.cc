#include "sim/virtual_run.h"

#include <algorithm>
#include <deque>
#include <map>
#include <queue>
#include <set>
#include <string>

namespace baton::sim {
namespace {

// Attempts "run" until now + their step's seconds; a stopped one ends at the stop, cancelled.
// Worker steps' attempts queue at their worker, which loads once and then runs batches.
class VirtualTransport : public driver::Transport {
 public:
  struct Ending {
    double at;
    uint64_t seq;
    uint32_t job, serial;
    double start;
    bool cancelled;
    uint16_t step = 0;
    bool operator>(const Ending& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  VirtualTransport(const std::vector<StepCost>& cost, VirtualRunResult* out) : cost_(cost), out_(out) {}

  void Start(const core::Placement& p, double now) override {
    ++out_->attempts;
    if (p.step == 0) ++out_->use[p.node].jobs_started;
    if (p.worker != core::kNoWorker) {
      auto [it, fresh] = workers_.try_emplace(p.worker);
      Worker& w = it->second;
      if (fresh) {
        w.step = p.step;
        w.node = p.node;
        w.gpus = __builtin_popcountll(p.gpu_mask);
        w.ready_at = now + cost_[p.step].load;
        ++out_->loads;
      }
      w.queue.push_back({p.job, p.serial, now});
      return;
    }
    endings_.push({now + cost_[p.step].seconds, seq_++, p.job, p.serial, now, false, p.step});
    out_->use[p.node].gpu_seconds += cost_[p.step].seconds * __builtin_popcountll(p.gpu_mask);
  }
  void Stop(const core::AttemptRef& a) override { stops_.push_back(a); }
  void StopWorker(const core::WorkerRef& w) override { workers_.erase(w.worker); }
  // A parked attempt's park id is its job's id; it is done when the driver asks (its timer was
  // the step's park seconds).
  bool CheckPark(uint32_t pipeline, uint16_t step, const std::string& id) override {
    checks_.push_back({pipeline, step, id});
    return true;
  }

  // The earliest pending ending or batch start, or kNever.
  double Next() const {
    double t = endings_.empty() ? core::kNever : endings_.top().at;
    for (const auto& [id, w] : workers_) t = std::min(t, w.NextAction(cost_[w.step]));
    return t;
  }
  // Starts the batches due by `now`, then hands every attempt ended by `now` (or stopped) to the
  // driver.
  void Deliver(driver::Driver& d, double now) {
    for (auto& [id, w] : workers_) {
      const StepCost& c = cost_[w.step];
      if (w.queue.empty() || w.NextAction(c) > now) continue;
      const size_t n = std::min(w.queue.size(), static_cast<size_t>(std::max(1, c.batch_max)));
      const double start = std::max(now, w.ready_at);
      const double end = start + c.batch_a + c.batch_b * static_cast<double>(n);
      for (size_t i = 0; i < n; ++i) {
        endings_.push({end, seq_++, w.queue.front().job, w.queue.front().serial, start, false, w.step});
        w.queue.pop_front();
      }
      w.busy_until = end;
      ++out_->batches;
      out_->use[w.node].gpu_seconds += (end - start) * w.gpus;
    }
    for (auto& c : checks_) {  // parked attempts end when their park is asked about
      ParkCheck done;
      done.done = true;
      done.outcomes[c.id] = StepOutcome::Ok(Json::object());
      d.ParkChecked(*this, c.pipeline, c.step, c.id, std::move(done), now);
      out_->makespan = std::max(out_->makespan, now);
    }
    checks_.clear();
    for (const auto& a : stops_) {  // a stop ends the attempt at once
      driver::AttemptOutcome o = driver::AttemptOutcome::From(StepOutcome::Cancelled());
      o.end = now;
      d.Finish(a.job, a.serial, std::move(o), now);
    }
    stops_.clear();
    while (!endings_.empty() && endings_.top().at <= now) {
      const Ending e = endings_.top();
      endings_.pop();
      const bool park = cost_[e.step].park > 0 && parked_.insert({e.job, e.serial}).second;
      driver::AttemptOutcome o = driver::AttemptOutcome::From(
          park ? StepOutcome::Park(d.job(e.job).report.id, cost_[e.step].park) : StepOutcome::Ok(Json::object()));
      o.start = e.start;
      o.end = e.at;
      if (d.Finish(e.job, e.serial, std::move(o), now)) out_->makespan = std::max(out_->makespan, e.at);
    }
  }
  bool stopping() const { return !stops_.empty() || !checks_.empty(); }

 private:
  struct Queued {
    uint32_t job, serial;
    double arrived;
  };
  struct Worker {
    uint16_t step = 0;
    uint32_t node = 0;
    int gpus = 0;
    double ready_at = 0;    // its load ends
    double busy_until = 0;  // its batch in flight ends
    std::deque<Queued> queue;
    // When its next batch starts: loaded, idle, and full or waited batch_wait since the first.
    double NextAction(const StepCost& c) const {
      if (queue.empty()) return core::kNever;
      const double free_at = std::max(ready_at, busy_until);
      if (queue.size() >= static_cast<size_t>(std::max(1, c.batch_max))) return free_at;
      return std::max(free_at, queue.front().arrived + c.batch_wait);
    }
  };
  const std::vector<StepCost>& cost_;
  VirtualRunResult* out_;
  uint64_t seq_ = 0;
  std::priority_queue<Ending, std::vector<Ending>, std::greater<>> endings_;
  std::vector<core::AttemptRef> stops_;
  std::map<uint32_t, Worker> workers_;
  std::vector<driver::FakeTransport::Check> checks_;
  std::set<std::pair<uint32_t, uint32_t>> parked_;  // (job, serial) that parked once already
};

// Collects jobs that ended, so their detail can be released after the turn (not inside Finish).
class EndedJobs : public driver::JobStore {
 public:
  explicit EndedJobs(const driver::Driver& d) : d_(d) {}
  void JobChanged(uint32_t job) override {
    if (d_.job(job).end != driver::JobEnd::kLive) ended.push_back(job);
  }
  void AttemptRecorded(uint32_t, const AttemptReport&) override {}
  std::vector<uint32_t> ended;

 private:
  const driver::Driver& d_;
};

}  // namespace

VirtualRunResult RunVirtual(driver::Driver& d, const std::vector<double>& seconds, bool keep_detail) {
  std::vector<StepCost> cost(seconds.size());
  for (size_t i = 0; i < seconds.size(); ++i) cost[i].seconds = seconds[i];
  return RunVirtual(d, cost, keep_detail);
}

VirtualRunResult RunVirtual(driver::Driver& d, const std::vector<StepCost>& cost, bool keep_detail) {
  VirtualRunResult out;
  out.use.resize(d.nodes().size());
  VirtualTransport t(cost, &out);
  driver::Driver::TurnOptions turn;
  turn.grace = 0;
  turn.abandon = true;
  EndedJobs ended(d);
  if (!keep_detail) d.SetStore(&ended);
  double now = 0;
  while (true) {
    t.Deliver(d, now);
    d.Turn(t, now, turn);
    for (uint32_t j : ended.ended) d.ReleaseDetail(j);
    ended.ended.clear();
    if (d.all_ended()) break;
    if (t.stopping()) continue;  // deliver the stops at this instant
    const double next = std::min(t.Next(), d.NextWakeup());
    if (next == core::kNever) break;  // nothing can change: jobs that cannot be placed stay
    now = std::max(now, next);
  }
  if (!keep_detail) d.SetStore(nullptr);
  return out;
}

}  // namespace baton::sim
