// OpenAiServer: a real HTTP server on 127.0.0.1 (cpp-httplib, background thread) that speaks the
// OpenAI Chat Completions API (POST /v1/chat/completions) for tests of the llm step.
//
// It answers deterministically: the reply content is MarkerFor(user message), e.g.
// "SUMMARY of 1234 chars: Summarise the video", plus a usage block whose prompt_tokens is the
// request body's size / 4 and completion_tokens 7. Fault modes make the first K requests fail in
// a chosen way (429 with Retry-After, 500, malformed JSON, empty choices, empty content, slow
// reply, 401 that echoes the bearer token like a careless server would), after which it answers
// normally. Every request is recorded (headers, parsed body, arrival time, status) for assertions.
//
// Rate limits (SetRateLimits): like a provider, the server keeps a request bucket and a token
// bucket (each refilled continuously, holding at most one second's worth, starting full); a
// request costs 1 request and its usage (prompt_tokens + completion_tokens) in tokens. One that
// does not fit is answered 429 with x-ratelimit-remaining-*/reset-*, retry-after and
// retry-after-ms; every 2xx carries the x-ratelimit-remaining-* headers too.
//
// Batch API (OpenAI's, as its docs describe it): POST /v1/files (multipart: purpose=batch, file:
// JSONL of {custom_id, method, url, body}), POST /v1/batches ({input_file_id, endpoint,
// completion_window}), GET /v1/batches (list, newest first), GET /v1/batches/{id}, POST
// /v1/batches/{id}/cancel, GET /v1/files/{id}/content. A batch is `in_progress` until it has been
// polled (GET) `polls` times (BatchPlan), then `completed` (or `expired` with only its first half
// done, BatchPlan::expire_half): an output file with one line per done item ({id, custom_id,
// response: {status_code: 200, body: <a chat completion with usage>}, error: null}) in an order
// unlike the input's (reversed), and an error file for the rest ({custom_id, response: null,
// error: {code, message}}: batch_expired or batch_cancelled, or the item BatchPlan::fail_custom_id
// names). Each plan applies to the next batch created, then the default plan (done after 1 poll)
// comes back.
//
// Anthropic's API on the same server (as Anthropic's docs describe it; x-api-key and
// anthropic-version required, else 401/400 with {type: "error", error: {type, message}}): POST
// /v1/messages ({model, max_tokens, system?, messages}: the same faults, rate limits and
// recording as chat completions; reply {type: "message", content: [{type: "text", text:
// MarkerFor(user)}], stop_reason, usage: {input_tokens: body size / 4, output_tokens: 7}}), and
// Message Batches: POST /v1/messages/batches ({requests: [{custom_id, params}]}, custom_ids
// checked against ^[a-zA-Z0-9_-]{1,64}$ and unique), GET /v1/messages/batches (newest first,
// limit and after_id, has_more/last_id), GET /v1/messages/batches/{id} (processing_status
// in_progress until `polls` GETs, then ended; a cancel makes it canceling until the next GET; one
// FinishBatches made due has ended by the time it is listed),
// POST /v1/messages/batches/{id}/cancel, GET /v1/messages/batches/{id}/results (its results_url:
// JSONL of {custom_id, result: {type: succeeded, message} | {type: errored, error} | {type:
// expired} | {type: canceled}}, in reverse order). The same BatchPlan applies (expire_half: the
// second half expired; a cancel: the second half canceled), with errored_items/expired_items.
// batches_created, batch_items and batch_usage count both APIs' batches (an Anthropic item's
// usage as prompt_tokens = input_tokens, completion_tokens = output_tokens).
//
// Thread-safety: all methods may be called from any thread while the server runs.
#pragma once

#include <chrono>
#include <climits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace baton::testing {

class OpenAiServer {
 public:
  enum class Fault {
    kNone,
    kRateLimit,     // 429 with Retry-After: retry_after_seconds
    kServerError,   // 500 with an error body
    kMalformed,     // 200 with a body that is not JSON
    kEmptyChoices,  // 200 with "choices": []
    kEmptyContent,  // 200 with a message whose content is ""
    kSlow,          // sleeps slow_seconds before a normal reply
    kUnauthorized,  // 401 whose error message repeats the token it was sent
  };

  struct Request {
    std::map<std::string, std::string> headers;  // names lower-cased
    nlohmann::json body;                         // null when the body was not JSON
    std::string raw_body;
    std::chrono::steady_clock::time_point at;
    std::string path;                            // "/v1/chat/completions" or "/v1/messages"
    int status = 200;                            // 429 when the rate limits refused it
    nlohmann::json usage;                        // the `usage` of a normal 200 reply, else null
    std::string user_message() const;            // content of the last "user" message
  };

  OpenAiServer();   // starts listening; throws std::runtime_error when it cannot
  ~OpenAiServer();  // stops and joins (a slow reply in progress is cut short)
  OpenAiServer(const OpenAiServer&) = delete;
  OpenAiServer& operator=(const OpenAiServer&) = delete;

  // The first `count` requests from now get `fault`; later ones are answered normally.
  void SetFault(Fault fault, int count = INT_MAX);
  void set_retry_after_seconds(int s);
  void set_slow_seconds(double s);
  // Provider-style limits (see above); 0 = unlimited.
  void SetRateLimits(double requests_per_second, double tokens_per_second);
  // A provider that spaces requests strictly: one arriving less than `seconds` after the previous
  // one (whatever became of it) is answered 429 with Retry-After (whole seconds, rounded up) and
  // retry-after-ms for the rest of the interval. 0 = off. Counted in rate_limited_count().
  void SetMinInterval(double seconds);
  size_t rate_limited_count() const;  // requests answered 429 by the rate limits
  int port() const { return port_; }
  std::string base_url() const;  // "http://127.0.0.1:PORT/v1"
  std::vector<Request> requests() const;
  size_t request_count() const;

  static std::string MarkerFor(const std::string& user_message);

  struct BatchPlan {
    int polls = 1;                   // GETs before it ends
    bool expire_half = false;        // ends `expired`, its first half done
    std::string fail_custom_id;      // the item whose custom_id starts with this ends in the error file
    std::set<size_t> errored_items;  // Anthropic: the items at these positions (request order) end errored
    std::set<size_t> expired_items;  // Anthropic: ... end expired
    double create_reply_delay = 0;   // Anthropic: the batch exists at once, its create's reply comes
                                     // this many seconds later (a create whose answer is lost)
  };
  // Anthropic batches created so far (the ids, oldest first).
  std::vector<std::string> message_batches() const;
  void SetNextBatchPlan(BatchPlan plan);
  // Every batch still in progress ends at its next poll.
  void FinishBatches();
  size_t files_created() const;
  size_t batches_created() const;
  // The usage of every batch item answered (prompt_tokens, completion_tokens), in answer order.
  std::vector<nlohmann::json> batch_usage() const;
  // Every batch's input lines' custom_ids, by batch in creation order.
  std::vector<std::vector<std::string>> batch_items() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace baton::testing
