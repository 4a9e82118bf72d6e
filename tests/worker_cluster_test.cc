// `uses: worker` in a cluster: the head's core groups attempts of many jobs into one agent's
// worker (the placement carries the worker id), the agent keeps the process resident across
// attempts and batches; a poison input fails alone there too. Real redis-server, head, agent and
// Python workers (tests/workers/fault_worker.py).
#include <gtest/gtest.h>

#include <fstream>
#include <set>

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

}  // namespace
}  // namespace baton
