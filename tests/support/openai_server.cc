#include "support/openai_server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <ctime>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

namespace baton::testing {

struct OpenAiServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> stopping{false};
  mutable std::mutex mu;
  std::vector<Request> requests;
  Fault fault = Fault::kNone;
  int fault_left = 0;
  int retry_after = 1;
  double slow_seconds = 2;
  struct Limit {
    double rate = 0;  // per second; 0 = unlimited
    double level = 0;
    std::chrono::steady_clock::time_point ts;
    void Refill(std::chrono::steady_clock::time_point now) {
      level = std::min(rate, level + std::chrono::duration<double>(now - ts).count() * rate);
      ts = now;
    }
    double SecondsFor(double amount) const { return amount <= level ? 0 : (amount - level) / rate; }
  };
  Limit req_limit, tok_limit;
  double min_interval = 0;
  std::chrono::steady_clock::time_point last_arrival;
  bool any_arrival = false;
  size_t rate_limited = 0;

  void Handle(const httplib::Request& req, httplib::Response& res, bool anthropic = false);
  std::string base;  // "http://127.0.0.1:PORT"

  // The Batch API (see the header).
  struct File {
    std::string content, purpose, filename;
  };
  struct Batch {
    nlohmann::json object;
    std::vector<nlohmann::json> lines;  // the input file's lines (Anthropic: the requests)
    BatchPlan plan;
    int polls = 0;
    bool anthropic = false;
    std::string results;  // Anthropic: the results JSONL once ended
  };
  std::map<std::string, File> files;
  std::vector<std::string> batch_order;
  std::map<std::string, Batch> batches;
  BatchPlan next_plan;
  size_t files_made = 0, batches_made = 0;
  std::vector<nlohmann::json> usage_answered;
  void EndBatch(Batch& b, const std::string& status);  // REQUIRES: mu held
  void EndMessageBatch(Batch& b);                      // REQUIRES: mu held
  // Anthropic's headers; false with `res` set to the error when they are missing.
  static bool AnthropicAuth(const httplib::Request& req, httplib::Response& res) {
    if (req.get_header_value("x-api-key").empty()) {
      AnthropicError(res, 401, "authentication_error", "x-api-key header is required");
      return false;
    }
    if (req.get_header_value("anthropic-version").empty()) {
      AnthropicError(res, 400, "invalid_request_error", "anthropic-version header is required");
      return false;
    }
    return true;
  }
  static void AnthropicError(httplib::Response& res, int status, const std::string& type, const std::string& message) {
    res.status = status;
    res.set_content(nlohmann::json{{"type", "error"}, {"error", {{"type", type}, {"message", message}}}}.dump(),
                    "application/json");
  }
  static std::string Rfc3339(std::chrono::system_clock::time_point t) {
    const std::time_t tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
  }
  static void Error(httplib::Response& res, int status, const std::string& message) {
    res.status = status;
    res.set_content(nlohmann::json{{"error", {{"message", message}, {"type", "invalid_request_error"}}}}.dump(),
                    "application/json");
  }
};

