// The head's turn is bounded and keeps its lease (issue 20): a submission larger than
// HeadOptions::turn_jobs is admitted over several turns, each job once; a long admission renews
// the lease between its chunks; the dashboard's overview and pages over a head neither take the
// head's lock for a JSON object per job nor stall its turns. A real redis-server; the head (and an
// agent) run in this process.
#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "baton/pipeline.h"
#include "baton/step.h"
#include "cluster/client.h"
#include "cluster/head.h"
#include "cluster/keys.h"
#include "cluster/node.h"
#include "cluster/protocol.h"
#include "dashboard/head_source.h"
#include "support/in_process_cluster.h"
#include "support/child_process.h"
#include "support/util.h"
#include "util/clock.h"

namespace baton {
namespace {

using Json = nlohmann::json;
using testing::WaitFor;

// Counts, per job, how many times its one step ran.
std::mutex g_runs_mu;
std::map<std::string, int> g_runs;
class CountStep : public Step {
 public:
  StepOutcome Run(StepContext& ctx) const override {
    std::lock_guard lock(g_runs_mu);
    ++g_runs[ctx.job];
    return StepOutcome::Ok();
  }
  bool NeedsWorkdir() const override { return false; }
};

const char* kYaml = "name: count\nsteps:\n  - name: count\n    uses: count_runs\n";

// Every read of the monotonic time moves it on by `step` seconds: time passes as the head works,
// the same way on any machine (what it does, not how fast, decides when its lease is due).
class TickingClock : public Clock {
 public:
  explicit TickingClock(double step) : step_(step) {}
  double Monotonic() const override { return t_.fetch_add(step_) + step_; }
  double Wall() const override { return 1.8e9 + t_.load(); }
  void WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, double) const override {
    cv.wait_for(lock, std::chrono::milliseconds(1));
  }
  bool Sleep(double, const CancelToken*) const override {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return true;
  }

 private:
  const double step_;
  mutable std::atomic<double> t_{1000};
};

class HeadTurnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StepRegistry::Global().Register("count_runs",
                                    StepFactoryOf([](const Json&) { return std::make_unique<CountStep>(); }));
    {
      std::lock_guard lock(g_runs_mu);
      g_runs.clear();
    }
    testing::TestRedis redis = testing::StartTestRedis(dir_.path());
    url_ = redis.url;
    redis_ = std::move(redis.process);
    prefix_ = "t" + std::to_string(getpid());
    ASSERT_TRUE(WaitFor([&] { return db_.Connect(url_); }, 10));
  }
  void TearDown() override {
    if (agent_) {
      agent_->RequestStop();
      agent_thread_.join();
    }
    if (head_) {
      head_->RequestStop();
      head_thread_.join();
    }
  }
  cluster::HeadOptions HeadOpts() {
    cluster::HeadOptions o;
    o.redis = url_;
    o.prefix = prefix_;
    o.heartbeat_timeout = 5;
    o.retain = 0;
    o.log_format = LogFormat::kNone;
    o.on_ready = [this] { ready_ = true; };
    return o;
  }
  // The head on its own thread, after `before` (sinks, a dashboard source) was done to it.
  void StartHead(cluster::HeadOptions o, const std::function<void(cluster::Head&)>& before = nullptr) {
    head_ = std::make_unique<cluster::Head>(std::move(o));
    if (before) before(*head_);
    head_thread_ = std::thread([this] { head_->Run(); });
    ASSERT_TRUE(WaitFor([&] { return ready_.load(); }, 10));
  }
  void StartAgent() {
    agent_ = std::make_unique<cluster::NodeAgent>(testing::TestAgentOptions(url_, prefix_, dir_.path(), 8));
    agent_thread_ = std::thread([this] { agent_->Run(); });
  }
  std::vector<std::string> Submit(size_t n) {
    auto spec = ParsePipeline(kYaml, "count.yaml");
    EXPECT_TRUE(spec.ok()) << spec.error();
    std::vector<std::string> inputs(n);
    for (size_t i = 0; i < n; ++i) inputs[i] = "in-" + std::to_string(i);
    // One SubmitJobs inbox entry per 5000 jobs (client.cc).
    return cluster::SubmitJobs(db_, cluster::Keys(prefix_), "count.yaml", kYaml, *spec, inputs).value();
  }
  bool AllSucceeded(const std::vector<std::string>& ids) {
    auto states = cluster::JobStates(db_, cluster::Keys(prefix_), ids);
    if (!states.ok()) return false;
    for (const auto& s : *states)
      if (s != "succeeded") return false;
    return true;
  }

  testing::TempDir dir_;
  cluster::RedisUrl url_;
  std::string prefix_;
  std::unique_ptr<testing::ChildProcess> redis_;
  cluster::Redis db_;
  std::atomic<bool> ready_{false};
  std::unique_ptr<TickingClock> ticking_;  // a test's clock, alive until the head has stopped
  std::unique_ptr<cluster::Head> head_;
  std::thread head_thread_;
  std::unique_ptr<cluster::NodeAgent> agent_;
  std::thread agent_thread_;
};

