// ChatClient: one chat call over libcurl, with the llm step's retry policy: an OpenAI-compatible
// Chat Completions call (POST {base_url}/chat/completions, Authorization: Bearer), or for
// provider anthropic a Messages call (POST {base_url}/messages, x-api-key and anthropic-version).
// The two differ only in the request body, the reply's shape and the auth headers (ChatRequest,
// ParseReply, AuthHeaders: shared with batch.cc); the request path, retries and usage are one.
//
// Retries with exponential backoff and jitter on HTTP 408/429/5xx, timeouts and connection
// errors, waiting at least the server's Retry-After (capped at max_backoff). Each request first
// passes the RequestGate (rates, budget) and reports its usage and rate-limit headers to it. Other 4xx fail at
// once, not retryable, with the status and the server's message. A reply that is not JSON, has no
// choices or an empty message is an error. Every message this class produces or logs has the API
// key scrubbed out. Cancellation (ctx.cancelled()) is checked by libcurl's progress callback and
// between tries.
//
// Thread-safety: a ChatClient belongs to one attempt (one thread); separate clients may run
// concurrently (each request uses its own curl easy handle).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "baton/step.h"
#include "steps/llm/llm_config.h"
#include "steps/llm/request_gate.h"

namespace baton::llm {

struct ChatResult {
  enum class Kind { kOk, kFailed, kCancelled };
  Kind kind = Kind::kFailed;
  std::string content;        // kOk: the assistant message
  int prompt_tokens = 0;      // from usage, or estimated when the server sent none
  int completion_tokens = 0;
  long long cached_tokens = 0;  // part of prompt_tokens served from the provider's cache
  bool usage_estimated = false;
  int tries = 0;              // HTTP requests made, retries included
  std::string error;          // kFailed: one line, key scrubbed
  bool retryable = true;      // kFailed: false when retrying the step cannot help (401, 400…)

  bool ok() const { return kind == Kind::kOk; }
};

// What a 2xx reply body says, parsed without IO (fuzz target fuzz/llm_reply.cc). `problem` is
// kNone when `content` holds the assistant message (text parts joined).
struct ChatReply {
  enum class Problem { kNone, kNotObject, kNoChoices, kEmptyContent };
  Problem problem = Problem::kNone;
  bool has_usage = false;      // usage.prompt_tokens present: the token counts below are the server's
  int prompt_tokens = 0;
  int completion_tokens = 0;
  long long cached_tokens = 0;
  std::string content;
  std::string finish_reason;   // "" when absent
};
ChatReply ParseChatReply(std::string_view body);
// The same for an Anthropic Messages reply: content[].text joined, stop_reason, and usage
// (prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens, of which
// cache_read_input_tokens are cached; completion_tokens = output_tokens). kNoChoices: no content.
ChatReply ParseMessagesReply(std::string_view body);
ChatReply ParseReply(LlmApi api, std::string_view body);

// The request body (no `stream`) for `system` + `user` in the config's API shape: Chat
// Completions {model, messages: [system, user], max_tokens, temperature}, or Messages {model,
// max_tokens, system, messages: [user], temperature}.
Json ChatRequest(const LlmConfig& config, const std::string& system, const std::string& user);
// "/chat/completions" or "/messages" (appended to base_url).
const char* ChatPath(const LlmConfig& config);
// The header lines that carry `key` ("Authorization: Bearer …", or "x-api-key: …" and
// "anthropic-version: …"); none for an empty key but Anthropic's version. The caller wipes them.
std::vector<std::string> AuthHeaders(const LlmConfig& config, const std::string& key);

class ChatClient {
 public:
  // `api_key` may be empty (no Authorization header). `ctx` and `gate` (may be null: no rates, no
  // budget, no usage totals) must outlive the client. With a gate, every HTTP request (retries
  // included) passes RequestGate::Before and After.
  ChatClient(const LlmConfig& config, std::string api_key, const StepContext& ctx, RequestGate* gate = nullptr);

  ChatResult Complete(const std::string& system, const std::string& user, const std::string& label);

  // Replaces every occurrence of the API key in `text` by "[redacted]".
  std::string Scrub(std::string text) const;

 private:
  struct HttpReply;
  HttpReply PostOnce(const std::string& body) const;
  // The parts of Complete (its flow is written at its top).
  std::string RequestBody(const std::string& system, const std::string& user) const;
  bool PassGate(const std::string& body, RequestGate::Ticket* ticket, ChatResult* result) const;
  void Settle(const RequestGate::Ticket& ticket, const HttpReply& reply, bool ok, long long prompt, long long cached,
              long long completion) const;
  bool Retryable(const HttpReply& reply, std::string* last_error, ChatResult* result) const;
  bool WaitToRetry(const HttpReply& reply, int attempt, int max_tries, const std::string& last_error,
                   const std::string& label) const;
  void ReadReply(const HttpReply& reply, const RequestGate::Ticket& ticket, const std::string& system,
                 const std::string& user, const std::string& label, ChatResult* result) const;
  void Log(LogLevel level, const std::string& msg) const;

  const LlmConfig& config_;
  const std::string api_key_;
  const StepContext& ctx_;
  const std::string url_;
  RequestGate* const gate_;
};

}  // namespace baton::llm
