#include "sim/virtual_run.h"

#include <algorithm>
#include <queue>

namespace baton::sim {
namespace {

// Attempts "run" until now + their step's seconds; a stopped one ends at the stop, cancelled.
class VirtualTransport : public driver::Transport {
 public:
  struct Ending {
    double at;
    uint64_t seq;
    uint32_t job, serial;
    double start;
    bool cancelled;
    bool operator>(const Ending& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  VirtualTransport(const std::vector<double>& seconds, VirtualRunResult* out) : seconds_(seconds), out_(out) {}

  void Start(const core::Placement& p, double now) override {
    endings_.push({now + seconds_[p.step], seq_++, p.job, p.serial, now, false});
    ++out_->attempts;
    if (p.step == 0) ++out_->use[p.node].jobs_started;
    out_->use[p.node].gpu_seconds += seconds_[p.step] * __builtin_popcountll(p.gpu_mask);
  }
  void Stop(const core::AttemptRef& a) override { stops_.push_back(a); }

  // The earliest pending ending, or kNever.
  double Next() const { return endings_.empty() ? core::kNever : endings_.top().at; }
  // Hands every attempt ended by `now` (or stopped) to the driver.
  void Deliver(driver::Driver& d, double now) {
    for (const auto& a : stops_) {  // a stop ends the attempt at once
      driver::AttemptOutcome o = driver::AttemptOutcome::From(StepOutcome::Cancelled());
      o.end = now;
      d.Finish(a.job, a.serial, std::move(o), now);
    }
    stops_.clear();
    while (!endings_.empty() && endings_.top().at <= now) {
      const Ending e = endings_.top();
      endings_.pop();
      driver::AttemptOutcome o = driver::AttemptOutcome::From(StepOutcome::Ok(Json::object()));
      o.start = e.start;
      o.end = e.at;
      if (d.Finish(e.job, e.serial, std::move(o), now)) out_->makespan = std::max(out_->makespan, e.at);
    }
  }
  bool stopping() const { return !stops_.empty(); }

 private:
  const std::vector<double>& seconds_;
  VirtualRunResult* out_;
  uint64_t seq_ = 0;
  std::priority_queue<Ending, std::vector<Ending>, std::greater<>> endings_;
  std::vector<core::AttemptRef> stops_;
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
  VirtualRunResult out;
  out.use.resize(d.nodes().size());
  VirtualTransport t(seconds, &out);
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
