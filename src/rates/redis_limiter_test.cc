// RedisRateLimiter against a real redis-server started by the test on a free loopback port. Two
// limiter objects stand for two agents; a fake clock makes refill exact without sleeping.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <thread>

#include "util/clock.h"
#include "rates/redis_limiter.h"
#include "support/child_process.h"
#include "support/util.h"

namespace baton::rates {
namespace {

using testing::ChildProcess;
using testing::WaitFor;

class RedisLimiterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = testing::FreeLoopbackPort();
    url_ = cluster::RedisUrl::Parse("redis://127.0.0.1:" + std::to_string(port_)).value();
    StartRedis();
  }
  void StartRedis() {
    redis_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "yes", "--appendfsync", "always", "--dir", dir_.path().string()},
        dir_ / "redis.log");
    // Up and done loading its AOF (until then commands get LOADING).
    ASSERT_TRUE(WaitFor([&] {
      cluster::Redis r;
      return r.Connect(url_, 0.2) && r.Command({"PING"}).str() == "PONG";
    }, 10)) << "redis-server did not start";
  }
  std::unique_ptr<RedisRateLimiter> Limiter(RateSpecs specs, double budget = 0, const Clock* clock = nullptr) {
    return std::make_unique<RedisRateLimiter>(url_, "t", std::move(specs), budget, "run-1", clock ? clock : &clock_);
  }

  testing::TempDir dir_;
  int port_ = 0;
  cluster::RedisUrl url_;
  std::unique_ptr<ChildProcess> redis_;
  FakeClock clock_;
};

TEST_F(RedisLimiterTest, TwoAgentsShareOneBucket) {
  auto a = Limiter({{"req", {2, 4}}});
  auto b = Limiter({{"req", {2, 4}}});
  EXPECT_TRUE(a->TryTake("req", 1).granted);
  EXPECT_TRUE(b->TryTake("req", 1).granted);
  EXPECT_TRUE(a->TryTake("req", 2).granted);
  const RateGrant g = b->TryTake("req", 1);
  ASSERT_TRUE(g.error.empty()) << g.error;
  EXPECT_FALSE(g.granted);
  EXPECT_NEAR(g.wait, 0.52, 1e-9);  // paced as in memory (PacedPerSecond)
  clock_.Advance(0.52);
  EXPECT_TRUE(b->TryTake("req", 1).granted);
  // Give back and provider lowering, as in memory.
  a->Give("req", 3);
  EXPECT_NEAR(b->Level("req"), 3, 1e-9);
  b->Lower("req", 0, 1.5);
  EXPECT_NEAR(a->TryTake("req", 1).wait, 1.5, 1e-9);
  // Acquire sleeps on the injected clock through the hold (the bucket refills meanwhile).
  const double before = clock_.slept();
  EXPECT_TRUE(a->Acquire("req", 1, nullptr));
  EXPECT_NEAR(clock_.slept() - before, 1.5, 1e-9);
  EXPECT_NEAR(b->Level("req"), 1.5 / 0.52 - 1, 1e-9);  // 1.5 s of refill, less the one taken
  // A 429 (Limited), as in memory: held without refill, then paced at 0.8 of the rate.
  b->Limited("req", 2);
  EXPECT_NEAR(a->TryTake("req", 1).wait, 2, 1e-9);
  clock_.Advance(2);
  EXPECT_NEAR(a->TryTake("req", 1).wait, 0.52 / 0.8, 1e-9);
}

TEST_F(RedisLimiterTest, TakesAreAtomicAcrossThreadsAndConnections) {
  auto a = Limiter({{"r", {1, 300}}});
  auto b = Limiter({{"r", {1, 300}}});
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      RedisRateLimiter& rl = t % 2 ? *a : *b;
      for (int i = 0; i < 150; ++i) granted += rl.TryTake("r", 1).granted;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 300);  // the fake clock stands still: exactly the burst
}

TEST_F(RedisLimiterTest, StateSurvivesLimiterAndRedisRestarts) {
  {
    auto a = Limiter({{"tok", {10, 100}}}, 5.0);
    ASSERT_TRUE(a->TryTake("tok", 70).granted);
    ASSERT_TRUE(a->Reserve(2.0).granted);
    a->Settle(2.0, 1.25);
  }  // the "agent" is gone
  redis_->Kill(9);  // Redis too (AOF with fsync always keeps what was acknowledged)
  auto b = Limiter({{"tok", {10, 100}}}, 5.0);
  const RateGrant down = b->TryTake("tok", 1);
  EXPECT_FALSE(down.granted);
  EXPECT_NE(down.error.find("rate store"), std::string::npos) << down.error;
  const BudgetGrant refused = b->Reserve(0.1);
  EXPECT_FALSE(refused.granted);
  EXPECT_FALSE(refused.error.empty());
  StartRedis();
  EXPECT_DOUBLE_EQ(b->Level("tok"), 30);  // reconnected; the script is loaded again (NOSCRIPT)
  const BudgetGrant g = b->Reserve(3.75);
  EXPECT_TRUE(g.granted);
  EXPECT_DOUBLE_EQ(g.spent, 1.25);
  EXPECT_FALSE(b->Reserve(0.01).granted);  // 1.25 spent + 3.75 reserved = the 5.00 budget
  RedisRateLimiter other_run(url_, "t", {{"tok", {10, 100}}}, 5.0, "run-2", &clock_);
  EXPECT_TRUE(other_run.Reserve(4.0).granted);  // another run has its own budget
  EXPECT_DOUBLE_EQ(other_run.Level("tok"), 30);  // but shares the provider's buckets
}

