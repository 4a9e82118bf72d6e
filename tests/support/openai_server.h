// OpenAiServer: a real HTTP server on 127.0.0.1 (cpp-httplib, background thread) that speaks the
// OpenAI Chat Completions API (POST /v1/chat/completions) for tests of the llm step.
//
// It answers deterministically: the reply content is MarkerFor(user message), e.g.
// "SUMMARY of 1234 chars: Summarise the video", plus a usage block whose prompt_tokens is the
// request body's size / 4 and completion_tokens 7. Fault modes make the first K requests fail in
// a chosen way (429 with Retry-After, 500, malformed JSON, empty choices, empty content, slow
// reply, 401 that echoes the bearer token like a careless server would), after which it answers
// normally. Every request is recorded (headers, parsed body, arrival time) for assertions.
//
// Thread-safety: all methods may be called from any thread while the server runs.
#pragma once

#include <chrono>
#include <climits>
#include <map>
#include <memory>
#include <mutex>
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

  int port() const { return port_; }
  std::string base_url() const;  // "http://127.0.0.1:PORT/v1"
  std::vector<Request> requests() const;
  size_t request_count() const;

  static std::string MarkerFor(const std::string& user_message);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace baton::testing
