#include "steps/llm/request_gate.h"

#include <curl/curl.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <regex>

#include <fmt/format.h>

#include "steps/llm/prompt.h"

namespace baton::llm {
namespace {

std::string Trim(std::string v) {
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.pop_back();
  size_t i = 0;
  while (i < v.size() && std::isspace(static_cast<unsigned char>(v[i]))) ++i;
  return v.substr(i);
}

double Number(const std::string& v) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  return end != v.c_str() && *end == '\0' && std::isfinite(d) && d >= 0 ? d : -1;
}

// OpenAI's reset format: "1s", "6m0s", "20ms", "1h2m3.5s"; or plain seconds. < 0 when unparsable.
double ParseResetDuration(const std::string& v) {
  if (const double plain = Number(v); plain >= 0) return plain;
  static const std::regex kPart(R"(([0-9]*\.?[0-9]+)(ms|h|m|s))");
  double total = 0;
  size_t consumed = 0;
  for (std::sregex_iterator it(v.begin(), v.end(), kPart), end; it != end; ++it) {
    if (static_cast<size_t>(it->position()) != consumed) return -1;
    consumed += it->length();
    const double n = std::stod((*it)[1]);
    const std::string unit = (*it)[2];
    total += unit == "ms" ? n / 1000 : unit == "h" ? n * 3600 : unit == "m" ? n * 60 : n;
  }
  return consumed == v.size() && consumed > 0 ? total : -1;
}

// Anthropic's reset format: an RFC 3339 time ("2025-06-01T12:00:30Z"). Seconds from now, >= 0.
double ParseResetTime(const std::string& v) {
  std::tm tm{};
  const char* rest = strptime(v.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) return ParseResetDuration(v);
  const time_t when = timegm(&tm);
  return std::max(0.0, std::difftime(when, std::time(nullptr)));
}

// Retry-After: delta-seconds or an HTTP date. < 0 when unparsable.
double ParseRetryAfter(const std::string& v) {
  if (v.empty()) return -1;
  if (const double plain = Number(v); plain >= 0) return std::min(plain, 1e9);
  const time_t when = curl_getdate(v.c_str(), nullptr);
  if (when < 0) return -1;
  return std::max(0.0, std::difftime(when, std::time(nullptr)));
}

void MinInto(double* slot, double v) {
  if (v >= 0) *slot = *slot < 0 ? v : std::min(*slot, v);
}

}  // namespace

bool ProviderLimits::ReadHeader(const std::string& line) {
  const size_t colon = line.find(':');
  if (colon == std::string::npos) return false;
  std::string name = line.substr(0, colon);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  const std::string value = Trim(line.substr(colon + 1));
  if (name == "retry-after") {
    retry_after = ParseRetryAfter(value);
  } else if (name == "retry-after-ms") {
    if (const double ms = Number(value); ms >= 0) retry_after = ms / 1000;
  } else if (name == "x-ratelimit-remaining-requests" || name == "anthropic-ratelimit-requests-remaining") {
    MinInto(&remaining_requests, Number(value));
  } else if (name == "x-ratelimit-remaining-tokens" || name == "anthropic-ratelimit-tokens-remaining" ||
             name == "anthropic-ratelimit-input-tokens-remaining") {
    MinInto(&remaining_tokens, Number(value));
  } else if (name == "x-ratelimit-reset-requests") {
    reset_requests = ParseResetDuration(value);
  } else if (name == "x-ratelimit-reset-tokens") {
    reset_tokens = ParseResetDuration(value);
  } else if (name == "anthropic-ratelimit-requests-reset") {
    reset_requests = ParseResetTime(value);
  } else if (name == "anthropic-ratelimit-tokens-reset" || name == "anthropic-ratelimit-input-tokens-reset") {
    reset_tokens = std::max(reset_tokens, ParseResetTime(value));
  } else {
    return false;
  }
  return true;
}

RequestGate::RequestGate(const LlmConfig& config, const StepContext& ctx)
    : c_(config), ctx_(ctx), limiter_(ctx.rates) {}

bool RequestGate::Wait(const std::string& rate, double amount) {
  bool told = false;
  const bool ok = limiter_->Acquire(rate, amount, ctx_.cancel, [&](double seconds, const std::string& error) {
    if (!error.empty()) {
      if (ctx_.log)
        ctx_.log(LogLevel::kWarn, fmt::format("llm: rate {}: {}; retrying in {:.1f} s", rate, error, seconds));
    } else if (!told && ctx_.log) {
      ctx_.log(LogLevel::kInfo, fmt::format("llm: waiting for rate {} ({:.2f} s for {:.0f})", rate, seconds, amount));
    }
    if (!told && ctx_.progress) ctx_.progress({{"waiting", "rate " + rate}, {"seconds", seconds}});
    told = true;
  });
  if (told && ok && ctx_.progress) ctx_.progress({{"waiting", nullptr}});
  return ok;
}

