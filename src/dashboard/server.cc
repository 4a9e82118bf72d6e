#include "dashboard/server.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "dashboard/assets.h"
#include "dashboard/request.h"
#include "dashboard/server_impl.h"

namespace baton::dashboard {
namespace {

std::string ContentType(std::string_view path) {
  auto ends = [&](std::string_view ext) {
    return path.size() >= ext.size() && path.substr(path.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

// The page may talk only to this server: no CDN, fonts or beacons, even by mistake.
constexpr const char* kAppPolicy =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

}  // namespace

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Every byte of the longer string is visited whatever the contents; only lengths show.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  // Keep the compiler from short-circuiting the loop on the first difference.
  volatile unsigned char sink = diff;
  return sink == 0;
}

Result<Address> ParseAddress(const std::string& text) {
  Address a;
  std::string port_text;
  if (text.empty()) {
    a.host = "127.0.0.1";
  } else if (text[0] == '[') {  // [v6]:port
    const size_t close = text.find(']');
    if (close == std::string::npos) {
      return Status::Invalid(fmt::format("dashboard address {}: missing ']'", text));
    }
    a.host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') {
        return Status::Invalid(fmt::format("dashboard address {}: expected :PORT after ']'", text));
      }
      port_text = text.substr(close + 2);
    }
  } else if (std::all_of(text.begin(), text.end(),
                         [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    a.host = "127.0.0.1";
    port_text = text;
  } else {
    const size_t colon = text.rfind(':');
    a.host = text.substr(0, colon);
    if (colon != std::string::npos) port_text = text.substr(colon + 1);
    if (a.host.empty()) a.host = "127.0.0.1";
  }
  if (!port_text.empty()) {
    char* end = nullptr;
    const long p = std::strtol(port_text.c_str(), &end, 10);
    if (*end != '\0' || p < 0 || p > 65535) {
      return Status::Invalid(
          fmt::format("dashboard address {}: port '{}' is not a number from 0 to 65535", text, port_text));
    }
    a.port = static_cast<int>(p);
  } else if (text.find(':') != std::string::npos && text[0] != '[') {
    return Status::Invalid(fmt::format("dashboard address {}: missing port after ':'", text));
  }
  a.loopback = IsLoopbackHost(a.host);
  return a;
}

DashboardServer::Impl::Auth DashboardServer::Impl::Authorise(const httplib::Request& req) const {
  if (options.token.empty()) return Auth::kOk;
  std::string given;
  const std::string header = req.get_header_value("Authorization");
  if (header.rfind("Bearer ", 0) == 0) given = header.substr(7);
  else given = CookieValue(req.get_header_value("Cookie"), "token");
  if (given.empty()) return Auth::kMissing;
  return ConstantTimeEquals(given, options.token) ? Auth::kOk : Auth::kWrong;
}

// On every bind (DNS rebinding): a page on another site that rebinds its name to this server's
// address sends its own name as Host. Loopback binds take loopback names only; others take the
// bound address, this machine's names, IP literals (which cannot be rebound) and the names the
// operator listed.
bool HostAllowedFor(const std::string& host_header, const Address& bound, const std::vector<std::string>& allowed) {
  const std::string host = HostPart(host_header, true);
  if (IsLoopbackHost(host)) return true;
  if (bound.loopback) return false;
  if (host == bound.host) return true;
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1) return true;
  for (const auto& name : allowed)
    if (name == host) return true;
  return false;
}

bool DashboardServer::Impl::HostAllowed(const httplib::Request& req) const {
  return HostAllowedFor(req.get_header_value("Host"), address, allowed_hosts);
}

void ReplyJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(body.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

DashboardServer::DashboardServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DashboardServer::~DashboardServer() { Stop(); }

int DashboardServer::port() const { return impl_->port; }

std::string DashboardServer::url() const {
  const std::string& h = impl_->address.host;
  const bool v6 = h.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}/", v6 ? "[" : "", h, v6 ? "]" : "", impl_->port);
}

const EventHub& DashboardServer::hub() const { return *impl_->hub; }

void DashboardServer::Stop() {
  Impl& m = *impl_;
  {
    MutexLock lock(&m.stop_mu);
    if (m.stopping) return;
    m.stopping = true;
  }
  m.stop_cv.SignalAll();
  m.hub->Close();  // live streams end, freeing their threads
  m.http.stop();
  if (m.listener.joinable()) m.listener.join();
  if (m.sampler.joinable()) m.sampler.join();
}

void DashboardServer::Impl::SampleLoop() {
  double gpu_total = -1;
  MutexLock lock(&stop_mu);
  while (!stopping) {
    lock.Unlock();
    if (gpu_total < 0 || hub->TakeNodesChanged()) {
      const Json overview = source->Overview();  // the nodes without a JSON object per job
      gpu_total = 0;
      for (const auto& n : overview.value("nodes", Json::array()))
        if (n.value("alive", true)) gpu_total += static_cast<double>(n.value("gpus", Json::array()).size());
    }
    hub->Sample(gpu_total);
    lock.Lock();
    stop_cv.WaitFor(&stop_mu, std::chrono::milliseconds(options.sample_ms));
  }
}

DashboardServer::StartResult DashboardServer::Start(DashboardSource& source, DashboardOptions options) {
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  Result<Address> address = ParseAddress(options.address);
  if (!address.ok()) return {nullptr, address.error()};
  m.address = *address;
  if (!m.address.loopback && options.token.empty())
    return {nullptr, fmt::format("dashboard address {}: not a loopback address, so a token is required "
                                 "(--token-file or BATON_TOKEN)", options.address)};
  if (!options.token.empty() && options.token.size() < 8)
    return {nullptr, "dashboard token: too short (at least 8 characters)"};
  m.source = &source;
  m.options = std::move(options);
  // Names a browser may use for an off-loopback dashboard (DNS rebinding check).
  m.allowed_hosts = m.options.allowed_hosts;
  {
    char name[256] = {0};
    if (gethostname(name, sizeof name - 1) == 0 && name[0] != '\0') {
      m.allowed_hosts.push_back(name);
      const std::string full = name;
      if (const size_t dot = full.find('.'); dot != std::string::npos) m.allowed_hosts.push_back(full.substr(0, dot));
    }
    if (const char* env = std::getenv("BATON_DASHBOARD_HOSTS")) {
      std::string list = env;
      size_t pos = 0;
      while (pos <= list.size()) {
        const size_t comma = list.find(',', pos);
        std::string item = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        if (!item.empty()) m.allowed_hosts.push_back(item);
        if (comma == std::string::npos) break;
        pos = comma + 1;
      }
    }
  }
  m.hub = std::make_shared<EventHub>(m.options.limits);
  // The hub, not the server, is what the source calls: it may outlive the server.
  source.Subscribe([hub = m.hub](const Json& e) { hub->OnEvent(e); });

  const int threads = m.options.threads;
  m.http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  m.http.set_payload_max_length(64 * 1024);
  Impl* self = &m;
  m.http.set_pre_routing_handler([self](const httplib::Request& req, httplib::Response& res) {
    if (!self->HostAllowed(req)) {
      ReplyJson(res, 403, {{"error", "Host not allowed: use 127.0.0.1 or localhost"}});
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.method == "POST") {
      // Browsers send Origin on cross-site POSTs: an action must come from this page.
      const std::string origin = req.get_header_value("Origin");
      if (!origin.empty() && HostPart(origin, false) != HostPart(req.get_header_value("Host"), false)) {
        ReplyJson(res, 403, {{"error", "cross-origin action refused"}});
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (req.method == "GET" && req.has_param("token") && req.path.rfind("/api/", 0) != 0) {
      // First load with ?token=: keep it in an HttpOnly cookie and drop it from the address bar.
      const std::string given = req.get_param_value("token");
      if (!self->options.token.empty() && ConstantTimeEquals(given, self->options.token))
        res.set_header("Set-Cookie", "token=" + given + "; Path=/; HttpOnly; SameSite=Strict");
      res.status = 303;
      // Always "/", never the request's path: browsers drop tabs and newlines from a Location, so
      // "/%09/evil.example/" (decoded "/\t/evil.example/") is "//evil.example/", another site,
      // like "//evil.example/x" or "/\\evil.example"; no filter of paths can list every such trick.
      res.set_header("Location", "/");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  m.http.Get(R"(/|/index\.html|/app\.js|/app\.css)", [](const httplib::Request& req, httplib::Response& res) {
    const std::string path = req.path == "/" ? "/index.html" : req.path;
    const Asset* a = FindAsset(path);
    if (a == nullptr) {
      res.status = 404;
      return;
    }
    res.set_header("Content-Security-Policy", kAppPolicy);
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Cache-Control", "no-cache");
    res.set_content(reinterpret_cast<const char*>(a->data), a->size, ContentType(path));
  });
  m.AddApiRoutes();
  m.AddReportRoutes();

  if (m.address.port == 0) {
    m.port = m.http.bind_to_any_port(m.address.host);
    if (m.port < 0) return {nullptr, fmt::format("dashboard address {}: cannot listen there", m.options.address)};
  } else {
    if (!m.http.bind_to_port(m.address.host, m.address.port))
      return {nullptr,
              fmt::format("dashboard address {}: cannot listen there (port in use, or not this machine's address)",
                          m.options.address)};
    m.port = m.address.port;
  }
  m.listener = std::thread([self] { self->http.listen_after_bind(); });
  // httplib's stop() does nothing before the accept loop runs: wait for it, so Stop() always works.
  for (int i = 0; i < 5000 && !m.http.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!m.http.is_running()) {
    m.http.stop();
    m.listener.join();
    return {nullptr, fmt::format("dashboard address {}: the server did not start", m.options.address)};
  }
  m.sampler = std::thread([self] { self->SampleLoop(); });
  return {std::unique_ptr<DashboardServer>(new DashboardServer(std::move(impl))), ""};
}

}  // namespace baton::dashboard
