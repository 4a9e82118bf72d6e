// Translation of a loaded pipeline (include/baton/pipeline.h) into the scheduling core's model,
// shared by every driver (the embedded runtime and the cluster head), so both schedule the same
// file the same way.
#pragma once

#include "baton/pipeline.h"
#include "core/model.h"

namespace baton {

// REQUIRES: `spec` passed the loader's checks (same_node_as names an earlier step).
core::PipelineModel ToCoreModel(const PipelineSpec& spec, core::ResourceTable& resources);
core::NodeModel ToCoreNode(const NodeSpec& node, core::ResourceTable& resources);

}  // namespace baton
