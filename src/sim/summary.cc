#include "sim/summary.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

namespace baton::sim {
namespace {

std::string Quantity(double v) {
  return v == static_cast<long long>(v) ? fmt::format("{}", static_cast<long long>(v)) : fmt::format("{:g}", v);
}

std::string ClassName(const NodeSpec& n) {
  std::string s = fmt::format("gpus={} cpus={}", Quantity(n.gpus), Quantity(n.cpus));
  if (n.memory > 0) s += fmt::format(" mem={}Gi", Quantity(n.memory / (1024.0 * 1024 * 1024)));
  for (const auto& [k, v] : n.resources) s += fmt::format(" {}={}", k, Quantity(v));
  for (const auto& [k, v] : n.labels) s += fmt::format(" {}={}", k, v);
  return s;
}

double Busy(const NodeSpec& n, const NodeUse& u, double makespan) {
  return n.gpus > 0 && makespan > 0 ? u.gpu_seconds / (makespan * n.gpus) : 0.0;
}

}  // namespace

std::vector<NodeClass> ClassifyNodes(const std::vector<NodeSpec>& nodes, const std::vector<NodeUse>& use,
                                     double makespan) {
  std::vector<NodeClass> classes;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const std::string name = ClassName(nodes[i]);
    auto [it, fresh] = index.emplace(name, classes.size());
    if (fresh) classes.push_back({name, {}, nodes[i].gpus});
    classes[it->second].nodes.push_back(i);
  }
  for (NodeClass& c : classes) {
    std::vector<int> jobs;
    double busy_sum = 0;
    c.busy_min = 1e300;
    for (size_t i : c.nodes) {
      jobs.push_back(use[i].jobs_started);
      c.jobs_total += use[i].jobs_started;
      const double b = Busy(nodes[i], use[i], makespan);
      busy_sum += b;
      c.busy_min = std::min(c.busy_min, b);
      c.busy_max = std::max(c.busy_max, b);
      if (nodes[i].gpus > 0 && use[i].gpu_seconds == 0) ++c.idle_gpu_nodes;
    }
    std::sort(jobs.begin(), jobs.end());
    c.jobs_min = jobs.front();
    c.jobs_max = jobs.back();
    c.jobs_median = jobs[jobs.size() / 2];
    c.busy_mean = busy_sum / static_cast<double>(c.nodes.size());
  }
  return classes;
}

double MakespanLowerBound(const PipelineSpec& pipeline, const std::vector<double>& seconds, size_t jobs,
                          const std::vector<NodeSpec>& nodes, std::string* why) {
  double chain = 0;
  for (double s : seconds) chain += s;
  double best = chain;
  *why = "the longest job";
  for (const char* r : {"cpu", "gpu"}) {
    double work = 0;
    for (size_t i = 0; i < pipeline.steps.size(); ++i) {
      auto it = pipeline.steps[i].resources.find(r);
      if (it != pipeline.steps[i].resources.end()) work += it->second * seconds[i] * static_cast<double>(jobs);
    }
    double capacity = 0;
    for (const auto& n : nodes) capacity += std::string(r) == "cpu" ? n.cpus : n.gpus;
    if (work > 0 && capacity > 0 && work / capacity > best) {
      best = work / capacity;
      *why = fmt::format("{} work {:.0f} {}-s / {} {}s", r, work, r, Quantity(capacity), r);
    }
  }
  return best;
}

std::string FormatSummary(const std::vector<NodeClass>& classes, const std::vector<NodeSpec>& nodes,
                          const std::vector<NodeUse>& use, double makespan, double bound, const std::string& bound_why,
                          size_t max_classes) {
  std::string out = fmt::format("  makespan {:.2f} s; lower bound {:.2f} s ({}): {:.2f}x the bound\n", makespan, bound,
                                bound_why, bound > 0 ? makespan / bound : 0.0);
  out +=
      fmt::format("  {:<40} {:>6} {:>18} {:>20}\n", "node class", "nodes", "jobs min/med/max", "GPU busy min/avg/max");
  for (size_t k = 0; k < classes.size() && k < max_classes; ++k) {
    const NodeClass& c = classes[k];
    std::string name = c.name.size() > 40 ? c.name.substr(0, 39) + "~" : c.name;
    std::string busy = c.gpus > 0 ? fmt::format("{:.0f}/{:.0f}/{:.0f}%", 100 * c.busy_min, 100 * c.busy_mean,
                                                100 * c.busy_max)
                                   : "-";
    out += fmt::format("  {:<40} {:>6} {:>18} {:>20}\n", name, c.nodes.size(),
                       fmt::format("{}/{}/{}", c.jobs_min, c.jobs_median, c.jobs_max), busy);
  }
  if (classes.size() > max_classes) {
    size_t rest = 0;
    for (size_t k = max_classes; k < classes.size(); ++k) rest += classes[k].nodes.size();
    out += fmt::format("  ... {} more classes ({} nodes): see --per-node\n", classes.size() - max_classes, rest);
  }
  double gpus = 0, idle = 0, gpu_seconds = 0;
  int idle_nodes = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    gpus += nodes[i].gpus;
    gpu_seconds += use[i].gpu_seconds;
    if (nodes[i].gpus > 0 && use[i].gpu_seconds == 0) {
      idle += nodes[i].gpus;
      ++idle_nodes;
    }
  }
  if (gpus > 0) {
    out += fmt::format("  GPUs: {} in all, busy {:.0f}% of the makespan; {} never used (on {} node{})", Quantity(gpus),
                       makespan > 0 ? 100 * gpu_seconds / (gpus * makespan) : 0.0, Quantity(idle), idle_nodes,
                       idle_nodes == 1 ? "" : "s");
  } else {
    out += "  GPUs: none";
  }
  return out;
}

std::string FormatPerNode(const std::vector<NodeSpec>& nodes, const std::vector<NodeUse>& use, double makespan) {
  std::string out = "node\tjobs_started\tgpus\tgpu_busy_percent\n";
  for (size_t i = 0; i < nodes.size(); ++i) {
    out += fmt::format("{}\t{}\t{}\t{:.1f}\n", nodes[i].name, use[i].jobs_started, Quantity(nodes[i].gpus),
                       100 * Busy(nodes[i], use[i], makespan));
  }
  return out;
}

}  // namespace baton::sim
