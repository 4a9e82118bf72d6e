// Tests of Scheduler::RestoreJob / RestoreRunning: a driver that restarts (the cluster head after
// SIGKILL) rebuilds the core from its store and must continue exactly where the old one was.
#include <gtest/gtest.h>

#include "core/scheduler.h"

namespace baton::core {
namespace {

// download (download_slot) -> analyze (gpu, same node as download) -> document (role=head).
uint32_t Seed(Scheduler& s) {
  PipelineModel p;
  p.name = "seed";
  StepModel d, a, doc;
  d.name = "download";
  a.name = "analyze";
  doc.name = "document";
  d.demand.Set(s.resources().Intern("download_slot"), ToAmount(1));
  a.demand.Set(kGpu, ToAmount(1));
  a.same_node_as = 0;
  doc.demand.Set(kCpu, ToAmount(1));
  doc.labels = {{"role", "head"}};
  p.steps = {d, a, doc};
  return s.AddPipeline(p);
}

uint32_t Node(Scheduler& s, const std::string& name, double gpus, Labels labels = {}) {
  NodeModel n;
  n.name = name;
  n.total.Set(kCpu, ToAmount(2));
  n.total.Set(kGpu, ToAmount(gpus));
  n.total.Set(s.resources().Intern("download_slot"), ToAmount(1));
  n.labels = std::move(labels);
  return s.AddNode(n);
}

TEST(Restore, ReadyJobAtLaterStepKeepsItsHome) {
  Scheduler s;
  const uint32_t p = Seed(s);
  Node(s, "a", 1);
  const uint32_t b = Node(s, "b", 1);
  const uint32_t job = s.RestoreJob(p, 1, {static_cast<int32_t>(b), -1, -1}, Phase::kReady, 7, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].job, job);
  EXPECT_EQ(out[0].step, 1);
  EXPECT_EQ(out[0].node, b);
  EXPECT_EQ(out[0].serial, 8u);  // continues above the restored serial
}

TEST(Restore, BoundStepWithUnknownHomeGoesBackToAnchor) {
  Scheduler s;
  const uint32_t p = Seed(s);
  Node(s, "a", 1);
  const uint32_t job = s.RestoreJob(p, 1, {-1, -1, -1}, Phase::kReady, 3, 0);
  EXPECT_EQ(s.Job(job).step, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].step, 0);
}

TEST(Restore, RunningAttemptReservesResourcesAndFinishes) {
  Scheduler s;
  const uint32_t p = Seed(s);
  const uint32_t a = Node(s, "a", 1);
  const uint32_t j0 = s.RestoreJob(p, 1, {static_cast<int32_t>(a), -1, -1}, Phase::kReady, 4, 0);
  ASSERT_TRUE(s.RestoreRunning(j0, a, 4, 1, 0x1, kNever));
  EXPECT_EQ(s.Job(j0).phase, Phase::kRunning);
  EXPECT_EQ(s.NodeGpusBusy(a), 0x1u);
  // A second job ready for analyze on the same node must wait: the only GPU is taken.
  const uint32_t j1 = s.RestoreJob(p, 1, {static_cast<int32_t>(a), -1, -1}, Phase::kReady, 2, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  EXPECT_TRUE(out.empty());
  // A stale serial is ignored; the restored one completes and frees the GPU.
  EXPECT_EQ(s.Finish(j0, 3, AttemptStatus::kOk, true, 1).kind, FinishResult::Kind::kIgnored);
  EXPECT_EQ(s.Finish(j0, 4, AttemptStatus::kOk, true, 1).kind, FinishResult::Kind::kNextStepReady);
  s.Decide(1, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].job, j1);
  EXPECT_EQ(out[0].step, 1);
}

TEST(Restore, RunningRefusedWhenItDoesNotFitOrNodeLost) {
  Scheduler s;
  const uint32_t p = Seed(s);
  const uint32_t a = Node(s, "a", 1);
  const uint32_t b = Node(s, "b", 0);
  const uint32_t j0 = s.RestoreJob(p, 1, {static_cast<int32_t>(a), -1, -1}, Phase::kReady, 1, 0);
  EXPECT_FALSE(s.RestoreRunning(j0, b, 1, 1, 0x1, kNever));  // bound to a
  EXPECT_FALSE(s.RestoreRunning(j0, a, 1, 1, 0x2, kNever));  // no device 1
  EXPECT_TRUE(s.RestoreRunning(j0, a, 1, 1, 0x1, kNever));
  const uint32_t j1 = s.RestoreJob(p, 1, {static_cast<int32_t>(a), -1, -1}, Phase::kReady, 1, 0);
  EXPECT_FALSE(s.RestoreRunning(j1, a, 1, 1, 0x1, kNever));  // GPU already taken
  EXPECT_EQ(s.Job(j1).phase, Phase::kReady);
  s.NodeLost(a, 1);
  const uint32_t j2 = s.RestoreJob(p, 0, {-1, -1, -1}, Phase::kReady, 0, 1);
  EXPECT_FALSE(s.RestoreRunning(j2, a, 1, 1, 0, kNever));
}

