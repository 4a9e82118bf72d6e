// LocalCluster: a whole Baton cluster on loopback for end-to-end tests in tests/: a real
// redis-server on a free port, the real `baton head` and `baton node` agents as child processes,
// and the `baton` CLI (submit, status, nodes) run against them. Logs go to files in the cluster's
// folder (Logs() gathers them for failure messages). Conditions are polled with deadlines.
// Everything is killed (SIGKILL) on destruction. Not thread-safe.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/child_process.h"
#include "support/util.h"

namespace baton::testing {

class LocalCluster {
 public:
  LocalCluster();  // finds the baton binary; starts nothing
  const std::filesystem::path& dir() const { return dir_.path(); }
  const std::string& url() const { return url_; }

  // Starts redis-server and waits until `baton nodes` can reach it; false when it did not start.
  bool StartRedis();
  void StartHead(const std::vector<std::string>& extra = {});
  // An agent named `name` working in dir()/work-NAME; `extra` adds flags (--cpus, --labels ...).
  void StartNode(const std::string& name, const std::vector<std::string>& extra);
  bool WaitNodesAlive(size_t n, double seconds);
  // Where agent `name` writes its outputs (work-NAME/out).
  std::filesystem::path OutDir(const std::string& name) const { return dir_.path() / ("work-" + name) / "out"; }

  // `baton submit FILE --inputs LIST --wait`: its exit status (-1 when it did not end in time).
  int SubmitAndWait(const std::filesystem::path& pipeline, const std::vector<std::string>& inputs, double seconds);
  // The same, started: Wait() on the returned process.
  std::unique_ptr<ChildProcess> Submit(const std::filesystem::path& pipeline, const std::vector<std::string>& inputs);
  // Runs `baton ARGS --redis URL --prefix P`, output to `out`; the exit status.
  int Run(std::vector<std::string> args, const std::string& out);
  // `baton status [JOB] --json` parsed (null when it failed); `baton status` as text.
  nlohmann::json StatusJson(const std::string& job = "");
  std::string StatusText();
  std::string Logs() const;

 private:
  TempDir dir_;
  std::string baton_, url_, prefix_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> redis_, head_;
  std::map<std::string, std::unique_ptr<ChildProcess>> nodes_;
};

}  // namespace baton::testing
