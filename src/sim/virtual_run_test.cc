// `baton simulate` on the driver kit: the same makespan as the core-only Simulator, every job
// through the driver's lifecycle (attempt records), detail released when not kept.
#include "sim/virtual_run.h"

#include <gtest/gtest.h>

#include "baton/pipeline.h"
#include "driver/scheduler_setup.h"
#include "sim/simulator.h"

namespace baton::sim {
namespace {

const char* kSeed = R"(name: seed
prefetch: 1
steps:
  - {name: download, uses: sleep, resources: {download_slot: 1}}
  - {name: analyze, uses: sleep, resources: {gpu: 1}, placement: {same_node_as: download}}
  - {name: summarize, uses: sleep, resources: {cpu: 1}}
  - {name: document, uses: sleep, resources: {cpu: 1}, placement: {labels: {role: head}}}
)";
const char* kNodes = R"(nodes:
  - {name: head, cpus: 16, gpus: 1, resources: {download_slot: 1}, labels: {role: head}}
  - {name: worker-1, cpus: 16, gpus: 1, resources: {download_slot: 1}}
  - {name: worker-2, cpus: 16, gpus: 2, resources: {download_slot: 2}}
)";
const std::vector<double> kSeconds = {10, 30, 6, 1};

TEST(VirtualRun, SameMakespanAsTheCoreSimulatorThroughTheWholeLifecycle) {
  const PipelineSpec p = ParsePipeline(kSeed, "seed.yaml").value();
  const ClusterSpec c = ParseCluster(kNodes, "nodes.yaml").value();
  constexpr int kJobs = 12;

  core::Scheduler sched;
  for (const auto& n : c.nodes) sched.AddNode(driver::ToCoreNode(n, sched.resources()));
  const std::string from = "nodes.yaml";
  auto pid = driver::AddPipeline(sched, p, &from);
  ASSERT_TRUE(pid.ok()) << pid.error();
  for (int j = 0; j < kJobs; ++j) sched.Submit(*pid, 0);
  Simulator core_only(sched);
  const double expected = core_only.Run([](const core::Placement& pl) { return Outcome{kSeconds[pl.step]}; });

  driver::Driver d;
  for (const auto& n : c.nodes) d.AddNode(n, 0);
  auto added = d.AddPipeline(p, "", &from);
  ASSERT_TRUE(added.ok()) << added.error();
  for (int j = 0; j < kJobs; ++j) d.Submit("job-" + std::to_string(j), "", *added, 0, false);
  const VirtualRunResult r = RunVirtual(d, kSeconds, /*keep_detail=*/true);

  EXPECT_DOUBLE_EQ(r.makespan, expected);
  EXPECT_DOUBLE_EQ(r.makespan, 107);
  EXPECT_EQ(r.attempts, size_t{kJobs} * 4);
  ASSERT_EQ(r.use.size(), 3u);
  EXPECT_EQ(r.use[0].jobs_started + r.use[1].jobs_started + r.use[2].jobs_started, kJobs);
  EXPECT_EQ(r.use[2].jobs_started, 6);  // two GPUs, two download slots: twice the others
  EXPECT_DOUBLE_EQ(r.use[0].gpu_seconds + r.use[1].gpu_seconds + r.use[2].gpu_seconds, kJobs * 30.0);
  for (uint32_t j = 0; j < kJobs; ++j) {
    const auto& rep = d.job(j).report;
    EXPECT_EQ(rep.status, "succeeded");
    ASSERT_EQ(rep.attempts.size(), 4u);
    EXPECT_EQ(rep.attempts[1].node, rep.attempts[0].node) << "analyze where the video was downloaded";
    EXPECT_EQ(rep.attempts[3].node, "head");
    EXPECT_DOUBLE_EQ(rep.attempts[1].end - rep.attempts[1].start, 30);
  }
}

TEST(VirtualRun, EndedJobsDetailIsReleasedWhenNotKept) {
  driver::Driver d;
  d.AddNode(ParseCluster(kNodes, "nodes.yaml").value().nodes[0], 0);
  const std::string from = "nodes.yaml";
  auto added = d.AddPipeline(
      ParsePipeline("steps:\n  - {name: a, uses: sleep}\n  - {name: b, uses: sleep}\n", "p.yaml").value(), "", &from);
  ASSERT_TRUE(added.ok());
  for (int j = 0; j < 100; ++j) d.Submit("job-" + std::to_string(j), "", *added, 0, false);
  const VirtualRunResult r = RunVirtual(d, {1, 2}, /*keep_detail=*/false);
  EXPECT_EQ(r.attempts, 200u);
  EXPECT_TRUE(d.all_ended());
  for (uint32_t j = 0; j < 100; ++j) {
    EXPECT_EQ(d.job(j).end, driver::JobEnd::kSucceeded);
    EXPECT_TRUE(d.job(j).report.attempts.empty());
  }
  EXPECT_DOUBLE_EQ(r.makespan, 3);  // steps that ask for nothing all run at once: 1 s + 2 s
}

