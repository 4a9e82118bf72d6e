// Registration of the built-in steps (see RegisterBuiltinSteps in include/baton/step.h).
#pragma once

#include "baton/step.h"

namespace baton {
void RegisterSleepStep(StepRegistry& registry);
void RegisterCommandStep(StepRegistry& registry);
void RegisterWorkerStep(StepRegistry& registry);  // worker/worker_step.cc
}  // namespace baton
