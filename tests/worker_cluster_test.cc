// `uses: worker` in a cluster: the head's core groups attempts of many jobs into one agent's
// worker (the placement carries the worker id), the agent keeps the process resident across
// attempts and batches; a poison input fails alone there too. Real redis-server, head, agent and
// Python workers (tests/workers/fault_worker.py).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "support/local_cluster.h"
#include "support/util.h"

namespace baton {
namespace {

std::vector<nlohmann::json> Lines(const std::filesystem::path& file) {
  std::vector<nlohmann::json> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(WorkerCluster, AnAgentsWorkerLoadsOnceBatchesJobsAndAPoisonFailsAlone) {
  testing::LocalCluster cluster;
  ASSERT_TRUE(cluster.StartRedis()) << cluster.Logs();
  cluster.StartHead();
  cluster.StartNode("gpu", {"--cpus", "4", "--gpus", "1", "--labels", "role=head"});
  ASSERT_TRUE(cluster.WaitNodesAlive(1, 15)) << cluster.Logs();
  const auto record = cluster.dir() / "record.jsonl";
  const auto pipeline = cluster.dir() / "w.yaml";
  std::ofstream(pipeline) << "name: w\nsteps:\n  - name: model\n    uses: worker\n    with:\n      argv: [python3, "
                          << (testing::SourceDir() / "tests/workers/fault_worker.py").string() << ", --record, "
                          << record.string() << "]\n      batch: {max: 5, wait: 3s}\n"
                          << "    resources: {gpu: 1}\n    retries: 1\n    backoff: 0.1s\n";
  std::vector<std::string> inputs;
  for (int i = 0; i < 9; ++i) inputs.push_back("ok:" + std::to_string(i));
  inputs.push_back("poison");
  const int rc = cluster.SubmitAndWait(pipeline, inputs, 120);
  EXPECT_EQ(rc, 1) << "one job failed: " << cluster.Logs();
  int loads = 0, items = 0, max_size = 0;
  std::set<std::string> ok_jobs;
  for (const auto& l : Lines(record)) {
    if (l.contains("load")) {
      ++loads;
      continue;
    }
    items += l["size"].get<int>();
    max_size = std::max(max_size, l["size"].get<int>());
  }
  EXPECT_EQ(max_size, 5) << "the head handed the agent's worker batches of up to batch.max";
  // One load for the first batch, and one per death of the poison (the first batch's or later),
  // never one per job.
  EXPECT_LE(loads, 4);
  const auto status = cluster.StatusJson();
  ASSERT_TRUE(status.is_object()) << cluster.Logs();
  int succeeded = 0, failed = 0;
  for (const auto& j : status["jobs"]) {
    succeeded += j["state"] == "succeeded";
    if (j["state"] == "failed") {
      ++failed;
      EXPECT_NE(j.dump().find("while running this item alone"), std::string::npos) << j.dump();
    }
  }
  EXPECT_EQ(succeeded, 9) << status.dump();
  EXPECT_EQ(failed, 1);
}

// The head retires an idle worker (the grant goes back) and tells the agent in the same turn
// (retire_worker): the worker is shut down as retired, not by the agent's own backstop timer
// (idle_timeout + 2 s). Before that, `baton nodes` shows the agent's view of the worker.
TEST(WorkerCluster, TheHeadRetiresAnIdleWorkerOnItsAgentAndNodesShowItsState) {
  testing::LocalCluster cluster;
  ASSERT_TRUE(cluster.StartRedis()) << cluster.Logs();
  cluster.StartHead();
  cluster.StartNode("gpu", {"--cpus", "4", "--gpus", "1", "--labels", "role=head"});
  ASSERT_TRUE(cluster.WaitNodesAlive(1, 15)) << cluster.Logs();
  const auto pipeline = cluster.dir() / "w.yaml";
  std::ofstream(pipeline) << "name: w\nsteps:\n  - name: model\n    uses: worker\n    with:\n      argv: [python3, "
                          << (testing::SourceDir() / "tests/workers/fault_worker.py").string()
                          << "]\n      batch: {max: 4, wait: 1s}\n      idle_timeout: 4s\n"
                          << "    resources: {gpu: 1}\n";
  ASSERT_EQ(cluster.SubmitAndWait(pipeline, {"ok:a", "ok:b", "ok:c", "ok:d"}, 60), 0) << cluster.Logs();
  // While it idles, the nodes view carries what the agent's worker says of itself.
  nlohmann::json worker;
  std::string seen;
  const auto served = [&worker] { return worker.is_object() ? worker.value("items_served", -1) : -1; };
  for (int i = 0; i < 60 && served() != 4; ++i) {
    const auto out = cluster.dir() / "nodes.json";
    std::filesystem::remove(out);  // the command appends to it
    const int rc = cluster.Run({"nodes", "--json"}, out.string());
    seen = testing::ReadFile(out);
    if (rc == 0) {
      const auto nodes = nlohmann::json::parse(seen, nullptr, false);
      if (nodes.is_array() && !nodes.empty() && nodes[0].contains("workers")) worker = nodes[0]["workers"][0];
    }
    if (served() != 4) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(served(), 4) << seen << cluster.Logs();
  EXPECT_EQ(worker["state"], "ready");
  EXPECT_EQ(worker["restarts"], 0);
  // Then the head retires it and the agent shuts it down as told.
  const auto log = cluster.dir() / "work-gpu/workers/model.0.stderr";
  std::string text;
  for (int i = 0; i < 600 && text.find("shutting down") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    text = std::filesystem::exists(log) ? testing::ReadFile(log) : "";
  }
  EXPECT_NE(text.find("worker 0 retired by the scheduler; shutting down"), std::string::npos) << text << cluster.Logs();
}

}  // namespace
}  // namespace baton
