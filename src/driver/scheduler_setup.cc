#include "driver/scheduler_setup.h"

#include <fmt/format.h>

#include "baton/validate.h"

namespace baton::driver {

core::PipelineModel ToCoreModel(const PipelineSpec& spec, core::ResourceTable& resources) {
  core::PipelineModel pm;
  pm.name = spec.name;
  pm.prefetch = spec.prefetch;
  for (const auto& s : spec.steps) {
    core::StepModel sm;
    sm.name = s.name;
    for (const auto& [k, v] : s.resources) sm.demand.Set(resources.Intern(k), core::ToAmount(v));
    sm.same_node_as = s.same_node_as.empty() ? -1 : spec.StepIndex(s.same_node_as);
    if (auto it = s.prefer.find("gpu"); it != s.prefer.end()) sm.prefer_gpu = core::ToAmount(it->second);
    for (const auto& [k, v] : s.labels) sm.labels.emplace_back(k, v);
    sm.retries = s.retries;
    sm.timeout = s.timeout;
    sm.backoff = s.backoff;
    sm.max_backoff = s.max_backoff;
    if (s.worker) {
      sm.worker_items = s.worker->batch_max;
      sm.worker_idle = s.worker->idle_timeout;
      sm.timeout = 0;  // the worker step times its batches (WorkerOptions::item_timeout)
    }
    pm.steps.push_back(std::move(sm));
  }
  return pm;
}

core::NodeModel ToCoreNode(const NodeSpec& n, core::ResourceTable& resources) {
  core::NodeModel nm;
  nm.name = n.name;
  nm.total.Set(core::kCpu, core::ToAmount(n.cpus));
  nm.total.Set(core::kGpu, core::ToAmount(n.gpus));
  nm.total.Set(core::kMemory, core::ToAmount(n.memory));
  for (const auto& [k, v] : n.resources) nm.total.Set(resources.Intern(k), core::ToAmount(v));
  for (const auto& [k, v] : n.labels) nm.labels.emplace_back(k, v);
  return nm;
}

Json NodeSpecToJson(const NodeSpec& n) {
  Json res = Json::object(), labels = Json::object();
  for (const auto& [k, v] : n.resources) res[k] = v;
  for (const auto& [k, v] : n.labels) labels[k] = v;
  return {{"name", n.name},     {"cpus", n.cpus},   {"gpus", n.gpus},
          {"memory", n.memory}, {"resources", res}, {"labels", labels}};
}

NodeSpec NodeSpecFromJson(const std::string& name, const Json& reg) {
  NodeSpec n;
  n.name = name;
  auto num = [&](const char* k, double dflt) {
    auto it = reg.find(k);
    return it != reg.end() && it->is_number() ? it->get<double>() : dflt;
  };
  n.cpus = num("cpus", 1.0);
  n.gpus = num("gpus", 0.0);
  n.memory = num("memory", 0.0);
  if (auto it = reg.find("resources"); it != reg.end() && it->is_object())
    for (const auto& [k, v] : it->items())
      if (v.is_number()) n.resources[k] = v.get<double>();
  if (auto it = reg.find("labels"); it != reg.end() && it->is_object())
    for (const auto& [k, v] : it->items()) n.labels[k] = v.is_string() ? v.get<std::string>() : v.dump();
  return n;
}

Result<StepList> CreateSteps(const PipelineSpec& spec, const StepRegistry& registry) {
  const std::string file = spec.file.empty() ? std::string("pipeline") : spec.file.string();
  StepList steps;
  for (const auto& s : spec.steps) {
    if (!registry.Has(s.uses)) {
      return Status::Invalid(fmt::format("{}:{}: steps.{}.uses: unknown step kind '{}' (known: {})", file, s.line,
                                         s.name, s.uses, fmt::join(registry.Names(), ", ")));
    }
    Result<std::unique_ptr<Step>> step = registry.Create(s.uses, s.with);
    if (!step.ok()) return Status::Invalid(fmt::format("{}:{}: steps.{}.{}", file, s.line, s.name, step.error()));
    steps.push_back(std::move(*step));
  }
  return steps;
}

Result<uint32_t> AddPipeline(core::Scheduler& sched, const PipelineSpec& spec, const std::string* check_nodes_from) {
  for (const auto& [k, v] : spec.pools) {
    // A pool declared by the cluster file (or an earlier pipeline) keeps its capacity.
    if (sched.resources().Find(k) < 0) sched.SetPool(k, v);
  }
  const uint32_t pid = sched.AddPipeline(ToCoreModel(spec, sched.resources()));
  if (check_nodes_from) {
    if (const std::string gap = sched.UnrunnableStep(pid); !gap.empty()) {
      const std::string file = spec.file.empty() ? std::string("pipeline") : spec.file.string();
      return Status::FailedPrecondition(fmt::format("{}: {} (nodes from {})", file, gap, *check_nodes_from));
    }
  }
  return pid;
}

std::vector<int> GpusFromMask(uint64_t mask) {
  std::vector<int> gpus;
  for (int g = 0; mask != 0; ++g, mask >>= 1)
    if (mask & 1) gpus.push_back(g);
  return gpus;
}

uint64_t MaskFromGpus(const std::vector<int>& gpus) {
  uint64_t mask = 0;
  for (int g : gpus)
    if (g >= 0 && g < 64) mask |= uint64_t{1} << g;
  return mask;
}

}  // namespace baton::driver

namespace baton {

Status CheckSteps(const PipelineSpec& pipeline, const StepRegistry& registry) {
  auto steps = driver::CreateSteps(pipeline, registry);
  return steps.ok() ? Status::Ok() : steps.status();
}

}  // namespace baton