void OpenAiServer::Impl::EndBatch(Batch& b, const std::string& status) {
  const size_t n = b.lines.size();
  const size_t done = status == "completed" ? n : n / 2;
  std::string out, err;
  int completed = 0, failed = 0;
  // Answered in reverse order: results must be mapped back by custom_id, never by position.
  for (size_t k = n; k-- > 0;) {
    const nlohmann::json& line = b.lines[k];
    const std::string id = line.value("custom_id", "");
    const bool fail = !b.plan.fail_custom_id.empty() && id.rfind(b.plan.fail_custom_id, 0) == 0;
    if (k >= done || fail) {
      const std::string code = fail ? "server_error" : status == "cancelled" ? "batch_cancelled" : "batch_expired";
      err += nlohmann::json{{"id", "batch_req_e" + std::to_string(k)},
                            {"custom_id", id},
                            {"response", nullptr},
                            {"error", {{"code", code}, {"message", fail ? "the item failed" : "not done in time"}}}}
                 .dump() +
             "\n";
      ++failed;
      continue;
    }
    Request r;
    r.body = line.value("body", nlohmann::json::object());
    const std::string body = r.body.dump();
    const nlohmann::json usage = {{"prompt_tokens", body.size() / 4},
                                  {"completion_tokens", 7},
                                  {"total_tokens", body.size() / 4 + 7}};
    usage_answered.push_back(usage);
    const nlohmann::json reply = {
        {"id", "chatcmpl-b" + std::to_string(k)},
        {"object", "chat.completion"},
        {"model", r.body.value("model", "")},
        {"choices", {{{"index", 0},
                      {"message", {{"role", "assistant"}, {"content", MarkerFor(r.user_message())}}},
                      {"finish_reason", "stop"}}}},
        {"usage", usage}};
    out += nlohmann::json{{"id", "batch_req_" + std::to_string(k)},
                          {"custom_id", id},
                          {"response",
                           {{"status_code", 200}, {"request_id", "req_" + std::to_string(k)}, {"body", reply}}},
                          {"error", nullptr}}
               .dump() +
           "\n";
    ++completed;
  }
  auto add_file = [&](const std::string& content) {
    const std::string fid = "file-out" + std::to_string(files.size() + 1);
    files[fid] = {content, "batch_output", fid + ".jsonl"};
    return fid;
  };
  b.object["status"] = status;
  b.object["output_file_id"] = completed > 0 ? nlohmann::json(add_file(out)) : nlohmann::json(nullptr);
  b.object["error_file_id"] = failed > 0 ? nlohmann::json(add_file(err)) : nlohmann::json(nullptr);
  b.object["request_counts"] = {{"total", n}, {"completed", completed}, {"failed", failed}};
}

void OpenAiServer::Impl::EndMessageBatch(Batch& b) {
  const bool canceled = b.object["processing_status"] == "canceling";
  const size_t n = b.lines.size();
  const size_t done = canceled || b.plan.expire_half ? n / 2 : n;
  std::string out;
  nlohmann::json counts = {{"processing", 0}, {"succeeded", 0}, {"errored", 0}, {"canceled", 0}, {"expired", 0}};
  // In reverse order: results must be mapped back by custom_id, never by position.
  for (size_t k = n; k-- > 0;) {
    const nlohmann::json& line = b.lines[k];
    const std::string id = line.value("custom_id", "");
    nlohmann::json result;
    if (b.plan.errored_items.count(k)) {
      result = {{"type", "errored"},
                {"error", {{"type", "error"}, {"error", {{"type", "api_error"}, {"message", "the item failed"}}}}}};
    } else if (b.plan.expired_items.count(k) || (k >= done && !canceled)) {
      result = {{"type", "expired"}};
    } else if (k >= done) {
      result = {{"type", "canceled"}};
    } else {
      Request r;
      r.body = line.value("params", nlohmann::json::object());
      const nlohmann::json usage = {{"input_tokens", r.body.dump().size() / 4}, {"output_tokens", 7}};
      usage_answered.push_back({{"prompt_tokens", usage["input_tokens"]}, {"completion_tokens", 7}});
      result = {{"type", "succeeded"},
                {"message",
                 {{"id", "msg_b" + std::to_string(k)},
                  {"type", "message"},
                  {"role", "assistant"},
                  {"model", r.body.value("model", "")},
                  {"content", {{{"type", "text"}, {"text", MarkerFor(r.user_message())}}}},
                  {"stop_reason", "end_turn"},
                  {"usage", usage}}}};
    }
    const std::string type = result["type"];
    counts[type] = counts[type].get<int>() + 1;
    out += nlohmann::json{{"custom_id", id}, {"result", result}}.dump() + "\n";
  }
  b.results = out;
  const std::string id = b.object["id"];
  b.object["processing_status"] = "ended";
  b.object["request_counts"] = counts;
  b.object["ended_at"] = Rfc3339(std::chrono::system_clock::now());
  b.object["results_url"] = base + "/v1/messages/batches/" + id + "/results";
}

std::string OpenAiServer::Request::user_message() const {
  if (!body.is_object() || !body.contains("messages") || !body["messages"].is_array()) return "";
  std::string last;
  for (const auto& m : body["messages"]) {
    if (m.value("role", "") == "user" && m.contains("content") && m["content"].is_string()) {
      last = m["content"].get<std::string>();
    }
  }
  return last;
}

