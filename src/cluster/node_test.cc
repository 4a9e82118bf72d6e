// The node agent's timers on virtual time (NodeOptions::clock = a FakeClock), with a real
// redis-server and, for the drain, a real head in this process: a heartbeat is written every
// `heartbeat` of the agent's clock and at no other time; a drain hands back what still runs once
// `drain_timeout` of the agent's clock has passed, and not before. Nothing here waits for real
// seconds to pass: real time only lets the agent's threads see what the test moved.
#include <atomic>
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "baton/pipeline.h"
#include "baton/step.h"
#include "cluster/client.h"
#include "cluster/head.h"
#include "cluster/keys.h"
#include "cluster/node.h"
#include "support/child_process.h"
#include "support/util.h"
#include "util/clock.h"

namespace baton {
namespace {

using Json = nlohmann::json;
using testing::WaitFor;

// Runs until cancelled, looking every millisecond of real time (its own time is not the test's).
class HoldStep : public Step {
 public:
  StepOutcome Run(StepContext& ctx) const override {
    while (!ctx.cancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return StepOutcome::Cancelled();
  }
  bool NeedsWorkdir() const override { return false; }
};

class NodeClockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string port = std::to_string(testing::FreeLoopbackPort());
    url_ = cluster::RedisUrl::Parse("redis://127.0.0.1:" + port);
    prefix_ = "n" + std::to_string(getpid());
    redis_ = std::make_unique<testing::ChildProcess>(
        std::vector<std::string>{"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                 "no"},
        dir_ / "redis.log");
    ASSERT_TRUE(WaitFor([&] { return db_.Connect(url_); }, 10));
  }
  void TearDown() override {
    if (agent_) {
      agent_->RequestStop();
      clock_.Advance(3600);  // past any drain deadline
      agent_thread_.join();
    }
    if (head_) {
      head_->RequestStop();
      head_thread_.join();
    }
  }
  void StartAgent(double heartbeat, double drain_timeout) {
    cluster::NodeOptions o;
    o.redis = url_;
    o.prefix = prefix_;
    o.name = "a";
    o.cpus = 2;
    o.workdir = dir_ / "work-a";
    o.address = "127.0.0.1";
    o.listen = "127.0.0.1";
    o.heartbeat = heartbeat;
    o.drain_timeout = drain_timeout;
    o.log_format = LogFormat::kNone;
    o.clock = &clock_;
    agent_ = std::make_unique<cluster::NodeAgent>(o);
    agent_thread_ = std::thread([this] { agent_rc_ = agent_->Run(); });
  }
  void StartHead() {
    cluster::HeadOptions o;
    o.redis = url_;
    o.prefix = prefix_;
    o.heartbeat_timeout = 600;  // the agent beats only when the test moves its clock
    o.log_format = LogFormat::kNone;
    head_ = std::make_unique<cluster::Head>(o);
    head_thread_ = std::thread([this] { head_->Run(); });
  }
  std::string Redis(std::vector<std::string> cmd) { return db_.Command(cmd).str(); }
  long long Beats() { return std::atoll(Redis({"HGET", prefix_ + ":hb", "a"}).c_str()); }
  Json Registration() { return Json::parse(Redis({"HGET", prefix_ + ":nodes", "a"}), nullptr, false); }
  // Real time for the agent's threads to act on what the test did (they look every 200 ms at most).
  static void Settle() { std::this_thread::sleep_for(std::chrono::milliseconds(400)); }

