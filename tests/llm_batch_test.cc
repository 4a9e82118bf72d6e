// The llm step's `mode: batch` in whole runs against the local OpenAI-compatible server's Batch
// API (tests/support/openai_server.h): parked attempts that hold no slot, results mapped back by
// custom_id, the batch price, expiry and error lines following `fallback`, the budget, and a real
// `baton run` killed with SIGKILL that resumes polling the same batch; the same for Anthropic's
// Message Batches (provider: anthropic). An input too long for one request: its map-reduce rounds,
// each in a batch, and a rerun after SIGKILL that sends no finished part again.
#include <gtest/gtest.h>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "baton/pipeline.h"
#include "baton/runtime.h"
#include "rates/llm_usage.h"
#include "support/child_process.h"
#include "support/openai_server.h"
#include "support/util.h"

namespace baton {
namespace {

using testing::OpenAiServer;

class LlmBatchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!StepRegistry::Global().Has("llm")) RegisterBuiltinSteps();
    for (const char* v : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
      unsetenv(v);
  }
  std::string Yaml(const std::string& batch, const std::string& top = "", const std::string& price = "") {
    std::ofstream(dir / "prompt.md") << "Summarise {{title}} in one line.";
    return top + R"(
steps:
  - name: analyze
    uses: sleep
    with: {seconds: 0}
    resources: {cpu: 1}
  - name: summarize
    uses: llm
    resources: {cpu: 1}
    with:
      provider: custom
      base_url: )" + server.base_url() + R"(
      model: m
      max_tokens: 16
      prompt_file: prompt.md
      mode: batch
      batch: )" + batch + R"(
      price: )" + (price.empty() ? "{input: 0.5, output: 1.5}" : price) + "\n";
  }
  // `jobs` jobs on a node of 2 cpus.
  RunReport Run(const std::string& yaml, int jobs) {
    RunOptions o;
    for (int i = 0; i < jobs; ++i) o.inputs.push_back("video-" + std::to_string(i));
    o.out = dir / ("out-" + std::to_string(++runs));
    o.log_format = RunOptions::LogFormat::kNone;
    const std::unique_ptr<Runtime> rt_owner = Runtime::Create(ParsePipeline(yaml, (dir / "p.yaml").string()).value(),
               ParseCluster("nodes: [{name: n, cpus: 2}]\n", "c.yaml").value(), o).value();
    Runtime& rt = *rt_owner;
    return rt.Run();
  }
  // The batch price (half of 0.5/1.5 per Mtok) of every item the server answered.
  double BatchCost() const {
    double usd = 0;
    for (const auto& u : server.batch_usage())
      usd += (u["prompt_tokens"].get<double>() * 0.25 + u["completion_tokens"].get<double>() * 0.75) / 1e6;
    return usd;
  }

  testing::TempDir dir;
  OpenAiServer server;
  int runs = 0;
};

TEST_F(LlmBatchTest, ThirtyJobsOnTwoCpusInOneBatchAtHalfPrice) {
  OpenAiServer::BatchPlan plan;
  plan.polls = 2;
  server.SetNextBatchPlan(plan);
  const RunReport r = Run(Yaml("{max_requests: 30, collect: 60s, poll: 0.05}"), 30);
  EXPECT_EQ(r.succeeded, 30);
  // All 30 parked at once on 2 cpus: one batch, one file, no synchronous request.
  EXPECT_EQ(server.batches_created(), 1u);
  EXPECT_EQ(server.files_created(), 1u);
  ASSERT_EQ(server.batch_items().size(), 1u);
  EXPECT_EQ(server.batch_items()[0].size(), 30u);
  EXPECT_EQ(server.request_count(), 0u);
  // Each job its own reply (the server answers in reverse order: mapped by custom_id).
  for (const auto& job : r.jobs) {
    const Json& s = job.results["summarize"];
    EXPECT_EQ(s["summary"], OpenAiServer::MarkerFor("Summarise " + job.input + " in one line.")) << job.id;
    EXPECT_EQ(s["batch"]["custom_id"], job.id + "/summarize/1");
  }
  const Json summary = Json::parse(testing::ReadFile(dir / "out-1" / "summary.json"));
  EXPECT_EQ(summary["llm"]["requests"], 30);
  ASSERT_EQ(summary["llm"]["batches"].size(), 1u);  // seen: the batch, its state and cost
  EXPECT_EQ(summary["llm"]["batches"][0]["batch"], "batch_1");
  EXPECT_EQ(summary["llm"]["batches"][0]["requests"], 30);
  EXPECT_EQ(summary["llm"]["batches"][0]["counts"]["batch_status"], "completed");
  EXPECT_NEAR(summary["llm"]["cost_usd"].get<double>(), BatchCost(), 1e-12);
  // Exactly half the synchronous price of the same usage.
  double sync = 0;
  for (const auto& u : server.batch_usage())
    sync += (u["prompt_tokens"].get<double>() * 0.5 + u["completion_tokens"].get<double>() * 1.5) / 1e6;
  EXPECT_NEAR(summary["llm"]["cost_usd"].get<double>() * 2, sync, 1e-12);
}

