// Tests of the llm step against a real local OpenAI-compatible server (tests/support/openai_server)
// with fault modes, and of the offline extractive summariser.
#include "steps/llm/llm.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

#include "steps/llm/batch.h"
#include "steps/llm/chat_client.h"
#include "steps/llm/llm_config.h"
#include "steps/llm/prompt.h"
#include "support/openai_server.h"
#include "support/util.h"

namespace baton {
namespace {

using testing::OpenAiServer;
using Fault = OpenAiServer::Fault;

constexpr const char* kKeyEnv = "BATON_TEST_LLM_KEY";
constexpr const char* kKey = "sk-test-4f9a2b7c1d0e-SECRET";

Json Analysis(int segments = 3, const std::string& filler = "") {
  Json transcript = Json::array();
  const char* lines[] = {"Welcome to the lecture on distributed schedulers and their queues.",
                         "A scheduler places every step where its resources fit.",
                         "Locality keeps bulky video files on the node that downloaded them."};
  for (int i = 0; i < segments; ++i) {
    transcript.push_back({{"start", i * 4.0}, {"end", i * 4.0 + 3.5},
                          {"text", std::string(lines[i % 3]) + filler + " (segment " + std::to_string(i) + ")"}});
  }
  return {{"analysis", "analysis.json"},
          {"media", {{"duration", segments * 4.0}, {"container", "mp4"}}},
          {"scenes", {{{"index", 1}, {"start", 0.0}, {"end", 10.0}, {"keyframe", "keyframes/scene-001.jpg"},
                       {"ocr", "Batch Scheduling 101\nResources fit before placement"}},
                      {{"index", 2}, {"start", 10.0}, {"end", segments * 4.0}, {"keyframe", "keyframes/scene-002.jpg"},
                       {"ocr", "Locality Matters\nKeep videos where they were downloaded"}}}},
          {"transcript", transcript}};
}

class LlmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RegisterLlmStep(StepRegistry::Global());
    // Loopback only: a proxy from the environment must not intercept the test server.
    for (const char* v : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
      unsetenv(v);
  }

  void SetUp() override {
    setenv(kKeyEnv, kKey, 1);
    results = {{"download", {{"title", "Scheduler Lecture"}, {"url", "https://example.org/lecture.mp4"}}},
               {"analyze", Analysis()}};
    ctx.job = "job-0";
    ctx.step = "summarize";
    ctx.node = "head";
    ctx.results = &results;
    ctx.workdir = dir.path();
    ctx.outdir = dir.path();
    ctx.cancel = &cancel;
    ctx.log = [this](LogLevel, std::string_view line) {
      std::lock_guard lock(mu);
      logs += std::string(line) + "\n";
    };
  }

  Json With(Json extra = Json::object()) {
    Json with = {{"provider", "custom"}, {"base_url", server.base_url()}, {"model", "test-model"},
                 {"api_key_env", kKeyEnv}, {"backoff", 0.01}};
    for (auto& [k, v] : extra.items()) with[k] = v;
    return with;
  }

  StepOutcome RunWith(const Json& with) { return StepRegistry::Global().Create("llm", with).value()->Run(ctx); }

  std::string Logs() {
    std::lock_guard lock(mu);
    return logs;
  }

