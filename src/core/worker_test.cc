// Resident workers in the core (scheduler.h rule 8): attempts of a worker step join a worker that
// holds the step's demand for its life; locality per job, admission counting a worker's items,
// idle retirement, drain, node loss and restore. Driven by hand in virtual time.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/scheduler.h"

namespace baton::core {
namespace {

struct Fixture {
  Scheduler s;
  uint32_t pipeline = 0;

  // download (download_slot) -> analyze (worker: gpu 1, `items` per worker, same node) -> document (cpu).
  explicit Fixture(int items, double gpu = 1, int prefetch = 1, double idle = 60) {
    const ResourceId slot = s.resources().Intern("download_slot");
    PipelineModel p;
    p.name = "w";
    p.prefetch = prefetch;
    StepModel d;
    d.name = "download";
    d.demand.Set(slot, ToAmount(1));
    StepModel a;
    a.name = "analyze";
    a.demand.Set(kGpu, ToAmount(gpu));
    a.same_node_as = 0;
    a.worker_items = items;
    a.worker_idle = idle;
    StepModel doc;
    doc.name = "document";
    doc.demand.Set(kCpu, ToAmount(1));
    p.steps = {d, a, doc};
    pipeline = s.AddPipeline(p);
  }
  uint32_t Node(const std::string& name, double gpus, double slots = 100, double cpus = 100) {
    NodeModel n;
    n.name = name;
    n.total.Set(kCpu, ToAmount(cpus));
    n.total.Set(kGpu, ToAmount(gpus));
    n.total.Set(s.resources().Find("download_slot"), ToAmount(slots));
    return s.AddNode(n);
  }
  std::vector<Placement> Decide(double now) {
    std::vector<Placement> out;
    s.Decide(now, &out);
    return out;
  }
  static std::vector<Placement> OfStep(const std::vector<Placement>& ps, uint16_t step) {
    std::vector<Placement> out;
    for (const auto& p : ps)
      if (p.step == step) out.push_back(p);
    return out;
  }
  void FinishAll(const std::vector<Placement>& ps, double now, AttemptStatus st = AttemptStatus::kOk) {
    for (const auto& p : ps) s.Finish(p.job, p.serial, st, true, now);
  }
};

TEST(Workers, AttemptsOfManyJobsJoinOneWorkerThatHoldsTheGpu) {
  Fixture f(4);
  f.Node("n0", 1);
  for (int i = 0; i < 6; ++i) f.s.Submit(f.pipeline, 0);
  auto downloads = f.Decide(0);
  // Admission: prefetch 1 x 1 worker x 4 items: four downloads, not six, not one.
  ASSERT_EQ(downloads.size(), 4u);
  for (const auto& p : downloads) EXPECT_EQ(p.worker, kNoWorker);
  f.FinishAll(downloads, 1);
  const auto turn = f.Decide(1);
  auto analyze = Fixture::OfStep(turn, 1);
  ASSERT_EQ(analyze.size(), 4u);
  // The four left the admission backlog: the last two downloads start in the same turn.
  EXPECT_EQ(Fixture::OfStep(turn, 0).size(), 2u);
  std::set<uint32_t> workers;
  for (const auto& p : analyze) {
    workers.insert(p.worker);
    EXPECT_EQ(p.gpu_mask, 1u);
  }
  EXPECT_EQ(workers.size(), 1u) << "one worker takes all four items";
  EXPECT_EQ(f.s.NodeGpusBusy(0), 1u);
  ASSERT_EQ(f.s.worker_count(), 1u);
  EXPECT_EQ(f.s.Worker(0).items, 4);
  // The worker is full: when the last two downloads end, no fifth item joins it.
  f.FinishAll(Fixture::OfStep(turn, 0), 1.5);
  EXPECT_TRUE(f.Decide(1.5).empty());
  // One item ends: its slot in the worker is free, the GPU stays granted to the worker.
  f.s.Finish(analyze[0].job, analyze[0].serial, AttemptStatus::kOk, true, 2);
  EXPECT_EQ(f.s.NodeGpusBusy(0), 1u);
  EXPECT_EQ(f.s.Worker(0).items, 3);
}

TEST(Workers, IdleWorkerGivesItsGrantBackAfterIdleTimeoutOnly) {
  Fixture f(2, 1, 1, 30);
  f.Node("n0", 1);
  f.s.Submit(f.pipeline, 0);
  f.FinishAll(f.Decide(0), 1);
  auto a = Fixture::OfStep(f.Decide(1), 1);
  ASSERT_EQ(a.size(), 1u);
  f.FinishAll(a, 5);
  std::vector<WorkerRef> retired;
  f.s.RetireIdleWorkers(20, &retired);
  EXPECT_TRUE(retired.empty());
  EXPECT_EQ(f.s.NodeGpusBusy(0), 1u) << "an idle worker keeps its GPU until worker_idle passes";
  EXPECT_DOUBLE_EQ(f.s.NextWakeup(), 35);
  f.s.RetireIdleWorkers(35, &retired);
  ASSERT_EQ(retired.size(), 1u);
  EXPECT_EQ(retired[0].worker, 0u);
  EXPECT_EQ(retired[0].step, 1);
  EXPECT_EQ(f.s.NodeGpusBusy(0), 0u);
  EXPECT_FALSE(f.s.Worker(0).alive);
  // A new item starts a new worker (ids are never reused).
  f.s.Submit(f.pipeline, 40);
  f.FinishAll(f.Decide(40), 41);
  auto b = Fixture::OfStep(f.Decide(41), 1);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].worker, 1u);
}

