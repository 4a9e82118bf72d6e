// The budget of a resumable run, as a user meets it: real `baton run` processes against the real
// local OpenAI-compatible server, one output folder. The budget caps the folder's total spending
// (what earlier runs spent is in the journal), `--rerun failed` with a larger budget finishes the
// jobs the budget stopped without re-running any finished step, and `--rerun all` starts over
// from $0.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "journal/journal.h"
#include "journal/records.h"
#include "support/child_process.h"
#include "support/openai_server.h"
#include "support/util.h"


namespace baton {
namespace {

using testing::OpenAiServer;
using testing::ReadFile;
using Json = nlohmann::json;

constexpr int kJobs = 12;
constexpr double kPrice = 1000;  // USD per million tokens, input and output: a request costs ~$0.1

class BudgetRerunTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (const char* v : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
      unsetenv(v);
  }
  void SetUp() override {
    std::ofstream(dir_ / "prompt.md") << "Summarise {{title}} in one line.";
    std::ofstream(dir_ / "n.yaml") << "nodes:\n  - {name: n, cpus: " << kJobs << "}\n";
  }

  // Writes p.yaml (two steps: analyze, then one chat completion) with `budget` USD (0: none).
  void WritePipeline(double budget) {
    std::ofstream(dir_ / "p.yaml") << "name: budgeted\n"
                                   << (budget > 0 ? "budget: {usd: " + std::to_string(budget) + "}\n" : "")
                                   << "steps:\n"
                                      "  - {name: analyze, uses: sleep, with: {seconds: 0}}\n"
                                      "  - name: summarize\n"
                                      "    uses: llm\n"
                                      "    with:\n"
                                      "      provider: custom\n"
                                      "      base_url: " << server_.base_url() << "\n"
                                   << "      model: m\n"
                                      "      max_tokens: 16\n"
                                      "      prompt_file: prompt.md\n"
                                      "      retries: 2\n"
                                      "      backoff: 0.01\n"
                                      "      price: {input: " << kPrice << ", output: " << kPrice << "}\n";
  }

  struct Result {
    int status = -1;
    std::string err;
  };
  Result Baton(const std::string& out, std::vector<std::string> more = {}) {
    std::vector<std::string> argv = {(testing::BinaryDir() / "src" / "cli" / "baton").string(),
                                     "run", "p.yaml", "--cluster", "n.yaml", "--jobs", std::to_string(kJobs),
                                     "--out", out, "--log-format", "none"};
    argv.insert(argv.end(), more.begin(), more.end());
    const pid_t pid = testing::SpawnIn(dir_.path(), argv, dir_ / "stderr");
    EXPECT_GT(pid, 0);
    return {testing::WaitExit(pid), ReadFile(dir_ / "stderr")};
  }
  Json Summary(const std::string& out) const { return Json::parse(ReadFile(dir_ / out / "summary.json")); }
  Json Jobs(const std::string& out) const { return testing::ReadJobs(dir_ / out); }  // every job, in job order

  // Succeeded jobs; every other one must have failed for the budget, not retried (`first_run`:
  // at its first try).
  int CountSucceeded(const Json& jobs, bool first_run = false) {
    int ok = 0;
    for (const auto& j : jobs) {
      if (j["state"] == "succeeded") {
        ++ok;
        continue;
      }
      EXPECT_EQ(j["state"], "failed") << j.dump();
      EXPECT_NE(j.value("error", "").find("LLM budget of $"), std::string::npos) << j.dump();
      if (first_run) {
        EXPECT_EQ(j["attempts"].back()["attempt"], 1) << j["id"] << " was retried";
      }
    }
    return ok;
  }

  // Per (job number, step index): the step-done records of OUT/.baton/journal.
  std::map<std::pair<uint32_t, uint16_t>, int> StepsDone(const std::string& out) {
    std::map<std::pair<uint32_t, uint16_t>, int> done;
    journal::ReadStats read;
    Status st = journal::Read(
        dir_ / out / ".baton" / "journal",
        [&](std::string_view payload) {
          journal::Decoder d(payload);
          if (static_cast<journal::Kind>(d.U8()) != journal::Kind::kStepDone) return;
          const uint32_t job = d.U32();
          ++done[{job, d.U16()}];
        },
        &read);
    EXPECT_TRUE(st.ok()) << st.message();
    return done;
  }