TEST_F(LlmBatchTest, ParkedAttemptsAndTheirBatchAreSeenWhileTheyWait) {
  OpenAiServer::BatchPlan plan;
  plan.polls = 1000000;  // not done until FinishBatches
  server.SetNextBatchPlan(plan);
  RunOptions o;
  o.inputs.assign(6, "");
  o.out = dir / "out-seen";
  o.log_format = RunOptions::LogFormat::kNone;
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(
          ParsePipeline(Yaml("{max_requests: 6, collect: 60s, poll: 0.05}"), (dir / "p.yaml").string()).value(),
          ParseCluster("nodes: [{name: n, cpus: 2}]\n", "c.yaml").value(), o)
          .value();
  Runtime& rt = *rt_owner;
  std::thread run([&] { rt.Run(); });
  Json snap;
  const bool parked = testing::WaitFor(
      [&] {
        snap = rt.Snapshot();
        return snap.contains("parked") && snap["parked"][0]["attempts"] == 6 && snap.contains("batches") &&
               snap["batches"][0].value("status", "") == "in_progress";
      },
      60);
  EXPECT_TRUE(parked) << snap.dump();
  if (parked) {
    EXPECT_EQ(snap["parked"][0]["id"], "batch-1");
    EXPECT_EQ(snap["batches"][0]["batch"], "batch_1");
    EXPECT_EQ(snap["batches"][0]["requests"], 6);
    EXPECT_EQ(snap["batches"][0]["step"], "summarize");
    for (const auto& job : snap["jobs"])
      EXPECT_NE(job["steps"][1].value("wait", "").find("parked in batch-1"), std::string::npos) << job.dump();
    const Json overview = rt.Overview();  // what /metrics reads
    EXPECT_EQ(overview["parked"][0]["attempts"], 6);
  }
  server.FinishBatches();
  run.join();
  EXPECT_FALSE(rt.Snapshot().contains("parked"));
}

TEST_F(LlmBatchTest, AnErrorLineRetriesThatItemAlone) {
  OpenAiServer::BatchPlan plan;
  plan.fail_custom_id = "job-3/";
  server.SetNextBatchPlan(plan);
  // Full at 8 requests (sent at once); the lone retry goes after `collect`.
  const RunReport r = Run(Yaml("{max_requests: 8, collect: 2s, poll: 0.05, fallback: batch}"), 8);
  EXPECT_EQ(r.succeeded, 8);
  const auto batches = server.batch_items();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].size(), 8u);
  ASSERT_EQ(batches[1].size(), 1u);
  EXPECT_EQ(batches[1][0].rfind("job-3/summarize/", 0), 0u);
  EXPECT_EQ(server.batch_usage().size(), 8u);  // billed once each
}

TEST_F(LlmBatchTest, ABatchThatExpiresHalfDoneKeepsTheDoneHalf) {
  OpenAiServer::BatchPlan plan;
  plan.expire_half = true;
  server.SetNextBatchPlan(plan);
  // fallback sync: the undone half runs as synchronous requests.
  const RunReport r = Run(Yaml("{max_requests: 10, collect: 60s, poll: 0.05, fallback: sync}"), 10);
  EXPECT_EQ(r.succeeded, 10);
  EXPECT_EQ(server.batches_created(), 1u);
  EXPECT_EQ(server.batch_usage().size(), 5u);
  EXPECT_EQ(server.request_count(), 5u);
  int in_batch = 0;
  for (const auto& job : r.jobs) in_batch += job.results["summarize"].contains("batch");
  EXPECT_EQ(in_batch, 5);
}

TEST_F(LlmBatchTest, PastExpireTheBatchIsCancelledAndUnfinishedItemsFollowFallback) {
  OpenAiServer::BatchPlan plan;
  plan.polls = 1000000;  // never done by itself: with.batch.expire cancels it (the server keeps half)
  server.SetNextBatchPlan(plan);
  const RunReport r = Run(Yaml("{max_requests: 6, collect: 60s, poll: 0.05, expire: 0.2, fallback: fail}"), 6);
  EXPECT_EQ(server.batches_created(), 1u);
  EXPECT_EQ(r.succeeded, 3);
  EXPECT_EQ(r.failed, 3);
  for (const auto& job : r.jobs) {
    if (job.status != "succeeded") {
      EXPECT_NE(job.error.find("failed: batch_cancelled"), std::string::npos) << job.error;
    }
  }
}