  OpenAiServer server;
  testing::TempDir dir;
  Json results;
  CancelToken cancel;
  StepContext ctx;
  std::mutex mu;
  std::string logs;
};

TEST_F(LlmTest, SummarisesThroughTheApi) {
  StepOutcome out = RunWith(With());
  ASSERT_TRUE(out.ok()) << out.error;
  ASSERT_EQ(server.request_count(), 1u);
  const auto req = server.requests()[0];
  EXPECT_EQ(req.headers.at("authorization"), std::string("Bearer ") + kKey);
  EXPECT_EQ(req.body["model"], "test-model");
  EXPECT_EQ(req.body["max_tokens"], 1024);
  const std::string user = req.user_message();
  EXPECT_NE(user.find("Scheduler Lecture"), std::string::npos);
  EXPECT_NE(user.find("[0:04] A scheduler places every step"), std::string::npos);
  EXPECT_NE(user.find("Batch Scheduling 101"), std::string::npos);
  EXPECT_EQ(out.result["summary"], OpenAiServer::MarkerFor(user));
  EXPECT_EQ(out.result["provider"], "custom");
  EXPECT_EQ(out.result["model"], "test-model");
  EXPECT_EQ(out.result["extractive"], false);
  EXPECT_EQ(out.result["chunks"], 1);
  ASSERT_EQ(out.result["calls"].size(), 1u);
  EXPECT_EQ(out.result["calls"][0]["prompt_tokens"], req.raw_body.size() / 4);
  EXPECT_EQ(out.result["calls"][0]["completion_tokens"], 7);
  EXPECT_EQ(out.result["calls"][0]["attempt"], 1);
  EXPECT_EQ(Logs().find(kKey), std::string::npos);
  EXPECT_EQ(out.result.dump().find(kKey), std::string::npos);
}

// What other models contributed reaches the prompt: captions (timed by their scene), tags and
// labels by engine, and an excerpt of the transcript in another language.
TEST_F(LlmTest, CaptionsTagsLabelsAndOtherTranscriptsReachThePrompt) {
  Json& base = results["analyze"];
  base["transcript"] = {{"language", "en"}, {"engine", "sphinx"}, {"segments", base["transcript"]}};
  results["tagger"] = {
      {"captions", {{"engine", "blip2"}, {"items", {{{"scene", 2}, {"text", "a map of two data centres"}}}}}},
      {"tags", {{"engine", "clip"}, {"items", {"lecture", {{"text", "whiteboard"}, {"confidence", 0.8}}}}}},
      {"labels", {{{"engine", "yolo"}, {"items", {{{"text", "person"}, {"start", 1.0}, {"end", 9.0}}}}}}},
      {"transcript",
       {{"language", "fr"},
        {"engine", "whisper-fr"},
        {"segments", {{{"start", 0}, {"end", 2}, {"text", "Bonjour"}}}}}}};
  StepOutcome out = RunWith(With());
  ASSERT_TRUE(out.ok()) << out.error;
  const std::string user = server.requests().at(0).user_message();
  EXPECT_NE(user.find("### Captions, tags and labels\ncaptions (blip2):\n[0:10] a map of two data centres\n"
                      "tags (clip): lecture, whiteboard\nlabels (yolo):\n[0:01] person\n"
                      "Transcript in fr (by whisper-fr): Bonjour\n\n### Transcript\n[0:00] Welcome"),
            std::string::npos)
      << user;
  // Without contributions the section is absent, heading and all.
  results.erase("tagger");
  ASSERT_TRUE(RunWith(With()).ok());
  EXPECT_EQ(server.requests().at(1).user_message().find("Captions, tags"), std::string::npos);
}

TEST_F(LlmTest, PresetSuppliesModelAndKeyVariable) {
  setenv("OPENAI_API_KEY", "sk-openai-preset-key", 1);
  StepOutcome out = RunWith({{"provider", "openai"}, {"base_url", server.base_url() + "/"}});
  unsetenv("OPENAI_API_KEY");
  ASSERT_TRUE(out.ok()) << out.error;
  const auto req = server.requests().at(0);
  EXPECT_EQ(req.body["model"], "gpt-4o-mini");
  EXPECT_EQ(req.headers.at("authorization"), "Bearer sk-openai-preset-key");
}

TEST_F(LlmTest, OllamaSendsNoAuthorization) {
  StepOutcome out = RunWith({{"provider", "ollama"}, {"base_url", server.base_url()}});
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(server.requests().at(0).headers.count("authorization"), 0u);
  EXPECT_EQ(server.requests().at(0).body["model"], "llama3.1");
}

TEST_F(LlmTest, RateLimitHonoursRetryAfter) {
  server.set_retry_after_seconds(1);
  server.SetFault(Fault::kRateLimit, 2);
  StepOutcome out = RunWith(With());
  ASSERT_TRUE(out.ok()) << out.error;
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 3u);
  // backoff is 0.01 s, so only Retry-After can explain a second between tries.
  EXPECT_GE(std::chrono::duration<double>(reqs[1].at - reqs[0].at).count(), 0.95);
  EXPECT_GE(std::chrono::duration<double>(reqs[2].at - reqs[1].at).count(), 0.95);
  EXPECT_EQ(out.result["calls"][0]["tries"], 3);
  EXPECT_NE(Logs().find("HTTP 429"), std::string::npos);
}

