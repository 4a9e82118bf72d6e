// ReleaseCpu / RetakeCpu: a running attempt that waits outside the CPU (an llm step waiting for a
// rate) gives its node's cpu back and takes it again afterwards, in virtual time.
#include <gtest/gtest.h>

#include "core/scheduler.h"

namespace baton::core {
namespace {

// One pipeline of one step asking for `cpu` (and `pool` of a cluster-wide pool when > 0).
uint32_t OneStep(Scheduler& s, double cpu, double pool = 0, double memory = 0) {
  PipelineModel p;
  p.name = "t";
  StepModel m;
  m.name = "llm";
  m.demand.Set(kCpu, ToAmount(cpu));
  if (memory > 0) m.demand.Set(kMemory, ToAmount(memory));
  if (pool > 0) m.demand.Set(s.resources().Intern("llm"), ToAmount(pool));
  m.retries = 1;
  p.steps.push_back(m);
  return s.AddPipeline(p);
}

uint32_t Node(Scheduler& s, const std::string& name, double cpu, double memory = 0) {
  NodeModel n;
  n.name = name;
  n.total.Set(kCpu, ToAmount(cpu));
  if (memory > 0) n.total.Set(kMemory, ToAmount(memory));
  return s.AddNode(n);
}

TEST(CpuRelease, AWaitingAttemptLetsAnotherStepTakeItsCpu) {
  Scheduler s;
  const uint32_t p = OneStep(s, 1);
  Node(s, "n", 1);
  for (int i = 0; i < 3; ++i) s.Submit(p, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  ASSERT_EQ(out.size(), 1u);  // one cpu: one at a time
  const Placement first = out[0];

  EXPECT_TRUE(s.ReleaseCpu(first.job, first.serial));
  EXPECT_TRUE(s.CpuReleased(first.job));
  EXPECT_EQ(s.NodeFree(0).Get(kCpu), ToAmount(1));
  EXPECT_EQ(s.WaitReason(first.job, 1), "running on n (holding no CPU)");
  out.clear();
  s.Decide(1, &out);
  ASSERT_EQ(out.size(), 1u);  // the second job runs beside the waiting one
  const Placement second = out[0];
  EXPECT_NE(second.job, first.job);

  // The wait ends while the second still runs: the cpu is taken back at once, over capacity.
  EXPECT_TRUE(s.RetakeCpu(first.job, first.serial));
  EXPECT_FALSE(s.CpuReleased(first.job));
  EXPECT_EQ(s.NodeFree(0).Get(kCpu), ToAmount(-1));
  s.Finish(second.job, second.serial, AttemptStatus::kOk, true, 2);
  out.clear();
  s.Decide(2, &out);
  EXPECT_TRUE(out.empty());  // still full: the first holds the only cpu again
  s.Finish(first.job, first.serial, AttemptStatus::kOk, true, 3);
  EXPECT_EQ(s.NodeFree(0).Get(kCpu), ToAmount(1));
  out.clear();
  s.Decide(3, &out);
  EXPECT_EQ(out.size(), 1u);  // the third
}

TEST(CpuRelease, FinishingWhileReleasedGivesBackOnlyWhatItHeld) {
  Scheduler s;
  const uint32_t p = OneStep(s, 2, 0, 4);
  Node(s, "n", 2, 8);
  s.Submit(p, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(s.ReleaseCpu(out[0].job, out[0].serial));
  EXPECT_EQ(s.NodeFree(0).Get(kCpu), ToAmount(2));
  EXPECT_EQ(s.NodeFree(0).Get(kMemory), ToAmount(4));  // memory stays held
  s.Finish(out[0].job, out[0].serial, AttemptStatus::kOk, true, 1);
  EXPECT_EQ(s.NodeFree(0).Get(kCpu), ToAmount(2));  // not 4
  EXPECT_EQ(s.NodeFree(0).Get(kMemory), ToAmount(8));
  EXPECT_FALSE(s.CpuReleased(out[0].job));
}

TEST(CpuRelease, PoolsStayHeldWhileWaiting) {
  Scheduler s;
  s.SetPool("llm", 1);
  const uint32_t p = OneStep(s, 1, 1);
  Node(s, "n", 4);
  s.Submit(p, 0);
  s.Submit(p, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(s.ReleaseCpu(out[0].job, out[0].serial));
  std::vector<Placement> more;
  s.Decide(1, &more);
  EXPECT_TRUE(more.empty());  // the llm pool bounds concurrent requests, waiting or not
}

TEST(CpuRelease, StaleOrRepeatedCallsChangeNothing) {
  Scheduler s;
  const uint32_t p = OneStep(s, 1);
  Node(s, "n", 1);
  s.Submit(p, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  ASSERT_EQ(out.size(), 1u);
  const Placement a = out[0];
  EXPECT_FALSE(s.RetakeCpu(a.job, a.serial));       // not released
  EXPECT_FALSE(s.ReleaseCpu(a.job, a.serial + 1));  // another serial
  EXPECT_TRUE(s.ReleaseCpu(a.job, a.serial));
  EXPECT_FALSE(s.ReleaseCpu(a.job, a.serial));      // twice
  EXPECT_EQ(s.NodeFree(0).Get(kCpu), ToAmount(1));
  // It fails; its retry is a new attempt holding cpu as usual, and the old serial is stale.
  s.Finish(a.job, a.serial, AttemptStatus::kFailed, true, 1);
  EXPECT_FALSE(s.RetakeCpu(a.job, a.serial));
  out.clear();
  s.Decide(100, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(s.CpuReleased(out[0].job));
  EXPECT_EQ(s.NodeFree(0).Get(kCpu), 0);
  EXPECT_FALSE(s.ReleaseCpu(99, 1));  // unknown job
}

TEST(CpuRelease, LostNodeWithAReleasedAttemptComesBackWhole) {
  Scheduler s;
  const uint32_t p = OneStep(s, 1);
  const uint32_t n = Node(s, "n", 1);
  s.Submit(p, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  ASSERT_TRUE(s.ReleaseCpu(out[0].job, out[0].serial));
  const auto lost = s.NodeLost(n, 1);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_FALSE(s.CpuReleased(out[0].job));
  Node(s, "n", 1);  // back with fresh resources
  EXPECT_EQ(s.NodeFree(n).Get(kCpu), ToAmount(1));
  out.clear();
  s.Decide(2, &out);
  ASSERT_EQ(out.size(), 1u);  // re-queued and placed again
  EXPECT_EQ(s.NodeFree(n).Get(kCpu), 0);
}

}  // namespace
}  // namespace baton::core
