// Unit tests of every scheduling rule of docs/design.md ("Scheduling rules"), driven in virtual
// time by the Simulator.
#include "core/scheduler.h"

#include <gtest/gtest.h>

#include <map>

#include "sim/simulator.h"

namespace baton::core {
namespace {

using sim::Outcome;
using sim::Record;
using sim::Simulator;

struct StepDef {
  std::string name;
  std::map<std::string, double> res;
  int same_node_as = -1;
  Labels labels = {};
  int retries = 0;
  double timeout = 0;
  double backoff = 1;
};

PipelineModel MakePipeline(Scheduler& s, const std::vector<StepDef>& defs, int prefetch = 1) {
  PipelineModel p;
  p.name = "test";
  p.prefetch = prefetch;
  for (const auto& d : defs) {
    StepModel m;
    m.name = d.name;
    for (const auto& [k, v] : d.res) m.demand.Set(s.resources().Intern(k), ToAmount(v));
    m.same_node_as = d.same_node_as;
    m.labels = d.labels;
    m.retries = d.retries;
    m.timeout = d.timeout;
    m.backoff = d.backoff;
    p.steps.push_back(m);
  }
  return p;
}

// The seed's pipeline: download (download_slot) -> analyze (gpu, same node) -> summarize -> document (head).
PipelineModel SeedPipeline(Scheduler& s, int prefetch = 1) {
  return MakePipeline(s,
                      {{"download", {{"download_slot", 1}}},
                       {"analyze", {{"gpu", 1}}, 0},
                       {"summarize", {{"cpu", 1}}},
                       {"document", {{"cpu", 1}}, -1, {{"role", "head"}}}},
                      prefetch);
}

NodeModel MakeNode(Scheduler& s, const std::string& name, double cpu, double gpu,
                   std::map<std::string, double> custom = {}, Labels labels = {}) {
  NodeModel n;
  n.name = name;
  n.total.Set(kCpu, ToAmount(cpu));
  n.total.Set(kGpu, ToAmount(gpu));
  for (const auto& [k, v] : custom) n.total.Set(s.resources().Intern(k), ToAmount(v));
  n.labels = std::move(labels);
  return n;
}

Simulator::Behaviour Durations(std::vector<double> d) {
  return [d](const Placement& p) { return Outcome{d[p.step]}; };
}

std::vector<Record> Of(const Simulator& sim, uint16_t step) {
  std::vector<Record> out;
  for (const auto& r : sim.records())
    if (r.step == step) out.push_back(r);
  return out;
}

const Record& Find(const Simulator& sim, uint32_t job, uint16_t step, core::AttemptStatus st = AttemptStatus::kOk) {
  for (const auto& r : sim.records())
    if (r.job == job && r.step == step && r.status == st) return r;
  static Record none{};
  ADD_FAILURE() << "no record for job " << job << " step " << step;
  return none;
}

TEST(Scheduler, SeedExperimentMeetsTheLowerBound) {
  Scheduler s;
  uint32_t p = s.AddPipeline(SeedPipeline(s));
  s.AddNode(MakeNode(s, "head", 16, 1, {{"download_slot", 1}}, {{"role", "head"}}));
  for (int i = 0; i < 4; ++i) s.Submit(p, 0);
  Simulator sim(s);
  double end = sim.Run(Durations({10, 30, 6, 1}));
  // Lower bound: one download, four analyses back to back on the one GPU, then the tail.
  EXPECT_DOUBLE_EQ(end, 10 + 4 * 30 + 6 + 1);
  auto analyses = Of(sim, 1);
  ASSERT_EQ(analyses.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(analyses[i].job, static_cast<uint32_t>(i));
    EXPECT_DOUBLE_EQ(analyses[i].start, 10 + 30 * i);
    EXPECT_EQ(analyses[i].gpu_mask, 1u);  // GPUs: [0]
  }
  for (uint32_t j = 0; j < 4; ++j) {
    EXPECT_EQ(s.Job(j).phase, Phase::kSucceeded);
    double last_end = -1;
    for (uint16_t st = 0; st < 4; ++st) {
      const Record& r = Find(sim, j, st);
      EXPECT_GE(r.start, last_end) << "job " << j << " step " << st << " started before its previous step ended";
      last_end = r.end;
    }
  }
  // Pipelining: job 1 downloads while job 0 analyses.
  EXPECT_DOUBLE_EQ(Find(sim, 1, 0).start, 10);
}

TEST(Scheduler, AnalyzeRunsOnTheDownloadingNodeAndDocumentOnTheHead) {
  Scheduler s;
  uint32_t p = s.AddPipeline(SeedPipeline(s));
  s.AddNode(MakeNode(s, "head", 16, 1, {{"download_slot", 1}}, {{"role", "head"}}));
  s.AddNode(MakeNode(s, "worker-1", 16, 1, {{"download_slot", 1}}));
  s.AddNode(MakeNode(s, "worker-2", 16, 2, {{"download_slot", 2}}));
  for (int i = 0; i < 12; ++i) s.Submit(p, 0);
  Simulator sim(s);
  double end = sim.Run(Durations({10, 30, 6, 1}));
  std::map<uint32_t, int> jobs_per_node;
  for (uint32_t j = 0; j < 12; ++j) {
    ASSERT_EQ(s.Job(j).phase, Phase::kSucceeded);
    EXPECT_EQ(Find(sim, j, 1).node, Find(sim, j, 0).node) << "job " << j;
    EXPECT_EQ(Find(sim, j, 3).node, 0u) << "document off the head for job " << j;
    jobs_per_node[Find(sim, j, 0).node]++;
  }
  EXPECT_EQ(jobs_per_node[2], 6);  // the 2-GPU node does half the work
  EXPECT_EQ(jobs_per_node[0], 3);
  EXPECT_EQ(jobs_per_node[1], 3);
  EXPECT_DOUBLE_EQ(end, 10 + 3 * 30 + 6 + 1);  // lower bound with 4 GPUs
}

TEST(Scheduler, NodeWithoutGpuNeverStartsAJobItCannotFinish) {
  // Ray's approach: the CPU-only node takes downloads (it has slots) and its videos wait forever
  // for a GPU that is not there. Baton checks the whole locality chain before the first step.
  Scheduler s;
  uint32_t p = s.AddPipeline(SeedPipeline(s));
  s.AddNode(MakeNode(s, "cpu-only", 16, 0, {{"download_slot", 8}}, {{"role", "head"}}));
  s.AddNode(MakeNode(s, "gpu", 16, 1, {{"download_slot", 1}}));
  for (int i = 0; i < 5; ++i) s.Submit(p, 0);
  Simulator sim(s);
  sim.Run(Durations({10, 30, 6, 1}));
  for (uint32_t j = 0; j < 5; ++j) {
    EXPECT_EQ(s.Job(j).phase, Phase::kSucceeded);
    EXPECT_EQ(Find(sim, j, 0).node, 1u) << "job " << j << " downloaded on the GPU-less node";
  }
}

TEST(Scheduler, NodeWithTwoGpusTakesAboutTwiceTheJobs) {
  Scheduler s;
  uint32_t p = s.AddPipeline(SeedPipeline(s));
  s.AddNode(MakeNode(s, "one", 16, 1, {{"download_slot", 4}}, {{"role", "head"}}));
  s.AddNode(MakeNode(s, "two", 16, 2, {{"download_slot", 4}}));
  for (int i = 0; i < 60; ++i) s.Submit(p, 0);
  Simulator sim(s);
  sim.Run(Durations({10, 30, 6, 1}));
  int per_node[2] = {0, 0};
  for (uint32_t j = 0; j < 60; ++j) per_node[Find(sim, j, 0).node]++;
  EXPECT_EQ(per_node[0] + per_node[1], 60);
  const double ratio = static_cast<double>(per_node[1]) / per_node[0];
  EXPECT_GT(ratio, 1.8);
  EXPECT_LT(ratio, 2.2);
}

// Jobs a node holds that wait for its GPU (downloading or downloaded, analyze not started).
int MaxBacklog(const Simulator& sim, uint32_t node) {
  int peak = 0;
  for (const auto& d : sim.records()) {
    if (d.step != 0 || d.node != node) continue;
    int waiting = 0;
    const double t = d.start;
    for (const auto& e : sim.records()) {
      if (e.step != 0 || e.node != node || e.start > t) continue;
      const Record* a = nullptr;
      for (const auto& x : sim.records())
        if (x.job == e.job && x.step == 1) a = &x;
      if (a == nullptr || a->start > t) ++waiting;
    }
    peak = std::max(peak, waiting);
  }
  return peak;
}

TEST(Scheduler, AdmissionKeepsBacklogAtPrefetchPerGpu) {
  for (int prefetch : {1, 2}) {
    Scheduler s;
    uint32_t p = s.AddPipeline(SeedPipeline(s, prefetch));
    // Fast downloads with many slots: without admission node "a" would hoard every video.
    s.AddNode(MakeNode(s, "a", 16, 1, {{"download_slot", 100}}, {{"role", "head"}}));
    s.AddNode(MakeNode(s, "b", 16, 1, {{"download_slot", 100}}));
    for (int i = 0; i < 20; ++i) s.Submit(p, 0);
    Simulator sim(s);
    double end = sim.Run(Durations({1, 30, 6, 1}));
    EXPECT_LE(MaxBacklog(sim, 0), prefetch);
    EXPECT_LE(MaxBacklog(sim, 1), prefetch);
    EXPECT_DOUBLE_EQ(end, 1 + 10 * 30 + 6 + 1) << "prefetch " << prefetch;
  }
}

TEST(Scheduler, FractionalGpusShareOneDevice) {
  Scheduler s;
  uint32_t p = s.AddPipeline(MakePipeline(s, {{"infer", {{"gpu", 0.5}}}}));
  s.AddNode(MakeNode(s, "n", 4, 1));
  for (int i = 0; i < 4; ++i) s.Submit(p, 0);
  Simulator sim(s);
  EXPECT_DOUBLE_EQ(sim.Run(Durations({10})), 20);
  EXPECT_EQ(sim.PeakConcurrent(0), 2);
  for (const auto& r : sim.records()) EXPECT_EQ(r.gpu_mask, 1u);
}

TEST(Scheduler, WholeGpuDemandsGetDistinctDevices) {
  Scheduler s;
  uint32_t p = s.AddPipeline(MakePipeline(s, {{"train", {{"gpu", 2}}}}));
  s.AddNode(MakeNode(s, "n", 4, 4));
  s.Submit(p, 0);
  s.Submit(p, 0);
  s.Submit(p, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].gpu_mask, 0b0011u);
  EXPECT_EQ(out[1].gpu_mask, 0b1100u);
  s.Finish(out[1].job, out[1].serial, AttemptStatus::kOk, true, 1);
  out.clear();
  s.Decide(1, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].gpu_mask, 0b1100u);
}

