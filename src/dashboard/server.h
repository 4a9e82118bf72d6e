// DashboardServer: the dashboard's HTTP server (cpp-httplib): the single-page app compiled into
// the binary, the JSON API, live events (Server-Sent Events), Prometheus metrics and the jobs'
// reports, all built from one DashboardSource (source.h). See docs/dashboard.md.
//
//   baton::dashboard::RuntimeSource source(runtime);            // before runtime.Run()
//   auto started = DashboardServer::Start(source, {.address = "127.0.0.1:0"});
//   if (!started.server) die(started.error);
//   puts(started.server->url().c_str());
//
// Security: binds 127.0.0.1 by default. On any other address Start refuses to run without a
// token. With a token set, actions (cancel, retry) need it (Authorization: Bearer, or the
// `token` cookie that `/?token=` sets), compared in constant time; read-only views stay open.
// On loopback, requests whose Host is not a loopback name are refused (DNS rebinding) and
// actions from another Origin are refused (cross-site requests). The token is never logged.
//
// Thread-safety: Start/Stop/url/port from any thread; requests are served on a thread pool.
// The source must outlive the server.
#pragma once

#include <memory>
#include <string>
#include <vector>
#include <string_view>

#include "baton/status.h"
#include "dashboard/event_hub.h"
#include "dashboard/source.h"

namespace baton::dashboard {

struct DashboardOptions {
  std::string address = "127.0.0.1:8265";  // HOST:PORT, HOST, or PORT; port 0 picks a free one
  std::string token;                        // required unless HOST is loopback; 8+ characters
  HubLimits limits;
  size_t file_tail_bytes = 16384;  // tail of a command step's stdout/stderr in /api/jobs/{id}
  int sample_ms = 1000;            // time-series period (charts)
  int threads = 32;                // request threads (each open live stream holds one)
  // Live streams at once: more are refused (503), so open tabs never starve the API of threads.
  int max_streams = 8;
  // Host names (besides loopback names, the bound address, this machine's name and IP literals)
  // a browser may use to reach a dashboard bound off loopback; other Host headers are refused
  // (DNS rebinding). Also from BATON_DASHBOARD_HOSTS (comma-separated).
  std::vector<std::string> allowed_hosts;
};

// Parsed dashboard address.
struct Address {
  std::string host;
  int port = 8265;
  bool loopback = false;
};
// The address, or an error naming it and what is wrong.
Result<Address> ParseAddress(const std::string& text);

// Whether a request's Host header may reach a dashboard bound at `bound` (DNS rebinding check):
// loopback names always; for an off-loopback bind also the bound host, IP literals and `allowed`.
[[nodiscard]] bool HostAllowedFor(const std::string& host_header, const Address& bound,
                                  const std::vector<std::string>& allowed);

// Compares secrets in time that depends only on their lengths, not on where they differ.
[[nodiscard]] bool ConstantTimeEquals(std::string_view a, std::string_view b);

class DashboardServer {
 public:
  struct StartResult {
    std::unique_ptr<DashboardServer> server;  // null on error
    std::string error;                        // one line, e.g. "dashboard address ...: ..."
  };
  // Subscribes to the source (so, to see every event, call it before the source runs), binds,
  // and serves on background threads.
  [[nodiscard]] static StartResult Start(DashboardSource& source, DashboardOptions options);

  ~DashboardServer();  // Stop()
  DashboardServer(const DashboardServer&) = delete;
  DashboardServer& operator=(const DashboardServer&) = delete;

  // Ends live streams, stops listening and joins the server's threads. Idempotent.
  void Stop();
  int port() const;
  std::string url() const;  // "http://HOST:PORT/" (never with the token)
  const EventHub& hub() const;

 private:
  struct Impl;
  explicit DashboardServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace baton::dashboard
