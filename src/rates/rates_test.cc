// Tests of rate parsing, the memory limiter (on a fake clock: no sleeping) and usage sums.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>
#include <vector>

#include "baton/pipeline.h"
#include "util/clock.h"
#include "rates/llm_usage.h"
#include "rates/memory_limiter.h"
#include "rates/rate_config.h"

namespace baton::rates {
namespace {

TEST(RateConfig, ParsesUnitsAndBursts) {
  EXPECT_DOUBLE_EQ(ParseRatePerSecond("500/min").value(), 500.0 / 60);
  EXPECT_DOUBLE_EQ(ParseRatePerSecond("2/s").value(), 2);
  EXPECT_DOUBLE_EQ(ParseRatePerSecond("7200/h").value(), 2);
  EXPECT_DOUBLE_EQ(ParseRatePerSecond("1.2k / min").value(), 20);
  EXPECT_EQ(ParseRatePerSecond("500").error(), "bad rate: 500");
  EXPECT_EQ(ParseRatePerSecond("500/day").error(), "bad rate: 500/day");

  const PipelineSpec p = ParsePipeline(R"(name: x
rates:
  openai_requests: 600/min
  openai_tokens: {rate: 200000/min, burst: 20000}
  tiny: 30/h
budget: {usd: 25}
steps:
  - {name: a, uses: sleep}
)", "p.yaml").value();
  ASSERT_EQ(p.rates.size(), 3u);
  EXPECT_DOUBLE_EQ(p.rates.at("openai_requests").per_second, 10);
  EXPECT_DOUBLE_EQ(p.rates.at("openai_requests").burst, 10);  // one second's worth
  EXPECT_DOUBLE_EQ(p.rates.at("openai_tokens").per_second, 200000.0 / 60);
  EXPECT_DOUBLE_EQ(p.rates.at("openai_tokens").burst, 20000);
  EXPECT_DOUBLE_EQ(p.rates.at("tiny").burst, 1);  // never below one
  EXPECT_DOUBLE_EQ(p.budget_usd, 25);

  const ClusterSpec c = ParseCluster("nodes: [{name: a}]\nrates: {openai_requests: 60/min}\n", "c.yaml").value();
  EXPECT_DOUBLE_EQ(MergeRates(p.rates, c.rates).at("openai_requests").per_second, 1);  // the cluster file wins
}

std::string LoadErrorOf(const std::string& yaml) {
  auto p = ParsePipeline(yaml, "p.yaml");
  return p.ok() ? "(no error)" : p.error();
}

TEST(RateConfig, ErrorsNameFileLineAndKey) {
  EXPECT_EQ(LoadErrorOf("steps: [{name: a, uses: sleep}]\nrates:\n  r: 5/fortnight\n"),
            "p.yaml:3: rates.r: '5/fortnight' is not a rate (use N/s, N/min or N/h, e.g. 500/min)");
  EXPECT_EQ(LoadErrorOf("steps: [{name: a, uses: sleep}]\nrates:\n  r: {rate: 5/s, brust: 3}\n"),
            "p.yaml:3: rates.r.brust: unknown key (allowed: burst, rate)");
  EXPECT_EQ(LoadErrorOf("steps: [{name: a, uses: sleep}]\nrates:\n  r: {burst: 3}\n"),
            "p.yaml:3: rates.r.rate: missing (e.g. rate: 200000/min)");
  EXPECT_EQ(LoadErrorOf("steps: [{name: a, uses: sleep}]\nrates:\n  r: {rate: 0/s}\n"),
            "p.yaml:3: rates.r.rate: must be positive (got 0/s)");
  EXPECT_EQ(LoadErrorOf("steps: [{name: a, uses: sleep}]\nbudget: {usd: -3}\n"),
            "p.yaml:2: budget.usd: '-3' is not a number");
  EXPECT_EQ(LoadErrorOf("steps: [{name: a, uses: sleep}]\nbudget: 25\n"),
            "p.yaml:2: budget: must be a mapping (e.g. budget: {usd: 25})");
}

TEST(MemoryLimiter, RefillsContinuouslyOnTheClock) {
  FakeClock clock;
  MemoryRateLimiter rl({{"req", {2, 4}}}, 0, clock);  // 2/s, burst 4
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(rl.TryTake("req", 1).granted) << i;  // the burst
  RateGrant g = rl.TryTake("req", 1);
  EXPECT_FALSE(g.granted);
  EXPECT_NEAR(g.wait, 0.52, 1e-9);  // one token at 2/s, paced 20 ms wider (PacedPerSecond)
  clock.Advance(0.25);
  EXPECT_NEAR(rl.TryTake("req", 1).wait, 0.27, 1e-9);
  clock.Advance(0.27);
  EXPECT_TRUE(rl.TryTake("req", 1).granted);
  clock.Advance(100);  // refill stops at the burst
  EXPECT_DOUBLE_EQ(rl.Level("req"), 4);
}

TEST(MemoryLimiter, AcquireWaitsOnTheClockAndHonoursCancel) {
  FakeClock clock;
  MemoryRateLimiter rl({{"tok", {1000, 1000}}}, 0, clock);
  std::vector<double> waits;
  auto on_wait = [&](double s, const std::string&) { waits.push_back(s); };
  ASSERT_TRUE(rl.Acquire("tok", 800, nullptr, on_wait));
  // 200 left: waits for 600 at 1000/s paced 5% slower (PacedPerSecond): 0.63 s of fake time.
  ASSERT_TRUE(rl.Acquire("tok", 800, nullptr, on_wait));
  ASSERT_EQ(waits.size(), 1u);
  EXPECT_NEAR(waits[0], 0.63, 1e-9);
  EXPECT_NEAR(clock.slept(), 0.63, 1e-9);
  // Larger than the burst: granted once full, leaving debt that later takes wait for.
  ASSERT_TRUE(rl.Acquire("tok", 2500, nullptr, on_wait));
  EXPECT_NEAR(clock.slept(), 0.63 + 1.05, 1e-9);
  EXPECT_NEAR(rl.Level("tok"), -1500, 1e-6);
  CancelToken cancel;
  cancel.cancel();
  EXPECT_FALSE(rl.Acquire("tok", 1, &cancel, on_wait));
}

TEST(MemoryLimiter, PacingMarginIsAbout20MsWithinTwoToFivePercent) {
  EXPECT_NEAR(1 / PacedPerSecond({1, 1}), 1.02, 1e-12);        // 20 ms = 2%
  EXPECT_NEAR(1 / PacedPerSecond({2, 1}), 0.52, 1e-12);        // 20 ms
  EXPECT_NEAR(1 / PacedPerSecond({1.0 / 60, 1}), 61.2, 1e-9);  // at least 2%
  EXPECT_NEAR(1 / PacedPerSecond({100, 100}), 0.0105, 1e-12);  // at most 5%
}

// A 429 holds every waiter for Retry-After with no refill meanwhile (so they do not all go at
// once when it ends), and lowers the rate; grants bring it back.
TEST(MemoryLimiter, LimitedHoldsEveryWaiterWithoutRefillAndSlowsTheRate) {
  FakeClock clock;
  MemoryRateLimiter rl({{"req", {1, 3}}}, 0, clock);
  ASSERT_TRUE(rl.TryTake("req", 1).granted);  // 2 left
  rl.Limited("req", 5);
  EXPECT_NEAR(rl.TryTake("req", 1).wait, 5, 1e-9);
  clock.Advance(4.9);
  EXPECT_NEAR(rl.TryTake("req", 1).wait, 0.1, 1e-9);
  clock.Advance(0.1);
  // Held 5 s, nothing accrued: one token takes 1.02 s at 0.8 of the rate.
  RateGrant g = rl.TryTake("req", 1);
  EXPECT_FALSE(g.granted);
  EXPECT_NEAR(g.wait, 1.02 / 0.8, 1e-9);
  clock.Advance(g.wait);
  EXPECT_TRUE(rl.TryTake("req", 1).granted);
  EXPECT_NEAR(rl.TryTake("req", 1).wait, 1.02 / (0.8 * 1.01), 1e-9);  // one grant brought 1% back
}

TEST(MemoryLimiter, GiveBackAndProviderLowering) {
  FakeClock clock;
  MemoryRateLimiter rl({{"tok", {100, 100}}}, 0, clock);
  ASSERT_TRUE(rl.TryTake("tok", 90).granted);
  rl.Give("tok", 60);  // the reply used 30 of the 90 reserved
  EXPECT_DOUBLE_EQ(rl.Level("tok"), 70);
  rl.Give("tok", 500);  // never above the burst
  EXPECT_DOUBLE_EQ(rl.Level("tok"), 100);
  rl.Give("tok", -130);  // used more than reserved: debt
  EXPECT_DOUBLE_EQ(rl.Level("tok"), -30);
  clock.Advance(1.3);
  rl.Lower("tok", 40, 0);  // the provider says 40 remain
  EXPECT_DOUBLE_EQ(rl.Level("tok"), 40);
  rl.Lower("tok", 0, 2.0);  // a 429 with Retry-After: 2
  RateGrant g = rl.TryTake("tok", 1);
  EXPECT_FALSE(g.granted);
  EXPECT_DOUBLE_EQ(g.wait, 2.0);
  clock.Advance(2.0);
  EXPECT_TRUE(rl.TryTake("tok", 1).granted);  // 2 s at 100/s refilled it
}

TEST(MemoryLimiter, BudgetCountsSpentAndInFlight) {
  FakeClock clock;
  MemoryRateLimiter rl({}, 1.0, clock);
  EXPECT_TRUE(rl.Reserve(0.4).granted);
  EXPECT_TRUE(rl.Reserve(0.4).granted);
  BudgetGrant g = rl.Reserve(0.4);  // 0.8 reserved + 0.4 > 1.0
  EXPECT_FALSE(g.granted);
  EXPECT_DOUBLE_EQ(g.reserved, 0.8);
  rl.Settle(0.4, 0.1);  // the first request cost 0.1
  g = rl.Reserve(0.4);  // 0.1 spent + 0.4 reserved + 0.4
  EXPECT_TRUE(g.granted);
  EXPECT_DOUBLE_EQ(g.spent, 0.1);
  MemoryRateLimiter unlimited({}, 0, clock);
  EXPECT_TRUE(unlimited.Reserve(1e9).granted);
}

// When spending can no longer be recorded (the journal failed, even from inside `record`), no
// new request is admitted: a resumed run would not know what it cost.
TEST(MemoryLimiter, RefusedBudgetAdmitsNothingMore) {
  FakeClock clock;
  MemoryRateLimiter rl({}, 10.0, clock);
  rl.Resume(0, [&](double) { rl.RefuseBudget("the journal failed: disk full"); });
  ASSERT_TRUE(rl.Reserve(0.1).granted);
  rl.Settle(0.1, 0.1);  // records, and the record fails
  BudgetGrant g = rl.Reserve(0.1);
  EXPECT_FALSE(g.granted);
  EXPECT_EQ(g.error, "the journal failed: disk full");
  rl.RefuseBudget("a second reason");  // the first stays
  EXPECT_EQ(rl.Reserve(0.1).error, "the journal failed: disk full");
  rl.StopRecording();
}

TEST(MemoryLimiter, AResumedBudgetStartsFromEarlierSpendingAndRecordsItsOwn) {
  FakeClock clock;
  MemoryRateLimiter rl({}, 1.0, clock);
  std::vector<double> recorded;
  rl.Resume(0.7, [&](double usd) { recorded.push_back(usd); });
  BudgetGrant g = rl.Reserve(0.4);  // 0.7 spent by earlier runs + 0.4 > 1.0
  EXPECT_FALSE(g.granted);
  EXPECT_DOUBLE_EQ(g.spent, 0.7);
  ASSERT_TRUE(rl.Reserve(0.2).granted);
  rl.Settle(0.2, 0.15);
  rl.Settle(0, 0);  // a failed request costs nothing and records nothing
  EXPECT_EQ(recorded, std::vector<double>{0.15});
  EXPECT_DOUBLE_EQ(rl.spent(), 0.85);
  rl.StopRecording();
  rl.Settle(0, 0.01);  // spending without a reservation (no budget) still counts
  EXPECT_EQ(recorded.size(), 1u);
  EXPECT_DOUBLE_EQ(rl.spent(), 0.86);
}

TEST(MemoryLimiter, ThreadsNeverTakeMoreThanTheBucketHolds) {
  FakeClock clock;  // time stands still: exactly the burst can be taken
  MemoryRateLimiter rl({{"r", {1, 1000}}}, 0, clock);
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) granted += rl.TryTake("r", 1).granted;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 1000);
}

