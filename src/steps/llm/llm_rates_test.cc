// The llm step with rates, prices and a budget, against the real local OpenAI-compatible server
// in its provider-style rate-limit mode (tests/support/openai_server.h).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <barrier>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

#include "util/clock.h"
#include "rates/memory_limiter.h"
#include "steps/llm/llm.h"
#include "steps/llm/request_gate.h"
#include "support/openai_server.h"
#include "support/util.h"

namespace baton {
namespace {

using rates::MemoryRateLimiter;
using testing::OpenAiServer;

class LlmRatesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!StepRegistry::Global().Has("llm")) RegisterLlmStep(StepRegistry::Global());
    for (const char* v : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
      unsetenv(v);
  }
  void SetUp() override { std::ofstream(dir / "prompt.md") << "Summarise {{title}} in one line."; }

  // A short prompt (~80 tokens a request) keeps the runs short at low limits.
  Json With(Json extra = Json::object()) {
    Json with = {{"provider", "custom"}, {"base_url", server.base_url()}, {"model", "m"}, {"backoff", 0.01},
                 {"max_backoff", 0.2}, {"retries", 50}, {"max_tokens", 16}, {"prompt_file", "prompt.md"},
                 {"_base_dir", dir.path().string()}};
    for (auto& [k, v] : extra.items()) with[k] = v;
    return with;
  }

  struct Job {
    Json results;
    std::vector<Json> progress;
    std::string logs;
    StepOutcome outcome;
  };
  // Runs the step for job `i` on the calling thread.
  void RunJob(const Step& step, RateLimiter* rates, int i, Job* job) {
    job->results = {{"download", {{"title", "Video " + std::to_string(i)}}}, {"analyze", Json::object()}};
    CancelToken cancel;
    StepContext ctx;
    ctx.job = "job-" + std::to_string(i);
    ctx.step = "summarize";
    ctx.results = &job->results;
    ctx.cancel = &cancel;
    ctx.rates = rates;
    ctx.log = [job](LogLevel, std::string_view line) { job->logs += std::string(line) + "\n"; };
    ctx.progress = [job](const Json& p) { job->progress.push_back(p); };
    job->outcome = step.Run(ctx);
  }
  // Runs `n` jobs at once, one thread each, released together.
  std::vector<Job> RunConcurrently(const Json& with, RateLimiter* rates, int n) {
    auto step = StepRegistry::Global().Create("llm", with).value();
    std::vector<Job> jobs(n);
    std::barrier start(n);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        RunJob(*step, rates, i, &jobs[i]);
      });
    }
    for (auto& t : threads) t.join();
    return jobs;
  }

  testing::TempDir dir;
  OpenAiServer server;
};

TEST_F(LlmRatesTest, RatesAtTheServersLimitsGetNo429WhileNoRatesDo) {
  server.SetRateLimits(6, 600);  // 6 requests/s and 600 tokens/s, one second's worth of burst
  // Without rates: 24 requests at once overrun the server and are answered 429 (then retried).
  // (It admits 6 + 6 s requests in s seconds: the 24 would have to arrive over more than 3 s,
  // even on a loaded machine, for none to be refused.)
  MemoryRateLimiter none({}, 0);
  for (const Job& j : RunConcurrently(With(), &none, 24)) ASSERT_TRUE(j.outcome.ok()) << j.outcome.error;
  const size_t without = server.rate_limited_count();
  EXPECT_GT(without, 0u) << "the server's limits did not bite; the comparison below proves nothing";

  // With rates at the server's rates (bursts a little below its one second's worth, for the
  // request's trip to the server): not one 429.
  OpenAiServer fresh;
  fresh.SetRateLimits(6, 600);
  Json with = With({{"base_url", fresh.base_url()}, {"request_rate", "req"}, {"token_rate", "tok"}});
  MemoryRateLimiter rates({{"req", {6, 5}}, {"tok", {600, 500}}}, 0);
  const std::vector<Job> jobs = RunConcurrently(with, &rates, 12);
  size_t waited = 0;
  for (const Job& j : jobs) {
    ASSERT_TRUE(j.outcome.ok()) << j.outcome.error;
    EXPECT_EQ(j.outcome.result["usage"]["requests"], 1);
    for (const Json& p : j.progress) waited += p.value("waiting", Json()).is_string();
  }
  EXPECT_EQ(fresh.rate_limited_count(), 0u);
  EXPECT_EQ(fresh.request_count(), 12u);
  EXPECT_GT(waited, 0u);  // some jobs showed "waiting for rate ..."
  std::printf("429 replies: %zu without rates, %zu with rates at the server's limits\n", without,
              fresh.rate_limited_count());
}

