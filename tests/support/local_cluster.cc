#include "support/local_cluster.h"

#include <unistd.h>

#include <fstream>

namespace baton::testing {

LocalCluster::LocalCluster() {
  baton_ = (BinaryDir() / "src/cli/baton").string();
  port_ = FreeLoopbackPort();
  url_ = "redis://127.0.0.1:" + std::to_string(port_);
  prefix_ = "lc" + std::to_string(getpid());
}

bool LocalCluster::StartRedis() {
  redis_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", dir_.path().string()},
      dir_ / "redis.log");
  return WaitFor([&] { return Run({"nodes"}, "") == 0; }, 5);
}

void LocalCluster::StartHead(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {baton_, "head", "--redis", url_, "--prefix", prefix_, "--heartbeat-timeout", "2s"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  head_ = std::make_unique<ChildProcess>(argv, dir_ / "head.log");
}

void LocalCluster::StartNode(const std::string& name, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {baton_, "node", "--redis", url_, "--prefix", prefix_, "--name", name, "--workdir",
                                   (dir_ / ("work-" + name)).string(), "--address", "127.0.0.1", "--listen",
                                   "127.0.0.1", "--heartbeat", "0.2s"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  nodes_[name] = std::make_unique<ChildProcess>(argv, dir_ / (name + ".log"));
}

bool LocalCluster::WaitNodesAlive(size_t n, double seconds) {
  return WaitFor(
      [&] {
        const auto out = dir_ / "nodes.json";
        std::filesystem::remove(out);  // RunProgram appends
        if (Run({"nodes", "--json"}, out.string()) != 0) return false;
        const nlohmann::json nodes = nlohmann::json::parse(ReadFile(out), nullptr, false);
        if (!nodes.is_array()) return false;
        size_t alive = 0;
        for (const auto& x : nodes) alive += x.value("alive", false);
        return alive == n;
      },
      seconds);
}

int LocalCluster::SubmitAndWait(const std::filesystem::path& pipeline, const std::vector<std::string>& inputs,
                                double seconds) {
  return Submit(pipeline, inputs)->Wait(seconds);
}

std::unique_ptr<ChildProcess> LocalCluster::Submit(const std::filesystem::path& pipeline,
                                                   const std::vector<std::string>& inputs) {
  const auto list = dir_ / "inputs.txt";
  {
    std::ofstream f(list);
    for (const auto& i : inputs) f << i << "\n";
  }
  return std::make_unique<ChildProcess>(std::vector<std::string>{baton_, "submit", pipeline.string(), "--inputs",
                                                                 list.string(), "--redis", url_, "--prefix", prefix_,
                                                                 "--wait"},
                                       dir_ / "submit.log");
}

int LocalCluster::Run(std::vector<std::string> args, const std::string& out) {
  std::vector<std::string> argv = {baton_};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--redis", url_, "--prefix", prefix_});
  return RunProgram(argv, out);
}

nlohmann::json LocalCluster::StatusJson(const std::string& job) {
  const auto out = dir_ / "status.json";
  std::filesystem::remove(out);
  std::vector<std::string> args = {"status"};
  if (!job.empty()) args.push_back(job);
  args.push_back("--json");
  if (Run(args, out.string()) != 0) return nullptr;
  nlohmann::json j = nlohmann::json::parse(ReadFile(out), nullptr, false);
  return j.is_discarded() ? nlohmann::json() : j;
}

std::string LocalCluster::StatusText() {
  const auto out = dir_ / "status.txt";
  std::filesystem::remove(out);
  Run({"status"}, out.string());
  return ReadFile(out);
}

std::string LocalCluster::Logs() const {
  std::string s;
  std::vector<std::string> files = {"head.log", "submit.log"};
  for (const auto& [name, proc] : nodes_) files.push_back(name + ".log");
  for (const auto& f : files) s += "--- " + f + "\n" + ReadFile(dir_ / f);
  return s;
}

}  // namespace baton::testing
