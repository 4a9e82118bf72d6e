// The llm step's parameters, parsed and checked from its `with:` JSON at pipeline load time, and
// the provider presets (base URL, default model, key variable).
//
// Thread-safety: LlmConfig is a plain value; ParseLlmConfig is reentrant.
#pragma once

#include <string>

#include "baton/step.h"
#include "rates/llm_usage.h"

namespace baton::llm {

struct ProviderPreset {
  const char* name;
  const char* base_url;     // "" when the user must give one
  const char* model;        // "" when the user must give one
  const char* api_key_env;  // "" when the API needs no key
  bool anthropic = false;   // speaks Anthropic's Messages API (POST /messages), not Chat Completions
};

// The known providers, in documentation order (extractive last).
const ProviderPreset* FindPreset(const std::string& name);

// The built-in list price of a preset provider's default model (docs/steps/llm.md gives the date
// each was read); price.known is false for other models.
rates::Price DefaultPrice(const std::string& provider, const std::string& model);

// `mode: batch`: requests go through the provider's Batch API at its batch price (docs/steps/llm.md).
// The size limits default to the provider's: OpenAI's (50,000 requests, 200 MB input file), or
// Anthropic's Message Batches' (100,000 requests, 256 MB).
struct BatchConfig {
  long long max_requests = 50000;     // per batch
  long long max_bytes = 200'000'000;  // per input file (OpenAI) or batch request body (Anthropic)
  double collect = 60;                // seconds after the first request before the batch is sent
  double poll = 60;                   // seconds between polls
  double expire = 86400;              // seconds after creation: unfinished items follow `fallback`
  std::string fallback = "batch";     // sync | batch | fail: a failed, expired or cancelled item
};

// The wire shape of a provider's API: OpenAI's Chat Completions (and Batch API), or Anthropic's
// Messages (and Message Batches), which also differ in their auth headers.
enum class LlmApi { kOpenAi, kAnthropic };

struct LlmConfig {
  std::string provider = "extractive";
  bool extractive = true;
  LlmApi api = LlmApi::kOpenAi;
  std::string base_url;     // without trailing '/'
  std::string model;
  std::string api_key_env;  // the variable's NAME; "" = send no Authorization (x-api-key) header
  std::string summary_template;
  std::string map_template;
  std::string reduce_template;
  int context_tokens = 8000;
  int max_tokens = 1024;
  double temperature = 0.2;
  double timeout = 120;      // seconds per HTTP request
  int retries = 4;           // extra tries per request after the first
  double backoff = 1;        // base of the exponential backoff, seconds
  double max_backoff = 30;   // cap of one wait, Retry-After included, seconds
  std::string language;      // what the model is told to write in; "" = the language of the material
  bool language_requested = false;  // with.language given on the step itself
  std::string ui = "en";     // the job's language for Baton's own words ("en", "zh-Hans", "zh-Hant")
  std::string job_language = "en";  // the job's language tag: which transcript is summarised
  bool cjk = false;          // the job's language is written without spaces (extractive segmentation)
  std::string system_prompt; // the system message, in the job's language
  std::string from = "analyze";
  std::string title_from = "download";
  int sentences = 8;         // extractive: how many sentences to keep
  std::string request_rate;  // a `rates:` bucket taking 1 per HTTP request ("" = none)
  std::string token_rate;    // a `rates:` bucket taking the request's estimated tokens ("" = none)
  rates::Price price;        // USD per million tokens (with.price, else DefaultPrice)
  rates::Price batch_price;  // price.batch_input/batch_output, else half of price
  bool batch = false;        // with.mode: batch
  BatchConfig batch_config;
};

// Throws ConfigError("with.KEY: ...") naming the offending key. Reads template files (relative to
// with._base_dir when set) so a missing or bad template is refused at load time.
LlmConfig ParseLlmConfig(const Json& with);

}  // namespace baton::llm