// A provider that refuses any request closer than 1/rate to the previous one (its clock sees
// Baton's spacing with jitter): told that very rate, Baton gets not one 429, with 8 jobs asking at
// once. The spacing it keeps is the rate's interval plus the pacing margin (20 ms here).
TEST_F(LlmRatesTest, PacedAtTheProvidersExactRateGetsNo429) {
  constexpr double kRate = 2;  // requests a second, on both sides
  server.SetMinInterval(1 / kRate);
  MemoryRateLimiter rates({{"req", {kRate, 1}}}, 0);
  const std::vector<Job> jobs = RunConcurrently(With({{"request_rate", "req"}}), &rates, 8);
  for (const Job& j : jobs) ASSERT_TRUE(j.outcome.ok()) << j.outcome.error;
  EXPECT_EQ(server.rate_limited_count(), 0u);
  const auto requests = server.requests();
  ASSERT_EQ(requests.size(), 8u);
  for (size_t i = 1; i < requests.size(); ++i) {
    const double gap = std::chrono::duration<double>(requests[i].at - requests[i - 1].at).count();
    EXPECT_GE(gap, 1 / kRate) << "request " << i;
  }
}

// After a 429 with Retry-After, every request waiting on the bucket waits it out and the bucket
// paces slower: at twice the provider's rate, a 429 is never followed by another one at once
// (the old bucket refilled while held and let its waiters go together), and the 429s stop
// instead of hitting every second request.
TEST_F(LlmRatesTest, After429EveryWaiterHonoursRetryAfterAndTheBucketSlows) {
  server.SetMinInterval(0.25);
  MemoryRateLimiter rates({{"req", {8, 1}}}, 0);  // twice what the provider takes
  const std::vector<Job> jobs = RunConcurrently(With({{"request_rate", "req"}}), &rates, 8);
  for (const Job& j : jobs) ASSERT_TRUE(j.outcome.ok()) << j.outcome.error;
  const auto requests = server.requests();
  for (size_t i = 1; i < requests.size(); ++i) {
    if (requests[i - 1].status == 429) {
      EXPECT_EQ(requests[i].status, 200) << "request " << i << " right after a 429";
    }
  }
  EXPECT_LE(server.rate_limited_count(), 4u) << "the bucket did not slow down after 429s";
}

TEST_F(LlmRatesTest, CostPerJobFromTheServersUsage) {
  MemoryRateLimiter rates({}, 0);
  auto step = StepRegistry::Global().Create("llm", With({{"price", {{"input", 0.5}, {"output", 1.5}}}})).value();
  Job job;
  RunJob(*step, &rates, 7, &job);
  ASSERT_TRUE(job.outcome.ok()) << job.outcome.error;
  ASSERT_EQ(server.request_count(), 1u);
  const long long prompt = static_cast<long long>(server.requests()[0].raw_body.size() / 4);
  const Json& usage = job.outcome.result["usage"];
  EXPECT_EQ(usage["requests"], 1);
  EXPECT_EQ(usage["prompt_tokens"], prompt);
  EXPECT_EQ(usage["completion_tokens"], 7);
  EXPECT_DOUBLE_EQ(usage["cost_usd"].get<double>(), (prompt * 0.5 + 7 * 1.5) / 1e6);
  // Retries count as requests; a 429 costs nothing.
  server.SetFault(OpenAiServer::Fault::kRateLimit, 2);
  server.set_retry_after_seconds(0);
  Job again;
  RunJob(*step, &rates, 7, &again);
  ASSERT_TRUE(again.outcome.ok()) << again.outcome.error;
  EXPECT_EQ(again.outcome.result["usage"]["requests"], 3);
  EXPECT_DOUBLE_EQ(again.outcome.result["usage"]["cost_usd"].get<double>(), (prompt * 0.5 + 7 * 1.5) / 1e6);
}

TEST_F(LlmRatesTest, BudgetStopsFurtherRequests) {
  // At $1000 per million tokens one request costs c (about $0.1, measured first); a budget of
  // 3.5 c pays for three jobs: the fourth would need up to c + 9 * $0.001 (max_tokens 16 reserved,
  // 7 used) on top of 3 c spent.
  auto step = StepRegistry::Global().Create("llm", With({{"price", {{"input", 1000}, {"output", 1000}}}})).value();
  MemoryRateLimiter unlimited({}, 0);
  Job probe;
  RunJob(*step, &unlimited, 9, &probe);
  ASSERT_TRUE(probe.outcome.ok()) << probe.outcome.error;
  const double c = probe.outcome.result["usage"]["cost_usd"].get<double>();
  ASSERT_GT(c, 0.05);

  MemoryRateLimiter rates({}, 3.5 * c);
  std::vector<Job> jobs(6);
  for (int i = 0; i < 6; ++i) RunJob(*step, &rates, i, &jobs[i]);
  double spent = 0;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(jobs[i].outcome.ok()) << i << ": " << jobs[i].outcome.error;
    EXPECT_DOUBLE_EQ(jobs[i].outcome.result["usage"]["cost_usd"].get<double>(), c);  // same-size prompts
    spent += c;
  }
  const std::string reason = fmt::format("LLM budget of ${:.2f} reached: ${:.2f} spent", 3.5 * c, spent);
  for (int i = 3; i < 6; ++i) {
    EXPECT_EQ(jobs[i].outcome.kind, StepOutcome::Kind::kFailed) << i;
    EXPECT_FALSE(jobs[i].outcome.retryable);
    EXPECT_EQ(jobs[i].outcome.error.rfind(reason, 0), 0u) << jobs[i].outcome.error;
    EXPECT_EQ(jobs[i].outcome.result["usage"]["requests"], 0);
  }
  EXPECT_EQ(server.request_count(), 1u + 3u);  // the probe and three jobs; nothing past the budget
}

