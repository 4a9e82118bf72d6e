#include "steps/builtin.h"

#ifndef BATON_ENGINE_ONLY
#include "steps/analyze/analyze.h"
#include "steps/document/document.h"
#include "steps/download/download.h"
#include "steps/llm/llm.h"
#endif

namespace baton {

void RegisterBuiltinSteps(StepRegistry& registry) {
  RegisterSleepStep(registry);
  RegisterCommandStep(registry);
  RegisterWorkerStep(registry);
#ifndef BATON_ENGINE_ONLY
  RegisterDownloadStep(registry);
  RegisterAnalyzeStep(registry);
  RegisterLlmStep(registry);
  RegisterDocumentStep(registry);
#endif
}

}  // namespace baton