TEST_F(LlmBatchTest, ABudgetForAThirdOfABatchSendsNoMore) {
  // Input free, output $1000/Mtok (batch: $500): each item reserves 16 x $0.0005 = $0.008.
  const RunReport r = Run(Yaml("{max_requests: 9, collect: 60s, poll: 0.05, fallback: fail}", "budget: {usd: 0.025}\n",
                               "{input: 0, output: 1000}"),
                          9);
  ASSERT_EQ(server.batch_items().size(), 1u);
  EXPECT_EQ(server.batch_items()[0].size(), 3u);
  EXPECT_EQ(r.succeeded, 3);
  for (const auto& job : r.jobs) {
    if (job.status != "succeeded") {
      EXPECT_NE(job.error.find("LLM budget of $0.03"), std::string::npos) << job.error;
    }
  }
}

TEST_F(LlmBatchTest, KilledBatonRunResumesPollingTheSameBatch) {
  std::ofstream(dir / "p.yaml") << Yaml("{max_requests: 6, collect: 60s, poll: 0.05}");
  std::ofstream(dir / "n.yaml") << "nodes: [{name: n, cpus: 2}]\n";
  OpenAiServer::BatchPlan plan;
  plan.polls = 1000000;  // not done until FinishBatches
  server.SetNextBatchPlan(plan);
  const std::string baton = (testing::BinaryDir() / "src" / "cli" / "baton").string();
  const std::vector<std::string> argv = {baton, "run", "p.yaml", "--cluster", "n.yaml", "--jobs", "6",
                                         "--out", "out", "--log-format", "none"};
  pid_t pid = testing::SpawnIn(dir.path(), argv, dir / "stderr-1");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(testing::WaitFor([&] { return server.batches_created() == 1; }, 60));
  // A few polls: the batch id is journaled by then (and found by its file if it were not).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // The rerun's attempts park one by one (2 cpus): the batch may end before the last of them parks.
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(testing::WaitExit(pid), 128 + SIGKILL);
  server.FinishBatches();
  pid = testing::SpawnIn(dir.path(), argv, dir / "stderr-2");
  ASSERT_EQ(testing::WaitExit(pid), 0) << testing::ReadFile(dir / "stderr-2");
  EXPECT_EQ(server.batches_created(), 1u);
  EXPECT_EQ(server.files_created(), 1u);
  EXPECT_EQ(server.request_count(), 0u);
  EXPECT_EQ(server.batch_usage().size(), 6u);
  const Json summary = Json::parse(testing::ReadFile(dir / "out" / "summary.json"));
  EXPECT_EQ(summary["succeeded"], 6);
  EXPECT_NEAR(summary["llm"]["cost_usd"].get<double>(), BatchCost(), 1e-12);
}

// Map-reduce in batch mode: an input too long for one request. The analyze step prints a job's
// analysis (a transcript) from its input file; the prompt carries the whole transcript, so a long
// one does not fit context_tokens and is summarised map-reduce, each round in a batch.
class LlmMapReduceBatchTest : public LlmBatchTest {
 protected:
  // An input file whose transcript has `segments` lines; its path is the job's input.
  std::string Input(const std::string& name, int segments) {
    Json transcript = Json::array();
    for (int i = 0; i < segments; ++i)
      transcript.push_back({{"start", i * 4.0}, {"end", i * 4.0 + 3.5},
                            {"text", "A scheduler places every step where its resources fit, segment " +
                                         std::to_string(i) + " of the lecture."}});
    const std::filesystem::path path = dir / name;
    std::ofstream(path) << Json{{"transcript", transcript}}.dump() << "\n";
    return path.string();
  }
  std::string MapReduceYaml(const std::string& batch, int context_tokens = 600) {
    std::ofstream(dir / "prompt.md") << "Summarise {{title}}:\n{{transcript}}";
    return R"(
steps:
  - name: analyze
    uses: command
    with: {argv: [cat, "{input}"]}
    resources: {cpu: 1}
  - name: summarize
    uses: llm
    resources: {cpu: 1}
    with:
      provider: custom
      base_url: )" + server.base_url() + R"(
      model: m
      max_tokens: 16
      context_tokens: )" + std::to_string(context_tokens) + R"(
      prompt_file: prompt.md
      mode: batch
      batch: )" + batch + R"(
      price: {input: 0.5, output: 1.5}
)";
  }
  RunReport RunInputs(const std::string& yaml, const std::vector<std::string>& inputs) {
    RunOptions o;
    o.inputs = inputs;
    o.out = dir / ("out-" + std::to_string(++runs));
    o.log_format = RunOptions::LogFormat::kNone;
    const std::unique_ptr<Runtime> rt = Runtime::Create(ParsePipeline(yaml, (dir / "p.yaml").string()).value(),
        ParseCluster("nodes: [{name: n, cpus: 2}]\n", "c.yaml").value(), o).value();
    return rt->Run();
  }
  // The synchronous price (0.5/1.5 per Mtok) of every batch item the server answered.
  double SyncCost() const {
    double usd = 0;
    for (const auto& u : server.batch_usage())
      usd += (u["prompt_tokens"].get<double>() * 0.5 + u["completion_tokens"].get<double>() * 1.5) / 1e6;
    return usd;
  }
  static bool IsMap(const std::string& custom_id) { return custom_id.find("/map0.") != std::string::npos; }
  static bool IsReduce(const std::string& custom_id) { return custom_id.find("/reduce1.") != std::string::npos; }
};

