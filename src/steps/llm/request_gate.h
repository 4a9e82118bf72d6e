// RequestGate: what one llm attempt asks of the run's rates and budget around each HTTP request,
// and what it used.
//
// Before a request: wait for one unit of `request_rate` and for the request's estimated tokens
// (the JSON body's estimate + max_tokens) of `token_rate` (cancellable; the wait is shown as a
// progress event {"waiting": "rate NAME"} and a log line), then reserve its worst-case cost
// against the budget. A refused reservation fails the attempt, not retryable:
// "LLM budget of $25.00 reached: $24.98 spent ($0.01 reserved by requests in flight)".
// After the reply: give back the tokens reserved beyond the real usage (or all of them when the
// request failed), settle the reservation at the real cost (0 for a failed request), and lower
// the buckets to what the provider's rate-limit headers say remains.
//
// Thread-safety: one gate per attempt (one thread); the limiter it calls is shared.
#pragma once

#include <string>

#include "baton/rates.h"
#include "baton/step.h"
#include "rates/llm_usage.h"
#include "steps/llm/llm_config.h"

namespace baton::llm {

// What a reply's rate-limit headers said; < 0 where absent.
struct ProviderLimits {
  double remaining_requests = -1;
  double remaining_tokens = -1;
  double reset_requests = -1;  // seconds until the request window is full again
  double reset_tokens = -1;
  double retry_after = -1;
  // Reads one header line ("Name: value\r\n"); true when it was a rate-limit header.
  bool ReadHeader(const std::string& line);
};

class RequestGate {
 public:
  RequestGate(const LlmConfig& config, const StepContext& ctx);

  enum class Admit { kOk, kCancelled, kRefused, kUnavailable };  // kUnavailable: retryable
  struct Ticket {
    double tokens = 0;  // reserved from token_rate
    double usd = 0;     // reserved from the budget
  };
  // Before one HTTP request whose body is `body`. kRefused: *why says why (budget, unknown rate).
  Admit Before(const std::string& body, Ticket* ticket, std::string* why);
  // After it. `ok`: a 2xx reply whose usage is given; otherwise the request is counted, costs 0.
  void After(const Ticket& ticket, const ProviderLimits& limits, long status, bool ok, long long prompt_tokens,
             long long cached_tokens, long long completion_tokens);

  const rates::LlmUsage& usage() const { return usage_; }

 private:
  bool Wait(const std::string& rate, double amount);

  const LlmConfig& c_;
  const StepContext& ctx_;
  RateLimiter* const limiter_;
  rates::LlmUsage usage_;
};

}  // namespace baton::llm