TEST_F(LlmRatesTest, WaitsOnTheLimitersClockAndObeysProviderHeaders) {
  FakeClock clock;
  MemoryRateLimiter rates({{"req", {1.0 / 60, 1}}, {"tok", {1000, 100000}}}, 0, clock);
  server.SetRateLimits(100, 600);
  auto step = StepRegistry::Global().Create("llm", With({{"request_rate", "req"}, {"token_rate", "tok"}})).value();
  Job first, second;
  RunJob(*step, &rates, 1, &first);
  ASSERT_TRUE(first.outcome.ok()) << first.outcome.error;
  // The reply said x-ratelimit-remaining-tokens: 600 - usage; the bucket (no fake time passed)
  // holds no more than that.
  const long long used = static_cast<long long>(server.requests()[0].raw_body.size() / 4 + 7);
  EXPECT_DOUBLE_EQ(rates.Level("tok"), static_cast<double>(600 - used));
  EXPECT_TRUE(first.progress.empty());
  RunJob(*step, &rates, 2, &second);  // one request a minute: waits 60 s (+2% margin) of fake time
  ASSERT_TRUE(second.outcome.ok()) << second.outcome.error;
  EXPECT_NEAR(clock.slept(), 61.2, 1e-6);
  ASSERT_FALSE(second.progress.empty());
  EXPECT_EQ(second.progress.front()["waiting"], "rate req");
  EXPECT_NE(second.logs.find("llm: waiting for rate req"), std::string::npos) << second.logs;

  // A 429 with Retry-After holds the shared bucket: the next request waits it out (fake time).
  server.SetFault(OpenAiServer::Fault::kRateLimit, 1);
  server.set_retry_after_seconds(30);
  Job third;
  RunJob(*step, &rates, 3, &third);
  ASSERT_TRUE(third.outcome.ok()) << third.outcome.error;
  EXPECT_GE(clock.slept(), 61.2 + 30 - 1e-6);
}

TEST_F(LlmRatesTest, UnknownRateAndMissingPriceAreClearFailures) {
  MemoryRateLimiter rates({{"req", {1, 1}}}, 5);
  Job a, b;
  RunJob(
      *StepRegistry::Global()
           .Create("llm", With({{"request_rate", "reqs"}, {"price", {{"input", 1}, {"output", 1}}}}))
           .value(),
      &rates, 0, &a);
  EXPECT_EQ(a.outcome.error, "llm: with.request_rate: no rate named 'reqs' in rates: (declared: req) (summary)");
  EXPECT_FALSE(a.outcome.retryable);
  RunJob(*StepRegistry::Global().Create("llm", With()).value(), &rates, 0, &b);
  EXPECT_EQ(b.outcome.error, "llm: the run has a budget but model m has no price; set with.price: {input, output} "
                             "(USD per million tokens) (summary)");
  EXPECT_EQ(server.request_count(), 0u);
}

TEST(ProviderLimits, ReadsOpenAiAndAnthropicHeaders) {
  llm::ProviderLimits l;
  EXPECT_TRUE(l.ReadHeader("x-ratelimit-remaining-requests: 59\r\n"));
  EXPECT_TRUE(l.ReadHeader("X-RateLimit-Remaining-Tokens: 149984\r\n"));
  EXPECT_TRUE(l.ReadHeader("x-ratelimit-reset-requests: 1s\r\n"));
  EXPECT_TRUE(l.ReadHeader("x-ratelimit-reset-tokens: 6m0.5s\r\n"));
  EXPECT_TRUE(l.ReadHeader("retry-after-ms: 1500\r\n"));
  EXPECT_FALSE(l.ReadHeader("content-type: application/json\r\n"));
  EXPECT_EQ(l.remaining_requests, 59);
  EXPECT_EQ(l.remaining_tokens, 149984);
  EXPECT_DOUBLE_EQ(l.reset_requests, 1);
  EXPECT_DOUBLE_EQ(l.reset_tokens, 360.5);
  EXPECT_DOUBLE_EQ(l.retry_after, 1.5);
  llm::ProviderLimits a;
  EXPECT_TRUE(a.ReadHeader("anthropic-ratelimit-input-tokens-remaining: 3000\r\n"));
  EXPECT_TRUE(a.ReadHeader("anthropic-ratelimit-tokens-remaining: 5000\r\n"));
  EXPECT_TRUE(a.ReadHeader("anthropic-ratelimit-requests-reset: 1999-01-01T00:00:00Z\r\n"));
  EXPECT_EQ(a.remaining_tokens, 3000);  // the tightest of the token families
  EXPECT_DOUBLE_EQ(a.reset_requests, 0);  // a time in the past: now
}

}  // namespace
}  // namespace baton