TEST_F(LlmMapReduceBatchTest, ALongInputGoesThroughAMapBatchThenAReduceBatch) {
  const RunReport r = RunInputs(MapReduceYaml("{max_requests: 100, collect: 0.2, poll: 0.05}"),
                                {Input("long.json", 80)});
  ASSERT_EQ(r.succeeded, 1) << (r.jobs.empty() ? "" : r.jobs[0].error);
  EXPECT_EQ(server.request_count(), 0u);  // no synchronous request
  const auto batches = server.batch_items();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_GE(batches[0].size(), 3u);
  for (const auto& id : batches[0]) EXPECT_TRUE(IsMap(id)) << id;
  ASSERT_EQ(batches[1].size(), 1u);
  EXPECT_TRUE(IsReduce(batches[1][0])) << batches[1][0];
  const Json& s = r.jobs[0].results["summarize"];
  // The reduce's reply (the server answers with the first words of the prompt it was sent).
  const std::string summary = s["summary"];
  EXPECT_EQ(summary.rfind("SUMMARY of ", 0), 0u) << summary;
  EXPECT_NE(summary.find(": Below are summaries"), std::string::npos) << summary;
  EXPECT_EQ(s["chunks"], batches[0].size());
  ASSERT_EQ(s["calls"].size(), batches[0].size() + 1);
  EXPECT_EQ(s["calls"][0]["phase"], "map");
  EXPECT_EQ(s["calls"].back()["phase"], "reduce");
  EXPECT_EQ(s["calls"].back()["batch"], "batch_2");
  // Every request billed once, at half the synchronous price.
  EXPECT_EQ(server.batch_usage().size(), batches[0].size() + 1);
  EXPECT_EQ(s["usage"]["requests"], batches[0].size() + 1);
  EXPECT_NEAR(s["usage"]["cost_usd"].get<double>(), BatchCost(), 1e-12);
  EXPECT_NEAR(s["usage"]["cost_usd"].get<double>() * 2, SyncCost(), 1e-12);
  const Json run = Json::parse(testing::ReadFile(dir / "out-1" / "summary.json"));
  EXPECT_NEAR(run["llm"]["cost_usd"].get<double>(), BatchCost(), 1e-12);
}

TEST_F(LlmMapReduceBatchTest, ShortJobsEndAfterTheFirstBatchLongOnesAfterTheReduceBatch) {
  // Two short and two long inputs (the long ones alike: the same number of map requests each).
  const std::vector<std::string> inputs = {Input("long-0.json", 80), Input("short-1.json", 2),
                                           Input("long-2.json", 80), Input("short-3.json", 2)};
  // How many map requests a long one makes: the first run alone.
  RunInputs(MapReduceYaml("{max_requests: 100, collect: 0.2, poll: 0.05}"), {inputs[0]});
  const size_t maps = server.batch_items().at(0).size();
  ASSERT_GE(maps, 3u);
  // Full (sent at once) when the four jobs' first requests are in; the reduces wait `collect`.
  const RunReport r = RunInputs(
      MapReduceYaml("{max_requests: " + std::to_string(2 + 2 * maps) + ", collect: 1s, poll: 0.05}"), inputs);
  EXPECT_EQ(r.succeeded, 4);
  EXPECT_EQ(server.request_count(), 0u);
  const auto batches = server.batch_items();
  ASSERT_EQ(batches.size(), 4u);  // the first run's two, then this run's two
  EXPECT_EQ(batches[2].size(), 2 + 2 * maps);
  ASSERT_EQ(batches[3].size(), 2u);
  for (const auto& id : batches[3]) EXPECT_TRUE(IsReduce(id)) << id;
  for (const auto& job : r.jobs) {
    const Json& s = job.results["summarize"];
    if (job.input.find("short") != std::string::npos) {
      EXPECT_EQ(s["batch"]["id"], "batch_3") << job.id;
      EXPECT_EQ(s["chunks"], 1);
      EXPECT_NE(s["summary"].get<std::string>().find(": Summarise short-"), std::string::npos) << s.dump();
    } else {
      EXPECT_EQ(s["batch"]["ids"], Json({"batch_3", "batch_4"})) << job.id;
      EXPECT_EQ(s["chunks"], maps);
      EXPECT_NE(s["summary"].get<std::string>().find(": Below are summaries"), std::string::npos) << s.dump();
    }
  }
}

