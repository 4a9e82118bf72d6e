#include "sim/simulator.h"

#include <algorithm>
#include <map>

namespace baton::sim {

void Simulator::At(double t, std::function<void()> action) {
  scripted_.push_back(std::move(action));
  pending_.push({t, seq_++, 1, scripted_.size() - 1});
}

void Simulator::DecideAndStart(const Behaviour& behaviour) {
  placements_.clear();
  s_.Decide(now_, &placements_);
  for (const core::Placement& p : placements_) {
    Outcome o = behaviour(p);
    records_.push_back({p.job, p.step, p.step_attempt, p.node, p.gpu_mask, now_});
    running_.push_back({p.job, p.serial, records_.size() - 1, o});
    pending_.push({now_ + o.duration, seq_++, 0, running_.size() - 1});
  }
}

double Simulator::Run(const Behaviour& behaviour, double until) {
  DecideAndStart(behaviour);
  std::vector<core::AttemptRef> expired;
  while (true) {
    const double wake = s_.NextWakeup();
    const double next = pending_.empty() ? wake : std::min(wake, pending_.top().at);
    if (next == core::kNever || next > until) break;
    now_ = std::max(now_, next);
    // Timeouts first: the attempt is killed at its deadline.
    expired.clear();
    s_.Expired(now_, &expired);
    for (const auto& e : expired) {
      for (auto& r : running_) {
        if (r.job == e.job && r.serial == e.serial && records_[r.record].end < 0) {
          records_[r.record].end = now_;
          records_[r.record].status = core::AttemptStatus::kTimeout;
          s_.Finish(e.job, e.serial, core::AttemptStatus::kTimeout, true, now_);
        }
      }
    }
    while (!pending_.empty() && pending_.top().at <= now_) {
      const Pending p = pending_.top();
      pending_.pop();
      if (p.kind == 1) {
        scripted_[p.index]();
        continue;
      }
      Running& r = running_[p.index];
      Record& rec = records_[r.record];
      if (rec.end >= 0) continue;  // already ended (timeout, lost, cancelled)
      const auto view = s_.Job(r.job);
      if (view.phase != core::Phase::kRunning) {  // lost with its node
        rec.end = now_;
        rec.status = core::AttemptStatus::kLost;
        continue;
      }
      rec.end = now_;
      rec.status = r.outcome.status;
      auto result = s_.Finish(r.job, r.serial, r.outcome.status, r.outcome.retryable, now_);
      if (result.kind == core::FinishResult::Kind::kIgnored) rec.status = core::AttemptStatus::kLost;
    }
    DecideAndStart(behaviour);
  }
  // The makespan: when the last attempt ended (stale completions of killed attempts don't count).
  double end = 0;
  for (const auto& r : records_) end = std::max(end, r.end < 0 ? now_ : r.end);
  return end;
}

int Simulator::PeakConcurrent(uint16_t step) const {
  std::map<double, int> delta;
  for (const auto& r : records_) {
    if (r.step != step) continue;
    delta[r.start] += 1;
    delta[r.end < 0 ? now_ : r.end] -= 1;
  }
  int cur = 0, peak = 0;
  for (auto& [t, d] : delta) {
    cur += d;
    peak = std::max(peak, cur);
  }
  return peak;
}

}  // namespace baton::sim