TEST(LlmUsage, CostAndSums) {
  const Price price{0.15, 0.60, 0.075, true};
  EXPECT_DOUBLE_EQ(CostUsd(price, 1'000'000, 0, 0), 0.15);
  EXPECT_DOUBLE_EQ(CostUsd(price, 1000, 400, 100), (600 * 0.15 + 400 * 0.075 + 100 * 0.60) / 1e6);
  EXPECT_DOUBLE_EQ(CostUsd(Price{2, 8, -1, true}, 1000, 400, 0), 1000 * 2 / 1e6);  // no cached price: input price

  RunReport report;
  JobReport a, b;
  a.results = {{"summarize",
                {{"summary", "x"},
                 {"usage", {{"requests", 2}, {"prompt_tokens", 100}, {"completion_tokens", 10}, {"cost_usd", 0.5}}}}},
               {"download", {{"bytes", 3}}}};
  b.results = {
      {"summarize",
       {{"usage", {{"requests", 1}, {"prompt_tokens", 40}, {"completion_tokens", 5}, {"cost_usd", 0.25}}}}},
      {"title", {{"usage", {{"requests", 3}, {"prompt_tokens", 7}, {"completion_tokens", 1}, {"cost_usd", 0.125}}}}}};
  report.jobs = {a, b};
  EXPECT_EQ(JobLlmUsage(b.results).requests, 4);
  const Json total = SumLlmUsage(report);
  EXPECT_EQ(total["requests"], 6);
  EXPECT_EQ(total["prompt_tokens"], 147);
  EXPECT_EQ(total["completion_tokens"], 16);
  EXPECT_DOUBLE_EQ(total["cost_usd"].get<double>(), 0.875);
}

}  // namespace
}  // namespace baton::rates
