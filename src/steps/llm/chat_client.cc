#include "steps/llm/chat_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "steps/llm/prompt.h"

namespace baton::llm {

struct ChatClient::HttpReply {
  CURLcode code = CURLE_OK;
  std::string curl_error;
  long status = 0;
  std::string body;
  ProviderLimits limits;    // rate-limit headers and Retry-After
};

namespace {

constexpr size_t kMaxBody = 64u << 20;  // a chat reply is kilobytes; refuse runaway bodies

struct Transfer {
  std::string* body;
  ProviderLimits* limits;
  const StepContext* ctx;
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  if (t->body->size() + size * n > kMaxBody) return 0;  // makes curl fail with CURLE_WRITE_ERROR
  t->body->append(data, size * n);
  return size * n;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  static_cast<Transfer*>(user)->limits->ReadHeader(std::string(data, size * n));
  return size * n;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<Transfer*>(user)->ctx->cancelled() ? 1 : 0;
}

bool RetryableCurlError(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

bool RetryableStatus(long status) { return status == 408 || status == 429 || status >= 500; }

std::string OneLine(std::string s, size_t max) {
  for (char& c : s) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (s.size() > max) s = s.substr(0, max) + "…";
  return s;
}

// The server's own explanation: OpenAI's {"error": {"message"}} (Anthropic's {"type": "error",
// "error": {"type", "message"}} too), or {"error": "..."},
// {"message"}, {"detail"}; else the start of the body.
std::string ServerMessage(const std::string& body) {
  const Json j = Json::parse(body, nullptr, false);
  if (j.is_object()) {
    if (auto e = j.find("error"); e != j.end()) {
      if (e->is_string()) return OneLine(e->get<std::string>(), 300);
      if (e->is_object() && e->contains("message") && (*e)["message"].is_string()) {
        return OneLine((*e)["message"].get<std::string>(), 300);
      }
    }
    for (const char* k : {"message", "detail"}) {
      if (j.contains(k) && j[k].is_string()) return OneLine(j[k].get<std::string>(), 300);
    }
  }
  return body.empty() ? "(empty body)" : OneLine(body, 200);
}

// Prompt tokens served from the provider's cache: OpenAI's prompt_tokens_details.cached_tokens,
// DeepSeek's prompt_cache_hit_tokens.
long long CachedTokens(const Json& usage) {
  const Json details = usage.value("prompt_tokens_details", Json());
  if (details.is_object() && details.value("cached_tokens", Json()).is_number_integer()) {
    return details["cached_tokens"].get<long long>();
  }
  const Json hit = usage.value("prompt_cache_hit_tokens", Json());
  return hit.is_number_integer() ? hit.get<long long>() : 0;
}

double Jitter() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0.5, 1.0)(rng);
}

}  // namespace

ChatReply ParseChatReply(std::string_view body) {
  ChatReply out;
  const Json j = Json::parse(body, nullptr, false);
  const Json usage = j.is_object() ? j.value("usage", Json()) : Json();
  out.has_usage = usage.is_object() && usage.value("prompt_tokens", Json()).is_number_integer();
  if (out.has_usage) {
    out.prompt_tokens = usage["prompt_tokens"].get<int>();
    const Json completion = usage.value("completion_tokens", Json());  // a string here must not throw
    out.completion_tokens = completion.is_number_integer() ? completion.get<int>() : 0;
    out.cached_tokens = CachedTokens(usage);
  }
  if (j.is_discarded() || !j.is_object()) {
    out.problem = ChatReply::Problem::kNotObject;
    return out;
  }
  const auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array() || choices->empty()) {
    out.problem = ChatReply::Problem::kNoChoices;
    return out;
  }
  const Json& choice = (*choices)[0];
  out.finish_reason = choice.contains("finish_reason") && choice["finish_reason"].is_string()
                          ? choice["finish_reason"].get<std::string>() : "";
  if (choice.contains("message") && choice["message"].is_object()) {
    const Json& c = choice["message"].value("content", Json());
    if (c.is_string()) {
      out.content = c.get<std::string>();
    } else if (c.is_array()) {  // content parts: [{"type": "text", "text": "..."}]
      for (const auto& part : c) {
        if (part.is_object() && part.contains("text") && part["text"].is_string())
          out.content += part["text"].get<std::string>();
      }
    }
  }
  if (out.content.find_first_not_of(" \t\r\n") == std::string::npos) out.problem = ChatReply::Problem::kEmptyContent;
  return out;
}

