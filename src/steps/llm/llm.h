// The built-in `llm` step: summarises a job's analysis (transcript, on-screen text, scenes) into a
// Markdown summary, through any OpenAI-compatible Chat Completions API or, with
// `provider: extractive`, offline without any network.
//
// Long inputs are split to fit `with.context_tokens` and summarised map-reduce. Requests are
// retried with exponential backoff and jitter on 429/5xx/timeouts/connection errors, honouring
// Retry-After. The API key is read from the environment variable named by `with.api_key_env` at
// run time and never appears in logs, errors or results. docs/steps/llm.md documents every key.
//
// Thread-safety: the step object is immutable after construction; Run may be called from several
// threads at once.
#pragma once

#include "baton/step.h"

namespace baton {

// Registers the step kind "llm".
void RegisterLlmStep(StepRegistry& registry);

}  // namespace baton