TEST_F(LlmMapReduceBatchTest, SeveralReduceLevelsEachInItsOwnBatch) {
  // Many chunks and a small budget: the partials do not fit one reduce, so they are reduced in
  // groups first (level 1), then all together (level 2), as the synchronous path does.
  const RunReport r = RunInputs(MapReduceYaml("{max_requests: 1000, collect: 0.2, poll: 0.05}", 512),
                                {Input("long.json", 600)});
  ASSERT_EQ(r.succeeded, 1) << (r.jobs.empty() ? "" : r.jobs[0].error);
  EXPECT_EQ(server.request_count(), 0u);
  const auto batches = server.batch_items();
  ASSERT_GE(batches.size(), 3u);
  for (const auto& id : batches[0]) EXPECT_TRUE(IsMap(id)) << id;
  EXPECT_GE(batches[1].size(), 2u);
  for (const auto& id : batches[1]) EXPECT_TRUE(IsReduce(id)) << id;
  ASSERT_EQ(batches.back().size(), 1u);
  EXPECT_NE(batches.back()[0].find("/reduce" + std::to_string(batches.size() - 1) + ".1"), std::string::npos)
      << batches.back()[0];
  const Json& s = r.jobs[0].results["summarize"];
  size_t requests = 0;
  for (const auto& b : batches) requests += b.size();
  EXPECT_EQ(s["calls"].size(), requests);
  EXPECT_EQ(s["chunks"], batches[0].size());
  EXPECT_NEAR(s["usage"]["cost_usd"].get<double>(), BatchCost(), 1e-12);
}

TEST_F(LlmMapReduceBatchTest, AnthropicMessageBatchesCarryTheMapThenTheReduce) {
  setenv("ANTHROPIC_API_KEY", "sk-ant-test-key", 1);
  std::string yaml = MapReduceYaml("{max_requests: 100, collect: 0.2, poll: 0.05}");
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"provider: custom", "provider: anthropic"}, {"      model: m\n", ""},
           {"      price: {input: 0.5, output: 1.5}\n", ""}})
    yaml.replace(yaml.find(from), from.size(), to);
  const RunReport r = RunInputs(yaml, {Input("long.json", 80)});
  unsetenv("ANTHROPIC_API_KEY");
  ASSERT_EQ(r.succeeded, 1) << (r.jobs.empty() ? "" : r.jobs[0].error);
  EXPECT_EQ(server.request_count(), 0u);
  EXPECT_EQ(server.message_batches().size(), 2u);  // custom_ids the server checked: [a-zA-Z0-9_-]{1,64}
  const auto batches = server.batch_items();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_GE(batches[0].size(), 3u);
  EXPECT_EQ(batches[1].size(), 1u);
  const Json& s = r.jobs[0].results["summarize"];
  EXPECT_NE(s["summary"].get<std::string>().find(": Below are summaries"), std::string::npos) << s.dump();
  EXPECT_EQ(s["calls"].size(), batches[0].size() + 1);
  EXPECT_EQ(server.batch_usage().size(), batches[0].size() + 1);
}

TEST_F(LlmMapReduceBatchTest, AFailedMapRequestGoesAloneInALaterBatchThenTheReduce) {
  OpenAiServer::BatchPlan plan;
  plan.fail_custom_id = "job-0/summarize/1/map0.2";  // the second map request ends in the error file
  server.SetNextBatchPlan(plan);
  const RunReport r = RunInputs(MapReduceYaml("{max_requests: 100, collect: 0.2, poll: 0.05, fallback: sync}"),
                                {Input("long.json", 80)});
  ASSERT_EQ(r.succeeded, 1) << (r.jobs.empty() ? "" : r.jobs[0].error);
  EXPECT_EQ(server.request_count(), 0u);  // fallback: sync too sends a map-reduce part in a later batch
  const auto batches = server.batch_items();
  ASSERT_EQ(batches.size(), 3u);
  ASSERT_GE(batches[0].size(), 3u);
  ASSERT_LT(batches[0].size(), 10u);  // map0.2 names one request
  EXPECT_EQ(batches[1], std::vector<std::string>{"job-0/summarize/1/map0.2/2"});
  ASSERT_EQ(batches[2].size(), 1u);
  EXPECT_TRUE(IsReduce(batches[2][0])) << batches[2][0];
  const Json& s = r.jobs[0].results["summarize"];
  EXPECT_EQ(s["calls"].size(), batches[0].size() + 1);  // the failed one made no completion
  EXPECT_EQ(server.batch_usage().size(), batches[0].size() + 1);
  EXPECT_NEAR(s["usage"]["cost_usd"].get<double>(), BatchCost(), 1e-12);
}

TEST_F(LlmMapReduceBatchTest, WithFallbackFailAFailedMapRequestFailsTheAttempt) {
  OpenAiServer::BatchPlan plan;
  plan.fail_custom_id = "job-0/summarize/1/map0.1";
  server.SetNextBatchPlan(plan);
  const RunReport r = RunInputs(MapReduceYaml("{max_requests: 100, collect: 0.2, poll: 0.05, fallback: fail}"),
                                {Input("long.json", 80)});
  EXPECT_EQ(r.failed, 1);
  ASSERT_EQ(r.jobs.size(), 1u);
  EXPECT_NE(r.jobs[0].error.find("batch item job-0/summarize/1/map0.1 failed"), std::string::npos) << r.jobs[0].error;
  EXPECT_EQ(server.batch_items().size(), 1u);  // no reduce
}

