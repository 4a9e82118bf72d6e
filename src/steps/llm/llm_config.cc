#include "steps/llm/llm_config.h"

#include <cmath>
#include <optional>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "baton/language.h"
#include "steps/llm/default_prompts.h"
#include "steps/llm/prompt.h"
#include "util/secrets.h"

namespace baton::llm {
namespace {

// Base URLs as each vendor documents its OpenAI-compatible endpoint (Anthropic: its own Messages
// API). Default models are cheap, current general models; users override with `model:`.
constexpr ProviderPreset kPresets[] = {
    {"openai", "https://api.openai.com/v1", "gpt-4o-mini", "OPENAI_API_KEY"},
    {"anthropic", "https://api.anthropic.com/v1", "claude-haiku-4-5", "ANTHROPIC_API_KEY", true},
    {"deepseek", "https://api.deepseek.com/v1", "deepseek-chat", "DEEPSEEK_API_KEY"},
    {"qwen", "https://dashscope.aliyuncs.com/compatible-mode/v1", "qwen-plus", "DASHSCOPE_API_KEY"},
    {"gemini", "https://generativelanguage.googleapis.com/v1beta/openai", "gemini-2.0-flash",
     "GEMINI_API_KEY"},
    {"ollama", "http://127.0.0.1:11434/v1", "llama3.1", ""},
    {"vllm", "http://127.0.0.1:8000/v1", "", ""},
    {"custom", "", "", ""},
    {"extractive", "", "", ""},
};

const std::set<std::string>& KnownKeys() {
  static const std::set<std::string> keys = {
      "provider", "base_url", "model", "api_key_env", "prompt_file", "map_prompt_file",
      "reduce_prompt_file", "context_tokens", "max_tokens", "temperature", "timeout", "retries",
      "backoff", "max_backoff", "language", "from", "title_from", "sentences", "request_rate", "token_rate",
      "price", "mode", "batch"};
  return keys;
}

[[noreturn]] void Bad(const std::string& key, const std::string& what) {
  throw ConfigError("with." + key + ": " + what);
}

std::string GetString(const Json& with, const std::string& key, std::string fallback) {
  auto it = with.find(key);
  if (it == with.end() || it->is_null()) return fallback;
  if (!it->is_string()) Bad(key, "must be a string");
  return it->get<std::string>();
}

double GetNumber(const Json& with, const std::string& key, double fallback, double lo, double hi) {
  auto it = with.find(key);
  if (it == with.end() || it->is_null()) return fallback;
  if (!it->is_number()) Bad(key, "must be a number");
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    std::ostringstream msg;
    msg << "must be between " << lo << " and " << hi << " (got " << v << ")";
    Bad(key, msg.str());
  }
  return v;
}

int GetInt(const Json& with, const std::string& key, int fallback, int lo, int hi) {
  auto it = with.find(key);
  if (it == with.end() || it->is_null()) return fallback;
  if (!it->is_number_integer() && !it->is_number_unsigned()) Bad(key, "must be a whole number");
  const auto v = it->get<long long>();
  if (v < lo || v > hi) {
    Bad(key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + " (got " +
                 std::to_string(v) + ")");
  }
  return static_cast<int>(v);
}

bool IsEnvName(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

std::string LoadTemplate(const Json& with, const std::string& key, const char* fallback) {
  const std::string file = GetString(with, key, "");
  std::string text = fallback;
  std::filesystem::path path;
  if (!file.empty()) {
    path = file;
    const std::string base = GetString(with, "_base_dir", "");
    if (path.is_relative() && !base.empty()) path = std::filesystem::path(base) / path;
    std::ifstream in(path, std::ios::binary);
    if (!in) Bad(key, "cannot read template file " + path.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
      Bad(key, "template file " + path.string() + " is empty");
    }
  }
  std::string unknown = FirstUnknownPlaceholder(text);
  if (!unknown.empty()) {
    Bad(key, "unknown placeholder {{" + unknown + "}} in " +
                 (file.empty() ? std::string("the built-in template") : path.string()));
  }
  return text;
}

// List prices in USD per million tokens of each preset's default model (input, output, cached
// input), as published by the vendor on the date given in docs/steps/llm.md. Local servers cost 0.
struct DefaultPriceEntry {
  const char* provider;
  const char* model;
  double input, output, cached_input;
};
constexpr DefaultPriceEntry kDefaultPrices[] = {
    {"openai", "gpt-4o-mini", 0.15, 0.60, 0.075},
    {"anthropic", "claude-haiku-4-5", 1.00, 5.00, 0.10},
    {"deepseek", "deepseek-chat", 0.28, 0.42, 0.028},
    {"qwen", "qwen-plus", 0.40, 1.20, -1},
    {"gemini", "gemini-2.0-flash", 0.10, 0.40, 0.025},
    {"ollama", "", 0, 0, -1},
    {"vllm", "", 0, 0, -1},
};

rates::Price ParsePrice(const Json& with, rates::Price fallback) {
  auto it = with.find("price");
  if (it == with.end() || it->is_null()) return fallback;
  if (!it->is_object()) Bad("price", "must be a mapping {input: USD, output: USD} per million tokens");
  rates::Price p;
  p.known = true;
  for (const auto& [key, value] : it->items()) {
    if (key != "input" && key != "output" && key != "cached_input" && key != "batch_input" && key != "batch_output") {
      Bad("price." + key, "unknown key (allowed: input, output, cached_input, batch_input, batch_output)");
    }
    if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < 0) {
      Bad("price." + key, "must be a non-negative number of USD per million tokens");
    }
  }
  if (!it->contains("input") || !it->contains("output"))
    Bad("price", "needs both input and output (USD per million tokens)");
  p.input = (*it)["input"].get<double>();
  p.output = (*it)["output"].get<double>();
  p.cached_input = it->contains("cached_input") ? (*it)["cached_input"].get<double>() : -1;
  return p;
}

// price.batch_input/batch_output, else half of the synchronous price (the providers' batch discount).
rates::Price ParseBatchPrice(const Json& with, const rates::Price& sync) {
  rates::Price b = sync;
  b.input = sync.input / 2;
  b.output = sync.output / 2;
  b.cached_input = sync.cached_input < 0 ? -1 : sync.cached_input / 2;
  auto it = with.find("price");
  if (it != with.end() && it->is_object()) {
    if (it->contains("batch_input")) b.input = (*it)["batch_input"].get<double>();
    if (it->contains("batch_output")) b.output = (*it)["batch_output"].get<double>();
  }
  return b;
}

// A duration: a number of seconds, or a string "250ms", "60s", "5m", "24h".
double GetDuration(const Json& j, const std::string& key, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  double v = -1;
  if (it->is_number()) {
    v = it->get<double>();
  } else if (it->is_string()) {
    const std::string s = it->get<std::string>();
    size_t used = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      v = -1;
    }
    const std::string unit = s.substr(used);
    if (unit == "ms") v /= 1000;
    else if (unit == "m") v *= 60;
    else if (unit == "h") v *= 3600;
    else if (unit != "s" && !unit.empty()) v = -1;
  }
  if (!std::isfinite(v) || v < 0) Bad(key, "must be a duration (seconds, or \"250ms\", \"60s\", \"5m\", \"24h\")");
  return v;
}