TEST(Workers, TwoGpusTwoWorkersWithTheirOwnDevice) {
  Fixture f(2);
  f.Node("n0", 2);
  for (int i = 0; i < 4; ++i) f.s.Submit(f.pipeline, 0);
  auto d = f.Decide(0);
  ASSERT_EQ(d.size(), 4u) << "admission: prefetch 1 x 2 workers x 2 items";
  f.FinishAll(d, 1);
  auto a = Fixture::OfStep(f.Decide(1), 1);
  ASSERT_EQ(a.size(), 4u);
  std::map<uint32_t, uint64_t> mask_of;
  std::map<uint32_t, int> items_of;
  for (const auto& p : a) {
    mask_of[p.worker] = p.gpu_mask;
    ++items_of[p.worker];
  }
  ASSERT_EQ(mask_of.size(), 2u);
  EXPECT_NE(mask_of.begin()->second, std::next(mask_of.begin())->second);
  for (const auto& [w, n] : items_of) EXPECT_EQ(n, 2) << "a second worker starts only when the first is full";
}

TEST(Workers, ItemsSpreadOverLiveWorkersSoNoGpuWaitsBehindAnotherBatch) {
  Fixture f(4);
  f.Node("n0", 2);
  for (int i = 0; i < 8; ++i) f.s.Submit(f.pipeline, 0);
  f.FinishAll(f.Decide(0), 1);
  auto a = Fixture::OfStep(f.Decide(1), 1);
  ASSERT_EQ(a.size(), 8u);  // two workers, four each
  // Three of worker 0's items end and one of worker 1's: worker 0 holds 1, worker 1 holds 3.
  int ended0 = 0, ended1 = 0;
  for (const auto& p : a) {
    if (p.worker == 0 && ended0 < 3) {
      f.s.Finish(p.job, p.serial, AttemptStatus::kOk, true, 2);
      ++ended0;
    } else if (p.worker == 1 && ended1 < 1) {
      f.s.Finish(p.job, p.serial, AttemptStatus::kOk, true, 2);
      ++ended1;
    }
  }
  // A new job's item joins the emptier worker 0, not worker 1 whose batch is nearly full.
  f.s.Submit(f.pipeline, 2);
  f.FinishAll(Fixture::OfStep(f.Decide(2), 0), 3);
  const auto next = Fixture::OfStep(f.Decide(3), 1);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].worker, 0u);
  EXPECT_EQ(f.s.Worker(0).items, 2);
  EXPECT_EQ(f.s.Worker(1).items, 3);
}

TEST(Workers, FractionalGpuPutsFourWorkersOnOneDevice) {
  Fixture f(1, 0.25);
  f.Node("n0", 1);
  for (int i = 0; i < 5; ++i) f.s.Submit(f.pipeline, 0);
  f.FinishAll(f.Decide(0), 1);
  auto a = Fixture::OfStep(f.Decide(1), 1);
  ASSERT_EQ(a.size(), 4u);
  std::set<uint32_t> workers;
  for (const auto& p : a) {
    workers.insert(p.worker);
    EXPECT_EQ(p.gpu_mask, 1u);
  }
  EXPECT_EQ(workers.size(), 4u);
}

