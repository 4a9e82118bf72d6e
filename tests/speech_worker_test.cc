// A user's speech model writes the transcript (docs/schema/analysis.md): examples/worker/
// speech-report.yaml with its stand-in worker (examples/worker/speech_standin.py), end to end
// through the embedded runtime: the worker's segments reach the LLM prompt (at a real local
// OpenAI-compatible server), jobs.jsonl and the report's transcript and chapters, and the
// built-in recogniser does not run. A step whose output breaks the shape fails, naming the field,
// and nothing downstream runs.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <regex>

#include "baton/runtime.h"
#include "support/media.h"
#include "support/openai_server.h"
#include "support/util.h"

namespace baton {
namespace {

using testing::ReadFile;
using testing::TempDir;

constexpr const char kAnalysisSchema[] = "docs/schema/analysis.schema.json";

class SpeechWorkerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { RegisterBuiltinSteps(); }
  void SetUp() override {
    std::filesystem::create_directories(media_.path());
    std::filesystem::copy_file(testing::Mp4Clip(), media_ / "talk.mp4");
  }
  RunReport Run(const PipelineSpec& p) {
    RunOptions o;
    o.inputs = {(media_ / "talk.mp4").string()};
    o.out = out_.path();
    o.log_stream = log_ = fopen((media_ / "log.txt").c_str(), "w");
    const std::unique_ptr<Runtime> rt_owner = Runtime::Create(p, {}, o).value();
    Runtime& rt = *rt_owner;
    RunReport r = rt.Run();
    fclose(log_);
    return r;
  }
  std::string Log() { return ReadFile(media_ / "log.txt"); }
  TempDir media_, out_;
  FILE* log_ = nullptr;
};

TEST_F(SpeechWorkerTest, WorkerTranscriptReachesPromptSummaryAndReportAndPocketSphinxDoesNotRun) {
  testing::OpenAiServer llm;
  setenv("BATON_TEST_LLM_KEY", "sk-test-0123456789", 1);
  const auto file = testing::SourceDir() / "examples" / "worker" / "speech-report.yaml";
  std::string yaml = ReadFile(file);
  yaml = std::regex_replace(yaml, std::regex(R"(      provider: extractive\n)"),
                            "      provider: custom\n      base_url: " + llm.base_url() +
                                "\n      model: test-model\n      api_key_env: BATON_TEST_LLM_KEY\n");
  PipelineSpec p = ParsePipeline(yaml, file.string()).value();
  const auto record = media_ / "calls.jsonl";
  for (auto& s : p.steps) {
    if (s.name == "transcribe") s.with["argv"].insert(s.with["argv"].end(), {"--record", record.string()});
  }
  const RunReport r = Run(p);
  ASSERT_EQ(r.succeeded, 1) << r.jobs[0].error << "\n" << Log();
  const Json& results = r.jobs[0].results;

  // analyze: scenes, keyframes and its audio handed on; no transcript of its own.
  const Json& analyze = results["analyze"];
  EXPECT_EQ(testing::SchemaErrors(analyze, "analyze_result", kAnalysisSchema), "");
  EXPECT_FALSE(analyze.contains("transcript")) << analyze.dump();
  EXPECT_EQ(analyze["engines"]["asr"]["engine"], "none");
  EXPECT_EQ(analyze["keyframes"].size(), 2u);
  EXPECT_EQ(Log().find("analyze: asr "), std::string::npos) << "the built-in recogniser ran";
  // The worker read that audio and wrote the transcript, with real times from it.
  const Json calls = Json::parse(ReadFile(record));
  EXPECT_EQ(calls["job"], "job-0");
  EXPECT_EQ(calls["audio"], analyze["audio"]);
  const Json& transcript = results["transcribe"]["transcript"];
  EXPECT_EQ(testing::SchemaErrors(results["transcribe"], "contribution", kAnalysisSchema), "");
  EXPECT_EQ(transcript["language"], "en");
  ASSERT_EQ(transcript["segments"].size(), 2u) << transcript.dump();
  EXPECT_NEAR(transcript["segments"][0]["start"].get<double>(), 0.5, 0.4);
  EXPECT_NEAR(transcript["segments"][1]["start"].get<double>(), 6.5, 0.4);

  // jobs.jsonl holds the worker's segments (the job's results).
  const Json jobs = testing::ReadJobs(out_.path());
  EXPECT_NE(jobs.dump().find("Revenue grew twelve percent this year."), std::string::npos);
  EXPECT_NE(jobs.dump().find("speech-standin"), std::string::npos);

  // The prompt at the LLM server: the worker's sentences (PocketSphinx writes no capitals or stops).
  ASSERT_GE(llm.request_count(), 1u);
  const std::string prompt = llm.requests()[0].user_message();
  EXPECT_NE(prompt.find("] Welcome to the quarterly results meeting."), std::string::npos) << prompt;
  EXPECT_NE(prompt.find("] Revenue grew twelve percent this year."), std::string::npos) << prompt;

  // The report: transcript (naming its engine) and chapters.
  const std::string md = ReadFile(out_ / "job-0" / "report.md");
  EXPECT_NE(md.find("_Transcript by speech-standin (en, step transcribe)._"), std::string::npos) << md;
  const size_t ch1 = md.find("### Chapter 1"), ch2 = md.find("### Chapter 2"), tr = md.find("## Transcript");
  ASSERT_TRUE(ch1 != std::string::npos && ch2 != std::string::npos && tr != std::string::npos) << md;
  const std::string chapter1 = md.substr(ch1, ch2 - ch1), chapter2 = md.substr(ch2, tr - ch2);
  EXPECT_NE(chapter1.find("** Welcome to the quarterly results meeting."), std::string::npos) << chapter1;
  EXPECT_NE(chapter2.find("** Revenue grew twelve percent this year."), std::string::npos) << chapter2;
  EXPECT_NE(md.substr(tr).find("** Revenue grew twelve percent this year."), std::string::npos);
  EXPECT_NE(md.find("SUMMARY"), std::string::npos);  // the LLM server's reply
}

PipelineSpec WithContributor(const std::string& contributor, const std::string& language = "") {
  const std::string yaml = "name: contrib\n" + language +
                           "steps:\n"
                           "  - {name: download, uses: download}\n"
                           "  - {name: analyze, uses: analyze, with: {asr: none, ocr: none}}\n" +
                           contributor +
                           "  - {name: summarize, uses: llm, with: {provider: extractive}}\n"
                           "  - {name: document, uses: document}\n";
  auto p = ParsePipeline(yaml, (testing::SourceDir() / "examples" / "worker" / "contrib.yaml").string());
  EXPECT_TRUE(p.ok()) << p.error();
  return p.value();
}

TEST_F(SpeechWorkerTest, ABrokenContributionFailsItsStepNamingTheFieldAndNothingDownstreamRuns) {
  // A command step: its JSON output line has a segment without "start".
  const std::string bad_command =
      "  - name: transcribe\n    uses: command\n    retries: 2\n    with:\n      argv: [sh, -c, "
      "'echo \"{\\\"transcript\\\": {\\\"language\\\": \\\"en\\\", \\\"segments\\\": "
      "[{\\\"end\\\": 1, \\\"text\\\": \\\"hi\\\"}]}}\"']\n";
  RunReport r = Run(WithContributor(bad_command));
  ASSERT_EQ(r.failed, 1);
  EXPECT_NE(r.jobs[0].error.find("breaks the analysis shape"), std::string::npos) << r.jobs[0].error;
  EXPECT_NE(r.jobs[0].error.find("transcript.segments[0].start: missing"), std::string::npos) << r.jobs[0].error;
  ASSERT_EQ(r.jobs[0].attempts.size(), 3u);  // download, analyze, one try of transcribe (not retried)
  EXPECT_EQ(r.jobs[0].attempts.back().step, "transcribe");
  EXPECT_FALSE(std::filesystem::exists(out_ / "job-0" / "report.md"));

  // A worker step: transcript.segments is not a list.
  std::ofstream(media_ / "bad_worker.py")
      << "import sys\nsys.path.insert(0, " << Json((testing::SourceDir() / "python").string()).dump() << ")\n"
      << "import baton_worker\n"
         "baton_worker.serve(None, lambda items: [{'transcript': {'language': 'en', 'segments': {'a': 1}}}"
         " for _ in items])\n";
  const std::string bad_worker = "  - name: transcribe\n    uses: worker\n    with:\n      argv: [python3, " +
                                 (media_ / "bad_worker.py").string() + "]\n";
  std::filesystem::remove_all(out_.path());
  r = Run(WithContributor(bad_worker));
  ASSERT_EQ(r.failed, 1);
  EXPECT_NE(r.jobs[0].error.find("worker: output breaks the analysis shape (docs/schema/analysis.md): "
                                 "transcript.segments: must be a list"), std::string::npos) << r.jobs[0].error;
  EXPECT_EQ(r.jobs[0].attempts.back().step, "transcribe");
  EXPECT_FALSE(std::filesystem::exists(out_ / "job-0" / "report.md"));
}

TEST_F(SpeechWorkerTest, AChineseJobWithAContributedChineseTranscriptGetsAChineseSummaryAndReport) {
  const std::string worker = "  - name: transcribe\n    uses: worker\n    with:\n      argv: [python3, " +
                             (testing::SourceDir() / "examples" / "worker" / "speech_standin.py").string() +
                             ", --language, zh-CN]\n";
  const RunReport r = Run(WithContributor(worker, "language: zh-CN\n"));
  ASSERT_EQ(r.succeeded, 1) << r.jobs[0].error << "\n" << Log();
  EXPECT_EQ(testing::SchemaErrors(r.jobs[0].results["analyze"], "analyze_result", kAnalysisSchema), "");
  const std::string md = ReadFile(out_ / "job-0" / "report.md");
  for (const char* h : {"## 摘要", "## 章节", "## 文字记录", "文字记录由 speech-standin 生成（zh-CN，步骤 transcribe）。"})
    EXPECT_NE(md.find(h), std::string::npos) << "lacks " << h << "\n" << md;
  EXPECT_NE(md.find("** 大家好，欢迎参加季度报告会。今天我们回顾本季度的收入和利润。"), std::string::npos) << md;
  const std::string summary = md.substr(md.find("## 摘要"), md.find("## 章节") - md.find("## 摘要"));
  EXPECT_NE(summary.find("离线抽取式摘要"), std::string::npos) << summary;
  EXPECT_NE(summary.find("本季度收入增长了百分之十二。"), std::string::npos) << summary;
}

}  // namespace
}  // namespace baton