TEST_F(LlmTest, ServerErrorsExhaustRetries) {
  server.SetFault(Fault::kServerError);
  StepOutcome out = RunWith(With({{"retries", 2}}));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(server.request_count(), 3u);
  EXPECT_TRUE(out.retryable);
  EXPECT_NE(out.error.find("failed after 3 tries"), std::string::npos) << out.error;
  EXPECT_NE(out.error.find("HTTP 500: The server had an error"), std::string::npos) << out.error;
}

TEST_F(LlmTest, MalformedJsonIsAnError) {
  server.SetFault(Fault::kMalformed);
  StepOutcome out = RunWith(With());
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error.find("malformed response"), std::string::npos) << out.error;
  EXPECT_EQ(out.result, Json({{"usage", {{"requests", 1}, {"prompt_tokens", 0}, {"completion_tokens", 0},
                                          {"cached_tokens", 0}, {"cost_usd", 0.0}}}}));  // what the attempt used
}

TEST_F(LlmTest, EmptyChoicesIsAnError) {
  server.SetFault(Fault::kEmptyChoices);
  StepOutcome out = RunWith(With());
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error.find("no choices"), std::string::npos) << out.error;
}

TEST_F(LlmTest, EmptyContentIsAnError) {
  server.SetFault(Fault::kEmptyContent);
  StepOutcome out = RunWith(With());
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error.find("empty message content"), std::string::npos) << out.error;
}

TEST_F(LlmTest, SlowReplyTimesOut) {
  server.set_slow_seconds(5);
  server.SetFault(Fault::kSlow);
  StepOutcome out = RunWith(With({{"timeout", 0.3}, {"retries", 0}}));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(server.request_count(), 1u);
  EXPECT_NE(out.error.find("timed out after 0.3 s"), std::string::npos) << out.error;
  EXPECT_TRUE(out.retryable);
}

TEST_F(LlmTest, UnauthorizedFailsAtOnceAndHidesTheKey) {
  server.SetFault(Fault::kUnauthorized);
  StepOutcome out = RunWith(With());
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(server.request_count(), 1u);  // retries: 4 by default, but 401 is not retried
  EXPECT_FALSE(out.retryable);
  EXPECT_NE(out.error.find("HTTP 401: Incorrect API key provided: [redacted]"), std::string::npos) << out.error;
  EXPECT_EQ(out.error.find(kKey), std::string::npos);
  EXPECT_EQ(Logs().find(kKey), std::string::npos);
}

TEST_F(LlmTest, LongTranscriptIsMappedThenReduced) {
  results["analyze"] = Analysis(120, " Every scheduler decision is recorded as an event for the dashboard.");
  StepOutcome out = RunWith(With({{"context_tokens", 1500}, {"max_tokens", 200}}));
  ASSERT_TRUE(out.ok()) << out.error;
  const auto reqs = server.requests();
  int maps = 0, reduces = 0;
  for (const auto& r : reqs) {
    const std::string user = r.user_message();
    EXPECT_LE(llm::EstimateTokens(user), 1500 - 200);
    if (user.rfind("This is part", 0) == 0) ++maps;
    if (user.rfind("Below are summaries", 0) == 0) ++reduces;
  }
  EXPECT_GE(maps, 3);
  EXPECT_EQ(reduces, 1);
  EXPECT_EQ(maps + reduces, static_cast<int>(reqs.size()));
  EXPECT_EQ(out.result["chunks"], maps);
  EXPECT_EQ(out.result["calls"].size(), reqs.size());
  EXPECT_EQ(out.result["calls"].back()["phase"], "reduce");
  EXPECT_EQ(out.result["summary"], OpenAiServer::MarkerFor(reqs.back().user_message()));
  // Every segment went into exactly one map request.
  int found = 0;
  for (int i = 0; i < 120; ++i) {
    const std::string needle = "(segment " + std::to_string(i) + ")";
    for (const auto& r : reqs) found += r.user_message().find(needle) != std::string::npos;
  }
  EXPECT_EQ(found, 120);
}