TEST(Workers, LocalityHoldsPerJob) {
  Fixture f(8);
  f.Node("n0", 1, 1);  // one download slot each: one job downloads on each node
  f.Node("n1", 1, 1);
  for (int i = 0; i < 2; ++i) f.s.Submit(f.pipeline, 0);
  auto d = f.Decide(0);
  ASSERT_EQ(d.size(), 2u);
  ASSERT_NE(d[0].node, d[1].node);
  f.FinishAll(d, 1);
  auto a = Fixture::OfStep(f.Decide(1), 1);
  ASSERT_EQ(a.size(), 2u);
  for (const auto& p : a) {
    const auto& home = d[0].job == p.job ? d[0] : d[1];
    EXPECT_EQ(p.node, home.node) << "an item joins a worker only where its download ran";
    EXPECT_EQ(f.s.Worker(p.worker).node, home.node);
  }
  EXPECT_NE(a[0].worker, a[1].worker);
}

TEST(Workers, DrainRetiresWorkersOnceEmptyAndNodeLossKillsThem) {
  Fixture f(4);
  f.Node("n0", 1);
  f.Node("n1", 1);
  for (int i = 0; i < 2; ++i) f.s.Submit(f.pipeline, 0);
  auto d = f.Decide(0);
  f.FinishAll(d, 1);
  auto a = Fixture::OfStep(f.Decide(1), 1);
  ASSERT_EQ(a.size(), 2u);
  const uint32_t node = a[0].node;
  f.s.SetDraining(node, true);
  std::vector<WorkerRef> retired;
  f.s.RetireIdleWorkers(2, &retired);
  EXPECT_TRUE(retired.empty()) << "a worker with items finishes them first";
  for (const auto& p : a)
    if (p.node == node) f.s.Finish(p.job, p.serial, AttemptStatus::kOk, true, 3);
  EXPECT_LE(f.s.NextWakeup(), 3);
  f.s.RetireIdleWorkers(3, &retired);
  ASSERT_EQ(retired.size(), 1u);
  EXPECT_EQ(retired[0].node, node);
  // The other node is lost with its worker's item: the item is re-queued, the worker is gone.
  const uint32_t other = 1 - node;
  auto lost = f.s.NodeLost(other, 4);
  ASSERT_EQ(lost.size(), 1u);
  for (uint32_t w = 0; w < f.s.worker_count(); ++w) EXPECT_FALSE(f.s.Worker(w).alive);
}

TEST(Workers, RestoredRunningItemsShareTheWorkerOfTheirGrant) {
  Fixture f(4);
  f.Node("n0", 2);
  std::vector<uint32_t> jobs;
  for (int i = 0; i < 3; ++i) jobs.push_back(f.s.RestoreJob(f.pipeline, 1, {0, -1, -1}, Phase::kReady, 4, 0));
  EXPECT_TRUE(f.s.RestoreRunning(jobs[0], 0, 5, 1, 0b10, kNever));
  EXPECT_TRUE(f.s.RestoreRunning(jobs[1], 0, 5, 1, 0b10, kNever));
  EXPECT_TRUE(f.s.RestoreRunning(jobs[2], 0, 5, 1, 0b01, kNever));
  ASSERT_EQ(f.s.worker_count(), 2u);
  EXPECT_EQ(f.s.Worker(0).items, 2);
  EXPECT_EQ(f.s.Worker(0).gpu_mask, 0b10u);
  EXPECT_EQ(f.s.Worker(1).items, 1);
  EXPECT_EQ(f.s.NodeGpusBusy(0), 0b11u);
}

TEST(Workers, FailedItemRetriesAloneTheWorkerStays) {
  Fixture f(4);
  f.Node("n0", 1);
  for (int i = 0; i < 2; ++i) f.s.Submit(f.pipeline, 0);
  f.FinishAll(f.Decide(0), 1);
  auto a = Fixture::OfStep(f.Decide(1), 1);
  ASSERT_EQ(a.size(), 2u);
  f.s.Finish(a[0].job, a[0].serial, AttemptStatus::kFailed, true, 2);  // retries 0: the job fails
  EXPECT_EQ(f.s.Job(a[0].job).phase, Phase::kFailed);
  EXPECT_EQ(f.s.Job(a[1].job).phase, Phase::kRunning);
  EXPECT_EQ(f.s.Worker(a[1].worker).items, 1);
  EXPECT_TRUE(f.s.Worker(a[1].worker).alive);
}

}  // namespace
}  // namespace baton::core
