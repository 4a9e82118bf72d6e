// A whole embedded run with `rates:` and `budget:` in the pipeline file, its llm step talking to
// the real local OpenAI-compatible server in its provider-style rate-limit mode.
#include <gtest/gtest.h>

#include <fstream>

#include "baton/pipeline.h"
#include "baton/runtime.h"
#include "rates/llm_usage.h"
#include "support/openai_server.h"
#include "support/util.h"

namespace baton {
namespace {

using testing::OpenAiServer;

class LlmRatesRunTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!StepRegistry::Global().Has("llm")) RegisterBuiltinSteps();
    for (const char* v : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
      unsetenv(v);
  }
  // 12 jobs, each one chat completion, all able to run at once (12 CPUs).
  RunReport RunPipeline(const std::string& top, double input_price, double output_price, int step_retries = 0) {
    std::ofstream(dir / "prompt.md") << "Summarise {{title}} in one line.";
    const std::string yaml = top + R"(
steps:
  - name: analyze
    uses: sleep
    with: {seconds: 0}
  - name: summarize
    uses: llm
    retries: )" + std::to_string(step_retries) + R"(
    with:
      provider: custom
      base_url: )" + server.base_url() + R"(
      model: m
      max_tokens: 16
      prompt_file: prompt.md
      request_rate: req
      token_rate: tok
      backoff: 0.01
      max_backoff: 0.2
      retries: 50
      price: {input: )" + std::to_string(input_price) + ", output: " + std::to_string(output_price) + R"(}
)";
    RunOptions o;
    o.inputs.assign(12, "");
    o.out = dir / ("out-" + std::to_string(++runs));  // a fresh output folder per run
    o.log_format = RunOptions::LogFormat::kNone;
    const std::unique_ptr<Runtime> rt_owner = Runtime::Create(ParsePipeline(yaml, (dir / "p.yaml").string()).value(),
               ParseCluster("nodes: [{name: n, cpus: 12, labels: {role: head}}]\n", "c.yaml").value(), o).value();
    Runtime& rt = *rt_owner;
    return rt.Run();
  }

  testing::TempDir dir;
  OpenAiServer server;
  int runs = 0;
};

TEST_F(LlmRatesRunTest, NoRateLimitedReplyAndExactCost) {
  server.SetRateLimits(6, 600);
  const RunReport r = RunPipeline("rates:\n  req: {rate: 6/s, burst: 5}\n  tok: {rate: 600/s, burst: 500}\n", 0.5, 1.5);
  EXPECT_EQ(r.succeeded, 12);
  EXPECT_EQ(server.rate_limited_count(), 0u);
  ASSERT_EQ(server.request_count(), 12u);
  long long prompt = 0;
  double cost = 0;
  for (const auto& q : server.requests()) {
    prompt += static_cast<long long>(q.raw_body.size() / 4);
    cost += (static_cast<double>(q.raw_body.size() / 4) * 0.5 + 7 * 1.5) / 1e6;
  }
  const Json llm = rates::SumLlmUsage(r);
  EXPECT_EQ(llm["requests"], 12);
  EXPECT_EQ(llm["prompt_tokens"], prompt);
  EXPECT_EQ(llm["completion_tokens"], 12 * 7);
  EXPECT_NEAR(llm["cost_usd"].get<double>(), cost, 1e-12);
  for (const auto& job : r.jobs) {
    EXPECT_EQ(job.results["summarize"]["usage"]["requests"], 1) << job.id;
  }
  // The same totals in the summary.json written to disk, and summed over the jobs of jobs.jsonl.
  const Json summary = Json::parse(testing::ReadFile(dir / ("out-" + std::to_string(runs)) / "summary.json"));
  EXPECT_EQ(summary["llm"]["requests"], 12);
  EXPECT_EQ(summary["llm"]["prompt_tokens"], prompt);
  EXPECT_EQ(summary["llm"]["completion_tokens"], 12 * 7);
  EXPECT_NEAR(summary["llm"]["cost_usd"].get<double>(), cost, 1e-12);
  double per_job = 0;
  for (const auto& j : testing::ReadJobs(dir / ("out-" + std::to_string(runs))))
    per_job += j["llm"]["cost_usd"].get<double>();
  EXPECT_NEAR(per_job, cost, 1e-12);
}

TEST_F(LlmRatesRunTest, BudgetForAThirdOfTheJobs) {
  // $1000/Mtok: one request costs c ≈ $0.1 and reserves c + 9 × $0.001 before it is sent. A
  // budget of 4.5 c admits four requests (even all in flight at once), never a fifth.
  // A first run without a real budget measures c.
  server.SetRateLimits(100, 100000);
  const RunReport first = RunPipeline("rates: {req: 100/s, tok: 100000/s}\nbudget: {usd: 1000}\n", 1000, 1000);
  ASSERT_EQ(first.succeeded, 12);
  const double per_job = first.jobs[0].results["summarize"]["usage"]["cost_usd"].get<double>();
  ASSERT_GT(per_job, 0.05);
  const size_t before = server.request_count();

  const std::string budget = "budget: {usd: " + std::to_string(4.5 * per_job) + "}\n";
  const RunReport r = RunPipeline("rates: {req: 100/s, tok: 100000/s}\n" + budget, 1000, 1000, /*step_retries=*/2);
  int ok = 0, refused = 0;
  for (const auto& job : r.jobs) {
    if (job.status == "succeeded") {
      ++ok;
      continue;
    }
    EXPECT_NE(job.error.find("LLM budget of $"), std::string::npos) << job.id << ": " << job.error;
    EXPECT_EQ(job.attempts.back().attempt, 1) << job.id << " was retried";
    ++refused;
  }
  EXPECT_EQ(ok, 4);
  EXPECT_EQ(refused, 8);
  EXPECT_EQ(server.request_count() - before, 4u);  // nothing was sent past the budget
}

}  // namespace
}  // namespace baton
