// `baton simulate`: runs a pipeline through the driver kit in virtual time (sim/virtual_run.h) —
// the same decisions and attempt lifecycle as `baton run` and the cluster head, without doing the
// work — to see the
// makespan, where jobs go and how busy the GPUs are, for any number of jobs and nodes, in
// milliseconds. A step lasts its `--duration STEP=SECONDS`, or its `with.seconds` for `sleep`
// steps, or 1 s.
#include <chrono>
#include <cstdio>
#include <map>

#include <fmt/format.h>

#include "cli/commands.h"
#include "driver/driver.h"
#include "driver/output.h"
#include "driver/scheduler_setup.h"
#include "sim/virtual_run.h"
#include "sim/summary.h"
#include "util/atomic_file.h"

namespace baton::cli {

// Up to this many nodes `simulate` prints one line per node without being asked.
constexpr size_t kPerNodeUpTo = 16;

// `--duration STEP=SECONDS[,STEP=...]`, where a worker step may say `STEP=load:20,batch:2+0.5n`
// (load once per worker; a batch of n costs 2 + 0.5 n): a comma-separated part without '='
// continues the step before it.
// Throws LoadError (caught by ParseDurations below, in this file).
std::map<std::string, sim::StepCost> DurationsOf(const std::vector<std::string>& items) {
  std::map<std::string, sim::StepCost> out;
  std::string step;
  auto number = [&](const std::string& text, const std::string& whole) {
    try {
      size_t used = 0;
      const double v = std::stod(text, &used);
      if (used == text.size() && v >= 0) return v;
    } catch (const std::exception&) {
    }
    throw LoadError(fmt::format("--duration {}: '{}' is not a number of seconds (e.g. analyze=30 or "
                                "analyze=load:20,batch:2+0.5n)", step, whole));
  };
  for (const auto& item : items) {
    size_t start = 0;
    while (start <= item.size()) {
      const size_t comma = item.find(',', start);
      std::string part = item.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      start = comma == std::string::npos ? item.size() + 1 : comma + 1;
      if (part.empty()) continue;
      if (const size_t eq = part.find('='); eq != std::string::npos) {
        step = part.substr(0, eq);
        part = part.substr(eq + 1);
      } else if (step.empty()) {
        throw LoadError(fmt::format("--duration {}: expected STEP=SECONDS", part));
      }
      sim::StepCost& c = out[step];
      if (part.rfind("load:", 0) == 0) {
        c.load = number(part.substr(5), part);
      } else if (part.rfind("park:", 0) == 0) {
        c.park = number(part.substr(5), part);
      } else if (part.rfind("batch:", 0) == 0) {
        // A + Bn, A, or Bn
        std::string f = part.substr(6);
        const size_t plus = f.find('+');
        const std::string fixed = plus == std::string::npos ? (f.back() == 'n' ? "" : f) : f.substr(0, plus);
        std::string per = plus == std::string::npos ? (f.back() == 'n' ? f : "") : f.substr(plus + 1);
        if (!per.empty()) {
          if (per.back() != 'n') throw LoadError(fmt::format("--duration {}: '{}': write batch:A+Bn", step, part));
          per.pop_back();
          if (per.empty()) per = "1";
        }
        c.batch_a = fixed.empty() ? 0 : number(fixed, part);
        c.batch_b = per.empty() ? 0 : number(per, part);
      } else {
        c.seconds = number(part, part);
      }
    }
  }
  return out;
}

Result<std::map<std::string, sim::StepCost>> ParseDurations(const std::vector<std::string>& items) {
  try {
    return DurationsOf(items);
  } catch (const LoadError& e) {
    return Status::Invalid(e.what());
  }
}

int SimulateCommand(const SimulateArgs& a) {
  Result<PipelineSpec> loaded = LoadPipeline(a.pipeline);
  if (!loaded.ok()) return Fail(loaded.status());
  const PipelineSpec& pipeline = *loaded;
  ClusterSpec cluster{{DetectLocalNode()}, {}, {}, {}};
  if (!a.cluster.empty()) {
    Result<ClusterSpec> nodes = LoadCluster(a.cluster);
    if (!nodes.ok()) return Fail(nodes.status());
    cluster = std::move(*nodes);
  }
  std::vector<sim::StepCost> seconds(pipeline.steps.size());
  std::vector<double> plain(pipeline.steps.size(), 1.0);  // what the lower bound is computed from
  std::vector<std::string> defaulted;
  Result<std::map<std::string, sim::StepCost>> durations = ParseDurations(a.durations);
  if (!durations.ok()) return Fail(durations.status());
  const std::map<std::string, sim::StepCost>& given = *durations;
  for (const auto& [name, value] : given)
    if (pipeline.StepIndex(name) < 0)
      return Fail(Status::Invalid(fmt::format("--duration {}: no step of that name in {}", name, a.pipeline)));
  for (size_t i = 0; i < pipeline.steps.size(); ++i) {
    const StepSpec& s = pipeline.steps[i];
    const StepTraits traits = StepRegistry::Global().Traits(s.uses);
    const double known = traits.known_seconds ? traits.known_seconds(s.with) : -1;
    if (auto it = given.find(s.name); it != given.end()) seconds[i] = it->second;
    else if (known >= 0) seconds[i].seconds = known;
    else defaulted.push_back(s.name);
    if (s.worker) {  // a resident worker: batches as its `with.batch` says
      seconds[i].batch_max = s.worker->batch_max;
      seconds[i].batch_wait = s.worker->batch_wait;
      if (seconds[i].batch_a == 0 && seconds[i].batch_b == 0) seconds[i].batch_a = seconds[i].seconds;
    }
    // Per item, a full batch's share (the bound's view of a worker step).
    plain[i] = s.worker ? (seconds[i].batch_a + seconds[i].batch_b * s.worker->batch_max) / s.worker->batch_max
                        : seconds[i].seconds;
  }
  size_t jobs = static_cast<size_t>(a.jobs);
  if (!a.inputs.empty()) {
    std::vector<std::string> warnings;
    Result<std::vector<std::string>> read = ReadInputs(a.inputs, &warnings);
    if (!read.ok()) return Fail(read.status());
    jobs = read->size();
  }

  driver::Driver d;
  for (const auto& [k, v] : cluster.pools) d.scheduler().SetPool(k, v);
  for (const auto& n : cluster.nodes) d.AddNode(n, 0);
  const std::string nodes_from = a.cluster.empty() ? "this machine" : a.cluster;
  auto added = d.AddPipeline(pipeline, "", &nodes_from);
  if (!added.ok()) return Fail(added.status());
  d.Reserve(jobs);
  for (size_t j = 0; j < jobs; ++j) d.Submit("job-" + std::to_string(j), "", *added, 0, false);

  const auto t0 = std::chrono::steady_clock::now();
  const bool keep_attempts = !a.trace.empty();  // the trace needs them; the summary does not
  const sim::VirtualRunResult run = sim::RunVirtual(d, seconds, keep_attempts);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double makespan = run.makespan;
  const std::vector<sim::NodeUse>& use = run.use;
  int succeeded = 0;
  for (uint32_t j = 0; j < d.job_count(); ++j) succeeded += d.job(j).end == driver::JobEnd::kSucceeded;
  RunReport report;
  report.seconds = makespan;
  if (keep_attempts) d.FinishReport(&report);

  std::printf("%s: %zu jobs on %zu node%s: makespan %.2f s of virtual time (%zu attempts; simulated in %.1f ms)\n",
              pipeline.name.c_str(), jobs, cluster.nodes.size(), cluster.nodes.size() == 1 ? "" : "s", makespan,
              run.attempts, took * 1000);
  if (run.loads > 0)
    std::printf("  workers: %zu loads, %zu batches (%.1f items per batch)\n", run.loads, run.batches,
                run.batches ? static_cast<double>(jobs) / static_cast<double>(run.batches) : 0.0);
  // A few nodes: one line each. Many: a summary by node class that fits a screen, the per-node
  // table on request (--per-node) or in a file (--per-node-file).
  const bool per_node = a.per_node || cluster.nodes.size() <= kPerNodeUpTo;
  if (per_node) {
    for (size_t n = 0; n < cluster.nodes.size(); ++n) {
      const auto& node = cluster.nodes[n];
      std::string line = fmt::format("  {:<16} {:>6} jobs started", node.name, use[n].jobs_started);
      if (node.gpus > 0 && makespan > 0)
        line += fmt::format(", GPUs busy {:.0f}%", 100.0 * use[n].gpu_seconds / (makespan * node.gpus));
      std::printf("%s\n", line.c_str());
    }
  }
  std::string bound_why;
  const double bound = sim::MakespanLowerBound(pipeline, plain, jobs, cluster.nodes, &bound_why);
  std::string summary = sim::FormatSummary(sim::ClassifyNodes(cluster.nodes, use, makespan), cluster.nodes, use,
                                           makespan, bound, bound_why);
  if (per_node) summary = summary.substr(0, summary.find('\n') + 1) + summary.substr(summary.rfind('\n') + 1);
  std::printf("%s\n", summary.c_str());
  if (!a.per_node_file.empty()) {
    if (Status st = WriteFileAtomically(a.per_node_file, sim::FormatPerNode(cluster.nodes, use, makespan)); !st.ok())
      return Fail(Status::Unavailable("--per-node-file: " + st.message()));
    std::printf("  per-node table: %s\n", a.per_node_file.c_str());
  } else if (!per_node) {
    std::printf("  (one line per node: --per-node, or --per-node-file FILE)\n");
  }
  if (succeeded != static_cast<int>(jobs)) std::printf("  %zu jobs did not finish\n", jobs - succeeded);
  if (!defaulted.empty()) {
    std::string names;
    for (const auto& d : defaulted) names += (names.empty() ? "" : ", ") + d;
    std::printf("  (assumed 1 s for %s: give --duration STEP=SECONDS)\n", names.c_str());
  }
  if (!a.trace.empty()) {
    std::vector<std::string> names;
    for (const auto& n : cluster.nodes) names.push_back(n.name);
    if (Status st = WriteChromeTrace(a.trace, report, names); !st.ok()) return Fail(st);
    std::printf("  trace: %s\n", a.trace.c_str());
  }
  return succeeded == static_cast<int>(jobs) ? 0 : 1;
}

}  // namespace baton::cli