TEST_F(LlmTest, ManyPartialsAreReducedInLevels) {
  // Partials of ~16 tokens with a reduce budget of ~350 and ~80 chunks force a grouped first reduce level.
  results["analyze"] = Analysis(900, " Every scheduler decision is recorded as an event for the dashboard.");
  StepOutcome out = RunWith(With({{"context_tokens", 700}, {"max_tokens", 100}}));
  ASSERT_TRUE(out.ok()) << out.error;
  int reduces = 0;
  for (const auto& r : server.requests()) reduces += r.user_message().rfind("Below are summaries", 0) == 0;
  EXPECT_GE(reduces, 2);
  EXPECT_EQ(out.result["summary"], OpenAiServer::MarkerFor(server.requests().back().user_message()));
}

TEST_F(LlmTest, MissingKeyNamesTheVariable) {
  unsetenv(kKeyEnv);
  StepOutcome out = RunWith(With());
  ASSERT_FALSE(out.ok());
  EXPECT_FALSE(out.retryable);
  EXPECT_NE(out.error.find("environment variable BATON_TEST_LLM_KEY is not set"), std::string::npos) << out.error;
  EXPECT_EQ(server.request_count(), 0u);
}

TEST_F(LlmTest, MissingAnalysisIsAClearError) {
  results.erase("analyze");
  StepOutcome out = RunWith(With());
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error.find("no result from step 'analyze'"), std::string::npos) << out.error;
}

