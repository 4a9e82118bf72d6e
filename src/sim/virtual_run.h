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
  std::vector<NodeUse> use;   // per node: jobs started there, GPU-seconds granted
};

// Runs every job submitted to `driver` until all have ended; `seconds[step]` is each step's
// duration. With `keep_detail` false an ended job's attempts leave memory at once (large runs);
// the trace needs them.
VirtualRunResult RunVirtual(driver::Driver& driver, const std::vector<double>& seconds, bool keep_detail);

}  // namespace baton::sim