ChatReply ParseMessagesReply(std::string_view body) {
  ChatReply out;
  const Json j = Json::parse(body, nullptr, false);
  const Json usage = j.is_object() ? j.value("usage", Json()) : Json();
  out.has_usage = usage.is_object() && usage.value("input_tokens", Json()).is_number_integer();
  if (out.has_usage) {
    const auto count = [&usage](const char* key) {
      const Json v = usage.value(key, Json());  // a string here must not throw
      return v.is_number_integer() ? std::max(0LL, v.get<long long>()) : 0LL;
    };
    out.cached_tokens = count("cache_read_input_tokens");
    out.prompt_tokens = static_cast<int>(
        std::min<long long>(INT_MAX, count("input_tokens") + out.cached_tokens + count("cache_creation_input_tokens")));
    out.completion_tokens = static_cast<int>(std::min<long long>(INT_MAX, count("output_tokens")));
  }
  if (j.is_discarded() || !j.is_object()) {
    out.problem = ChatReply::Problem::kNotObject;
    return out;
  }
  const auto content = j.find("content");
  if (content == j.end() || !content->is_array() || content->empty()) {
    out.problem = ChatReply::Problem::kNoChoices;
    return out;
  }
  out.finish_reason = j.value("stop_reason", Json()).is_string() ? j["stop_reason"].get<std::string>() : "";
  for (const auto& block : *content) {  // [{"type": "text", "text": "..."}], other block types skipped
    if (block.is_object() && block.value("type", Json()) == "text" && block.value("text", Json()).is_string())
      out.content += block["text"].get<std::string>();
  }
  if (out.content.find_first_not_of(" \t\r\n") == std::string::npos) out.problem = ChatReply::Problem::kEmptyContent;
  return out;
}

ChatReply ParseReply(LlmApi api, std::string_view body) {
  return api == LlmApi::kAnthropic ? ParseMessagesReply(body) : ParseChatReply(body);
}

Json ChatRequest(const LlmConfig& c, const std::string& system, const std::string& user) {
  if (c.api == LlmApi::kAnthropic) {
    Json request = {{"model", c.model}, {"max_tokens", c.max_tokens}};
    if (!system.empty()) request["system"] = system;
    request["messages"] = Json::array({{{"role", "user"}, {"content", user}}});
    request["temperature"] = c.temperature;
    return request;
  }
  Json messages = Json::array();
  if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
  messages.push_back({{"role", "user"}, {"content", user}});
  return {{"model", c.model}, {"messages", messages}, {"max_tokens", c.max_tokens}, {"temperature", c.temperature}};
}

const char* ChatPath(const LlmConfig& c) { return c.api == LlmApi::kAnthropic ? "/messages" : "/chat/completions"; }

std::vector<std::string> AuthHeaders(const LlmConfig& c, const std::string& key) {
  std::vector<std::string> lines;
  if (c.api == LlmApi::kAnthropic) {
    if (!key.empty()) lines.push_back("x-api-key: " + key);
    lines.push_back("anthropic-version: 2023-06-01");
  } else if (!key.empty()) {
    lines.push_back("Authorization: Bearer " + key);
  }
  return lines;
}

ChatClient::ChatClient(const LlmConfig& config, std::string api_key, const StepContext& ctx, RequestGate* gate)
    : config_(config), api_key_(std::move(api_key)), ctx_(ctx), url_(config.base_url + ChatPath(config)),
      gate_(gate) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string ChatClient::Scrub(std::string text) const {
  if (api_key_.empty()) return text;
  size_t pos = 0;
  while ((pos = text.find(api_key_, pos)) != std::string::npos) {
    text.replace(pos, api_key_.size(), "[redacted]");
    pos += 10;
  }
  return text;
}

void ChatClient::Log(LogLevel level, const std::string& msg) const {
  if (ctx_.log) ctx_.log(level, Scrub(msg));
}

