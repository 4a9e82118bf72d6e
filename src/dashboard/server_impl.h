// Internals shared by server.cc (setup, security, streams) and api.cc (JSON handlers). Private
// to src/dashboard.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <httplib.h>

#include "baton/thread_annotations.h"
#include "dashboard/server.h"

namespace baton::dashboard {

// The source's overview (counts by state and by step, nodes: DashboardSource::Overview), shared
// by every request until the next event (api.cc): many browsers and a scraper cost one count per
// change, and /metrics formats from it in O(nodes + steps).
struct JobsView {
  Json overview;                                                   // DashboardSource::Overview()
  std::map<std::string, size_t> counts;                            // jobs by state (all states)
  std::map<std::pair<std::string, std::string>, size_t> at_step;   // (step, state) of unfinished jobs
  uint64_t events = 0;                                             // the hub's EventCount() it reflects
  std::chrono::steady_clock::time_point taken;
  // The source's time now: the overview's plus what passed since (a view may be reused a while);
  // 0 (not started) stays 0.
  double Now() const {
    const double t = overview.value("time", 0.0);
    return t > 0 ? t + std::chrono::duration<double>(std::chrono::steady_clock::now() - taken).count() : t;
  }
};

// At most this many of the most recent attempt bars go in the first message of the live stream.
inline constexpr size_t kSnapshotBars = 500;

struct DashboardServer::Impl {
  DashboardSource* source = nullptr;
  DashboardOptions options;
  Address address;
  std::shared_ptr<EventHub> hub;
  httplib::Server http;
  std::thread listener, sampler;
  int port = 0;
  Mutex stop_mu;
  CondVar stop_cv;
  bool stopping GUARDED_BY(stop_mu) = false;
  std::vector<std::string> allowed_hosts;  // set before serving, read-only after
  std::atomic<int> streams{0};             // live streams open now

  mutable std::mutex view_mu;
  mutable std::shared_ptr<const JobsView> view;  // guarded by view_mu
  std::shared_ptr<const JobsView> View() const;  // api.cc
  void DropView() const;                         // after an action: the next request sees it

  // Security (server.cc).
  enum class Auth { kOk, kMissing, kWrong };
  Auth Authorise(const httplib::Request& req) const;
  bool HostAllowed(const httplib::Request& req) const;

  // Routes (api.cc).
  void AddApiRoutes();
  void AddReportRoutes();
  void HandleJobs(const httplib::Request& req, httplib::Response& res) const;
  void HandleJob(const std::string& id, httplib::Response& res) const;
  void HandleAction(const httplib::Request& req, httplib::Response& res, bool cancel);
  void HandleEvents(httplib::Response& res);
  void HandleReport(const std::string& id, const std::string& rest, httplib::Response& res) const;
  void SampleLoop();
};

// Sends `body` as JSON with `status`.
void ReplyJson(httplib::Response& res, int status, const Json& body);
std::string PrometheusMetrics(const JobsView& view, const HubMetrics& metrics);

}  // namespace baton::dashboard