TEST(Scheduler, PreferredGpuIsGrantedWhenFreeAndNeverWaitedFor) {
  Scheduler s;
  PipelineModel pm = MakePipeline(s, {{"analyze", {{"cpu", 1}}}});
  pm.steps[0].prefer_gpu = ToAmount(1);
  uint32_t p = s.AddPipeline(pm);
  s.AddNode(MakeNode(s, "n", 3, 1));
  for (int i = 0; i < 3; ++i) s.Submit(p, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  ASSERT_EQ(out.size(), 3u);  // all three run at once: the GPU is a preference
  EXPECT_EQ(out[0].gpu_mask, 1u);
  EXPECT_EQ(out[1].gpu_mask, 0u);
  EXPECT_EQ(out[2].gpu_mask, 0u);
  s.Finish(out[0].job, out[0].serial, AttemptStatus::kOk, true, 1);
  EXPECT_EQ(s.NodeGpusBusy(0), 0u);  // released
}

TEST(Scheduler, JobsFurtherAlongGoFirst) {
  Scheduler s;
  uint32_t p = s.AddPipeline(MakePipeline(s, {{"a", {{"cpu", 1}}}, {"b", {{"cpu", 1}}}}));
  s.AddNode(MakeNode(s, "n", 1, 0));
  for (int i = 0; i < 3; ++i) s.Submit(p, 0);
  Simulator sim(s);
  sim.Run(Durations({1, 1}));
  std::vector<std::pair<uint32_t, uint16_t>> order;
  for (const auto& r : sim.records()) order.push_back({r.job, r.step});
  std::vector<std::pair<uint32_t, uint16_t>> want = {{0, 0}, {0, 1}, {1, 0}, {1, 1}, {2, 0}, {2, 1}};
  EXPECT_EQ(order, want);
}

TEST(Scheduler, RetriesAfterBackoffOnAnotherNode) {
  Scheduler s;
  uint32_t p = s.AddPipeline(MakePipeline(s, {{"fetch", {{"cpu", 1}}, -1, {}, 2, 0, 4}}));
  s.AddNode(MakeNode(s, "a", 1, 0));
  s.AddNode(MakeNode(s, "b", 1, 0));
  uint32_t j = s.Submit(p, 0);
  Simulator sim(s);
  int calls = 0;
  sim.Run([&](const Placement&) {
    ++calls;
    return calls <= 2 ? Outcome{1, AttemptStatus::kFailed} : Outcome{1};
  });
  ASSERT_EQ(sim.records().size(), 3u);
  const auto& r = sim.records();
  EXPECT_DOUBLE_EQ(r[1].start, 1 + 4);      // backoff 4 s
  EXPECT_DOUBLE_EQ(r[2].start, 6 + 8);      // then 8 s
  EXPECT_NE(r[1].node, r[0].node);          // another node
  EXPECT_NE(r[2].node, r[1].node);
  EXPECT_EQ(r[2].step_attempt, 3);
  EXPECT_EQ(s.Job(j).phase, Phase::kSucceeded);
}

TEST(Scheduler, OneFailingJobNeverStopsTheOthers) {
  Scheduler s;
  uint32_t p = s.AddPipeline(MakePipeline(s, {{"a", {{"cpu", 1}}, -1, {}, 3}, {"b", {{"cpu", 1}}}}));
  s.AddNode(MakeNode(s, "n", 2, 0));
  for (int i = 0; i < 5; ++i) s.Submit(p, 0);
  Simulator sim(s);
  sim.Run([](const Placement& pl) {
    if (pl.job == 2 && pl.step == 0) return Outcome{1, AttemptStatus::kFailed, /*retryable=*/false};
    return Outcome{1};
  });
  for (uint32_t j = 0; j < 5; ++j) EXPECT_EQ(s.Job(j).phase, j == 2 ? Phase::kFailed : Phase::kSucceeded);
  EXPECT_EQ(Of(sim, 0).size(), 5u);  // not retryable: one attempt only despite retries: 3
}

TEST(Scheduler, TimeoutEndsTheAttemptAndCountsAsAFailure) {
  Scheduler s;
  uint32_t p = s.AddPipeline(MakePipeline(s, {{"hang", {{"cpu", 1}}, -1, {}, 1, 5, 1}}));
  s.AddNode(MakeNode(s, "n", 1, 0));
  uint32_t j = s.Submit(p, 0);
  Simulator sim(s);
  double end = sim.Run(Durations({1000}));
  ASSERT_EQ(sim.records().size(), 2u);
  EXPECT_EQ(sim.records()[0].status, AttemptStatus::kTimeout);
  EXPECT_DOUBLE_EQ(sim.records()[0].end, 5);
  EXPECT_DOUBLE_EQ(sim.records()[1].start, 6);
  EXPECT_DOUBLE_EQ(end, 11);
  EXPECT_EQ(s.Job(j).phase, Phase::kFailed);
}

TEST(Scheduler, LostNodeReRunsTheDownloadElsewhere) {
  Scheduler s;
  uint32_t p = s.AddPipeline(SeedPipeline(s));
  uint32_t a = s.AddNode(MakeNode(s, "a", 16, 1, {{"download_slot", 1}}, {{"role", "head"}}));
  s.AddNode(MakeNode(s, "b", 16, 1, {{"download_slot", 1}}, {{"role", "head"}}));
  s.Submit(p, 0);  // job 0 -> a (cursor starts at 0)
  Simulator sim(s);
  std::vector<AttemptRef> lost;
  sim.At(15, [&] { lost = s.NodeLost(a, 15); });  // during job 0's analyze on a
  sim.Run(Durations({10, 30, 6, 1}));
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(s.Job(0).phase, Phase::kSucceeded);
  // The download ran twice: on a, then on b after the loss; analyze finally ran on b.
  std::vector<uint32_t> download_nodes;
  for (const auto& r : Of(sim, 0)) download_nodes.push_back(r.node);
  EXPECT_EQ(download_nodes, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(Find(sim, 0, 1).node, 1u);
  EXPECT_DOUBLE_EQ(Find(sim, 0, 0, AttemptStatus::kOk).start, 0);
  EXPECT_EQ(s.Home(0, 0), 1);
}

TEST(Scheduler, LostNodeResetsJobsWaitingForItsGpu) {
  Scheduler s;
  uint32_t p = s.AddPipeline(SeedPipeline(s, 2));
  uint32_t a = s.AddNode(MakeNode(s, "a", 16, 1, {{"download_slot", 2}}, {{"role", "head"}}));
  for (int i = 0; i < 2; ++i) s.Submit(p, 0);
  Simulator sim(s);
  sim.At(12, [&] {
    // job 0 analyses on a, job 1 waits for a's GPU; a is lost, then b joins.
    EXPECT_EQ(s.Job(1).step, 1);
    s.NodeLost(a, 12);
    EXPECT_EQ(s.Job(1).step, 0);  // back to the download
    s.AddNode(MakeNode(s, "b", 16, 1, {{"download_slot", 1}}, {{"role", "head"}}));
  });
  sim.Run(Durations({10, 30, 6, 1}));
  EXPECT_EQ(s.Job(0).phase, Phase::kSucceeded);
  EXPECT_EQ(s.Job(1).phase, Phase::kSucceeded);
  EXPECT_EQ(Find(sim, 1, 1).node, 1u);
}

TEST(Scheduler, LostNodeThatReturnsIsUsedAgain) {
  Scheduler s;
  uint32_t p = s.AddPipeline(MakePipeline(s, {{"work", {{"cpu", 1}}}}));
  uint32_t a = s.AddNode(MakeNode(s, "a", 1, 0));
  s.Submit(p, 0);
  Simulator sim(s);
  sim.At(1, [&] { s.NodeLost(a, 1); });
  sim.At(3, [&] { s.AddNode(MakeNode(s, "a", 1, 0)); });
  double end = sim.Run(Durations({5}));
  EXPECT_EQ(s.Job(0).phase, Phase::kSucceeded);
  EXPECT_DOUBLE_EQ(end, 8);
}

// An input that kills every node that runs it: the first loss re-queues at once, the second after
// the step's backoff, the third fails the job (SetMaxNodeLosses, default 3), though the losses
// came through lineage (analyze's download re-ran each time) and through Finish(node_lost).
TEST(Scheduler, AStepWhoseNodeIsLostThreeTimesFails) {
  Scheduler s;
  uint32_t p = s.AddPipeline(
      MakePipeline(s, {{"download", {{"cpu", 1}}, -1, {}, 0, 0, 2.0}, {"analyze", {{"gpu", 1}}, 0, {}, 0, 0, 2.0}}));
  uint32_t a = s.AddNode(MakeNode(s, "a", 4, 1));
  uint32_t b = s.AddNode(MakeNode(s, "b", 4, 1));
  s.Submit(p, 0);
  std::vector<Placement> out;
  auto place = [&](double now) {
    out.clear();
    s.Decide(now, &out);
    return out.size() == 1 ? out[0] : Placement{};
  };
  auto analyze_on = [&](double now) {  // download ok wherever it lands, then analyze there
    Placement d = place(now);
    EXPECT_EQ(d.step, 0);
    s.Finish(d.job, d.serial, AttemptStatus::kOk, false, now);
    Placement an = place(now);
    EXPECT_EQ(an.step, 1);
    EXPECT_EQ(an.node, d.node);
    return an;
  };
  Placement x = analyze_on(0);
  s.NodeLost(x.node, 1);  // loss 1: the download went with it; back to the anchor at once
  EXPECT_EQ(s.Job(0).phase, Phase::kReady);
  EXPECT_EQ(s.Job(0).step, 0);
  EXPECT_EQ(s.NodeLosses(0), 1);
  s.AddNode(MakeNode(s, x.node == a ? "a" : "b", 4, 1));  // its agent is back
  x = analyze_on(1);
  s.NodeLost(x.node, 2);  // loss 2: waits the step's backoff (2 s)
  EXPECT_EQ(s.Job(0).phase, Phase::kBackoff);
  EXPECT_EQ(s.NodeLosses(0), 2) << "the download's success between did not reset it";
  s.AddNode(MakeNode(s, x.node == a ? "a" : "b", 4, 1));
  place(3.9);
  EXPECT_TRUE(out.empty()) << "nothing placed during the backoff";
  x = analyze_on(4);
  // Loss 3 through the agent's restart (reconciled): the job fails.
  const FinishResult r = s.Finish(x.job, x.serial, AttemptStatus::kLost, false, 5, /*node_lost=*/true);
  EXPECT_EQ(r.kind, FinishResult::Kind::kFailed);
  EXPECT_EQ(r.node_losses, 3);
  EXPECT_EQ(s.Job(0).phase, Phase::kFailed);
  (void)b;
  // A hand-back (drain) counts nothing; a success of the step ends the count.
  s.Retry(0, 6);
  EXPECT_EQ(s.NodeLosses(0), 0);
  Placement y = place(6);
  s.Finish(y.job, y.serial, AttemptStatus::kLost, false, 6);  // handed back
  EXPECT_EQ(s.NodeLosses(0), 0);
  EXPECT_EQ(s.Job(0).phase, Phase::kReady);
}

TEST(Scheduler, PoolBoundsConcurrencyAcrossNodes) {
  Scheduler s;
  s.SetPool("llm", 2);
  uint32_t p = s.AddPipeline(MakePipeline(s, {{"summarize", {{"cpu", 1}, {"llm", 1}}}}));
  for (int i = 0; i < 3; ++i) s.AddNode(MakeNode(s, "n" + std::to_string(i), 8, 0));
  for (int i = 0; i < 9; ++i) s.Submit(p, 0);
  Simulator sim(s);
  EXPECT_DOUBLE_EQ(sim.Run(Durations({2})), 10);  // 9 requests, 2 at a time
  EXPECT_EQ(sim.PeakConcurrent(0), 2);
  std::set<uint32_t> nodes;
  for (const auto& r : sim.records()) nodes.insert(r.node);
  EXPECT_GT(nodes.size(), 1u);  // on any node
}

TEST(Scheduler, InfeasibleStepIsNamedWithWhatNodesOffer) {
  Scheduler s;
  uint32_t p = s.AddPipeline(SeedPipeline(s));
  s.AddNode(MakeNode(s, "laptop", 8, 0, {{"download_slot", 1}}, {{"role", "head"}}));
  const std::string why = s.UnrunnableStep(p);
  EXPECT_NE(why.find("step 'analyze'"), std::string::npos) << why;
  EXPECT_NE(why.find("gpu: 1"), std::string::npos) << why;
  EXPECT_NE(why.find("laptop 0"), std::string::npos) << why;

  Scheduler s2;
  uint32_t p2 = s2.AddPipeline(SeedPipeline(s2));
  s2.AddNode(MakeNode(s2, "worker", 8, 1, {{"download_slot", 1}}));
  const std::string why2 = s2.UnrunnableStep(p2);
  EXPECT_NE(why2.find("step 'document'"), std::string::npos) << why2;
  EXPECT_NE(why2.find("role=head"), std::string::npos) << why2;

  Scheduler s3;
  uint32_t p3 = s3.AddPipeline(SeedPipeline(s3));
  s3.AddNode(MakeNode(s3, "head", 8, 1, {{"download_slot", 1}}, {{"role", "head"}}));
  EXPECT_EQ(s3.UnrunnableStep(p3), "");
}

TEST(Scheduler, CancelStopsOneJobOnly) {
  Scheduler s;
  uint32_t p = s.AddPipeline(MakePipeline(s, {{"a", {{"cpu", 1}}}, {"b", {{"cpu", 1}}}}));
  s.AddNode(MakeNode(s, "n", 2, 0));
  s.Submit(p, 0);
  s.Submit(p, 0);
  s.Submit(p, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  ASSERT_EQ(out.size(), 2u);
  auto running = s.Cancel(0);
  ASSERT_EQ(running.size(), 1u);
  EXPECT_TRUE(s.Cancel(2).empty());  // queued: ends at once
  EXPECT_EQ(s.Job(2).phase, Phase::kCancelled);
  EXPECT_EQ(s.Finish(0, running[0].serial, AttemptStatus::kCancelled, false, 1).kind,
            FinishResult::Kind::kCancelled);
  EXPECT_EQ(s.Finish(1, out[1].serial, AttemptStatus::kOk, true, 1).kind, FinishResult::Kind::kNextStepReady);
  out.clear();
  s.Decide(1, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].job, 1u);
}

TEST(Scheduler, RetryGivesAFailedJobAnotherGoFromItsFailedStep) {
  Scheduler s;
  uint32_t p = s.AddPipeline(MakePipeline(s, {{"a", {{"cpu", 1}}}, {"b", {{"cpu", 1}}}}));
  s.AddNode(MakeNode(s, "n", 1, 0));
  s.Submit(p, 0);
  Simulator sim(s);
  int b_calls = 0;
  auto behaviour = [&](const Placement& pl) {
    if (pl.step == 1 && ++b_calls == 1) return Outcome{1, AttemptStatus::kFailed, false};
    return Outcome{1};
  };
  sim.Run(behaviour);
  EXPECT_EQ(s.Job(0).phase, Phase::kFailed);
  ASSERT_TRUE(s.Retry(0, 0));
  ASSERT_EQ(s.Job(0).phase, Phase::kReady);
  EXPECT_EQ(s.Job(0).step, 1);
  sim.Run(behaviour);
  EXPECT_EQ(s.Job(0).phase, Phase::kSucceeded);
  EXPECT_EQ(Of(sim, 0).size(), 1u);  // step a was not re-run
  EXPECT_FALSE(s.Retry(0, 5));       // not failed any more
}

TEST(Scheduler, StaleFinishIsIgnored) {
  Scheduler s;
  uint32_t p = s.AddPipeline(MakePipeline(s, {{"a", {{"cpu", 1}}}}));
  s.AddNode(MakeNode(s, "n", 1, 0));
  s.Submit(p, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  EXPECT_EQ(s.Finish(0, out[0].serial + 7, AttemptStatus::kOk, true, 1).kind, FinishResult::Kind::kIgnored);
  EXPECT_EQ(s.Finish(0, out[0].serial, AttemptStatus::kOk, true, 1).kind, FinishResult::Kind::kSucceeded);
  EXPECT_EQ(s.Finish(0, out[0].serial, AttemptStatus::kOk, true, 1).kind, FinishResult::Kind::kIgnored);
}

TEST(Scheduler, WaitReasonsNameWhatAJobWaitsFor) {
  Scheduler s;
  uint32_t p = s.AddPipeline(SeedPipeline(s));
  s.AddNode(MakeNode(s, "head", 16, 1, {{"download_slot", 1}}, {{"role", "head"}}));
  s.Submit(p, 0);
  s.Submit(p, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  EXPECT_EQ(s.WaitReason(0, 0), "running on head");
  EXPECT_EQ(s.WaitReason(1, 0), "waiting for admission (nodes busy)");
}

}  // namespace
}  // namespace baton::core

namespace baton::core {
namespace {

TEST(Scheduler, ADrainingNodeTakesNothingNewAndAHandedBackAttemptIsNotAFailure) {
  Scheduler s;
  PipelineModel pm;
  StepModel a;
  a.name = "a";
  a.demand.Set(kCpu, kUnit);
  a.retries = 0;
  pm.steps = {a};
  const uint32_t p = s.AddPipeline(pm);
  NodeModel n1, n2;
  n1.name = "n1";
  n1.total.Set(kCpu, kUnit);
  n2.name = "n2";
  n2.total.Set(kCpu, kUnit);
  const uint32_t first = s.AddNode(n1);
  s.Submit(p, 0);
  s.Submit(p, 0);
  std::vector<Placement> out;
  s.Decide(0, &out);
  ASSERT_EQ(out.size(), 1u);
  s.SetDraining(first, true);
  const uint32_t second = s.AddNode(n2);
  // Job 0 is handed back by the draining node: re-queued, not failed (retries: 0).
  EXPECT_EQ(s.Finish(out[0].job, out[0].serial, AttemptStatus::kLost, true, 1).kind, FinishResult::Kind::kRequeued);
  out.clear();
  s.Decide(1, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].node, second);  // not the draining node, though it has room now
  EXPECT_EQ(s.Job(0).phase, Phase::kRunning);
  out.clear();
  s.Decide(1, &out);
  EXPECT_TRUE(out.empty());        // job 1 waits for n2 rather than going to n1
  s.SetDraining(first, false);
  s.Decide(1, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].node, first);
}

}  // namespace
}  // namespace baton::core