TEST_F(LlmTest, CancelDuringSlowReply) {
  server.set_slow_seconds(30);
  server.SetFault(Fault::kSlow);
  std::thread canceller([this] {
    while (server.request_count() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    cancel.cancel();
  });
  StepOutcome out = RunWith(With());
  canceller.join();
  EXPECT_EQ(out.kind, StepOutcome::Kind::kCancelled);
}

TEST_F(LlmTest, PromptFileRelativeToPipelineFolder) {
  std::ofstream(dir / "mine.md") << "TITLE={{ title }} FROM={{source}}\n{{transcript}}";
  StepOutcome out = RunWith(With({{"prompt_file", "mine.md"}, {"_base_dir", dir.path().string()}}));
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(server.requests().at(0).user_message().rfind(
                "TITLE=Scheduler Lecture FROM=https://example.org/lecture.mp4\n[0:00] Welcome", 0), 0u);
}

TEST_F(LlmTest, ExtractiveWorksOffline) {
  results["analyze"] = Analysis(9);
  StepOutcome out = RunWith(Json::object());  // no provider: extractive
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(server.request_count(), 0u);
  EXPECT_EQ(out.result["extractive"], true);
  EXPECT_EQ(out.result["provider"], "extractive");
  const std::string s = out.result["summary"];
  EXPECT_EQ(s.rfind("> **Offline extractive summary — no LLM was used.**", 0), 0u) << s;
  EXPECT_NE(s.find("A scheduler places every step where its resources fit."), std::string::npos) << s;
  EXPECT_NE(s.find("[0:00] Batch Scheduling 101"), std::string::npos) << s;
  EXPECT_NE(s.find("[0:10] Locality Matters"), std::string::npos) << s;
}

TEST_F(LlmTest, ExtractiveKeepsTopSentencesInOrder) {
  results["analyze"] = {{"media", {{"duration", 30}}},
                        {"scenes", Json::array()},
                        {"transcript",
                         {{{"start", 0}, {"end", 5}, {"text", "Hello there everyone."}},
                          {{"start", 5}, {"end", 9}, {"text", "GPU scheduling places GPU jobs on GPU nodes."}},
                          {{"start", 9}, {"end", 14}, {"text", "Lunch was pasta with some tomato sauce today."}},
                          {{"start", 14}, {"end", 20}, {"text", "Fair GPU scheduling keeps GPU nodes busy."}}}}};
  StepOutcome out = RunWith({{"provider", "extractive"}, {"sentences", 2}});
  ASSERT_TRUE(out.ok()) << out.error;
  const std::string s = out.result["summary"];
  const auto a = s.find("[0:05] GPU scheduling places GPU jobs on GPU nodes.");
  const auto b = s.find("[0:14] Fair GPU scheduling keeps GPU nodes busy.");
  ASSERT_NE(a, std::string::npos) << s;
  ASSERT_NE(b, std::string::npos) << s;
  EXPECT_LT(a, b);
  EXPECT_EQ(s.find("pasta"), std::string::npos) << s;
  EXPECT_NE(s.find("No on-screen text was found"), std::string::npos) << s;
}

void ExpectConfigError(const Json& with, const std::string& needle, const std::string& absent = "") {
  const Result<std::unique_ptr<Step>> step = StepRegistry::Global().Create("llm", with);
  if (step.ok()) {
    ADD_FAILURE() << "no ConfigError for " << with.dump();
    return;
  }
  EXPECT_EQ(step.status().code(), StatusCode::kInvalidArgument) << step.error();
  EXPECT_NE(step.error().find(needle), std::string::npos) << step.error();
  if (!absent.empty()) {
    EXPECT_EQ(step.error().find(absent), std::string::npos) << step.error();
  }
}

TEST_F(LlmTest, ConfigErrorsNameTheKey) {
  ExpectConfigError({{"provider", "nope"}}, "with.provider: unknown provider 'nope'");
  ExpectConfigError({{"provider", "openai"}, {"context_tokens", "lots"}},
                    "with.context_tokens: must be a whole number");
  ExpectConfigError({{"provider", "openai"}, {"retries", -1}}, "with.retries: must be between 0 and 100");
  ExpectConfigError({{"provider", "openai"}, {"temperature", 7}}, "with.temperature: must be between 0 and 2");
  ExpectConfigError({{"provider", "openai"}, {"timeout", 0}}, "with.timeout:");
  ExpectConfigError({{"provider", "openai"}, {"max_tokens", 5000}}, "with.max_tokens: must be less than half");
  ExpectConfigError({{"provider", "openai"}, {"api_key_env", "sk-live-0123456789"}},
                    "with.api_key_env: must be the NAME", "sk-live");
  ExpectConfigError({{"provider", "custom"}, {"model", "m"}}, "with.base_url: required for provider custom");
  ExpectConfigError({{"provider", "vllm"}}, "with.model: required for provider vllm");
  ExpectConfigError({{"provider", "openai"}, {"base_url", "ftp://x"}}, "with.base_url: must start with http");
  ExpectConfigError({{"provider", "openai"}, {"temprature", 0.5}}, "with.temprature: unknown parameter");
  ExpectConfigError({{"prompt_file", "/nonexistent/summary.md"}},
                    "with.prompt_file: cannot read template file /nonexistent/summary.md");
  std::ofstream(dir / "bad.md") << "Hello {{speaker}}";
  ExpectConfigError({{"map_prompt_file", (dir / "bad.md").string()}},
                    "with.map_prompt_file: unknown placeholder {{speaker}}");
}

TEST_F(LlmTest, BatchModeKeysAreChecked) {
  ExpectConfigError({{"provider", "openai"}, {"mode", "later"}}, "with.mode: must be sync or batch");
  ExpectConfigError({{"provider", "openai"}, {"batch", {{"poll", "1s"}}}}, "with.batch: is only read with mode: batch");
  ExpectConfigError({{"provider", "openai"}, {"mode", "batch"}, {"batch", {{"pol", "1s"}}}},
                    "with.batch.pol: unknown key");
  ExpectConfigError({{"provider", "openai"}, {"mode", "batch"}, {"batch", {{"poll", "soon"}}}},
                    "with.batch.poll: must be a duration");
  ExpectConfigError({{"provider", "openai"}, {"mode", "batch"}, {"batch", {{"fallback", "retry"}}}},
                    "with.batch.fallback: must be sync, batch or fail");
  ExpectConfigError({{"provider", "openai"}, {"mode", "batch"}, {"batch", {{"max_requests", 0}}}},
                    "with.batch.max_requests: must be a whole number from 1 to 100000");
  EXPECT_TRUE(StepRegistry::Global().Create(
      "llm", {{"provider", "openai"},
              {"mode", "batch"},
              {"batch", {{"collect", "250ms"}, {"poll", 5}, {"expire", "24h"}, {"fallback", "sync"}}},
              {"price", {{"input", 1}, {"output", 2}, {"batch_input", 0.4}, {"batch_output", 0.8}}}})
                  .ok());
}

// A crash between creating a batch and journaling its id: the restarted run knows only the input
// file (its note); it finds the batch made from that file instead of creating a second one.
TEST_F(LlmTest, ARestoredBatchWithoutItsIdIsFoundByItsInputFile) {
  llm::LlmConfig c = llm::ParseLlmConfig({{"provider", "custom"}, {"base_url", server.base_url()}, {"model", "m"},
                                          {"mode", "batch"}, {"batch", {{"poll", 0}}}});
  // What the first run did: uploaded the file and created the batch (then died).
  llm::BatchBook first(c);
  first.Add("job-0", "job-0/summarize/1", {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}}, 0);
  ParkContext ctx;
  ctx.id = "batch-1";
  std::vector<Json> notes;
  ctx.note = [&notes](const Json& n) {
    notes.push_back(n);
    return true;
  };
  c.batch_config.collect = 0;
  ParkCheck sent = first.Check(ctx);
  ASSERT_FALSE(sent.done);
  ASSERT_EQ(server.batches_created(), 1u);
  ASSERT_EQ(notes.size(), 2u);  // {file, items}, then {batch}
  ASSERT_TRUE(notes[0].contains("file"));
  ASSERT_TRUE(notes[1].contains("batch"));
  // The restarted run has only the file's note.
  llm::BatchBook second(c);
  second.Restore({notes[0]});
  ASSERT_TRUE(second.Pending("job-0").has_value());
  EXPECT_EQ(second.Pending("job-0")->id, "batch-1");
  ParkCheck polled = second.Check(ctx);
  EXPECT_EQ(server.batches_created(), 1u);  // found, not created again
  EXPECT_EQ(server.files_created(), 1u);
  for (int i = 0; i < 5 && !polled.done; ++i) polled = second.Check(ctx);
  ASSERT_TRUE(polled.done);
  ASSERT_EQ(polled.outcomes.count("job-0"), 1u);
  EXPECT_TRUE(polled.outcomes["job-0"].ok());
  EXPECT_EQ(polled.outcomes["job-0"].result["summary"], OpenAiServer::MarkerFor("hi"));
}

