// Internals shared by server.cc (setup, security, streams) and api.cc (JSON handlers). Private
// to src/dashboard.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <httplib.h>

#include "dashboard/server.h"

namespace baton::dashboard {

struct DashboardServer::Impl {
  DashboardSource* source = nullptr;
  DashboardOptions options;
  Address address;
  std::shared_ptr<EventHub> hub;
  httplib::Server http;
  std::thread listener, sampler;
  int port = 0;
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopping = false;  // guarded by stop_mu
  std::vector<std::string> allowed_hosts;  // set before serving, read-only after
  std::atomic<int> streams{0};             // live streams open now

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
std::string PrometheusMetrics(const Json& snapshot, const HubMetrics& metrics);

}  // namespace baton::dashboard