std::string OpenAiServer::MarkerFor(const std::string& user) {
  std::istringstream in(user);
  std::string word, first;
  for (int i = 0; i < 4 && in >> word; ++i) first += (first.empty() ? "" : " ") + word;
  return "SUMMARY of " + std::to_string(user.size()) + " chars: " + first;
}

void OpenAiServer::Impl::Handle(const httplib::Request& req, httplib::Response& res, bool anthropic) {
  if (anthropic && !AnthropicAuth(req, res)) return;
  Request r;
  r.path = req.path;
  for (const auto& [name, value] : req.headers) {
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[lower] = value;
  }
  r.raw_body = req.body;
  r.body = nlohmann::json::parse(req.body, nullptr, false);
  if (r.body.is_discarded()) r.body = nullptr;
  r.at = std::chrono::steady_clock::now();
  Fault f = Fault::kNone;
  int retry_after_now;
  double slow_now;
  // The usage this request will report, charged to the token limit up front.
  const double tokens = static_cast<double>(req.body.size() / 4 + 7);
  std::map<std::string, std::string> limit_headers;
  bool limited = false;
  size_t index = 0;
  {
    std::lock_guard lock(mu);
    if (min_interval > 0) {
      const double since = any_arrival ? std::chrono::duration<double>(r.at - last_arrival).count() : 1e9;
      last_arrival = r.at;
      any_arrival = true;
      if (since < min_interval) {
        limited = true;
        ++rate_limited;
        r.status = 429;
        const double wait = min_interval - since;
        limit_headers["retry-after"] = std::to_string(static_cast<long>(std::ceil(wait)));
        limit_headers["retry-after-ms"] = std::to_string(static_cast<long>(std::ceil(wait * 1000)));
      }
    }
    if (!limited && (req_limit.rate > 0 || tok_limit.rate > 0)) {
      req_limit.Refill(r.at);
      tok_limit.Refill(r.at);
      const bool req_ok = req_limit.rate == 0 || req_limit.level >= 1;
      const bool tok_ok = tok_limit.rate == 0 || tok_limit.level >= tokens;
      if (req_ok && tok_ok) {
        req_limit.level -= 1;
        tok_limit.level -= tokens;
      } else {
        limited = true;
        ++rate_limited;
        r.status = 429;
      }
      auto ms = [](double s) { return std::to_string(static_cast<long>(std::ceil(s * 1000))) + "ms"; };
      if (req_limit.rate > 0) {
        limit_headers["x-ratelimit-limit-requests"] = std::to_string(static_cast<long>(req_limit.rate));
        limit_headers["x-ratelimit-remaining-requests"] =
            std::to_string(static_cast<long>(std::floor(req_limit.level)));
        limit_headers["x-ratelimit-reset-requests"] = ms((req_limit.rate - req_limit.level) / req_limit.rate);
      }
      if (tok_limit.rate > 0) {
        limit_headers["x-ratelimit-limit-tokens"] = std::to_string(static_cast<long>(tok_limit.rate));
        limit_headers["x-ratelimit-remaining-tokens"] = std::to_string(static_cast<long>(std::floor(tok_limit.level)));
        limit_headers["x-ratelimit-reset-tokens"] = ms((tok_limit.rate - tok_limit.level) / tok_limit.rate);
      }
      if (limited) {
        const double wait = std::max(req_limit.rate > 0 ? req_limit.SecondsFor(1) : 0.0,
                                     tok_limit.rate > 0 ? tok_limit.SecondsFor(tokens) : 0.0);
        limit_headers["retry-after"] = std::to_string(static_cast<long>(std::ceil(wait)));
        limit_headers["retry-after-ms"] = std::to_string(static_cast<long>(std::ceil(wait * 1000)));
      }
    }
    index = requests.size();
    requests.push_back(r);
    if (limited) {
      for (const auto& [k, v] : limit_headers) res.set_header(k, v);
      res.status = 429;
      res.set_content(R"({"error": {"message": "Rate limit reached", "type": "requests"}})", "application/json");
      return;
    }
    if (fault_left > 0) {
      f = fault;
      --fault_left;
    }
    retry_after_now = retry_after;
    slow_now = slow_seconds;
  }
  auto error = [&](int status, const std::string& type, const std::string& message) {
    if (anthropic) return AnthropicError(res, status, type, message);
    res.status = status;
    res.set_content(nlohmann::json{{"error", {{"message", message}, {"type", type}}}}.dump(), "application/json");
  };
  switch (f) {
    case Fault::kRateLimit:
      res.set_header("Retry-After", std::to_string(retry_after_now));
      return error(429, "rate_limit_exceeded", "Rate limit reached, try again later");
    case Fault::kServerError:
      return error(500, "server_error", "The server had an error while processing your request");
    case Fault::kUnauthorized: {
      std::string token = r.headers.count("authorization") ? r.headers["authorization"] : "(none)";
      if (token.rfind("Bearer ", 0) == 0) token = token.substr(7);
      if (anthropic) token = r.headers["x-api-key"];
      return error(401, "invalid_request_error", "Incorrect API key provided: " + token);
    }
    case Fault::kMalformed:
      res.status = 200;
      res.set_content("{\"choices\": [ this is not json", "application/json");
      return;
    case Fault::kSlow: {
      const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(slow_now);
      while (!stopping && std::chrono::steady_clock::now() < end) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      break;
    }
    default:
      break;
  }
  if (!r.body.is_object()) return error(400, "invalid_request_error", "body is not JSON");
  if (anthropic) {
    if (!r.body.contains("max_tokens") || !r.body.contains("messages"))
      return error(400, "invalid_request_error", "max_tokens and messages are required");
    nlohmann::json content = nlohmann::json::array();
    if (f != Fault::kEmptyChoices)
      content.push_back({{"type", "text"}, {"text", f == Fault::kEmptyContent ? "" : MarkerFor(r.user_message())}});
    const nlohmann::json reply = {{"id", "msg_test"},
                                  {"type", "message"},
                                  {"role", "assistant"},
                                  {"model", r.body.value("model", "")},
                                  {"content", content},
                                  {"stop_reason", "end_turn"},
                                  {"usage", {{"input_tokens", req.body.size() / 4}, {"output_tokens", 7}}}};
    res.status = 200;
    for (const auto& [k, v] : limit_headers) res.set_header(k, v);
    res.set_content(reply.dump(), "application/json");
    if (f == Fault::kNone || f == Fault::kSlow) {
      std::lock_guard lock(mu);
      requests[index].usage = reply["usage"];
    }
    return;
  }
  nlohmann::json message = {{"role", "assistant"}, {"content", MarkerFor(r.user_message())}};
  nlohmann::json choices = nlohmann::json::array();
  if (f == Fault::kEmptyContent) message["content"] = "";
  if (f != Fault::kEmptyChoices) {
    choices.push_back({{"index", 0}, {"message", message}, {"finish_reason", "stop"}});
  }
  const nlohmann::json reply = {
      {"id", "chatcmpl-test"},
      {"object", "chat.completion"},
      {"model", r.body.value("model", "")},
      {"choices", choices},
      {"usage", {{"prompt_tokens", req.body.size() / 4}, {"completion_tokens", 7},
                 {"total_tokens", req.body.size() / 4 + 7}}}};
  res.status = 200;
  for (const auto& [k, v] : limit_headers) res.set_header(k, v);
  res.set_content(reply.dump(), "application/json");
  if (f == Fault::kNone || f == Fault::kSlow) {
    std::lock_guard lock(mu);
    requests[index].usage = reply["usage"];
  }
}

