// `baton run --dashboard [ADDR]`: serves the dashboard (src/dashboard) for the embedded runtime
// while the run goes on, and after it until Ctrl-C or SIGTERM (not after a run SIGTERM stopped:
// see RunCommand).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "dashboard/runtime_source.h"
#include "dashboard/server.h"

namespace baton::cli {
namespace {

struct Dashboard : DashboardHandle {
  std::unique_ptr<dashboard::RuntimeSource> source;
  std::unique_ptr<dashboard::DashboardServer> server;
};

}  // namespace

Result<std::string> DashboardToken(const std::string& token_flag, const std::string& token_file) {
  if (!token_flag.empty() && !token_file.empty())
    return Status::Invalid("--token and --token-file: give one, not both");
  if (!token_flag.empty()) {
    std::fprintf(stderr,
                 "baton: warning: --token: the command line is visible to every local user (/proc/PID/cmdline, "
                 "`ps`); prefer --token-file FILE or BATON_TOKEN\n");
    return token_flag;
  }
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    std::string line;
    if (!in || !std::getline(in, line)) return Status::Invalid("--token-file " + token_file + ": cannot read it");
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (line.empty()) return Status::Invalid("--token-file " + token_file + ": the first line is empty");
    return line;
  }
  const char* env = std::getenv("BATON_TOKEN");
  return std::string(env != nullptr ? env : "");
}

Result<std::unique_ptr<DashboardHandle>> StartDashboard(Runtime& runtime, const RunArgs& args) {
  dashboard::DashboardOptions options;
  if (!args.dashboard.empty()) options.address = args.dashboard;
  Result<std::string> token = DashboardToken(args.token, args.token_file);
  if (!token.ok()) return token.status();
  options.token = std::move(*token);
  auto handle = std::make_unique<Dashboard>();
  handle->source = std::make_unique<dashboard::RuntimeSource>(runtime);
  auto started = dashboard::DashboardServer::Start(*handle->source, options);
  if (!started.server) return Status::Invalid(started.error);  // e.g. off loopback without a token
  handle->server = std::move(started.server);
  std::fprintf(
      stderr, "baton: dashboard at %s%s\n", handle->server->url().c_str(),
      options.token.empty() ? "" : " (actions need the token: open URL?token=... once, or send Authorization: Bearer)");
  return std::unique_ptr<DashboardHandle>(std::move(handle));
}

void WaitDashboard(DashboardHandle& handle, const RunReport& report, StopSignals& signals) {
  auto& d = static_cast<Dashboard&>(handle);
  std::fprintf(stderr, "baton: run %s; dashboard still serving the finished run at %s — press Ctrl-C to stop\n",
               report.interrupted ? "interrupted" : "finished", d.server->url().c_str());
  // After an interrupted run the first signal is spent: the next one ends the process at once
  // (StopSignals), so there is nothing to wait for but that.
  if (report.interrupted)
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  signals.Wait();
  d.server->Stop();
}

}  // namespace baton::cli
