// LLM rates, cost and budget across a cluster (issue 12): a real redis-server, a head and two
// agents, the llm step talking to the real local OpenAI-compatible server (tests/support/
// openai_server.h) that answers 429 when its own requests/s or tokens/s window is exceeded.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "support/local_cluster.h"
#include "support/openai_server.h"
#include "support/util.h"

namespace baton {
namespace {

using nlohmann::json;
using testing::OpenAiServer;

constexpr double kInputPrice = 1000, kOutputPrice = 1000;  // USD per million tokens: cents per request

class LlmClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
      unsetenv(v);
    ASSERT_TRUE(cluster.StartRedis()) << cluster.Logs();
    dashboard_port = testing::FreeLoopbackPort();
    cluster.StartHead({"--dashboard", "127.0.0.1:" + std::to_string(dashboard_port)});
    cluster.StartNode("a", {"--cpus", "4", "--labels", "role=head"});
    cluster.StartNode("b", {"--cpus", "4"});
    ASSERT_TRUE(cluster.WaitNodesAlive(2, 15)) << cluster.Logs();
    std::ofstream(cluster.dir() / "prompt.md") << "Summarise {{title}} in one line.";
  }
  // A pipeline file: `top` (rates:, budget:) and one llm step per job asking `cpu` CPUs.
  std::filesystem::path Pipeline(const std::string& name, const std::string& top, int step_retries = 0, int cpu = 1) {
    const auto file = cluster.dir() / (name + ".yaml");
    std::ofstream(file) << "name: " << name << "\n" << top << R"(
steps:
  - {name: analyze, uses: sleep, with: {seconds: 0}}
  - name: summarize
    uses: llm
    retries: )" << step_retries << R"(
    resources: {cpu: )" << cpu << R"(}
    with:
      provider: custom
      base_url: )" << server.base_url() << R"(
      model: m
      max_tokens: 16
      prompt_file: prompt.md
      request_rate: req
      token_rate: tok
      backoff: 0.01
      max_backoff: 0.2
      retries: 50
      price: {input: )" << kInputPrice << ", output: " << kOutputPrice << "}\n";
    return file;
  }
  static std::vector<std::string> Inputs(int n) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) out.push_back("talk-" + std::to_string(100 + i));  // same length: same cost
    return out;
  }
  // What the server's usage replies cost (requests since `from`).
  struct Totals {
    long long requests = 0, prompt = 0, completion = 0;
    double usd = 0;
  };
  Totals ServerTotals(size_t from = 0) const {
    Totals t;
    const auto reqs = server.requests();
    for (size_t i = from; i < reqs.size(); ++i) {
      ++t.requests;
      const json& u = reqs[i].usage;
      if (!u.is_object()) continue;
      t.prompt += u["prompt_tokens"].get<long long>();
      t.completion += u["completion_tokens"].get<long long>();
      t.usd +=
          (u["prompt_tokens"].get<double>() * kInputPrice + u["completion_tokens"].get<double>() * kOutputPrice) / 1e6;
    }
    return t;
  }

  testing::LocalCluster cluster;
  OpenAiServer server;
  int dashboard_port = 0;
};

// Token-bucket conformance of what the server accepted: between any two accepted requests i <= j,
// what they took is at most burst + rate x (t_j - t_i) (with one request's slack for clock reads).
void ExpectWindowHeld(const std::vector<OpenAiServer::Request>& reqs, double rate, double burst,
                      double (*cost)(const OpenAiServer::Request&), const char* what) {
  std::vector<const OpenAiServer::Request*> ok;
  for (const auto& r : reqs)
    if (r.status == 200) ok.push_back(&r);
  std::sort(ok.begin(), ok.end(), [](auto* a, auto* b) { return a->at < b->at; });
  double worst = -1e9;
  for (size_t i = 0; i < ok.size(); ++i) {
    double taken = 0;
    for (size_t j = i; j < ok.size(); ++j) {
      taken += cost(*ok[j]);
      const double dt = std::chrono::duration<double>(ok[j]->at - ok[i]->at).count();
      worst = std::max(worst, taken - (burst + rate * dt));
    }
  }
  EXPECT_LE(worst, 0.0) << what << ": the server's window was exceeded by " << worst;
}

