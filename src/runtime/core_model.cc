#include "runtime/core_model.h"

namespace baton {

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

}  // namespace baton