// provider: anthropic speaks Anthropic's Messages API: POST /v1/messages with x-api-key and
// anthropic-version (no Authorization), the system prompt apart; reply content[].text and usage
// (input_tokens, output_tokens) give the summary and the cost at the preset's price.
TEST_F(LlmTest, AnthropicSummarisesThroughTheMessagesApi) {
  setenv("ANTHROPIC_API_KEY", kKey, 1);
  StepOutcome out = RunWith({{"provider", "anthropic"}, {"base_url", server.base_url()}});
  unsetenv("ANTHROPIC_API_KEY");
  ASSERT_TRUE(out.ok()) << out.error;
  ASSERT_EQ(server.request_count(), 1u);
  const auto req = server.requests()[0];
  EXPECT_EQ(req.path, "/v1/messages");
  EXPECT_EQ(req.headers.at("x-api-key"), kKey);
  EXPECT_EQ(req.headers.at("anthropic-version"), "2023-06-01");
  EXPECT_EQ(req.headers.count("authorization"), 0u);
  EXPECT_EQ(req.body["model"], "claude-haiku-4-5");
  EXPECT_EQ(req.body["max_tokens"], 1024);
  EXPECT_NE(req.body.value("system", "").find("You summarise videos"), std::string::npos);
  ASSERT_EQ(req.body["messages"].size(), 1u);
  EXPECT_EQ(req.body["messages"][0]["role"], "user");
  const std::string user = req.user_message();
  EXPECT_NE(user.find("Scheduler Lecture"), std::string::npos);
  EXPECT_EQ(out.result["summary"], OpenAiServer::MarkerFor(user));
  EXPECT_EQ(out.result["provider"], "anthropic");
  const long long prompt = static_cast<long long>(req.raw_body.size() / 4);
  EXPECT_EQ(out.result["calls"][0]["prompt_tokens"], prompt);
  EXPECT_EQ(out.result["calls"][0]["completion_tokens"], 7);
  EXPECT_EQ(out.result["usage"]["requests"], 1);
  EXPECT_EQ(out.result["usage"]["prompt_tokens"], prompt);
  EXPECT_EQ(out.result["usage"]["completion_tokens"], 7);
  // claude-haiku-4-5's list price: $1 in, $5 out per million tokens.
  EXPECT_NEAR(out.result["usage"]["cost_usd"].get<double>(), (prompt * 1.0 + 7 * 5.0) / 1e6, 1e-12);
  EXPECT_EQ(Logs().find(kKey), std::string::npos);
}