BatchConfig ParseBatch(const Json& with, LlmApi api) {
  BatchConfig b;
  if (api == LlmApi::kAnthropic) {  // Message Batches: 100,000 requests or 256 MB, whichever first
    b.max_requests = 100000;
    b.max_bytes = 256'000'000;
  }
  auto it = with.find("batch");
  if (it == with.end() || it->is_null()) return b;
  if (!it->is_object()) Bad("batch", "must be a mapping {max_requests, max_bytes, collect, poll, expire, fallback}");
  for (const auto& [key, value] : it->items()) {
    (void)value;
    static const std::set<std::string> known = {"max_requests", "max_bytes", "collect", "poll", "expire", "fallback"};
    if (!known.count(key))
      Bad("batch." + key, "unknown key (allowed: max_requests, max_bytes, collect, poll, expire, fallback)");
  }
  const Json& j = *it;
  auto count = [&](const char* key, long long fallback, long long hi) {
    auto f = j.find(key);
    if (f == j.end() || f->is_null()) return fallback;
    if (!f->is_number_integer() || f->get<long long>() < 1 || f->get<long long>() > hi)
      Bad(std::string("batch.") + key, "must be a whole number from 1 to " + std::to_string(hi));
    return f->get<long long>();
  };
  b.max_requests = count("max_requests", b.max_requests, 100000);
  b.max_bytes = count("max_bytes", b.max_bytes, 256'000'000);
  try {
    b.collect = GetDuration(j, "collect", b.collect);
    b.poll = GetDuration(j, "poll", b.poll);
    b.expire = GetDuration(j, "expire", b.expire);
  } catch (const ConfigError& e) {
    throw ConfigError(std::string(e.what()).replace(0, 5, "with.batch."));
  }
  b.fallback = GetString(j, "fallback", b.fallback);
  if (b.fallback != "sync" && b.fallback != "batch" && b.fallback != "fail")
    Bad("batch.fallback", "must be sync, batch or fail (got " + b.fallback + ")");
  return b;
}

}  // namespace