// One inbox entry of 1,050 jobs (more than ten turns' budget of 100), then an entry of 30 behind
// it: every job ends, its step run once; no turn admitted more than the budget.
TEST_F(HeadTurnTest, ASubmissionLargerThanTheTurnBudgetIsAdmittedOverSeveralTurnsEachJobOnce) {
  cluster::HeadOptions o = HeadOpts();
  o.turn_jobs = 100;
  StartHead(o);
  StartAgent();
  std::vector<std::string> ids = Submit(1050);
  const std::vector<std::string> more = Submit(30);
  ids.insert(ids.end(), more.begin(), more.end());
  ASSERT_EQ(ids.size(), 1080u);
  ASSERT_TRUE(WaitFor([&] { return AllSucceeded(ids); }, 120));
  const auto c = head_->GetCounters();
  EXPECT_LE(c.most_admitted_in_a_turn, 100u);
  EXPECT_GE(c.turns, 11u);
  std::lock_guard lock(g_runs_mu);
  EXPECT_EQ(g_runs.size(), ids.size());
  for (const auto& id : ids) EXPECT_EQ(g_runs[id], 1) << id;
  // And each job has one attempt in Redis.
  for (const auto& id : ids) db_.Append({"LLEN", cluster::Keys(prefix_).attempts(id)});
  for (const auto& id : ids) EXPECT_EQ(db_.Read().integer(), 1) << id;
}

// A turn that admits 10,000 jobs of one entry (time moving on as the head works: 1 s a clock
// read, the lease due every 1 s of a 3 s lease) renews the lease between its chunks of 1,000
// jobs, not only at the top of the loop (at most once a turn).
TEST_F(HeadTurnTest, ALongAdmissionRenewsTheLeaseBetweenItsChunks) {
  ticking_ = std::make_unique<TickingClock>(1.0);  // a member: it outlives the head (TearDown)
  cluster::HeadOptions o = HeadOpts();
  o.heartbeat_timeout = 3;
  o.clock = ticking_.get();
  StartHead(o);
  // One SubmitJobs entry of 10,000 jobs (the client would send two), written as the client does.
  const cluster::Keys keys(prefix_);
  const std::string pid = db_.Command({"HGET", keys.job(Submit(1).at(0)), "pipeline"}).str();
  ASSERT_FALSE(pid.empty());
  ASSERT_TRUE(WaitFor([&] { return head_->GetCounters().most_admitted_in_a_turn == 1; }, 30));  // its own turn
  std::vector<std::string> ids, push = {"RPUSH", keys.jobs()};
  for (int i = 0; i < 10000; ++i) ids.push_back("big-" + std::to_string(i));
  for (const auto& id : ids) {
    db_.Append({"HSET", keys.job(id), "input", id, "pipeline", pid, "state", "ready", "step", "0", "serial", "0",
                "attempts", "0", "wait", "submitted"});
    push.push_back(id);
  }
  for (size_t i = 0; i < ids.size(); ++i) db_.Read();
  db_.Command(push);
  db_.Command({"XADD", keys.inbox(), "*", "m", cluster::protocol::Encode(cluster::protocol::SubmitJobs{pid, ids})});
  ASSERT_TRUE(db_.ok()) << db_.error();
  ASSERT_TRUE(WaitFor([&] { return head_->GetCounters().most_admitted_in_a_turn == 10000; }, 60))
      << head_->GetCounters().most_admitted_in_a_turn << " admitted at most, " << head_->GetCounters().turns
      << " turns";
  // Ten chunks, each renewing (1 s of this clock passes between them); a turn without an
  // admission renews at most 4 times (top, its one inbox entry, node check, before its write).
  EXPECT_GE(head_->GetCounters().most_renewals_in_a_turn, 10u);
  EXPECT_EQ(head_->JobsPage(JobsQuery{}).value("total", size_t{0}), 10001u);
}