TEST_F(LlmClusterTest, ThirtyJobsOnTwoAgentsGetNo429AndExactCost) {
  // The server allows 8 requests/s and 900 tokens/s (each holding one second's worth); the
  // cluster's rates are set at those limits, with bursts a little below for the time a request
  // takes to travel.
  server.SetRateLimits(8, 900);
  const auto file = Pipeline("rated", "rates:\n  req: {rate: 8/s, burst: 6}\n  tok: {rate: 900/s, burst: 700}\n");
  auto submit = cluster.Submit(file, Inputs(30));
  // While the rates hold requests back, steps waiting for them hold no CPU: more llm steps run at
  // once than the agents' 8 CPUs, and `baton status` says what they wait for.
  size_t most_running = 0;
  bool said_waiting = false;
  int rc = -1;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  while ((rc = submit->Wait(0.1)) == -1 && std::chrono::steady_clock::now() < give_up) {
    const json s = cluster.StatusJson();
    if (!s.is_object()) continue;
    size_t running = 0;
    for (const auto& j : s["jobs"]) running += j["state"] == "running" && j["step"] == "summarize";
    most_running = std::max(most_running, running);
    if (!said_waiting) {
      const std::string text = cluster.StatusText();
      said_waiting = text.find("waiting for rate req") != std::string::npos ||
                     text.find("waiting for rate tok") != std::string::npos;
    }
  }
  ASSERT_EQ(rc, 0) << cluster.Logs();
  EXPECT_GT(most_running, 8u);
  EXPECT_TRUE(said_waiting);

  EXPECT_EQ(server.rate_limited_count(), 0u);
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 30u);
  ExpectWindowHeld(reqs, 8, 8, [](const OpenAiServer::Request&) { return 1.0; }, "requests");
  ExpectWindowHeld(reqs, 900, 900, [](const OpenAiServer::Request& r) {
    return r.usage["prompt_tokens"].get<double>() + r.usage["completion_tokens"].get<double>();
  }, "tokens");
  // Both agents sent requests.
  const json status = cluster.StatusJson();
  std::set<std::string> nodes;
  for (const auto& j : status["jobs"]) {
    EXPECT_EQ(j["state"], "succeeded") << j.dump();
    nodes.insert(j["steps"][1].value("node", ""));
  }
  EXPECT_EQ(nodes, (std::set<std::string>{"a", "b"}));

  // Totals equal the server's usage replies times the prices: status --json, status, /metrics.
  const Totals t = ServerTotals();
  EXPECT_EQ(t.requests, 30);
  EXPECT_EQ(status["llm"]["requests"], 30);
  EXPECT_EQ(status["llm"]["prompt_tokens"], t.prompt);
  EXPECT_EQ(status["llm"]["completion_tokens"], t.completion);
  EXPECT_NEAR(status["llm"]["cost_usd"].get<double>(), t.usd, 1e-9);
  EXPECT_EQ(testing::SchemaErrors(status, "snapshot"), "");
  double per_jobs = 0;
  for (const auto& j : status["jobs"]) per_jobs += j["llm"]["cost_usd"].get<double>();
  EXPECT_NEAR(per_jobs, t.usd, 1e-9);
  const std::string text = cluster.StatusText();
  EXPECT_NE(text.find(fmt::format("LLM: 30 requests, {} prompt + {} completion tokens, ${:.6f}", t.prompt, t.completion,
                                  t.usd)),
            std::string::npos)
      << text;
  httplib::Client http("127.0.0.1", dashboard_port);
  std::string metrics;
  ASSERT_TRUE(testing::WaitFor([&] {
    auto r = http.Get("/metrics");
    if (!r || r->status != 200) return false;
    metrics = r->body;
    return metrics.find("baton_llm_requests_total 30\n") != std::string::npos;
  }, 10)) << metrics;
  EXPECT_NE(metrics.find(fmt::format("baton_llm_tokens_total{{kind=\"prompt\"}} {}\n", t.prompt)), std::string::npos);
  EXPECT_NE(metrics.find(fmt::format("baton_llm_tokens_total{{kind=\"completion\"}} {}\n", t.completion)),
            std::string::npos);
  const size_t at = metrics.find("\nbaton_llm_cost_usd_total ");
  ASSERT_NE(at, std::string::npos) << metrics;
  EXPECT_NEAR(std::stod(metrics.substr(at + 26)), t.usd, 1e-9);
}

