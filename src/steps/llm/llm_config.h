// The llm step's parameters, parsed and checked from its `with:` JSON at pipeline load time, and
// the provider presets (base URL, default model, key variable).
//
// Thread-safety: LlmConfig is a plain value; ParseLlmConfig is reentrant.
#pragma once

#include <string>

#include "baton/step.h"

namespace baton::llm {

struct ProviderPreset {
  const char* name;
  const char* base_url;     // "" when the user must give one
  const char* model;        // "" when the user must give one
  const char* api_key_env;  // "" when the API needs no key
};

// The known providers, in documentation order (extractive last).
const ProviderPreset* FindPreset(const std::string& name);

struct LlmConfig {
  std::string provider = "extractive";
  bool extractive = true;
  std::string base_url;     // without trailing '/'
  std::string model;
  std::string api_key_env;  // the variable's NAME; "" = send no Authorization header
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
  bool cjk = false;          // the job's language is written without spaces (extractive segmentation)
  std::string system_prompt; // the system message, in the job's language
  std::string from = "analyze";
  std::string title_from = "download";
  int sentences = 8;         // extractive: how many sentences to keep
};

// Throws ConfigError("with.KEY: ...") naming the offending key. Reads template files (relative to
// with._base_dir when set) so a missing or bad template is refused at load time.
LlmConfig ParseLlmConfig(const Json& with);

}  // namespace baton::llm