TEST_F(LlmMapReduceBatchTest, KilledAfterTheMapBatchWasCreatedTheRerunSendsOnlyTheReduce) {
  std::ofstream(dir / "p.yaml") << MapReduceYaml("{max_requests: 100, collect: 0.2, poll: 0.05}");
  std::ofstream(dir / "n.yaml") << "nodes: [{name: n, cpus: 2}]\n";
  std::ofstream(dir / "inputs.txt") << Input("long.json", 80) << "\n";
  OpenAiServer::BatchPlan plan;
  plan.polls = 1000000;  // not done until FinishBatches
  server.SetNextBatchPlan(plan);
  const std::string baton = (testing::BinaryDir() / "src" / "cli" / "baton").string();
  const std::vector<std::string> argv = {baton, "run", "p.yaml", "--cluster", "n.yaml", "--inputs", "inputs.txt",
                                         "--out", "out", "--log-format", "none"};
  pid_t pid = testing::SpawnIn(dir.path(), argv, dir / "stderr-1");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(testing::WaitFor([&] { return server.batches_created() == 1; }, 60));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(testing::WaitExit(pid), 128 + SIGKILL);
  server.FinishBatches();
  pid = testing::SpawnIn(dir.path(), argv, dir / "stderr-2");
  ASSERT_EQ(testing::WaitExit(pid), 0) << testing::ReadFile(dir / "stderr-2");
  // The same map batch, then one reduce batch: nothing sent twice, nothing synchronous.
  const auto batches = server.batch_items();
  ASSERT_EQ(batches.size(), 2u);
  for (const auto& id : batches[0]) EXPECT_TRUE(IsMap(id)) << id;
  ASSERT_EQ(batches[1].size(), 1u);
  EXPECT_TRUE(IsReduce(batches[1][0])) << batches[1][0];
  EXPECT_EQ(server.files_created(), 2u);
  EXPECT_EQ(server.request_count(), 0u);
  EXPECT_EQ(server.batch_usage().size(), batches[0].size() + 1);
  const Json summary = Json::parse(testing::ReadFile(dir / "out" / "summary.json"));
  EXPECT_EQ(summary["succeeded"], 1);
  EXPECT_NEAR(summary["llm"]["cost_usd"].get<double>(), BatchCost(), 1e-12);
}


// Killed while the reduce batch runs, after the map batch ended: the rerun has the map answers
// from the journal and joins the reduce batch; the map requests are neither sent nor read again.
TEST_F(LlmMapReduceBatchTest, KilledDuringTheReduceBatchTheRerunKeepsTheJournaledMapAnswers) {
  std::ofstream(dir / "p.yaml") << MapReduceYaml("{max_requests: 100, collect: 0.2, poll: 0.05}");
  std::ofstream(dir / "n.yaml") << "nodes: [{name: n, cpus: 2}]\n";
  std::ofstream(dir / "inputs.txt") << Input("long.json", 80) << "\n";
  OpenAiServer::BatchPlan plan;
  plan.polls = 1000000;  // not done until FinishBatches
  server.SetNextBatchPlan(plan);
  const std::string baton = (testing::BinaryDir() / "src" / "cli" / "baton").string();
  const std::vector<std::string> argv = {baton, "run", "p.yaml", "--cluster", "n.yaml", "--inputs", "inputs.txt",
                                         "--out", "out", "--log-format", "none"};
  pid_t pid = testing::SpawnIn(dir.path(), argv, dir / "stderr-1");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(testing::WaitFor([&] { return server.batches_created() == 1; }, 60));
  server.SetNextBatchPlan(plan);  // the reduce batch: not done until FinishBatches either
  server.FinishBatches();         // the map batch ends
  ASSERT_TRUE(testing::WaitFor([&] { return server.batches_created() == 2; }, 60));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // its id journaled (or found by its file)
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(testing::WaitExit(pid), 128 + SIGKILL);
  server.FinishBatches();
  pid = testing::SpawnIn(dir.path(), argv, dir / "stderr-2");
  ASSERT_EQ(testing::WaitExit(pid), 0) << testing::ReadFile(dir / "stderr-2");
  const auto batches = server.batch_items();
  ASSERT_EQ(batches.size(), 2u);
  ASSERT_EQ(batches[1].size(), 1u);
  EXPECT_TRUE(IsReduce(batches[1][0])) << batches[1][0];
  EXPECT_EQ(server.request_count(), 0u);
  EXPECT_EQ(server.batch_usage().size(), batches[0].size() + 1);
  const Json summary = Json::parse(testing::ReadFile(dir / "out" / "summary.json"));
  EXPECT_EQ(summary["succeeded"], 1);
  EXPECT_EQ(summary["llm"]["requests"], batches[0].size() + 1);
  EXPECT_NEAR(summary["llm"]["cost_usd"].get<double>(), BatchCost(), 1e-12);
}