TEST_F(LlmClusterTest, BudgetForAThirdOfTheJobsAcrossTwoAgents) {
  server.SetRateLimits(200, 100000);
  const std::string rates = "rates: {req: 200/s, tok: 100000/s}\n";
  // One job alone measures what a request costs (c, about $0.1 here); every job costs the same.
  const auto probe = Pipeline("probe", rates);
  ASSERT_EQ(cluster.SubmitAndWait(probe, Inputs(1), 60), 0) << cluster.Logs();
  const double c = ServerTotals().usd;
  ASSERT_GT(c, 0.05);
  const size_t before = server.request_count();

  // A budget of 10.5 c: a request reserves c + 9 completion tokens ($0.009) until its usage
  // settles, so no eleventh is ever admitted, and the tenth is whenever at most four others are in
  // flight (here two: 4 CPUs a step, 4 per agent).
  const auto file = Pipeline("budget", rates + fmt::format("budget: {{usd: {:.6f}}}\n", 10.5 * c), /*step_retries=*/2,
                             /*cpu=*/4);
  EXPECT_EQ(cluster.SubmitAndWait(file, Inputs(30), 180), 1) << cluster.Logs();  // some failed
  int ok = 0, refused = 0;
  const json status = cluster.StatusJson();
  for (const auto& j : status["jobs"]) {
    if (j["id"] == "job-0") continue;  // the probe
    if (j["state"] == "succeeded") {
      ++ok;
      continue;
    }
    EXPECT_EQ(j["state"], "failed");
    EXPECT_NE(j.value("error", "").find("LLM budget of $"), std::string::npos) << j.dump();
    size_t tries = 0;
    for (const auto& a : j["attempts"]) tries += a["step"] == "summarize";
    EXPECT_EQ(tries, 1u) << "retried: " << j.dump();
    ++refused;
  }
  EXPECT_EQ(ok, 10);
  EXPECT_EQ(refused, 20);
  EXPECT_EQ(server.request_count() - before, 10u);  // no request was sent past the budget
  EXPECT_LE(ServerTotals(before).usd, 10.5 * c);

  // A larger budget in a cluster is a new submission (docs/steps/llm-rates.md, "A budget across
  // resumed runs"): the refused inputs submitted again under a budget of 15.5 c are another
  // pipeline text, so another pipeline whose budget starts at $0 (the 10 c spent above do not
  // count: 15 succeed, not 5), and its jobs are new jobs that run every step.
  std::vector<std::string> again;
  for (const auto& j : status["jobs"])
    if (j["state"] == "failed") again.push_back(j["input"].get<std::string>());
  ASSERT_EQ(again.size(), 20u);
  const size_t before_again = server.request_count();
  const auto larger = Pipeline("budget", rates + fmt::format("budget: {{usd: {:.6f}}}\n", 15.5 * c), 2, 4);
  EXPECT_EQ(cluster.SubmitAndWait(larger, again, 180), 1) << cluster.Logs();  // five still refused
  int ok_again = 0;
  const json after = cluster.StatusJson();
  ASSERT_EQ(after["jobs"].size(), 51u);
  for (const auto& j : after["jobs"]) {
    if (std::stoi(j["id"].get<std::string>().substr(4)) <= 30) continue;  // the probe and the first submission
    EXPECT_EQ(j["attempts"][0]["step"], "analyze") << "a new job starts at the first step: " << j.dump();
    ok_again += j["state"] == "succeeded";
  }
  EXPECT_EQ(ok_again, 15);
  EXPECT_EQ(server.request_count() - before_again, 15u);
}

}  // namespace
}  // namespace baton