ChatClient::HttpReply ChatClient::PostOnce(const std::string& body) const {
  HttpReply reply;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    reply.code = CURLE_FAILED_INIT;
    reply.curl_error = "curl_easy_init failed";
    return reply;
  }
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Accept: application/json");
  std::vector<std::string> auth = AuthHeaders(config_, api_key_);
  for (const auto& line : auth) headers = curl_slist_append(headers, line.c_str());
  char errbuf[CURL_ERROR_SIZE] = {0};
  Transfer t{&reply.body, &reply.limits, &ctx_};
  const long timeout_ms = std::max(1L, std::lround(config_.timeout * 1000));
  curl_easy_setopt(curl, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "baton-llm/0.1");
  curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms, 30000L));
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  reply.code = curl_easy_perform(curl);
  if (reply.code != CURLE_OK) {
    reply.curl_error = errbuf[0] != 0 ? errbuf : curl_easy_strerror(reply.code);
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  // The key's header lines lived in `auth`; wipe them rather than leave the key in freed memory.
  for (auto& line : auth) std::fill(line.begin(), line.end(), '\0');
  return reply;
}

// Flow: the request body; then each try: PassGate (rates, budget) -> PostOnce -> a failed
// request is Settled with the gate and either ends the call (not Retryable) or is tried again
// after WaitToRetry; a 2xx reply is read (ReadReply) and ends the call.
ChatResult ChatClient::Complete(const std::string& system, const std::string& user,
                                const std::string& label) {
  const std::string body = RequestBody(system, user);
  ChatResult result;
  const int max_tries = config_.retries + 1;
  std::string last_error;
  for (int attempt = 1; attempt <= max_tries; ++attempt) {
    if (ctx_.cancelled()) {
      result.kind = ChatResult::Kind::kCancelled;
      return result;
    }
    RequestGate::Ticket ticket;
    if (!PassGate(body, &ticket, &result)) return result;
    result.tries = attempt;
    Log(LogLevel::kDebug, fmt::format("llm: {} -> POST {} (model {}, try {}/{})", label, url_,
                                      config_.model, attempt, max_tries));
    HttpReply reply = PostOnce(body);
    const bool failed = reply.code != CURLE_OK || reply.status < 200 || reply.status >= 300;
    if (failed) Settle(ticket, reply, false, 0, 0, 0);
    if (reply.code == CURLE_ABORTED_BY_CALLBACK && ctx_.cancelled()) {
      result.kind = ChatResult::Kind::kCancelled;
      return result;
    }
    if (!failed) {
      ReadReply(reply, ticket, system, user, label, &result);
      return result;
    }
    if (!Retryable(reply, &last_error, &result)) return result;
    if (attempt == max_tries) break;
    if (!WaitToRetry(reply, attempt, max_tries, last_error, label)) {
      result.kind = ChatResult::Kind::kCancelled;
      return result;
    }
  }
  result.error = Scrub(fmt::format("llm: POST {} failed after {} tries; last error: {}", url_,
                                   max_tries, last_error));
  result.retryable = true;
  return result;
}