// Anthropic's errors ({type: error, error: {type, message}}) are read, retried or not like
// OpenAI's, and a key the server echoes is scrubbed.
TEST_F(LlmTest, AnthropicErrorsAreReadAndTheKeyHidden) {
  setenv("ANTHROPIC_API_KEY", kKey, 1);
  server.SetFault(Fault::kServerError, 1);
  StepOutcome out = RunWith({{"provider", "anthropic"}, {"base_url", server.base_url()}, {"backoff", 0.01}});
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(server.request_count(), 2u);
  server.SetFault(Fault::kUnauthorized, 1);
  out = RunWith({{"provider", "anthropic"}, {"base_url", server.base_url()}});
  unsetenv("ANTHROPIC_API_KEY");
  EXPECT_FALSE(out.ok());
  EXPECT_FALSE(out.retryable);
  EXPECT_NE(out.error.find("HTTP 401: Incorrect API key provided: [redacted]"), std::string::npos) << out.error;
  EXPECT_EQ(out.error.find(kKey), std::string::npos);
  ExpectConfigError({{"provider", "anthropic"}, {"temperature", 1.5}}, "with.temperature: must be between 0 and 1");
}

TEST(LlmReplyTest, AMessagesReplysCacheReadsArePartOfItsPromptAndCached) {
  const llm::ChatReply r = llm::ParseMessagesReply(
      R"({"content": [{"type": "text", "text": "A "}, {"type": "tool_use"}, {"type": "text", "text": "summary"}],
          "stop_reason": "max_tokens",
          "usage": {"input_tokens": 100, "cache_read_input_tokens": 50, "output_tokens": 7}})");
  EXPECT_EQ(r.problem, llm::ChatReply::Problem::kNone);
  EXPECT_EQ(r.content, "A summary");
  EXPECT_EQ(r.finish_reason, "max_tokens");
  EXPECT_EQ(r.prompt_tokens, 150);
  EXPECT_EQ(r.cached_tokens, 50);
  EXPECT_EQ(r.completion_tokens, 7);
  EXPECT_EQ(llm::ParseMessagesReply(R"({"content": []})").problem, llm::ChatReply::Problem::kNoChoices);
  EXPECT_EQ(llm::ParseMessagesReply("[1]").problem, llm::ChatReply::Problem::kNotObject);
  EXPECT_FALSE(llm::ParseMessagesReply(R"({"usage": {"input_tokens": "9"}})").has_usage);
}