// The dashboard's overview asked from another thread while the head's loop is inside its turn
// (a sink runs there, under the head's lock) comes back: it does not wait for the lock, as a
// snapshot built under it would (until the sink gave up: a stalled turn).
TEST_F(HeadTurnTest, TheOverviewNeverWaitsForTheHeadsLock) {
  class BlockingSink : public EventSink {
   public:
    explicit BlockingSink(dashboard::DashboardSource*& source) : source_(source) {}
    void OnEvent(const Event& e) override {
      if (e.type != Event::Type::kJobSucceeded || asked_ >= 3 || !source_) return;
      ++asked_;
      // On its own thread, left behind if it does not answer (it would take the lock once this
      // turn ends); the sink waits 5 s at most.
      auto answered = std::make_shared<std::promise<bool>>();
      std::future<bool> answer = answered->get_future();
      dashboard::DashboardSource* source = source_;
      std::thread([answered, source] { answered->set_value(source->Overview().is_object()); }).detach();
      if (answer.wait_for(std::chrono::seconds(5)) == std::future_status::ready && answer.get()) ++answered_;
    }
    int asked() const { return asked_; }
    int answered() const { return answered_; }

   private:
    dashboard::DashboardSource*& source_;
    std::atomic<int> asked_{0}, answered_{0};
  };
  dashboard::DashboardSource* source_ptr = nullptr;
  auto sink = std::make_shared<BlockingSink>(source_ptr);
  std::unique_ptr<dashboard::HeadSource> source;
  StartHead(HeadOpts(), [&](cluster::Head& h) {
    h.AddSink(sink);
    source = std::make_unique<dashboard::HeadSource>(h);
    source_ptr = source.get();
  });
  StartAgent();
  const auto ids = Submit(10);
  ASSERT_TRUE(WaitFor([&] { return AllSucceeded(ids); }, 60));
  EXPECT_EQ(sink->asked(), 3);
  EXPECT_EQ(sink->answered(), 3);
  if (sink->answered() < 3) std::this_thread::sleep_for(std::chrono::seconds(1));  // the threads left behind
}

// Overview and pages asked in a tight loop from two threads during a run of 600 jobs: the run
// ends, and the last overview and pages count every job.
TEST_F(HeadTurnTest, PagesAskedWithoutPauseDoNotStallTheRun) {
  std::unique_ptr<dashboard::HeadSource> source;
  StartHead(HeadOpts(), [&](cluster::Head& h) { source = std::make_unique<dashboard::HeadSource>(h); });
  StartAgent();
  std::atomic<bool> done{false};
  std::atomic<long> calls{0};
  auto ask = [&](bool pages) {
    JobsQuery running;
    running.states = {"running", "ready"};
    while (!done) {
      if (pages) {
        source->JobsPage(JobsQuery{});
        source->JobsPage(running);
      } else {
        source->Overview();
      }
      ++calls;
    }
  };
  std::thread overviews(ask, false), pages(ask, true);
  const auto ids = Submit(600);
  const bool ended = WaitFor([&] { return AllSucceeded(ids); }, 120);
  done = true;
  overviews.join();
  pages.join();
  ASSERT_TRUE(ended);
  EXPECT_GT(calls.load(), 100);
  const Json overview = source->Overview();
  EXPECT_EQ(overview.value("counts", Json::object()).value("succeeded", 0), 600) << overview.dump();
  JobsQuery succeeded;
  succeeded.states = {"succeeded"};
  succeeded.limit = 10;
  succeeded.offset = 595;
  const Json page = source->JobsPage(succeeded);
  EXPECT_EQ(page.value("total", 0), 600) << page.dump();
  EXPECT_EQ(page["jobs"].size(), 5u) << page.dump();
  EXPECT_EQ(source->JobsPage(JobsQuery{}).value("total", 0), 600);
}

}  // namespace
}  // namespace baton
