// The summary of a simulated run that fits a screen at any number of nodes: nodes grouped by
// class (same cpus, gpus, memory, resources and labels), the spread of jobs and GPU use in each
// class, idle GPUs, and the makespan against a lower bound. Pure functions; thread-compatible.
#pragma once

#include <string>
#include <vector>

#include "baton/pipeline.h"

namespace baton::sim {

// What one node did in the simulation.
struct NodeUse {
  int jobs_started = 0;     // jobs whose first step started here
  double gpu_seconds = 0;   // GPU-seconds granted to attempts here
};

struct NodeClass {
  std::string name;               // "gpus=8 cpus=64 role=worker" (non-default fields only)
  std::vector<size_t> nodes;      // indices into the cluster's nodes
  double gpus = 0;                // per node
  int jobs_min = 0, jobs_median = 0, jobs_max = 0, jobs_total = 0;
  double busy_min = 0, busy_mean = 0, busy_max = 0;  // GPU busy fraction per node (0 when no GPUs)
  int idle_gpu_nodes = 0;         // nodes of this class with GPUs that never used them
};

// Groups nodes by class, in order of first appearance.
std::vector<NodeClass> ClassifyNodes(const std::vector<NodeSpec>& nodes, const std::vector<NodeUse>& use,
                                     double makespan);

// A lower bound on the makespan: the longest job (its steps one after another) and, for each of
// cpu and gpu, the work all jobs ask for divided by what the whole cluster has. Ignores placement
// rules, so the true optimum may be higher; `why` says which term bounds.
double MakespanLowerBound(const PipelineSpec& pipeline, const std::vector<double>& seconds, size_t jobs,
                          const std::vector<NodeSpec>& nodes, std::string* why);

// The summary lines (no trailing newline on the last), at most `max_classes` class rows.
std::string FormatSummary(const std::vector<NodeClass>& classes, const std::vector<NodeSpec>& nodes,
                          const std::vector<NodeUse>& use, double makespan, double bound, const std::string& bound_why,
                          size_t max_classes = 12);

// One row per node: "name\tjobs_started\tgpus\tgpu_busy_percent".
std::string FormatPerNode(const std::vector<NodeSpec>& nodes, const std::vector<NodeUse>& use, double makespan);

}  // namespace baton::sim