std::string ChatClient::RequestBody(const std::string& system, const std::string& user) const {
  Json request = ChatRequest(config_, system, user);
  request["stream"] = false;
  return request.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// The gate's admission of one request; false with `result` set when the call ends here.
bool ChatClient::PassGate(const std::string& body, RequestGate::Ticket* ticket, ChatResult* result) const {
  if (gate_ == nullptr) return true;
  std::string why;
  const RequestGate::Admit admit = gate_->Before(body, ticket, &why);
  switch (admit) {
    case RequestGate::Admit::kOk: break;
    case RequestGate::Admit::kCancelled:
      result->kind = ChatResult::Kind::kCancelled;
      return false;
    case RequestGate::Admit::kRefused:
    case RequestGate::Admit::kUnavailable:
      result->error = Scrub(why);
      result->retryable = admit == RequestGate::Admit::kUnavailable;
      return false;
  }
  return true;
}

// Once per request: the gate gives back unused tokens and settles the cost.
void ChatClient::Settle(const RequestGate::Ticket& ticket, const HttpReply& reply, bool ok, long long prompt,
                        long long cached, long long completion) const {
  if (gate_ != nullptr) gate_->After(ticket, reply.limits, reply.status, ok, prompt, cached, completion);
}

// A failed request (a curl error or a non-2xx status): its `last_error`; false with `result` set
// when retrying cannot help.
bool ChatClient::Retryable(const HttpReply& reply, std::string* last_error, ChatResult* result) const {
  if (reply.code != CURLE_OK) {
    *last_error = reply.code == CURLE_OPERATION_TIMEDOUT
                      ? fmt::format("timed out after {} s ({})", config_.timeout, reply.curl_error)
                      : fmt::format("connection error: {}", reply.curl_error);
    if (!RetryableCurlError(reply.code)) {
      result->error = Scrub(fmt::format("llm: POST {} failed: {}", url_, *last_error));
      result->retryable = false;
      return false;
    }
    return true;
  }
  *last_error = fmt::format("HTTP {}: {}", reply.status, ServerMessage(reply.body));
  if (!RetryableStatus(reply.status)) {
    result->error = Scrub(fmt::format("llm: POST {} failed with {} (not retried)", url_, *last_error));
    result->retryable = false;
    return false;
  }
  return true;
}

// The backoff before try `attempt + 1` (at least the server's Retry-After); false when cancelled.
bool ChatClient::WaitToRetry(const HttpReply& reply, int attempt, int max_tries, const std::string& last_error,
                             const std::string& label) const {
  double wait = std::min(config_.max_backoff, config_.backoff * std::pow(2.0, attempt - 1)) * Jitter();
  if (reply.limits.retry_after >= 0) wait = std::max(wait, std::min(reply.limits.retry_after, config_.max_backoff));
  Log(LogLevel::kWarn, fmt::format("llm: {}: {}; retrying in {:.2f} s (try {}/{})", label,
                                   OneLine(last_error, 300), wait, attempt + 1, max_tries));
  return ctx_.cancel != nullptr ? ctx_.cancel->sleep_for(wait)
                                : (std::this_thread::sleep_for(std::chrono::duration<double>(wait)), true);
}

// HTTP 2xx: the reply must be a chat completion with non-empty content.
void ChatClient::ReadReply(const HttpReply& reply, const RequestGate::Ticket& ticket, const std::string& system,
                           const std::string& user, const std::string& label, ChatResult* result) const {
  ChatReply parsed = ParseReply(config_.api, reply.body);
  // Usage is billed whatever the content: settle it first.
  if (parsed.has_usage) {
    result->prompt_tokens = parsed.prompt_tokens;
    result->completion_tokens = parsed.completion_tokens;
    result->cached_tokens = parsed.cached_tokens;
    Settle(ticket, reply, true, result->prompt_tokens, result->cached_tokens, result->completion_tokens);
  } else {
    Settle(ticket, reply, false, 0, 0, 0);
  }
  const bool has_usage = parsed.has_usage;
  const std::string& finish = parsed.finish_reason;
  std::string content = std::move(parsed.content);
  switch (parsed.problem) {
    case ChatReply::Problem::kNone: break;
    case ChatReply::Problem::kNotObject:
      result->error = Scrub(fmt::format("llm: malformed response from {} (HTTP {}): not a JSON object: {}",
                                        url_, reply.status, OneLine(reply.body, 120)));
      return;
    case ChatReply::Problem::kNoChoices:
      result->error = Scrub(fmt::format("llm: malformed response from {}: no {}", url_,
                                        config_.api == LlmApi::kAnthropic ? "content" : "choices"));
      return;
    case ChatReply::Problem::kEmptyContent:
      result->error = Scrub(fmt::format("llm: empty message content in the response from {}{}", url_,
                                        finish.empty() ? "" : " (finish_reason: " + finish + ")"));
      return;
  }
  if (finish == "length" || finish == "max_tokens") {  // OpenAI's finish_reason, Anthropic's stop_reason
    Log(LogLevel::kWarn, fmt::format("llm: {}: reply cut at max_tokens ({})", label, config_.max_tokens));
  }
  result->kind = ChatResult::Kind::kOk;
  result->content = Scrub(std::move(content));
  if (!has_usage) {
    // No usage block: estimate it (recorded as estimated; the request's cost is then counted 0).
    result->usage_estimated = true;
    result->prompt_tokens = EstimateTokens(system) + EstimateTokens(user);
    result->completion_tokens = EstimateTokens(result->content);
  }
}

}  // namespace baton::llm
