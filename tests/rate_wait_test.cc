// A step waiting for a rate holds no CPU slot (issue 12): the embedded runtime gives the waiting
// attempt's cpu to another step and shows "waiting for rate NAME" in its snapshot.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "baton/pipeline.h"
#include "baton/runtime.h"
#include "support/util.h"

namespace baton {
namespace {

// Shared by the test's steps and the test body.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;        // attempts that began
  bool end_wait = false;  // the test ends job-0's rate wait
  bool release = false;   // the test lets every step end
};
Gate& TheGate() {
  static Gate g;
  return g;
}

// job-0: reports a rate wait the way the llm step does ({"waiting": "rate slow"}) and waits
// until the test ends the wait, which it does only after a second attempt started beside it on
// the node's only CPU (without the release of its CPU, nothing else could start and the test
// fails after 20 s). Then every step waits for the test's release.
class RateWaiterStep : public Step {
 public:
  StepOutcome Run(StepContext& ctx) const override {
    Gate& g = TheGate();
    std::unique_lock lock(g.mu);
    ++g.started;
    g.cv.notify_all();
    if (ctx.job == "job-0") {
      lock.unlock();
      if (ctx.progress) ctx.progress({{"waiting", "rate slow"}, {"seconds", 5.0}});
      lock.lock();
      const bool ended = g.cv.wait_for(lock, std::chrono::seconds(20), [&] { return g.end_wait; });
      lock.unlock();
      if (ctx.progress) ctx.progress({{"waiting", nullptr}});
      lock.lock();
      if (!ended) return StepOutcome::Failure("no other step started while this one waited for its rate", false);
    }
    g.cv.wait_for(lock, std::chrono::seconds(20), [&] { return g.release; });
    return StepOutcome::Ok({{"job", ctx.job}});
  }
};

std::string StepWait(const Json& snapshot, const std::string& job) {
  for (const auto& j : snapshot["jobs"])
    if (j["id"] == job) return j["steps"][0].value("wait", "");
  return "";
}

TEST(RateWait, AStepWaitingForARateHoldsNoCpuAndSaysSo) {
  if (!StepRegistry::Global().Has("test_rate_waiter"))
    StepRegistry::Global().Register("test_rate_waiter",
                                    StepFactoryOf([](const Json&) { return std::make_unique<RateWaiterStep>(); }));
  testing::TempDir dir;
  RunOptions o;
  o.inputs = {"a", "b"};
  o.out = dir.path() / "out";
  o.log_format = RunOptions::LogFormat::kNone;
  const std::unique_ptr<Runtime> rt_owner = Runtime::Create(
      ParsePipeline("steps:\n  - name: s\n    uses: test_rate_waiter\n    resources: {cpu: 1}\n", "p.yaml").value(),
      ParseCluster("nodes: [{name: n, cpus: 1, labels: {role: head}}]\n", "c.yaml").value(), o).value();
  Runtime& rt = *rt_owner;
  const RunReport* report = nullptr;
  std::thread run([&] { report = &rt.Run(); });

  // Both attempts run at once on one CPU: job-0 waits for its rate, job-1 holds the CPU.
  {
    Gate& g = TheGate();
    std::unique_lock lock(g.mu);
    ASSERT_TRUE(g.cv.wait_for(lock, std::chrono::seconds(20), [&] { return g.started >= 2; }));
  }
  auto wait_until = [&](const std::string& job, const std::string& want) {
    Json snap;
    for (int i = 0; i < 2000; ++i) {
      snap = rt.Snapshot();
      if (StepWait(snap, job) == want) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return snap;
  };
  Json snap = wait_until("job-0", "waiting for rate slow");
  EXPECT_EQ(StepWait(snap, "job-0"), "waiting for rate slow");
  EXPECT_EQ(StepWait(snap, "job-1"), "running on n");
  EXPECT_EQ(snap["nodes"][0]["used"]["cpu"], 1.0);  // job-1's CPU only
  {
    std::lock_guard lock(TheGate().mu);
    TheGate().end_wait = true;
  }
  TheGate().cv.notify_all();
  // The wait over, job-0 takes its CPU back at once (over capacity until one ends).
  snap = wait_until("job-0", "running on n");
  EXPECT_EQ(StepWait(snap, "job-0"), "running on n");
  EXPECT_EQ(snap["nodes"][0]["used"]["cpu"], 2.0);
  {
    std::lock_guard lock(TheGate().mu);
    TheGate().release = true;
  }
  TheGate().cv.notify_all();
  run.join();
  ASSERT_NE(report, nullptr);
  EXPECT_EQ(report->succeeded, 2);
  EXPECT_EQ(report->failed, 0);
}

}  // namespace
}  // namespace baton