  // What the server's 200 replies since request `from` cost at kPrice.
  double ServerCost(size_t from) const {
    const auto requests = server_.requests();
    double usd = 0;
    for (size_t i = from; i < requests.size(); ++i) {
      const Json& u = requests[i].usage;
      if (requests[i].status != 200 || !u.is_object()) continue;
      usd += (u["prompt_tokens"].get<double>() + u["completion_tokens"].get<double>()) * kPrice / 1e6;
    }
    return usd;
  }

  testing::TempDir dir_;
  OpenAiServer server_;
};

TEST_F(BudgetRerunTest, TheBudgetIsTheFoldersAndALargerOneFinishesTheRestWithoutRerunningAStep) {
  // A run without a budget, in its own folder, measures what one request costs (c ≈ $0.1; it
  // reserves c + 9 × $0.001 for the max_tokens it may not use). Every job's prompt is the same
  // length to within a few bytes.
  WritePipeline(0);
  ASSERT_EQ(Baton("measure").status, 0) << ReadFile(dir_ / "stderr");
  double c = 0, c_min = 1e9;
  const Json measured = Summary("measure");
  ASSERT_EQ(measured["jobs"], kJobs);
  const Json measured_jobs = Jobs("measure");
  ASSERT_EQ(measured_jobs.size(), static_cast<size_t>(kJobs));
  for (const auto& j : measured_jobs) {
    c = std::max(c, j["llm"]["cost_usd"].get<double>());
    c_min = std::min(c_min, j["llm"]["cost_usd"].get<double>());
  }
  ASSERT_GT(c_min, 0.05);
  ASSERT_LT(c - c_min, 0.002);
  const size_t before = server_.request_count();

  // Run 1: a budget of 4.5 c admits four requests (even all in flight at once), never a fifth.
  WritePipeline(4.5 * c);
  Result r = Baton("out");
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(CountSucceeded(Jobs("out"), true), 4);
  EXPECT_EQ(server_.request_count() - before, 4u);  // nothing was sent past the budget

  // Run 2, --rerun failed with a budget of 8.5 c: the folder already spent 4 c, so four more jobs
  // fit, not eight (a budget counted from $0 per process would let eight through).
  WritePipeline(8.5 * c);
  r = Baton("out", {"--rerun", "failed"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("LLM requests of earlier runs in out cost $"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("pipeline changed"), std::string::npos) << "a budget is not a step: " << r.err;
  EXPECT_EQ(CountSucceeded(Jobs("out")), 8);
  EXPECT_EQ(server_.request_count() - before, 8u);

  // Run 3, --rerun failed with a budget that covers everything: the last four finish.
  WritePipeline(100);
  r = Baton("out", {"--rerun", "failed"});
  EXPECT_EQ(r.status, 0) << r.err;
  const Json summary = Summary("out");
  EXPECT_EQ(summary["succeeded"], kJobs);
  EXPECT_EQ(summary["failed"], 0);
  // Exactly one request per job across the three runs, none refused or repeated.
  EXPECT_EQ(server_.request_count() - before, static_cast<size_t>(kJobs));
  // No finished step ran again: every (job, step) has one step-done record in the journal.
  const auto done = StepsDone("out");
  EXPECT_EQ(done.size(), static_cast<size_t>(2 * kJobs));
  for (const auto& [key, n] : done) EXPECT_EQ(n, 1) << "job " << key.first << " step " << key.second;
  // summary.json's total is the whole folder's (all three runs), and the server's own usage.
  EXPECT_EQ(summary["llm"]["requests"], kJobs);
  EXPECT_NEAR(summary["llm"]["cost_usd"].get<double>(), ServerCost(before), 1e-9);
  double per_job = 0;
  for (const auto& j : Jobs("out")) per_job += j["llm"]["cost_usd"].get<double>();
  EXPECT_NEAR(per_job, ServerCost(before), 1e-9);
  // The journal's `spent` records (what the next run's budget starts from) say the same.
  auto past = journal::Replay(dir_ / "out" / ".baton" / "journal");
  ASSERT_TRUE(past.ok()) << past.error();
  EXPECT_NEAR(past->spent_usd, ServerCost(before), 1e-9);

  // --rerun all starts over, spending from $0: with 4.5 c, four jobs succeed again (counting the
  // 12 c spent before, none would).
  WritePipeline(4.5 * c);
  r = Baton("out", {"--rerun", "all"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(r.err.find("LLM requests of earlier runs"), std::string::npos) << r.err;
  EXPECT_EQ(CountSucceeded(Jobs("out")), 4);
  EXPECT_EQ(server_.request_count() - before, static_cast<size_t>(kJobs + 4));
}

}  // namespace
}  // namespace baton
