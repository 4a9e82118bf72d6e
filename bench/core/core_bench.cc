// Scheduling core alone: placements per second with 1M ready steps on 100 and 10,000 nodes.
// Prints the cost per decision for both sizes and their ratio: the core's cost must not grow
// linearly with the number of nodes (100x more nodes should cost far less than 100x per decision).
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "core/scheduler.h"

using namespace baton::core;

namespace {

struct Result {
  double seconds;
  uint64_t placements;
};

// jobs x steps ready work on `nodes` nodes; every round finishes all running attempts (oldest
// first) and decides again, so each placement is one real decision against a full cluster.
Result Run(uint32_t nodes, uint32_t jobs, bool seed_pipeline) {
  Scheduler s;
  PipelineModel p;
  p.name = "bench";
  auto step = [&](const char* name, std::vector<std::pair<const char*, double>> res, int same = -1,
                  Labels labels = {}) {
    StepModel m;
    m.name = name;
    for (auto& [k, v] : res) m.demand.Set(s.resources().Intern(k), ToAmount(v));
    m.same_node_as = same;
    m.labels = std::move(labels);
    p.steps.push_back(m);
  };
  if (seed_pipeline) {
    step("download", {{"download_slot", 1}});
    step("analyze", {{"gpu", 1}}, 0);
    step("summarize", {{"cpu", 1}});
    step("document", {{"cpu", 1}}, -1, {{"role", "head"}});
  } else {
    step("work", {{"cpu", 1}});
  }
  uint32_t pid = s.AddPipeline(p);
  for (uint32_t i = 0; i < nodes; ++i) {
    NodeModel n;
    n.name = "n" + std::to_string(i);
    n.total.Set(kCpu, ToAmount(16));
    n.total.Set(kGpu, ToAmount(2));
    n.total.Set(s.resources().Intern("download_slot"), ToAmount(2));
    if (i % 10 == 0) n.labels = {{"role", "head"}};
    s.AddNode(n);
  }
  for (uint32_t j = 0; j < jobs; ++j) s.Submit(pid, 0);
  std::vector<Placement> running, next;
  running.reserve(nodes * 20);
  next.reserve(nodes * 20);
  uint64_t placements = 0;
  double now = 0;
  const auto t0 = std::chrono::steady_clock::now();
  s.Decide(now, &running);
  placements += running.size();
  while (!running.empty()) {
    now += 1;
    next.clear();
    for (const auto& pl : running) s.Finish(pl.job, pl.serial, AttemptStatus::kOk, true, now);
    s.Decide(now, &next);
    placements += next.size();
    running.swap(next);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {secs, placements};
}

}  // namespace

int main() {
  std::printf("core_bench: pure scheduling core, %u cores on this machine\n", std::thread::hardware_concurrency());
  for (bool seed : {false, true}) {
    const uint32_t jobs = seed ? 250000 : 1000000;  // 1M ready steps either way
    std::printf("\n%s pipeline, %u jobs x %d steps:\n", seed ? "seed (locality, admission, labels)" : "one-step",
                jobs, seed ? 4 : 1);
    double per_small = 0;
    for (uint32_t nodes : {100u, 10000u}) {
      Result r = Run(nodes, jobs, seed);
      const double ns = r.seconds / static_cast<double>(r.placements) * 1e9;
      std::printf("  %6u nodes: %9llu placements in %.2f s = %10.0f placements/s, %6.0f ns per placement+finish\n",
                  nodes, static_cast<unsigned long long>(r.placements), r.seconds, r.placements / r.seconds, ns);
      if (nodes == 100) per_small = ns;
      else std::printf("  cost ratio 10,000 vs 100 nodes: %.2fx for 100x the nodes\n", ns / per_small);
    }
  }
  return 0;
}