RequestGate::Admit RequestGate::Before(const std::string& body, Ticket* ticket, std::string* why) {
  *ticket = Ticket{};
  if (ctx_.cancelled()) return Admit::kCancelled;
  if (limiter_ == nullptr) {
    if (!c_.request_rate.empty() || !c_.token_rate.empty()) {
      *why = "llm: with.request_rate/token_rate are set but this runtime provides no rate limiter";
      return Admit::kRefused;
    }
    return Admit::kOk;
  }
  for (const auto& [key, rate] :
       {std::pair{"request_rate", &c_.request_rate}, std::pair{"token_rate", &c_.token_rate}}) {
    if (!rate->empty() && !limiter_->Has(*rate)) {
      *why = fmt::format("llm: with.{}: no rate named '{}' in rates: (declared: {})", key, *rate,
                         limiter_->Names());
      return Admit::kRefused;
    }
  }
  const bool budget = limiter_->budget_usd() > 0;
  if (budget && !c_.price.known) {
    *why = fmt::format("llm: the run has a budget but model {} has no price; set with.price: {{input, output}} "
                       "(USD per million tokens)", c_.model);
    return Admit::kRefused;
  }
  const double tokens = EstimateTokens(body) + c_.max_tokens;
  if (!c_.request_rate.empty() && !Wait(c_.request_rate, 1)) return Admit::kCancelled;
  if (!c_.token_rate.empty() && !Wait(c_.token_rate, tokens)) {
    if (!c_.request_rate.empty()) limiter_->Give(c_.request_rate, 1);
    return Admit::kCancelled;
  }
  ticket->tokens = c_.token_rate.empty() ? 0 : tokens;
  if (budget) {
    const double usd = rates::CostUsd(c_.price, EstimateTokens(body), 0, c_.max_tokens);
    const BudgetGrant g = limiter_->Reserve(usd);
    if (!g.granted) {
      if (!c_.request_rate.empty()) limiter_->Give(c_.request_rate, 1);
      if (!c_.token_rate.empty()) limiter_->Give(c_.token_rate, tokens);
      ticket->tokens = 0;
      if (!g.error.empty()) {
        *why = "llm: the budget store cannot be reached: " + g.error;
        return Admit::kUnavailable;
      }
      *why = fmt::format("LLM budget of ${:.2f} reached: ${:.2f} spent", g.limit, g.spent);
      if (g.reserved > 0) *why += fmt::format(" (${:.2f} reserved by requests in flight)", g.reserved);
      *why += fmt::format("; this request needs up to ${:.4f}", usd);
      return Admit::kRefused;
    }
    ticket->usd = usd;
  }
  return Admit::kOk;
}

void RequestGate::After(const Ticket& ticket, const ProviderLimits& limits, long status, bool ok,
                        long long prompt_tokens, long long cached_tokens, long long completion_tokens) {
  ++usage_.requests;
  double cost = 0;
  if (ok) {
    usage_.prompt_tokens += prompt_tokens;
    usage_.completion_tokens += completion_tokens;
    usage_.cached_tokens += cached_tokens;
    cost = rates::CostUsd(c_.price, prompt_tokens, cached_tokens, completion_tokens);
    usage_.cost_usd += cost;
  }
  if (limiter_ == nullptr) return;
  if (!c_.token_rate.empty()) {
    const double used = ok ? static_cast<double>(prompt_tokens + completion_tokens) : 0;
    if (ticket.tokens != used) limiter_->Give(c_.token_rate, ticket.tokens - used);
  }
  // Settled also without a budget: the spending is recorded (a resumed run with a budget counts it).
  if (ticket.usd > 0 || cost > 0) limiter_->Settle(ticket.usd, cost);
  // The provider's word: only lower (never raise) what the buckets hold.
  if (!c_.request_rate.empty() && limits.remaining_requests >= 0)
    limiter_->Lower(c_.request_rate, limits.remaining_requests, 0);
  if (!c_.token_rate.empty() && limits.remaining_tokens >= 0)
    limiter_->Lower(c_.token_rate, limits.remaining_tokens, 0);
  if (status != 429) return;
  // A 429: the refused bucket holds every request waiting on it (this step's and any other's)
  // for Retry-After (else its reset time), refills only after, and paces slower from then on.
  // The tokens' bucket when the provider says tokens ran out; else the requests' one.
  const bool tokens_out = limits.remaining_tokens == 0 && limits.remaining_requests != 0;
  auto wait = [&](double reset) { return limits.retry_after >= 0 ? limits.retry_after : reset; };
  if (!c_.request_rate.empty() && !tokens_out) {
    limiter_->Limited(c_.request_rate, wait(limits.reset_requests));
  } else if (!c_.token_rate.empty()) {
    limiter_->Limited(c_.token_rate, wait(limits.reset_tokens));
  }
}

}  // namespace baton::llm
