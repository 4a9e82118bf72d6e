// Scheduler set-up, written once for every backend: a loaded pipeline and node descriptions
// become the scheduling core's model (the embedded runtime, the cluster head, `baton simulate`),
// a pipeline's steps are created and checked against the step registry (the runtime, the head's
// submit path, `baton submit`, the node agent), and GPU masks become device id lists.
//
// Plain functions; thread-compatible.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "baton/pipeline.h"
#include "baton/status.h"
#include "core/model.h"
#include "core/scheduler.h"

namespace baton::driver {

// REQUIRES: `spec` passed the loader's checks (same_node_as names an earlier step).
core::PipelineModel ToCoreModel(const PipelineSpec& spec, core::ResourceTable& resources);
core::NodeModel ToCoreNode(const NodeSpec& node, core::ResourceTable& resources);

// A node as it registers with the head ({name, cpus, gpus, memory, resources, labels}) and back.
Json NodeSpecToJson(const NodeSpec& node);
NodeSpec NodeSpecFromJson(const std::string& name, const Json& registration);

// The step objects of a pipeline, one per entry, shared so that an attempt still running when its
// driver is gone keeps its step alive.
using StepList = std::vector<std::shared_ptr<const Step>>;

// Creates every step of `spec` from `registry`: an unknown `uses` or a `with` its factory refuses
// is an error "FILE:LINE: steps.NAME.uses: unknown step kind 'x' (known: ...)".
Result<StepList> CreateSteps(const PipelineSpec& spec, const StepRegistry& registry);

// Adds `spec`'s pools (those not declared yet) and the pipeline to `sched`. With `check_nodes_from`
// (where the nodes came from: "this machine", a cluster file) it is first checked that every step
// can run on some node; the error names the step, what it asks and what the nodes offer (the
// pipeline stays in `sched` unused: callers refuse the whole run).
Result<uint32_t> AddPipeline(core::Scheduler& sched, const PipelineSpec& spec, const std::string* check_nodes_from);

// Granted GPU ids from a placement's mask, and back.
std::vector<int> GpusFromMask(uint64_t mask);
uint64_t MaskFromGpus(const std::vector<int>& gpus);

}  // namespace baton::driver
