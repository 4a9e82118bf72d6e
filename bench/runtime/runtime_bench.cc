// Embedded runtime: the seed scenario at 1/100 time scale against its lower bound (one node, and
// three nodes), and the throughput of no-op steps (25,000 jobs x 4 steps) with the per-step
// overhead. Every figure is a ratio measured in this run; the machine's core count is printed.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "baton/runtime.h"

using namespace baton;

namespace {

const char* kSeed = R"(name: seed-bench
steps:
  - {name: download, uses: sleep, with: {seconds: 0.1}, resources: {download_slot: 1}}
  - {name: analyze, uses: sleep, with: {seconds: 0.3}, resources: {gpu: 1}, placement: {same_node_as: download}}
  - {name: summarize, uses: sleep, with: {seconds: 0.06}, resources: {cpu: 1}}
  - {name: document, uses: sleep, with: {seconds: 0.01}, resources: {cpu: 1}, placement: {labels: {role: head}}}
)";

const char* kSeedNode = R"(nodes:
  - {name: head, cpus: 16, gpus: 1, resources: {download_slot: 1}, labels: {role: head}}
)";

const char* kThreeNodes = R"(nodes:
  - {name: head, cpus: 16, gpus: 1, resources: {download_slot: 1}, labels: {role: head}}
  - {name: worker-1, cpus: 16, gpus: 1, resources: {download_slot: 1}}
  - {name: worker-2, cpus: 16, gpus: 2, resources: {download_slot: 2}}
)";

const char* kNoop = R"(name: noop
steps:
  - {name: a, uses: sleep, resources: {cpu: 1}}
  - {name: b, uses: sleep, resources: {cpu: 1}}
  - {name: c, uses: sleep, resources: {cpu: 1}}
  - {name: d, uses: sleep, resources: {cpu: 1}}
)";

struct Outcome {
  int succeeded;
  double seconds;
};

struct Mode {
  const char* name;
  bool journal, sync, keep_finished;
};
const Mode kPlain{"no journal", false, false, true};

Outcome RunOnce(const char* pipeline, const char* cluster, size_t jobs, const Mode& mode = kPlain) {
  RunOptions o;
  o.inputs.assign(jobs, "");
  o.out = std::filesystem::temp_directory_path() / "baton-runtime-bench";
  std::filesystem::remove_all(o.out);  // a fresh run each time (no resume)
  o.log_format = RunOptions::LogFormat::kNone;
  o.journal = mode.journal;
  o.journal_sync = mode.sync;
  o.keep_finished = mode.keep_finished;
  const std::unique_ptr<Runtime> rt_owner = Runtime::Create(ParsePipeline(pipeline, "bench.yaml").value(),
                                                            ParseCluster(cluster, "bench-cluster.yaml").value(), o)
                                                .value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  return {r.succeeded, r.seconds};
}

}  // namespace

int main() {
  RegisterBuiltinSteps();
  std::printf("runtime_bench: embedded runtime, %u cores on this machine\n\n", std::thread::hardware_concurrency());
  // Lower bounds: the first download, then every analysis back to back on the GPUs, then the
  // tail (summarize + document) of the last job.
  struct Case {
    const char* name;
    const char* cluster;
    size_t jobs;
    double bound;
  } cases[] = {{"seed, 1 node, 1 GPU, 4 jobs", kSeedNode, 4, 0.1 + 4 * 0.3 + 0.06 + 0.01},
               {"seed, 3 nodes, 4 GPUs, 12 jobs", kThreeNodes, 12, 0.1 + 3 * 0.3 + 0.06 + 0.01}};
  for (const auto& c : cases) {
    double best = 1e9;
    for (int i = 0; i < 3; ++i) {
      Outcome r = RunOnce(kSeed, c.cluster, c.jobs);
      if (r.succeeded != static_cast<int>(c.jobs)) {
        std::printf("  %s: FAILED (%d of %zu succeeded)\n", c.name, r.succeeded, c.jobs);
        return 1;
      }
      best = std::min(best, r.seconds);
    }
    std::printf("%-32s makespan %.3f s, lower bound %.3f s: %.2f%% over the bound (best of 3)\n", c.name, best, c.bound,
                (best / c.bound - 1) * 100);
  }
  const size_t jobs = 25000;
  const unsigned cores = std::max(2u, std::thread::hardware_concurrency());
  const std::string cluster = "nodes:\n  - {name: n, cpus: " + std::to_string(cores) + "}\n";
  // Runtime construction to Run's return (the journal's replay, every job, summary.json).
  const Mode modes[] = {kPlain, {"journal, fsync", true, true, true}, {"journal, no fsync", true, false, true},
                        {"journal, fsync, finished jobs released", true, true, false}};
  for (const Mode& mode : modes) {
    double best = 1e9;
    for (int i = 0; i < 3; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      Outcome r = RunOnce(kNoop, cluster.c_str(), jobs, mode);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r.succeeded != static_cast<int>(jobs)) return 1;
      best = std::min(best, secs);
    }
    const double steps = jobs * 4.0;
    std::printf("no-op steps (%s): %zu jobs x 4 steps on %u slots: %.0f steps/s (best of 3), %.1f us per step\n",
                mode.name, jobs, cores, steps / best, best / steps * 1e6);
  }
  return 0;
}
