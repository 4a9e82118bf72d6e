// The scheduling core's model of pipelines and nodes: plain values, no IO.
//
// The public YAML-level types (include/baton/pipeline.h) are translated into these by the drivers,
// with resource names interned into the Scheduler's ResourceTable.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/resources.h"

namespace baton::core {

using Labels = std::vector<std::pair<std::string, std::string>>;

struct StepModel {
  std::string name;
  ResourceVector demand;  // includes gpu and pool resources
  Amount prefer_gpu = 0;  // granted on top of `demand` when the chosen node has it free
  int same_node_as = -1;  // index of an earlier step this one must run beside, or -1
  Labels labels;          // all must match the node's labels
  int retries = 0;        // further attempts after the first failure
  double timeout = 0;     // seconds per attempt; 0 = none
  double backoff = 1.0;   // first retry delay, seconds; doubles each retry
  double max_backoff = 60.0;
  // A resident-worker step (`uses: worker`) when > 0: `demand` is what one worker holds for its
  // life (its grant), and up to `worker_items` attempts (the batch max) join one worker at once,
  // holding nothing themselves. 0: an ordinary step whose attempts each hold `demand`.
  int worker_items = 0;
  // Seconds an idle worker (no attempt in it) keeps its grant before the core retires it.
  double worker_idle = 60.0;
};

struct PipelineModel {
  std::string name;
  std::vector<StepModel> steps;
  int prefetch = 1;
};

struct NodeModel {
  std::string name;
  ResourceVector total;  // cpu, gpu (device count), memory, custom; pool ids are ignored here
  Labels labels;
};

}  // namespace baton::core
