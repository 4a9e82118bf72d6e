// Simulator: drives a Scheduler in virtual time (the third backend of docs/design.md, "Architecture").
//
// Each placement "runs" for the duration a Behaviour returns and then finishes with the status it
// returns; scripted actions (a node lost, a job cancelled) fire at given times. Nothing sleeps, so
// the seed's 4-job experiment or a million jobs on 10,000 nodes run in a fraction of a second.
// Used by the core's unit tests and by bench/core. Pure and single-threaded, like the core.
#pragma once

#include <functional>
#include <queue>
#include <vector>

#include "core/scheduler.h"

namespace baton::sim {

struct Outcome {
  double duration = 0;
  core::AttemptStatus status = core::AttemptStatus::kOk;
  bool retryable = true;
};

struct Record {
  uint32_t job;
  uint16_t step;
  uint16_t step_attempt;
  uint32_t node;
  uint64_t gpu_mask;
  double start;
  double end = -1;  // -1 while running
  core::AttemptStatus status = core::AttemptStatus::kOk;
};

class Simulator {
 public:
  using Behaviour = std::function<Outcome(const core::Placement&)>;

  explicit Simulator(core::Scheduler& scheduler) : s_(scheduler) {}

  // Runs `action` at virtual time `t` (before placements at that time).
  void At(double t, std::function<void()> action);
  // Runs until nothing is running, queued or pending (or `until`). Returns the final time.
  double Run(const Behaviour& behaviour, double until = core::kNever);

  double now() const { return now_; }
  const std::vector<Record>& records() const { return records_; }
  // Max over running attempts at any instant of attempts on node/step (for concurrency checks).
  int PeakConcurrent(uint16_t step) const;

 private:
  struct Pending {
    double at;
    uint64_t seq;
    int kind;  // 0 = completion, 1 = scripted
    size_t index;
    bool operator>(const Pending& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  struct Running {
    uint32_t job;
    uint32_t serial;
    size_t record;
    Outcome outcome;
  };

  void DecideAndStart(const Behaviour& behaviour);

  core::Scheduler& s_;
  double now_ = 0;
  uint64_t seq_ = 0;
  std::vector<Record> records_;
  std::vector<Running> running_;
  std::vector<std::function<void()>> scripted_;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<>> pending_;
  std::vector<core::Placement> placements_;
};

}  // namespace baton::sim
