// The node agent's timers on virtual time (NodeOptions::clock = a FakeClock), with a real
// redis-server and the test in the head's place: a heartbeat is written every
// `heartbeat` of the agent's clock and at no other time; a drain hands back what still runs once
// `drain_timeout` of the agent's clock has passed, and not before. Nothing here waits for real
// seconds to pass: after moving the clock the test waits until the agent's threads have looked
// at it again (FakeClock::Settle).
#include <atomic>
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "baton/pipeline.h"
#include "baton/step.h"
#include "cluster/keys.h"
#include "cluster/node.h"
#include "cluster/protocol.h"
#include "support/in_process_cluster.h"
#include "support/child_process.h"
#include "support/util.h"
#include "util/clock.h"

namespace baton {
namespace {

using Json = nlohmann::json;
using testing::WaitFor;

// Runs until cancelled (woken by the cancel itself, not by polling).
std::atomic<int> g_holds_started{0};
class HoldStep : public Step {
 public:
  StepOutcome Run(StepContext& ctx) const override {
    ++g_holds_started;
    while (ctx.cancel != nullptr && ctx.cancel->sleep_for(3600)) {
    }
    return StepOutcome::Cancelled();
  }
  bool NeedsWorkdir() const override { return false; }
};

class NodeClockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::TestRedis redis = testing::StartTestRedis(dir_.path());
    url_ = redis.url;
    redis_ = std::move(redis.process);
    prefix_ = "n" + std::to_string(getpid());
    ASSERT_TRUE(WaitFor([&] { return db_.Connect(url_); }, 10));
  }
  void TearDown() override {
    if (agent_) {
      agent_->RequestStop();
      clock_.Advance(3600);  // past any drain deadline
      agent_thread_.join();
    }
  }
  void StartAgent(double heartbeat, double drain_timeout) {
    cluster::NodeOptions o = testing::TestAgentOptions(url_, prefix_, dir_.path(), 2);
    o.heartbeat = heartbeat;
    o.drain_timeout = drain_timeout;
    o.clock = &clock_;
    agent_ = std::make_unique<cluster::NodeAgent>(o);
    agent_thread_ = std::thread([this] { agent_rc_ = agent_->Run(); });
  }
  std::string Redis(std::vector<std::string> cmd) { return db_.Command(cmd).str(); }
  long long Beats() { return std::atoll(Redis({"HGET", prefix_ + ":hb", "a"}).c_str()); }
  // The attempt results the agent reported to the inbox (the head's stream; no head reads it here).
  std::vector<cluster::protocol::AttemptResult> Results() {
    std::vector<cluster::protocol::AttemptResult> out;
    cluster::Reply entries = db_.Command({"XRANGE", prefix_ + ":inbox", "-", "+"});
    for (size_t i = 0; i < entries.size(); ++i) {
      cluster::Reply fields = entries.at(i).at(1);
      for (size_t f = 0; f + 1 < fields.size(); f += 2) {
        if (fields.at(f).str() != "m") continue;
        auto msg = cluster::protocol::DecodeInboxMessage(fields.at(f + 1).str());
        if (!msg.ok()) continue;
        if (auto* list = std::get_if<cluster::protocol::AttemptResults>(&*msg))
          out.insert(out.end(), list->list.begin(), list->list.end());
      }
    }
    return out;
  }
  Json Registration() { return Json::parse(Redis({"HGET", prefix_ + ":nodes", "a"}), nullptr, false); }
  // The agent's threads have each looked at their clock twice since the test moved it (no real
  // time is assumed to be enough).
  void Settle() { clock_.Settle(); }

  testing::TempDir dir_;
  cluster::RedisUrl url_;
  std::string prefix_;
  std::unique_ptr<testing::ChildProcess> redis_;
  cluster::Redis db_;
  FakeClock clock_;
  std::unique_ptr<cluster::NodeAgent> agent_;
  std::thread agent_thread_;
  std::atomic<int> agent_rc_{-1};
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

// The test plays the head, so that what is checked is what the agent reported (a head might see
// the agent leave before it reads that report): the pipeline in Redis, one attempt placed on the
// agent's stream.
TEST_F(NodeClockTest, ADrainHandsBackWhatStillRunsAfterDrainTimeoutOfTheAgentsClock) {
  StepRegistry::Global().Register("hold", StepFactoryOf([](const Json&) { return std::make_unique<HoldStep>(); }));
  StartAgent(/*heartbeat=*/1.0, /*drain_timeout=*/30);
  ASSERT_TRUE(WaitFor([&] { return Beats() == 2; }, 15));
  const std::string incarnation = Registration().value("incarnation", "");
  ASSERT_FALSE(incarnation.empty());
  const std::string yaml = "name: hold\nsteps:\n  - name: hold\n    uses: hold\n";
  const std::string pipeline = prefix_ + ":pipeline:p1";
  ASSERT_EQ(db_.Command({"HSET", pipeline, "name", "hold", "file", "hold.yaml", "yaml", yaml}).integer(), 3);
  cluster::protocol::RunAttempt run;
  run.job = "job-0";
  run.serial = 7;
  run.pipeline = "p1";
  run.incarnation = incarnation;
  run.term = "t1";
  const int before = g_holds_started.load();
  Redis({"XADD", prefix_ + ":place:a", "*", "m", cluster::protocol::Encode(run, "{}", "[]")});
  ASSERT_TRUE(WaitFor([&] { return g_holds_started.load() == before + 1; }, 15));

  agent_->RequestStop();
  Json reg;
  ASSERT_TRUE(WaitFor([&] { return (reg = Registration()).value("draining", false); }, 15));
  ASSERT_EQ(reg["holds"].size(), 1u) << reg.dump();
  EXPECT_EQ(reg["holds"][0].value("job", ""), "job-0");
  EXPECT_FALSE(reg["holds"][0].value("done", true));
  clock_.Advance(29.75);  // binary fractions: the sums are exact
  Settle();
  EXPECT_EQ(agent_rc_.load(), -1) << "the drain has 0.25s of its 30s left";
  EXPECT_TRUE(Results().empty()) << "nothing reported before the deadline";

  clock_.Advance(0.25);
  ASSERT_TRUE(WaitFor([&] { return agent_rc_.load() != -1; }, 15));
  agent_thread_.join();
  agent_.reset();
  EXPECT_EQ(agent_rc_.load(), 0);
  // Reported before leaving: handed back (re-queued by the head, not a failed try), its end 30
  // seconds of the agent's clock after its start; the placement acknowledged; the agent gone.
  const std::vector<cluster::protocol::AttemptResult> results = Results();
  ASSERT_EQ(results.size(), 1u);
  const cluster::protocol::AttemptResult& r = results[0];
  EXPECT_EQ(r.job, "job-0");
  EXPECT_EQ(r.serial, 7u);
  EXPECT_EQ(r.term, "t1");
  EXPECT_EQ(r.incarnation, incarnation);
  EXPECT_TRUE(r.handed_back);
  EXPECT_EQ(r.kind, StepOutcome::Kind::kCancelled);
  EXPECT_EQ(r.start, 1.8e9);
  EXPECT_EQ(r.end - r.start, 30);
  EXPECT_EQ(db_.Command({"XLEN", prefix_ + ":place:a"}).integer(), 0);
  EXPECT_EQ(Redis({"HGET", prefix_ + ":nodes", "a"}), "") << "deregistered";
  EXPECT_EQ(db_.Command({"EXISTS", prefix_ + ":lease:a"}).integer(), 0);
}

}  // namespace
}  // namespace baton
