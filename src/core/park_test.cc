// Park / Unpark: a parked attempt (its work handed to an LLM batch) holds no resource and counts
// against no admission backlog; in virtual time.
#include <gtest/gtest.h>

#include "core/scheduler.h"

namespace baton::core {
namespace {

// Steps: `pre` (cpu 1), `llm` (cpu 1, memory 1, pool "llm" 1).
uint32_t TwoSteps(Scheduler& s) {
  PipelineModel p;
  p.name = "t";
  StepModel pre;
  pre.name = "pre";
  pre.demand.Set(kCpu, ToAmount(1));
  StepModel llm;
  llm.name = "llm";
  llm.demand.Set(kCpu, ToAmount(1));
  llm.demand.Set(kMemory, ToAmount(1));
  llm.demand.Set(s.resources().Intern("llm"), ToAmount(1));
  llm.timeout = 5;
  p.steps = {pre, llm};
  return s.AddPipeline(p);
}

TEST(Park, AParkedAttemptHoldsNothingAndManyParkOnTwoCpus) {
  Scheduler s;
  s.SetPool("llm", 2);
  const uint32_t p = TwoSteps(s);
  NodeModel n;
  n.name = "n";
  n.total.Set(kCpu, ToAmount(2));
  n.total.Set(kMemory, ToAmount(2));
  s.AddNode(n);
  for (int i = 0; i < 30; ++i) s.Submit(p, 0);
  // Every job reaches its llm step and parks there: 30 parked attempts on 2 cpus and a pool of 2.
  std::vector<Placement> parked;
  double now = 0;
  for (int round = 0; round < 200 && parked.size() < 30; ++round) {
    std::vector<Placement> out;
    s.Decide(now, &out);
    for (const auto& pl : out) {
      if (pl.step == 0) {
        s.Finish(pl.job, pl.serial, AttemptStatus::kOk, true, now);
      } else {
        ASSERT_TRUE(s.Park(pl.job, pl.serial));
        EXPECT_FALSE(s.Park(pl.job, pl.serial));  // already parked
        parked.push_back(pl);
      }
    }
    now += 1;
  }
  ASSERT_EQ(parked.size(), 30u);
  EXPECT_EQ(s.NodeFree(0).Get(kCpu), ToAmount(2));
  EXPECT_EQ(s.NodeFree(0).Get(kMemory), ToAmount(2));
  EXPECT_EQ(s.WaitReason(parked[0].job, now), "parked (holding nothing)");
  // No deadline while parked: its 5 s timeout does not fire.
  std::vector<AttemptRef> expired;
  s.Expired(now + 100, &expired);
  EXPECT_TRUE(expired.empty());
  // Completed with a result while parked: gives back nothing (not more than it held).
  s.Finish(parked[0].job, parked[0].serial, AttemptStatus::kOk, true, now);
  EXPECT_EQ(s.Job(parked[0].job).phase, Phase::kSucceeded);
  EXPECT_EQ(s.NodeFree(0).Get(kCpu), ToAmount(2));
  // Woken: takes everything back at once, over capacity when others took it meanwhile.
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(s.Unpark(parked[i].job, parked[i].serial));
  EXPECT_FALSE(s.Unpark(parked[1].job, parked[1].serial));
  EXPECT_EQ(s.NodeFree(0).Get(kCpu), ToAmount(-1));
  EXPECT_EQ(s.NodeFree(0).Get(kMemory), ToAmount(-1));
  for (int i = 1; i <= 3; ++i) s.Finish(parked[i].job, parked[i].serial, AttemptStatus::kOk, true, now);
  EXPECT_EQ(s.NodeFree(0).Get(kCpu), ToAmount(2));
  EXPECT_EQ(s.NodeFree(0).Get(kMemory), ToAmount(2));
  // Cancelling a parked attempt: it ends when the driver reports it, giving back nothing.
  ASSERT_EQ(s.Cancel(parked[4].job).size(), 1u);
  s.Finish(parked[4].job, parked[4].serial, AttemptStatus::kCancelled, false, now);
  EXPECT_EQ(s.Job(parked[4].job).phase, Phase::kCancelled);
  EXPECT_EQ(s.NodeFree(0).Get(kCpu), ToAmount(2));
}

TEST(Park, AParkedAnchorLeavesTheAdmissionBacklog) {
  // download (anchor) -> analyze (same_node_as download, gpu): a node with one GPU admits one job
  // at prefetch 1; a download that parks does not count, so another job is admitted meanwhile.
  Scheduler s;
  PipelineModel p;
  p.name = "t";
  p.prefetch = 1;
  StepModel dl;
  dl.name = "download";
  dl.demand.Set(kCpu, ToAmount(1));
  StepModel an;
  an.name = "analyze";
  an.demand.Set(kGpu, ToAmount(1));
  an.same_node_as = 0;
  p.steps = {dl, an};
  const uint32_t pid = s.AddPipeline(p);
  NodeModel n;
  n.name = "n";
  n.total.Set(kCpu, ToAmount(4));
  n.total.Set(kGpu, ToAmount(1));
  s.AddNode(n);
  for (int i = 0; i < 3; ++i) s.Submit(pid, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  ASSERT_EQ(out.size(), 1u);  // prefetch 1 x 1 GPU
  ASSERT_TRUE(s.Park(out[0].job, out[0].serial));
  std::vector<Placement> more;
  s.Decide(1, &more);
  ASSERT_EQ(more.size(), 1u);  // admitted while the first is parked
  EXPECT_NE(more[0].job, out[0].job);
  // Woken: back in the backlog (now over it), so nothing new is admitted.
  ASSERT_TRUE(s.Unpark(out[0].job, out[0].serial));
  std::vector<Placement> none;
  s.Decide(2, &none);
  EXPECT_TRUE(none.empty());
}

}  // namespace
}  // namespace baton::core
