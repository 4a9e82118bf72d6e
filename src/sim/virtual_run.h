// VirtualRun: `baton simulate` on the driver kit. The same loop as `baton run` and the cluster
// head (outcomes -> Driver::Finish, then Driver::Turn through a transport), with a transport whose
// attempts run in virtual time: each lasts its step's seconds and succeeds. So a simulation
// exercises the whole attempt lifecycle (placement, attempt records, job end, the run report of
// summary.json and the trace), not only the core's decisions, and still takes milliseconds.
// (The core's own tests and bench/core drive core::Scheduler directly: simulator.h.)
//
// Single-threaded.
#pragma once

#include <vector>

#include "driver/driver.h"
#include "sim/summary.h"

namespace baton::sim {

struct VirtualRunResult {
  double makespan = 0;        // when the last attempt ended
  size_t attempts = 0;
  size_t batches = 0;         // worker steps' batches
  size_t loads = 0;           // worker starts (each paid its step's load)
  std::vector<NodeUse> use;   // per node: jobs started there, GPU-seconds granted
};

// What one step costs in virtual time. An ordinary step's attempt lasts `seconds`. A resident
// worker step (`uses: worker`) pays `load` once per worker, then a batch of n items lasts
// `batch_a + batch_b * n`; batches form as the worker does: up to `batch_max` items, waiting at
// most `batch_wait` after the first for more (`baton simulate --duration
// STEP=load:20,batch:2+0.5n`).
// `park`: after its seconds the attempt parks (as an llm step in `mode: batch` does) for `park`
// seconds, holding nothing, then ends (`--duration STEP=SECONDS,park:600`).
struct StepCost {
  double seconds = 1;
  double park = 0;
  double load = 0, batch_a = 0, batch_b = 0;
  int batch_max = 1;
  double batch_wait = 0;
};

// Runs every job submitted to `driver` until all have ended; `cost[step]` is each step's cost.
// With `keep_detail` false an ended job's attempts leave memory at once (large runs); the trace
// needs them.
VirtualRunResult RunVirtual(driver::Driver& driver, const std::vector<StepCost>& cost, bool keep_detail);
// Every step an ordinary one of `seconds[step]`.
VirtualRunResult RunVirtual(driver::Driver& driver, const std::vector<double>& seconds, bool keep_detail);

}  // namespace baton::sim