TEST(Restore, BacklogIsRebuiltSoAdmissionHolds) {
  Scheduler s;
  const uint32_t p = Seed(s);
  const uint32_t a = Node(s, "a", 1);
  // Job 0 downloaded on a and waits for analyze: a's backlog is full (prefetch 1 x 1 GPU).
  s.RestoreJob(p, 1, {static_cast<int32_t>(a), -1, -1}, Phase::kReady, 1, 0);
  const uint32_t j1 = s.RestoreJob(p, 1, {static_cast<int32_t>(a), -1, -1}, Phase::kReady, 1, 0);
  // Take the GPU with job 1's analyze so job 0 keeps waiting in the backlog.
  ASSERT_TRUE(s.RestoreRunning(j1, a, 1, 1, 0x1, kNever));
  const uint32_t j2 = s.RestoreJob(p, 0, {-1, -1, -1}, Phase::kReady, 0, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  EXPECT_TRUE(out.empty()) << "a new download must not start while a's backlog is full";
  EXPECT_EQ(s.WaitReason(j2, 0), "waiting for admission (nodes busy)");
}

TEST(Restore, EndedJobsStayEnded) {
  Scheduler s;
  const uint32_t p = Seed(s);
  Node(s, "a", 1, {{"role", "head"}});
  const uint32_t done = s.RestoreJob(p, 2, {0, 0, 0}, Phase::kSucceeded, 3, 0);
  const uint32_t failed = s.RestoreJob(p, 1, {0, -1, -1}, Phase::kFailed, 2, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(s.Job(done).phase, Phase::kSucceeded);
  EXPECT_EQ(s.Job(failed).phase, Phase::kFailed);
  EXPECT_TRUE(s.Retry(failed, 1));  // a restored failed job can still be retried
  s.Decide(1, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].job, failed);
  EXPECT_EQ(out[0].step, 1);
}

// Reuse: an ended job's place holds a new job (a run whose memory follows the work in flight);
// the old job's late report and stale queue entries never touch the new one.
TEST(Reuse, AnEndedJobsPlaceTakesANewJobAndIgnoresTheOldJobsReports) {
  Scheduler s;
  const uint32_t p = Seed(s);
  Node(s, "a", 1, {{"role", "head"}});
  const uint32_t job = s.Submit(p, 0);
  EXPECT_FALSE(s.Reuse(job, p, 0));  // live: not reusable
  uint32_t serial = 0;
  for (uint16_t step = 0; step < 3; ++step) {
    std::vector<Placement> out;
    s.Decide(0, &out);
    ASSERT_EQ(out.size(), 1u);
    serial = out[0].serial;
    s.Finish(job, serial, AttemptStatus::kOk, true, 0);
  }
  ASSERT_EQ(s.Job(job).phase, Phase::kSucceeded);
  ASSERT_TRUE(s.Reuse(job, p, 1));
  EXPECT_EQ(s.job_count(), 1u);
  EXPECT_EQ(s.Job(job).phase, Phase::kReady);
  EXPECT_EQ(s.Job(job).step, 0);
  EXPECT_EQ(s.Home(job, 0), -1);  // the old job's homes are gone
  // A report of the old job's last attempt arriving late changes nothing.
  EXPECT_EQ(s.Finish(job, serial, AttemptStatus::kOk, true, 1).kind, FinishResult::Kind::kIgnored);
  std::vector<Placement> out;
  s.Decide(1, &out);
  ASSERT_EQ(out.size(), 1u);  // placed once, though the old job's queue entries were there
  EXPECT_EQ(out[0].step, 0);
  EXPECT_GT(out[0].serial, serial);
  // A failed job keeps its place (a retry needs it).
  s.Finish(job, out[0].serial, AttemptStatus::kFailed, false, 1);
  ASSERT_EQ(s.Job(job).phase, Phase::kFailed);
  EXPECT_FALSE(s.Reuse(job, p, 1));
}

}  // namespace
}  // namespace baton::core