OpenAiServer::OpenAiServer() : impl_(std::make_unique<Impl>()) {
  impl_->server.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    impl_->Handle(req, res);
  });
  Impl& m = *impl_;
  m.server.Post("/v1/files", [&m](const httplib::Request& req, httplib::Response& res) {
    if (!req.has_file("file") || !req.has_file("purpose")) return Impl::Error(res, 400, "file and purpose required");
    const auto file = req.get_file_value("file");
    const std::string purpose = req.get_file_value("purpose").content;
    if (purpose != "batch") return Impl::Error(res, 400, "purpose must be batch");
    std::lock_guard lock(m.mu);
    const std::string id = "file-in" + std::to_string(++m.files_made);
    m.files[id] = {file.content, purpose, file.filename};
    res.set_content(nlohmann::json{{"id", id}, {"object", "file"}, {"bytes", file.content.size()},
                                   {"filename", file.filename}, {"purpose", purpose}, {"created_at", 1700000000}}
                        .dump(),
                    "application/json");
  });
  m.server.Post("/v1/batches", [&m](const httplib::Request& req, httplib::Response& res) {
    const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("input_file_id")) return Impl::Error(res, 400, "input_file_id required");
    if (body.value("endpoint", "") != "/v1/chat/completions") return Impl::Error(res, 400, "unsupported endpoint");
    std::lock_guard lock(m.mu);
    const std::string fid = body.value("input_file_id", "");
    auto f = m.files.find(fid);
    if (f == m.files.end()) return Impl::Error(res, 404, "no such file: " + fid);
    Impl::Batch b;
    std::istringstream in(f->second.content);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.contains("custom_id")) return Impl::Error(res, 400, "bad input line");
      b.lines.push_back(std::move(j));
    }
    const std::string id = "batch_" + std::to_string(++m.batches_made);
    b.plan = m.next_plan;
    m.next_plan = BatchPlan{};
    b.object = {{"id", id}, {"object", "batch"}, {"endpoint", "/v1/chat/completions"}, {"input_file_id", fid},
                {"completion_window", body.value("completion_window", "24h")}, {"status", "in_progress"},
                {"output_file_id", nullptr}, {"error_file_id", nullptr}, {"created_at", 1700000000},
                {"metadata", body.value("metadata", nlohmann::json::object())},
                {"request_counts", {{"total", b.lines.size()}, {"completed", 0}, {"failed", 0}}}};
    res.set_content(b.object.dump(), "application/json");
    m.batch_order.push_back(id);
    m.batches[id] = std::move(b);
  });
  m.server.Get("/v1/batches", [&m](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(m.mu);
    nlohmann::json data = nlohmann::json::array();
    for (auto it = m.batch_order.rbegin(); it != m.batch_order.rend(); ++it)
      if (!m.batches[*it].anthropic) data.push_back(m.batches[*it].object);
    res.set_content(nlohmann::json{{"object", "list"}, {"data", data}, {"has_more", false}}.dump(), "application/json");
  });
  m.server.Get(R"(/v1/batches/([^/]+))", [&m](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(m.mu);
    auto it = m.batches.find(req.matches[1]);
    if (it == m.batches.end()) return Impl::Error(res, 404, "no such batch");
    Impl::Batch& b = it->second;
    if (b.object["status"] == "in_progress" && ++b.polls >= b.plan.polls)
      m.EndBatch(b, b.plan.expire_half ? "expired" : "completed");
    res.set_content(b.object.dump(), "application/json");
  });
  m.server.Post(R"(/v1/batches/([^/]+)/cancel)", [&m](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(m.mu);
    auto it = m.batches.find(req.matches[1]);
    if (it == m.batches.end()) return Impl::Error(res, 404, "no such batch");
    if (it->second.object["status"] == "in_progress") m.EndBatch(it->second, "cancelled");
    res.set_content(it->second.object.dump(), "application/json");
  });
  m.server.Get(R"(/v1/files/([^/]+)/content)", [&m](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(m.mu);
    auto it = m.files.find(req.matches[1]);
    if (it == m.files.end()) return Impl::Error(res, 404, "no such file");
    res.set_content(it->second.content, "application/jsonl");
  });
  // Anthropic's Messages API and Message Batches (see the header).
  m.server.Post("/v1/messages",
                [&m](const httplib::Request& req, httplib::Response& res) { m.Handle(req, res, true); });
  m.server.Post("/v1/messages/batches", [&m](const httplib::Request& req, httplib::Response& res) {
    if (!Impl::AnthropicAuth(req, res)) return;
    const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.value("requests", nlohmann::json()).is_array() || body["requests"].empty())
      return Impl::AnthropicError(res, 400, "invalid_request_error", "requests: a non-empty list is required");
    static const std::regex kCustomId("^[a-zA-Z0-9_-]{1,64}$");
    Impl::Batch b;
    b.anthropic = true;
    std::set<std::string> seen;
    for (const auto& r : body["requests"]) {
      const std::string id = r.is_object() && r.value("custom_id", nlohmann::json()).is_string()
                                 ? r["custom_id"].get<std::string>() : "";
      if (!std::regex_match(id, kCustomId) || !seen.insert(id).second)
        return Impl::AnthropicError(res, 400, "invalid_request_error", "requests: bad or repeated custom_id: " + id);
      const nlohmann::json p = r.value("params", nlohmann::json());
      if (!p.is_object() || !p.contains("model") || !p.contains("max_tokens") || !p.contains("messages"))
        return Impl::AnthropicError(res, 400, "invalid_request_error", "params: model, max_tokens, messages required");
      b.lines.push_back(r);
    }
    std::unique_lock lock(m.mu);
    const std::string id = "msgbatch_" + std::to_string(++m.batches_made);
    b.plan = m.next_plan;
    m.next_plan = BatchPlan{};
    const double delay = b.plan.create_reply_delay;
    const auto now = std::chrono::system_clock::now();
    b.object = {{"id", id}, {"type", "message_batch"}, {"processing_status", "in_progress"},
                {"request_counts", {{"processing", b.lines.size()}, {"succeeded", 0}, {"errored", 0},
                                    {"canceled", 0}, {"expired", 0}}},
                {"ended_at", nullptr}, {"created_at", Impl::Rfc3339(now)},
                {"expires_at", Impl::Rfc3339(now + std::chrono::hours(24))}, {"archived_at", nullptr},
                {"cancel_initiated_at", nullptr}, {"results_url", nullptr}};
    res.set_content(b.object.dump(), "application/json");
    m.batch_order.push_back(id);
    m.batches[id] = std::move(b);
    lock.unlock();
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(delay);
    while (!m.stopping && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  m.server.Get("/v1/messages/batches", [&m](const httplib::Request& req, httplib::Response& res) {
    if (!Impl::AnthropicAuth(req, res)) return;
    const size_t limit = req.has_param("limit") ? std::stoul(req.get_param_value("limit")) : 20;
    const std::string after = req.get_param_value("after_id");
    std::lock_guard lock(m.mu);
    nlohmann::json data = nlohmann::json::array();
    bool started = after.empty(), more = false;
    for (auto it = m.batch_order.rbegin(); it != m.batch_order.rend(); ++it) {
      Impl::Batch& b = m.batches[*it];
      if (!b.anthropic) continue;
      // A batch due to end (FinishBatches) has ended by the time it is listed.
      if (b.object["processing_status"] == "in_progress" && b.polls >= b.plan.polls) m.EndMessageBatch(b);
      if (!started) {
        started = *it == after;
        continue;
      }
      if (data.size() == limit) {
        more = true;
        break;
      }
      data.push_back(b.object);
    }
    res.set_content(nlohmann::json{{"data", data},
                                   {"has_more", more},
                                   {"first_id", data.empty() ? nlohmann::json() : data.front()["id"]},
                                   {"last_id", data.empty() ? nlohmann::json() : data.back()["id"]}}
                        .dump(),
                    "application/json");
  });
  m.server.Get(R"(/v1/messages/batches/([^/]+))", [&m](const httplib::Request& req, httplib::Response& res) {
    if (!Impl::AnthropicAuth(req, res)) return;
    std::lock_guard lock(m.mu);
    auto it = m.batches.find(req.matches[1]);
    if (it == m.batches.end() || !it->second.anthropic)
      return Impl::AnthropicError(res, 404, "not_found_error", "no such batch");
    Impl::Batch& b = it->second;
    if (b.object["processing_status"] == "canceling" ||
        (b.object["processing_status"] == "in_progress" && ++b.polls >= b.plan.polls))
      m.EndMessageBatch(b);
    res.set_content(b.object.dump(), "application/json");
  });
  m.server.Post(R"(/v1/messages/batches/([^/]+)/cancel)", [&m](const httplib::Request& req, httplib::Response& res) {
    if (!Impl::AnthropicAuth(req, res)) return;
    std::lock_guard lock(m.mu);
    auto it = m.batches.find(req.matches[1]);
    if (it == m.batches.end() || !it->second.anthropic)
      return Impl::AnthropicError(res, 404, "not_found_error", "no such batch");
    nlohmann::json& o = it->second.object;
    if (o["processing_status"] == "in_progress") {
      o["processing_status"] = "canceling";
      o["cancel_initiated_at"] = Impl::Rfc3339(std::chrono::system_clock::now());
    }
    res.set_content(o.dump(), "application/json");
  });
  m.server.Get(R"(/v1/messages/batches/([^/]+)/results)", [&m](const httplib::Request& req, httplib::Response& res) {
    if (!Impl::AnthropicAuth(req, res)) return;
    std::lock_guard lock(m.mu);
    auto it = m.batches.find(req.matches[1]);
    if (it == m.batches.end() || !it->second.anthropic || it->second.object["processing_status"] != "ended")
      return Impl::AnthropicError(res, 404, "not_found_error", "no results for this batch (yet)");
    res.set_content(it->second.results, "application/binary");
  });
  port_ = impl_->server.bind_to_any_port("127.0.0.1");
  impl_->base = "http://127.0.0.1:" + std::to_string(port_);
  if (port_ <= 0) throw std::runtime_error("OpenAiServer: cannot bind 127.0.0.1");
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
  for (int i = 0; i < 500 && !impl_->server.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

OpenAiServer::~OpenAiServer() {
  impl_->stopping = true;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void OpenAiServer::SetFault(Fault fault, int count) {
  std::lock_guard lock(impl_->mu);
  impl_->fault = fault;
  impl_->fault_left = fault == Fault::kNone ? 0 : count;
}

void OpenAiServer::set_retry_after_seconds(int s) {
  std::lock_guard lock(impl_->mu);
  impl_->retry_after = s;
}

void OpenAiServer::set_slow_seconds(double s) {
  std::lock_guard lock(impl_->mu);
  impl_->slow_seconds = s;
}

void OpenAiServer::SetRateLimits(double requests_per_second, double tokens_per_second) {
  std::lock_guard lock(impl_->mu);
  const auto now = std::chrono::steady_clock::now();
  impl_->req_limit = {requests_per_second, requests_per_second, now};
  impl_->tok_limit = {tokens_per_second, tokens_per_second, now};
}

void OpenAiServer::SetMinInterval(double seconds) {
  std::lock_guard lock(impl_->mu);
  impl_->min_interval = seconds;
  impl_->any_arrival = false;
}

size_t OpenAiServer::rate_limited_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->rate_limited;
}

std::string OpenAiServer::base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

std::vector<OpenAiServer::Request> OpenAiServer::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->requests;
}

void OpenAiServer::SetNextBatchPlan(BatchPlan plan) {
  std::lock_guard lock(impl_->mu);
  impl_->next_plan = std::move(plan);
}

void OpenAiServer::FinishBatches() {
  std::lock_guard lock(impl_->mu);
  for (auto& [id, b] : impl_->batches) b.plan.polls = 0;
}

size_t OpenAiServer::files_created() const {
  std::lock_guard lock(impl_->mu);
  return impl_->files_made;
}

size_t OpenAiServer::batches_created() const {
  std::lock_guard lock(impl_->mu);
  return impl_->batches_made;
}

std::vector<nlohmann::json> OpenAiServer::batch_usage() const {
  std::lock_guard lock(impl_->mu);
  return impl_->usage_answered;
}

std::vector<std::vector<std::string>> OpenAiServer::batch_items() const {
  std::lock_guard lock(impl_->mu);
  std::vector<std::vector<std::string>> out;
  for (const auto& id : impl_->batch_order) {
    out.emplace_back();
    for (const auto& l : impl_->batches.at(id).lines) out.back().push_back(l.value("custom_id", ""));
  }
  return out;
}

std::vector<std::string> OpenAiServer::message_batches() const {
  std::lock_guard lock(impl_->mu);
  std::vector<std::string> out;
  for (const auto& id : impl_->batch_order)
    if (impl_->batches.at(id).anthropic) out.push_back(id);
  return out;
}

size_t OpenAiServer::request_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->requests.size();
}

}  // namespace baton::testing