TEST_F(RedisLimiterTest, RedisTimeWhenNoClockIsInjected) {
  auto a = std::make_unique<RedisRateLimiter>(url_, "t", RateSpecs{{"slow", {0.5, 1}}}, 0, "run-1", nullptr);
  EXPECT_TRUE(a->TryTake("slow", 1).granted);
  const RateGrant g = a->TryTake("slow", 1);
  ASSERT_TRUE(g.error.empty()) << g.error;
  EXPECT_FALSE(g.granted);
  EXPECT_GT(g.wait, 1.0);  // about 2.04 s for one token at 0.5/s (paced), less whatever passed
  EXPECT_LE(g.wait, 2.04 + 1e-9);
}

// An agent killed mid-request (its limiter never settles): its reservation blocks the budget for
// its hold, then lapses; one that is alive renews its hold and keeps it.
TEST_F(RedisLimiterTest, AReservationLapsesWithItsHolderAndLivesWhileRenewed) {
  auto limiter = [&] {
    return std::make_unique<RedisRateLimiter>(url_, "t", RateSpecs{}, 1.0, "run-1", &clock_, 86400.0, 60.0);
  };
  auto dead = limiter();
  ASSERT_TRUE(dead->Reserve(0.75).granted);
  dead.reset();  // gone without settling (as kill -9 leaves it)
  auto alive = limiter();
  auto other = limiter();
  BudgetGrant g = other->Reserve(0.5);
  EXPECT_FALSE(g.granted);
  EXPECT_DOUBLE_EQ(g.reserved, 0.75);
  clock_.Advance(59);
  EXPECT_FALSE(other->Reserve(0.5).granted);
  ASSERT_TRUE(alive->Reserve(0.25).granted);  // 0.75 + 0.25: the whole budget
  clock_.Advance(2);                          // the dead holder's hold lapsed
  g = other->Reserve(0.5);
  EXPECT_TRUE(g.granted);
  EXPECT_DOUBLE_EQ(g.reserved, 0.25);  // the live holder's, reserved a minute ago
  other->Settle(0.5, 0.5);
  // The live holder renews every so often: its 0.25 stays held past its first hold.
  for (int i = 0; i < 4; ++i) {
    clock_.Advance(30);
    ASSERT_TRUE(alive->Renew());
  }
  g = other->Reserve(0.5);
  EXPECT_FALSE(g.granted);
  EXPECT_DOUBLE_EQ(g.spent, 0.5);
  EXPECT_DOUBLE_EQ(g.reserved, 0.25);
  alive->Settle(0.25, 0.125);
  g = other->Reserve(0.375);
  EXPECT_TRUE(g.granted);
  EXPECT_DOUBLE_EQ(g.spent, 0.625);
  EXPECT_DOUBLE_EQ(g.reserved, 0);
}

// A settle Redis does not take (it is down) is kept and sent when Redis is back: what was spent
// counts against the budget, and the reservation is released.
TEST_F(RedisLimiterTest, ASettleRedisMissedIsSentWhenItIsBack) {
  auto a = Limiter({}, 1.0);
  ASSERT_TRUE(a->Reserve(0.5).granted);
  redis_->Kill(9);
  a->Settle(0.5, 0.375);
  EXPECT_FALSE(a->last_error().empty());
  EXPECT_FALSE(a->Renew());
  StartRedis();
  auto b = Limiter({}, 1.0);
  BudgetGrant g = b->Reserve(0.1);
  EXPECT_DOUBLE_EQ(g.reserved, 0.5);  // not yet settled: Redis only has the reservation
  EXPECT_DOUBLE_EQ(g.spent, 0);
  b->Settle(0.1, 0);
  ASSERT_TRUE(a->Renew());  // what the renewing thread does
  g = b->Reserve(0.1);
  EXPECT_TRUE(g.granted);
  EXPECT_DOUBLE_EQ(g.spent, 0.375);
  EXPECT_DOUBLE_EQ(g.reserved, 0);
}

}  // namespace
}  // namespace baton::rates
