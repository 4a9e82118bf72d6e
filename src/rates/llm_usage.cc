#include "rates/llm_usage.h"

namespace baton::rates {

void LlmUsage::Add(const LlmUsage& o) {
  requests += o.requests;
  prompt_tokens += o.prompt_tokens;
  completion_tokens += o.completion_tokens;
  cached_tokens += o.cached_tokens;
  cost_usd += o.cost_usd;
}

Json LlmUsage::ToJson() const {
  return {{"requests", requests}, {"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens},
          {"cached_tokens", cached_tokens}, {"cost_usd", cost_usd}};
}

bool LlmUsage::FromJson(const Json& j, LlmUsage* out) {
  if (!j.is_object() || !j.contains("requests") || !j.contains("cost_usd")) return false;
  auto integer = [&](const char* key) -> long long {
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<long long>() : 0;
  };
  out->requests = integer("requests");
  out->prompt_tokens = integer("prompt_tokens");
  out->completion_tokens = integer("completion_tokens");
  out->cached_tokens = integer("cached_tokens");
  out->cost_usd = j["cost_usd"].is_number() ? j["cost_usd"].get<double>() : 0;
  return true;
}

double CostUsd(const Price& price, long long prompt_tokens, long long cached_tokens, long long completion_tokens) {
  const double cached_price = price.cached_input >= 0 ? price.cached_input : price.input;
  const long long cached = std::min(cached_tokens, prompt_tokens);
  return (static_cast<double>(prompt_tokens - cached) * price.input + static_cast<double>(cached) * cached_price +
          static_cast<double>(completion_tokens) * price.output) / 1e6;
}

LlmUsage JobLlmUsage(const Json& job_results) {
  LlmUsage sum;
  if (!job_results.is_object()) return sum;
  for (const auto& [step, result] : job_results.items()) {
    LlmUsage u;
    if (result.is_object() && LlmUsage::FromJson(result.value("usage", Json()), &u)) sum.Add(u);
  }
  return sum;
}

Json SumLlmUsage(const RunReport& report) {
  LlmUsage total;
  for (const auto& job : report.jobs) total.Add(JobLlmUsage(job.results));
  return total.ToJson();
}

}  // namespace baton::rates