// provider: anthropic: Anthropic's Message Batches (/v1/messages/batches) with the preset's model
// and price; the server's results_url serves the results.
class LlmAnthropicBatchTest : public LlmBatchTest {
 protected:
  void SetUp() override { setenv("ANTHROPIC_API_KEY", "sk-ant-test-key", 1); }
  void TearDown() override { unsetenv("ANTHROPIC_API_KEY"); }
  std::string AnthropicYaml(const std::string& batch) {
    std::ofstream(dir / "prompt.md") << "Summarise {{title}} in one line.";
    return R"(
steps:
  - name: analyze
    uses: sleep
    with: {seconds: 0}
    resources: {cpu: 1}
  - name: summarize
    uses: llm
    resources: {cpu: 1}
    with:
      provider: anthropic
      base_url: )" + server.base_url() + R"(
      max_tokens: 16
      prompt_file: prompt.md
      mode: batch
      batch: )" + batch + "\n";
  }
  // Every answered item at claude-haiku-4-5's price per Mtok: `in` input, `out` output.
  double Cost(double in, double out) const {
    double usd = 0;
    for (const auto& u : server.batch_usage())
      usd += (u["prompt_tokens"].get<double>() * in + u["completion_tokens"].get<double>() * out) / 1e6;
    return usd;
  }
};

TEST_F(LlmAnthropicBatchTest, ThirtyJobsInOneMessageBatchAtHalfPrice) {
  OpenAiServer::BatchPlan plan;
  plan.polls = 2;
  server.SetNextBatchPlan(plan);
  const RunReport r = Run(AnthropicYaml("{max_requests: 30, collect: 60s, poll: 0.05}"), 30);
  EXPECT_EQ(r.succeeded, 30);
  EXPECT_EQ(server.batches_created(), 1u);
  ASSERT_EQ(server.message_batches().size(), 1u);
  EXPECT_EQ(server.files_created(), 0u);
  ASSERT_EQ(server.batch_items().size(), 1u);
  EXPECT_EQ(server.batch_items()[0].size(), 30u);
  EXPECT_EQ(server.request_count(), 0u);  // no synchronous request
  for (const auto& job : r.jobs) {
    const Json& s = job.results["summarize"];
    EXPECT_EQ(s["summary"], OpenAiServer::MarkerFor("Summarise " + job.input + " in one line.")) << job.id;
    EXPECT_EQ(s["model"], "claude-haiku-4-5");
    EXPECT_EQ(s["batch"]["id"], "msgbatch_1");
    const std::string id = s["batch"]["custom_id"];
    EXPECT_EQ(id.substr(id.size() - job.id.size() - 1), "-" + job.id) << id;
  }
  const Json summary = Json::parse(testing::ReadFile(dir / "out-1" / "summary.json"));
  EXPECT_EQ(summary["llm"]["requests"], 30);
  ASSERT_EQ(summary["llm"]["batches"].size(), 1u);
  EXPECT_EQ(summary["llm"]["batches"][0]["batch"], "msgbatch_1");
  EXPECT_EQ(summary["llm"]["batches"][0]["counts"]["succeeded"], 30);
  EXPECT_EQ(summary["llm"]["batches"][0]["counts"]["batch_status"], "ended");
  // Exactly half the synchronous price ($1/$5 per Mtok) of the server's usage.
  EXPECT_NEAR(summary["llm"]["cost_usd"].get<double>(), Cost(0.5, 2.5), 1e-12);
  EXPECT_NEAR(summary["llm"]["cost_usd"].get<double>() * 2, Cost(1, 5), 1e-12);
  EXPECT_GT(Cost(1, 5), 0);
}

TEST_F(LlmAnthropicBatchTest, AnErroredItemRetriesAlone) {
  OpenAiServer::BatchPlan plan;
  plan.errored_items = {3};
  server.SetNextBatchPlan(plan);
  const RunReport r = Run(AnthropicYaml("{max_requests: 8, collect: 2s, poll: 0.05, fallback: batch}"), 8);
  EXPECT_EQ(r.succeeded, 8);
  const auto batches = server.batch_items();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].size(), 8u);
  ASSERT_EQ(batches[1].size(), 1u);
  int second = 0;
  for (const auto& job : r.jobs) {
    const Json& b = job.results["summarize"]["batch"];
    if (b["id"] != "msgbatch_2") continue;
    ++second;
    EXPECT_EQ(b["custom_id"], batches[1][0]);
    // The item at position 3 of the first batch was this job's.
    const std::string first = batches[0][3];
    EXPECT_EQ(first.substr(first.size() - job.id.size() - 1), "-" + job.id) << first;
  }
  EXPECT_EQ(second, 1);
  EXPECT_EQ(server.batch_usage().size(), 8u);  // billed once each
}