TEST(VirtualRun, AWorkerStepLoadsOnceAndRunsFullBatches) {
  // The stand-in model of bench/worker: load 2 s, a batch of n costs 0.3 + 0.05 n s, batch max 16;
  // 48 jobs on one GPU: the bound 2 + 3 x 1.1 = 5.3 s is reached exactly in virtual time.
  driver::Driver d;
  d.AddNode(ParseCluster("nodes:\n  - {name: g, cpus: 4, gpus: 1}\n", "c.yaml").value().nodes[0], 0);
  const std::string from = "c.yaml";
  auto added = d.AddPipeline(ParsePipeline("steps:\n  - name: model\n    uses: worker\n    with: {argv: [m], "
                                           "batch: {max: 16, wait: 200ms}}\n    resources: {gpu: 1}\n",
                                           "p.yaml")
                                 .value(),
                             "", &from);
  ASSERT_TRUE(added.ok()) << added.error();
  for (int j = 0; j < 48; ++j) d.Submit("job-" + std::to_string(j), "", *added, 0, false);
  StepCost cost;
  cost.load = 2;
  cost.batch_a = 0.3;
  cost.batch_b = 0.05;
  cost.batch_max = 16;
  cost.batch_wait = 0.2;
  const VirtualRunResult r = RunVirtual(d, std::vector<StepCost>{cost}, /*keep_detail=*/true);
  EXPECT_NEAR(r.makespan, 5.3, 1e-9);
  EXPECT_EQ(r.loads, 1u);
  EXPECT_EQ(r.batches, 3u);
  EXPECT_NEAR(r.use[0].gpu_seconds, 3 * 1.1, 1e-9);
  // Fewer jobs than a batch: the worker waits batch.wait for more, then runs what it has.
  driver::Driver d2;
  d2.AddNode(ParseCluster("nodes:\n  - {name: g, cpus: 4, gpus: 1}\n", "c.yaml").value().nodes[0], 0);
  auto added2 = d2.AddPipeline(d.pipelines()[0].spec, "", &from);
  ASSERT_TRUE(added2.ok());
  for (int j = 0; j < 3; ++j) d2.Submit("job-" + std::to_string(j), "", *added2, 0, false);
  const VirtualRunResult r2 = RunVirtual(d2, std::vector<StepCost>{cost}, true);
  EXPECT_NEAR(r2.makespan, 2 + 0.3 + 0.15, 1e-9) << "loaded at 2 s, past the 0.2 s wait: one batch of 3";
}

}  // namespace
}  // namespace baton::sim

namespace baton::sim {
namespace {

// `--duration summarize=1,park:100`: an attempt that parks holds nothing while it waits, so 10 jobs
// on 1 cpu take 10 x (1 + 1) s of cpu plus one park, not 10 parks in a row.
TEST(VirtualRun, AParkedStepHoldsNoCpuWhileItWaits) {
  driver::Driver d;
  NodeSpec n;
  n.name = "n";
  n.cpus = 1;
  d.AddNode(n, 0);
  const std::string from = "nodes.yaml";
  auto added = d.AddPipeline(ParsePipeline("steps:\n  - {name: a, uses: sleep, resources: {cpu: 1}}\n"
                                           "  - {name: summarize, uses: sleep, resources: {cpu: 1}}\n",
                                           "p.yaml")
                                 .value(),
                             "", &from);
  ASSERT_TRUE(added.ok());
  for (int j = 0; j < 10; ++j) d.Submit("job-" + std::to_string(j), "", *added, 0, false);
  std::vector<StepCost> cost(2);
  cost[1].park = 100;
  const VirtualRunResult r = RunVirtual(d, cost, /*keep_detail=*/true);
  ASSERT_TRUE(d.all_ended());
  for (uint32_t j = 0; j < 10; ++j) EXPECT_EQ(d.job(j).end, driver::JobEnd::kSucceeded);
  EXPECT_LE(r.makespan, 20 + 100);
  EXPECT_GE(r.makespan, 2 + 100);
  // The last summarize attempt spans its park: one attempt per step and job.
  EXPECT_EQ(r.attempts, 20u);
}

}  // namespace
}  // namespace baton::sim
