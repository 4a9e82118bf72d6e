// The dashboard at scale: the bytes and the time of what a browser loads (the page, the first
// live message, the first jobs page) and of /metrics, with JOBS jobs (default 100,000) before the
// run and after it, on loopback. The sizes are the figures in docs/performance.md; times vary
// with the machine.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include <httplib.h>

#include "baton/runtime.h"
#include "dashboard/runtime_source.h"
#include "dashboard/server.h"

using namespace baton;

namespace {

const char* kNoop = R"(name: noop
steps:
  - {name: a, uses: sleep, resources: {cpu: 1}}
  - {name: b, uses: sleep, resources: {cpu: 1}}
  - {name: c, uses: sleep, resources: {cpu: 1}}
  - {name: d, uses: sleep, resources: {cpu: 1}}
)";

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void Get(int port, const char* path) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = c.Get(path);
  const double ms = Since(t0);
  std::printf("  %-22s %9zu bytes %8.1f ms\n", path, r ? r->body.size() : 0, ms);
}

// The first Server-Sent Events message of /api/events.
void FirstEvent(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  std::string buf;
  size_t size = 0;
  const auto t0 = std::chrono::steady_clock::now();
  c.Get("/api/events", [&](const char* data, size_t n) {
    buf.append(data, n);
    const size_t end = buf.find("\n\n", buf.find("data: "));
    if (buf.find("data: ") == std::string::npos || end == std::string::npos) return true;
    size = end - buf.find("data: ") - 6;
    return false;
  });
  std::printf("  %-22s %9zu bytes %8.1f ms\n", "/api/events (first)", size, Since(t0));
}

void Measure(int port, const char* when) {
  std::printf("%s:\n", when);
  Get(port, "/");
  Get(port, "/app.js");
  FirstEvent(port);
  Get(port, "/api/jobs?limit=50");
  Get(port, "/api/jobs?offset=50000&limit=50");
  Get(port, "/api/jobs?state=failed&limit=50");
  Get(port, "/api/nodes");
  Get(port, "/metrics");
  Get(port, "/metrics");  // again, nothing changed: the shared view
}

}  // namespace

int main(int argc, char** argv) {
  const size_t jobs = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 100000;
  RegisterBuiltinSteps();
  RunOptions o;
  o.inputs.assign(jobs, "");
  o.out = std::filesystem::temp_directory_path() / "baton-dashboard-bench";
  o.log_format = RunOptions::LogFormat::kNone;
  const std::unique_ptr<Runtime> rt_owner = Runtime::Create(ParsePipeline(kNoop, "bench.yaml").value(),
             ParseCluster("nodes:\n  - {name: n, cpus: 8}\n", "c.yaml").value(), o).value();
  Runtime& rt = *rt_owner;
  dashboard::RuntimeSource source(rt);
  dashboard::DashboardOptions d;
  d.address = "127.0.0.1:0";
  auto started = dashboard::DashboardServer::Start(source, d);
  if (!started.server) {
    std::fprintf(stderr, "dashboard_bench: %s\n", started.error.c_str());
    return 1;
  }
  const int port = started.server->port();
  std::printf("dashboard_bench: %zu jobs x 4 no-op steps, one node; %u cores\n", jobs,
              std::thread::hardware_concurrency());
  auto t0 = std::chrono::steady_clock::now();
  rt.Snapshot();
  std::printf("Runtime::Snapshot() (a JSON object per job; what each request cost before): %.1f ms\n", Since(t0));
  t0 = std::chrono::steady_clock::now();
  rt.Overview();
  std::printf("Runtime::Overview() (counts by state and step, nodes; the shared view): %.1f ms\n\n", Since(t0));
  Measure(port, "before the run (every job ready)");
  const RunReport& r = rt.Run();
  std::printf("\nran %d jobs in %.2f s\n", r.succeeded, r.seconds);
  Measure(port, "after the run (timeline full)");
  started.server->Stop();
  return 0;
}