rates::Price DefaultPrice(const std::string& provider, const std::string& model) {
  rates::Price p;
  for (const auto& e : kDefaultPrices) {
    if (provider == e.provider && (e.model[0] == '\0' || model == e.model)) {
      p = {e.input, e.output, e.cached_input, true};
    }
  }
  return p;
}

const ProviderPreset* FindPreset(const std::string& name) {
  for (const auto& p : kPresets) {
    if (name == p.name) return &p;
  }
  return nullptr;
}

LlmConfig ParseLlmConfig(const Json& with_in) {
  const Json with = with_in.is_null() ? Json::object() : with_in;
  if (!with.is_object()) throw ConfigError("with: must be a mapping of parameters");
  for (const auto& [key, value] : with.items()) {
    if (!key.empty() && key[0] == '_') continue;  // set by the loader (_base_dir)
    if (!KnownKeys().count(key)) Bad(key, "unknown parameter (see docs/steps/llm.md)");
  }

  LlmConfig c;
  c.provider = GetString(with, "provider", "extractive");
  const ProviderPreset* preset = FindPreset(c.provider);
  if (preset == nullptr) {
    std::string known;
    for (const auto& p : kPresets) known += (known.empty() ? "" : ", ") + std::string(p.name);
    Bad("provider", "unknown provider '" + c.provider + "' (known: " + known + ")");
  }
  c.extractive = c.provider == "extractive";
  c.api = preset->anthropic ? LlmApi::kAnthropic : LlmApi::kOpenAi;
  c.base_url = GetString(with, "base_url", preset->base_url);
  while (!c.base_url.empty() && c.base_url.back() == '/') c.base_url.pop_back();
  c.model = GetString(with, "model", preset->model);
  c.api_key_env = GetString(with, "api_key_env", preset->api_key_env);
  if (!c.api_key_env.empty() && !IsEnvName(c.api_key_env)) {
    // Never echo the value: a common mistake is to paste the key itself here.
    Bad("api_key_env", "must be the NAME of an environment variable (letters, digits, _), not the key");
  }
  // Whatever its name, the key is a secret: children (command, worker) get it only by pass_env.
  RegisterSecretName(c.api_key_env);
  if (!c.extractive) {
    if (c.base_url.empty()) Bad("base_url", "required for provider " + c.provider);
    if (c.base_url.rfind("http://", 0) != 0 && c.base_url.rfind("https://", 0) != 0) {
      Bad("base_url", "must start with http:// or https:// (got '" + c.base_url + "')");
    }
    if (c.model.empty()) Bad("model", "required for provider " + c.provider);
  }

  // The job's language: the step's own `language` may be a tag (zh-CN) or, as before, any name
  // the model understands ("French"); the pipeline's `language:` arrives as `_language`.
  const std::string own = GetString(with, "language", "");
  const std::optional<Language> own_tag = own.empty() ? std::nullopt : FindLanguage(own);
  Json lang_with = Json::object();
  if (own_tag) lang_with["language"] = own_tag->tag;
  else if (with.contains("_language")) lang_with["_language"] = with["_language"];
  const Language job = StepLanguage(lang_with);
  c.ui = job.ui;
  c.job_language = job.tag;
  c.cjk = job.cjk;
  const bool chinese = job.chinese();
  c.summary_template = LoadTemplate(with, "prompt_file", chinese ? kDefaultSummaryPromptZh : kDefaultSummaryPrompt);
  c.map_template = LoadTemplate(with, "map_prompt_file", chinese ? kDefaultMapPromptZh : kDefaultMapPrompt);
  c.reduce_template = LoadTemplate(with, "reduce_prompt_file", chinese ? kDefaultReducePromptZh : kDefaultReducePrompt);

  c.context_tokens = GetInt(with, "context_tokens", 8000, 512, 10'000'000);
  c.max_tokens = GetInt(with, "max_tokens", 1024, 16, 1'000'000);
  if (c.max_tokens * 2 >= c.context_tokens) {
    Bad("max_tokens", "must be less than half of context_tokens (" + std::to_string(c.context_tokens) +
                          ") so a prompt and its reply fit");
  }
  c.temperature = GetNumber(with, "temperature", 0.2, 0, c.api == LlmApi::kAnthropic ? 1 : 2);
  c.timeout = GetNumber(with, "timeout", 120, 0.001, 86400);
  c.retries = GetInt(with, "retries", 4, 0, 100);
  c.backoff = GetNumber(with, "backoff", 1, 0, 3600);
  c.max_backoff = GetNumber(with, "max_backoff", std::max(30.0, c.backoff), 0, 86400);
  if (c.max_backoff < c.backoff) Bad("max_backoff", "must be at least backoff");
  c.language_requested = !own.empty();
  if (own_tag) c.language = own_tag->english_name + " (" + own_tag->native_name + ")";
  else if (!own.empty()) c.language = own;
  else if (HasStepLanguage(lang_with))
    c.language = chinese ? job.native_name : job.english_name + " (" + job.native_name + ")";
  if (chinese) {
    c.system_prompt = job.ui == "zh-Hant"
                          ? "你根據影片的逐字稿和螢幕文字進行總結。寫出準確、結構清楚的 Markdown，絕不編造事實。"
                          : "你根据视频的文字记录和屏幕文字进行总结。写出准确、结构清晰的 Markdown，绝不编造事实。";
    c.system_prompt += "用" + (c.language.empty() ? job.native_name : c.language) + "写。";
  } else {
    c.system_prompt = "You summarise videos from their transcript and on-screen text. Write accurate, "
                      "well-structured Markdown and never invent facts. ";
    c.system_prompt += c.language.empty() ? "Write in the language of the material." : "Write in " + c.language + ".";
  }
  c.from = GetString(with, "from", "analyze");
  c.title_from = GetString(with, "title_from", "download");
  if (c.from.empty()) Bad("from", "must name the analysis step");
  c.sentences = GetInt(with, "sentences", 8, 1, 1000);
  c.request_rate = GetString(with, "request_rate", "");
  c.token_rate = GetString(with, "token_rate", "");
  c.price = ParsePrice(with, DefaultPrice(c.provider, c.model));
  c.batch_price = ParseBatchPrice(with, c.price);
  const std::string mode = GetString(with, "mode", "sync");
  if (mode != "sync" && mode != "batch") Bad("mode", "must be sync or batch (got " + mode + ")");
  c.batch = mode == "batch" && !c.extractive;
  if (with.contains("batch") && mode != "batch") Bad("batch", "is only read with mode: batch");
  c.batch_config = ParseBatch(with, c.api);
  return c;
}

}  // namespace baton::llm
