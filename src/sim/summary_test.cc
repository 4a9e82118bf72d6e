// The simulate summary: classes, spreads, idle GPUs, the lower bound, and its size at 10,000 nodes.
#include "sim/summary.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <regex>

namespace baton::sim {
namespace {

// 10,000 nodes of three classes: 2,000 GPU nodes (half of them never used), 7,999 CPU nodes,
// one head.
struct Fleet {
  std::vector<NodeSpec> nodes;
  std::vector<NodeUse> use;
  Fleet() {
    for (int i = 0; i < 10000; ++i) {
      NodeSpec n;
      n.name = "n" + std::to_string(i);
      NodeUse u;
      if (i == 0) {
        n.cpus = 4;
        n.labels["role"] = "head";
        u.jobs_started = 1;
      } else if (i <= 2000) {
        n.cpus = 16;
        n.gpus = 2;
        u.jobs_started = i % 5;
        u.gpu_seconds = i <= 1000 ? 100.0 : 0.0;  // makespan 100: 50% busy, or idle
      } else {
        n.cpus = 8;
        u.jobs_started = 3;
      }
      nodes.push_back(n);
      use.push_back(u);
    }
  }
};

TEST(SimSummary, GroupsTenThousandNodesIntoClassesThatFitAScreen) {
  Fleet f;
  const auto classes = ClassifyNodes(f.nodes, f.use, 100.0);
  ASSERT_EQ(classes.size(), 3u);
  EXPECT_EQ(classes[0].name, "gpus=0 cpus=4 role=head");
  EXPECT_EQ(classes[1].name, "gpus=2 cpus=16");
  EXPECT_EQ(classes[1].nodes.size(), 2000u);
  EXPECT_EQ(classes[1].jobs_min, 0);
  EXPECT_EQ(classes[1].jobs_median, 2);
  EXPECT_EQ(classes[1].jobs_max, 4);
  EXPECT_DOUBLE_EQ(classes[1].busy_min, 0.0);
  EXPECT_DOUBLE_EQ(classes[1].busy_mean, 0.25);
  EXPECT_DOUBLE_EQ(classes[1].busy_max, 0.5);
  EXPECT_EQ(classes[1].idle_gpu_nodes, 1000);
  EXPECT_EQ(classes[2].jobs_total, 3 * 7999);

  const std::string text = FormatSummary(classes, f.nodes, f.use, 100.0, 80.0, "the longest job");
  EXPECT_LE(std::count(text.begin(), text.end(), '\n') + 1, 8) << text;
  for (size_t start = 0, end; start < text.size(); start = end + 1) {
    end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    EXPECT_LE(end - start, 100u) << text.substr(start, end - start);
  }
  EXPECT_NE(text.find("makespan 100.00 s; lower bound 80.00 s (the longest job): 1.25x the bound"), std::string::npos)
      << text;
  EXPECT_NE(text.find("GPUs: 4000 in all, busy 25% of the makespan; 2000 never used (on 1000 nodes)"),
            std::string::npos)
      << text;
  EXPECT_TRUE(std::regex_search(text, std::regex(R"(\n  gpus=2 cpus=16 +2000 +0/2/4 +0/25/50%\n)"))) << text;
  EXPECT_TRUE(std::regex_search(text, std::regex(R"(\n  gpus=0 cpus=8 +7999 +3/3/3 +-\n)"))) << text;
  // The per-node table has every node.
  const std::string table = FormatPerNode(f.nodes, f.use, 100.0);
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 10001);
  EXPECT_NE(table.find("\nn1\t1\t2\t50.0\n"), std::string::npos);
}

TEST(SimSummary, ManyClassesAreCappedWithACount) {
  std::vector<NodeSpec> nodes(30);
  std::vector<NodeUse> use(30);
  for (int i = 0; i < 30; ++i) nodes[i].cpus = i + 1;
  const auto classes = ClassifyNodes(nodes, use, 1.0);
  const std::string text = FormatSummary(classes, nodes, use, 1.0, 1.0, "the longest job", 12);
  EXPECT_NE(text.find("... 18 more classes (18 nodes): see --per-node"), std::string::npos) << text;
  EXPECT_NE(text.find("GPUs: none"), std::string::npos) << text;
}

TEST(SimSummary, LowerBoundIsTheLongestJobOrTheWorkOverTheCluster) {
  PipelineSpec p;
  p.steps.resize(2);
  p.steps[0].resources["cpu"] = 1;
  p.steps[1].resources["gpu"] = 1;
  std::vector<NodeSpec> nodes(2);
  nodes[0].cpus = 4;
  nodes[1].cpus = 4;
  nodes[1].gpus = 2;
  std::string why;
  // One job: 3 + 5 s in a row.
  EXPECT_DOUBLE_EQ(MakespanLowerBound(p, {3, 5}, 1, nodes, &why), 8.0);
  EXPECT_EQ(why, "the longest job");
  // 100 jobs: 500 GPU-s over 2 GPUs = 250 s (cpu: 300 cpu-s / 8 = 37.5 s).
  EXPECT_DOUBLE_EQ(MakespanLowerBound(p, {3, 5}, 100, nodes, &why), 250.0);
  EXPECT_EQ(why, "gpu work 500 gpu-s / 2 gpus");
}

}  // namespace
}  // namespace baton::sim