  testing::TempDir dir_;
  cluster::RedisUrl url_;
  std::string prefix_;
  std::unique_ptr<testing::ChildProcess> redis_;
  cluster::Redis db_;
  FakeClock clock_;
  std::unique_ptr<cluster::NodeAgent> agent_;
  std::thread agent_thread_;
  std::atomic<int> agent_rc_{-1};
  std::unique_ptr<cluster::Head> head_;
  std::thread head_thread_;
};

TEST_F(NodeClockTest, AHeartbeatIsWrittenEveryHeartbeatOfTheAgentsClock) {
  StartAgent(/*heartbeat=*/2.0, /*drain_timeout=*/30);
  // The registration's beat, then the heartbeat thread's first.
  ASSERT_TRUE(WaitFor([&] { return Beats() == 2; }, 15));
  Settle();
  EXPECT_EQ(Beats(), 2) << "no time passed on the agent's clock";
  for (long long beat = 3; beat <= 6; ++beat) {
    clock_.Advance(1.75);  // binary fractions: the sums are exact
    Settle();
    EXPECT_EQ(Beats(), beat - 1) << "1.75s of a 2s heartbeat";
    clock_.Advance(0.25);
    ASSERT_TRUE(WaitFor([&] { return Beats() == beat; }, 15)) << Beats();
    // Each beat renews the name's lease (5 heartbeats) and writes the registration with its count.
    const long long ttl = std::atoll(Redis({"PTTL", prefix_ + ":lease:a"}).c_str());
    EXPECT_GT(ttl, 0);
    EXPECT_LE(ttl, 10000);
    EXPECT_EQ(Registration().value("beat", 0), beat);
  }
  Settle();
  EXPECT_EQ(Beats(), 6);
  EXPECT_EQ(Registration().value("started", 0.0), 1.8e9) << "stamped by the agent's clock";
}

TEST_F(NodeClockTest, ADrainHandsBackWhatStillRunsAfterDrainTimeoutOfTheAgentsClock) {
  StepRegistry::Global().Register("hold", [](const Json&) { return std::make_unique<HoldStep>(); });
  StartHead();
  StartAgent(/*heartbeat=*/1.0, /*drain_timeout=*/30);
  ASSERT_TRUE(WaitFor([&] { return Beats() >= 1; }, 15));
  const std::string yaml = "name: hold\nsteps:\n  - name: hold\n    uses: hold\n    retries: 0\n";
  auto spec = ParsePipeline(yaml, "hold.yaml");
  ASSERT_TRUE(spec.ok()) << spec.error();
  const cluster::Keys keys(prefix_);
  const auto ids = cluster::SubmitJobs(db_, keys, "hold.yaml", yaml, *spec, {""});
  ASSERT_EQ(ids.size(), 1u);
  ASSERT_TRUE(WaitFor([&] { return cluster::JobStates(db_, keys, ids)[0] == "running"; }, 15));

  agent_->RequestStop();
  ASSERT_TRUE(WaitFor([&] { return Registration().value("draining", false); }, 15));
  clock_.Advance(29.75);
  Settle();
  EXPECT_EQ(agent_rc_.load(), -1) << "the drain has 0.25s of its 30s left";
  EXPECT_EQ(head_->JobDetail(ids[0])["attempts"].size(), 1u);
  EXPECT_EQ(cluster::JobStates(db_, keys, ids)[0], "running");

  clock_.Advance(0.25);
  ASSERT_TRUE(WaitFor([&] { return agent_rc_.load() != -1; }, 15));
  agent_thread_.join();
  agent_.reset();
  EXPECT_EQ(agent_rc_.load(), 0);
  // Handed back, not failed (retries: 0): the attempt is lost to the drain and the job waits for
  // another node.
  Json d;
  ASSERT_TRUE(WaitFor([&] {
    d = head_->JobDetail(ids[0]);
    return d["attempts"].size() == 1 && d["attempts"][0].value("status", "") == "lost";
  }, 15)) << d.dump();
  EXPECT_NE(d["attempts"][0].value("error", "").find("handed back by node a (draining)"), std::string::npos)
      << d.dump();
  EXPECT_NE(d.value("state", ""), "failed") << d.dump();
  EXPECT_EQ(Redis({"HGET", prefix_ + ":nodes", "a"}), "") << "deregistered";
}

}  // namespace
}  // namespace baton
