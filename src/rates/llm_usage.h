// What LLM requests used and cost: prices, the per-step `usage` record the llm step returns, and
// the sums for summary.json (per job and for the whole run, under the key `llm`).
//
//   usage: {requests: 3, prompt_tokens: 5120, completion_tokens: 710, cached_tokens: 0,
//           cost_usd: 0.001194}
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include "baton/report.h"

namespace baton::rates {

using Json = nlohmann::json;

// USD per million tokens. cached_input < 0: cached prompt tokens cost the input price.
struct Price {
  double input = 0;
  double output = 0;
  double cached_input = -1;
  bool known = false;  // false: no price given and no built-in one (cost is then 0)
};

struct LlmUsage {
  long long requests = 0;  // HTTP requests sent (retries included)
  long long prompt_tokens = 0;
  long long completion_tokens = 0;
  long long cached_tokens = 0;  // part of prompt_tokens served from the provider's cache
  double cost_usd = 0;

  void Add(const LlmUsage& other);
  Json ToJson() const;
  // Reads a `usage` object as written by ToJson; false when `j` is not one.
  static bool FromJson(const Json& j, LlmUsage* out);
};

// The cost of one reply's usage.
double CostUsd(const Price& price, long long prompt_tokens, long long cached_tokens, long long completion_tokens);

// The sum of every step result's `usage` object in one job's results ({"step": result, ...}).
LlmUsage JobLlmUsage(const Json& job_results);

// summary.json's top-level `llm` block: the sum over all jobs.
Json SumLlmUsage(const RunReport& report);

}  // namespace baton::rates