// Anthropic's batches have no input file: a crash between creating one and journaling its id
// leaves only the items' note (their custom_ids carry the collection's nonce). The restarted run
// looks at the batches created since the note with as many requests; it waits while they run,
// then takes the one whose results carry its nonce, never someone else's of the same size; a
// collection that was never created is released and its jobs queue again.
TEST_F(LlmTest, ARestoredAnthropicBatchWithoutItsIdIsFoundByTheNonceInItsResults) {
  setenv("ANTHROPIC_API_KEY", kKey, 1);
  llm::LlmConfig c = llm::ParseLlmConfig({{"provider", "anthropic"}, {"base_url", server.base_url()},
                                          {"mode", "batch"}, {"batch", {{"poll", 0}, {"collect", 0}}}});
  EXPECT_EQ(c.batch_config.max_requests, 100000);
  EXPECT_EQ(c.batch_config.max_bytes, 256'000'000);
  const auto add = [&c](llm::BatchBook& book, const std::string& job) {
    book.Add(job, job + "/summarize/1", llm::ChatRequest(c, "sys", "hi " + job), 0);
  };
  OpenAiServer::BatchPlan running;
  running.polls = 1000000;  // not done until FinishBatches
  server.SetNextBatchPlan(running);
  llm::BatchBook first(c);
  add(first, "job-0");
  add(first, "job-1");
  ParkContext pc;
  pc.id = "batch-1";
  std::vector<Json> notes;
  pc.note = [&notes](const Json& n) {
    notes.push_back(n);
    return true;
  };
  ASSERT_FALSE(first.Check(pc).done);
  ASSERT_EQ(server.batches_created(), 1u);
  ASSERT_EQ(notes.size(), 2u);  // {nonce, items}, then {batch}
  ASSERT_TRUE(notes[0].contains("items"));
  ASSERT_TRUE(notes[1].contains("batch"));
  const std::string nonce = notes[0]["nonce"];
  for (const auto& item : notes[0]["items"]) EXPECT_EQ(item[1].get<std::string>().rfind(nonce + "-", 0), 0u);
  // Someone else's batch of the same size, created after the note.
  server.SetNextBatchPlan(running);
  llm::BatchBook other(c);
  add(other, "x-0");
  add(other, "x-1");
  ParkContext opc;
  opc.id = "batch-1";
  ASSERT_FALSE(other.Check(opc).done);
  ASSERT_EQ(server.batches_created(), 2u);

  // The restarted run has only the items' note.
  llm::BatchBook second(c);
  second.Restore({notes[0]});
  ASSERT_TRUE(second.Pending("job-0").has_value());
  ParkCheck polled = second.Check(pc);  // both candidates still run: it cannot tell yet
  EXPECT_FALSE(polled.done);
  EXPECT_EQ(second.States()[0]["status"], "noted");
  server.FinishBatches();
  for (int i = 0; i < 5 && !polled.done; ++i) polled = second.Check(pc);
  ASSERT_TRUE(polled.done);
  EXPECT_EQ(server.batches_created(), 2u);  // found, not created again
  ASSERT_EQ(polled.outcomes.count("job-0"), 1u);
  ASSERT_TRUE(polled.outcomes["job-0"].ok());
  EXPECT_EQ(polled.outcomes["job-0"].result["batch"]["id"], "msgbatch_1");
  EXPECT_EQ(polled.outcomes["job-1"].result["summary"], OpenAiServer::MarkerFor("hi job-1"));
  EXPECT_EQ(polled.outcomes.count("x-0"), 0u);

  // Noted, never created: released, its job queues again; nothing is created.
  llm::BatchBook third(c);
  third.Restore({{{"c", "batch-7"}, {"nonce", "feedfacefeedface"}, {"noted_at", notes[0]["noted_at"]},
                  {"items", {{"job-9", "feedfacefeedface-0-job-9", 0.0}}}, {"reserved", 0.0}}});
  ASSERT_TRUE(third.Pending("job-9").has_value());
  pc.id = "batch-7";
  notes.clear();
  const ParkCheck released = third.Check(pc);
  unsetenv("ANTHROPIC_API_KEY");
  EXPECT_TRUE(released.done);
  EXPECT_TRUE(released.outcomes.empty());
  EXPECT_FALSE(third.Pending("job-9").has_value());
  EXPECT_EQ(server.batches_created(), 2u);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0]["ended"], "not created");
}

TEST(LlmPromptTest, RenderIsOnePass) {
  EXPECT_EQ(llm::Render("A {{title}} B {{ chunk }} {{other}}", {{"title", "{{chunk}}"}, {"chunk", "x"}}),
            "A {{chunk}} B x {{other}}");
}

TEST(LlmPromptTest, SplitRespectsBudgetAndKeepsEverything) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "line " + std::to_string(i) + " with some words in it\n";
  text += std::string(3000, 'x') + "\n";   // one over-long line without spaces
  text += "汉字汉字汉字汉字汉字汉字汉字汉字\n";
  const auto pieces = llm::SplitToFit(text, 100);
  std::string joined;
  for (const auto& p : pieces) {
    EXPECT_LE(llm::EstimateTokens(p), 100);
    joined += p;
  }
  for (int i = 0; i < 200; i += 37) EXPECT_NE(joined.find("line " + std::to_string(i) + " with"), std::string::npos);
  EXPECT_EQ(std::count(joined.begin(), joined.end(), 'x'), 3000);
  EXPECT_NE(joined.find("汉字汉字汉字汉字汉字汉字汉字汉字"), std::string::npos);
  EXPECT_EQ(llm::EstimateTokens("汉字"), 2);
  EXPECT_EQ(llm::EstimateTokens("abcdefgh"), 2);
}

}  // namespace
}  // namespace baton
