// Checking a pipeline without running it: what `baton submit` does before it hands jobs to a
// cluster (the head and the node agents check again). The embedded Runtime makes the same check in
// Runtime::Create.
#pragma once

#include "baton/pipeline.h"
#include "baton/status.h"
#include "baton/step.h"

namespace baton {

// Creates every step of `pipeline` from `registry` and drops them: OK, or the one-line error of an
// unknown `uses` or a `with` its factory refuses ("FILE:LINE: steps.NAME.uses: unknown step kind
// 'x' (known: ...)"). Implemented in src/driver/scheduler_setup.cc (driver::CreateSteps).
Status CheckSteps(const PipelineSpec& pipeline, const StepRegistry& registry = StepRegistry::Global());

}  // namespace baton
