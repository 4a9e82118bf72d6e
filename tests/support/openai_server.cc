#include "support/openai_server.h"

#include <httplib.h>

#include <atomic>
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

  void Handle(const httplib::Request& req, httplib::Response& res);
};

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

void OpenAiServer::Impl::Handle(const httplib::Request& req, httplib::Response& res) {
  Request r;
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
  {
    std::lock_guard lock(mu);
    requests.push_back(r);
    if (fault_left > 0) {
      f = fault;
      --fault_left;
    }
    retry_after_now = retry_after;
    slow_now = slow_seconds;
  }
  auto error = [&](int status, const std::string& type, const std::string& message) {
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
  res.set_content(reply.dump(), "application/json");
}

OpenAiServer::OpenAiServer() : impl_(std::make_unique<Impl>()) {
  impl_->server.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    impl_->Handle(req, res);
  });
  port_ = impl_->server.bind_to_any_port("127.0.0.1");
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

std::string OpenAiServer::base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

std::vector<OpenAiServer::Request> OpenAiServer::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->requests;
}

size_t OpenAiServer::request_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->requests.size();
}

}  // namespace baton::testing