TEST_F(LlmAnthropicBatchTest, ExpiredItemsRunSynchronouslyThroughTheMessagesApi) {
  OpenAiServer::BatchPlan plan;
  plan.expire_half = true;
  server.SetNextBatchPlan(plan);
  const RunReport r = Run(AnthropicYaml("{max_requests: 10, collect: 60s, poll: 0.05, fallback: sync}"), 10);
  EXPECT_EQ(r.succeeded, 10);
  EXPECT_EQ(server.batches_created(), 1u);
  EXPECT_EQ(server.batch_usage().size(), 5u);
  ASSERT_EQ(server.request_count(), 5u);
  for (const auto& req : server.requests()) EXPECT_EQ(req.path, "/v1/messages");
}

TEST_F(LlmAnthropicBatchTest, KilledBatonRunResumesPollingTheSameMessageBatch) {
  std::ofstream(dir / "p.yaml") << AnthropicYaml("{max_requests: 6, collect: 60s, poll: 0.05}");
  std::ofstream(dir / "n.yaml") << "nodes: [{name: n, cpus: 2}]\n";
  OpenAiServer::BatchPlan plan;
  plan.polls = 1000000;  // not done until FinishBatches
  server.SetNextBatchPlan(plan);
  const std::string baton = (testing::BinaryDir() / "src" / "cli" / "baton").string();
  const std::vector<std::string> argv = {baton, "run", "p.yaml", "--cluster", "n.yaml", "--jobs", "6",
                                         "--out", "out", "--log-format", "none"};
  pid_t pid = testing::SpawnIn(dir.path(), argv, dir / "stderr-1");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(testing::WaitFor([&] { return server.batches_created() == 1; }, 60));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(testing::WaitExit(pid), 128 + SIGKILL);
  server.FinishBatches();
  pid = testing::SpawnIn(dir.path(), argv, dir / "stderr-2");
  ASSERT_EQ(testing::WaitExit(pid), 0) << testing::ReadFile(dir / "stderr-2");
  EXPECT_EQ(server.batches_created(), 1u);
  EXPECT_EQ(server.request_count(), 0u);
  EXPECT_EQ(server.batch_usage().size(), 6u);
  const Json summary = Json::parse(testing::ReadFile(dir / "out" / "summary.json"));
  EXPECT_EQ(summary["succeeded"], 6);
  EXPECT_NEAR(summary["llm"]["cost_usd"].get<double>(), Cost(0.5, 2.5), 1e-12);
}

// The crash Anthropic's API leaves open: killed after the batch was created but before its id
// came back (the create's reply is held back). The rerun has only the items' note; it finds the
// batch among those created since, by the nonce in its results, and joins it: still one batch.
TEST_F(LlmAnthropicBatchTest, KilledBeforeTheCreateAnsweredTheRerunFindsTheBatchByItsNonce) {
  std::ofstream(dir / "p.yaml") << AnthropicYaml("{max_requests: 6, collect: 60s, poll: 0.05}");
  std::ofstream(dir / "n.yaml") << "nodes: [{name: n, cpus: 2}]\n";
  OpenAiServer::BatchPlan plan;
  plan.polls = 1000000;  // not done until FinishBatches
  plan.create_reply_delay = 60;
  server.SetNextBatchPlan(plan);
  const std::string baton = (testing::BinaryDir() / "src" / "cli" / "baton").string();
  const std::vector<std::string> argv = {baton, "run", "p.yaml", "--cluster", "n.yaml", "--jobs", "6",
                                         "--out", "out", "--log-format", "none"};
  pid_t pid = testing::SpawnIn(dir.path(), argv, dir / "stderr-1");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(testing::WaitFor([&] { return server.batches_created() == 1; }, 60));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(testing::WaitExit(pid), 128 + SIGKILL);
  server.FinishBatches();
  pid = testing::SpawnIn(dir.path(), argv, dir / "stderr-2");
  ASSERT_EQ(testing::WaitExit(pid), 0) << testing::ReadFile(dir / "stderr-2");
  EXPECT_EQ(server.batches_created(), 1u);
  EXPECT_EQ(server.request_count(), 0u);
  EXPECT_EQ(server.batch_usage().size(), 6u);
  const Json summary = Json::parse(testing::ReadFile(dir / "out" / "summary.json"));
  EXPECT_EQ(summary["succeeded"], 6);
  for (const auto& b : summary["llm"]["batches"]) EXPECT_EQ(b.value("batch", ""), "msgbatch_1") << b.dump();
  EXPECT_NEAR(summary["llm"]["cost_usd"].get<double>(), Cost(0.5, 2.5), 1e-12);
}

}  // namespace
}  // namespace baton
