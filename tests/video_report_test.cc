// The canonical job end to end with every real part: media made by ffmpeg + flite, served by a
// real HTTP server on 127.0.0.1 (with faults), downloaded with libcurl, analysed with FFmpeg,
// Tesseract and PocketSphinx, summarised through a real local OpenAI-compatible server, written
// as Markdown and HTML — driven by the embedded runtime from examples/video-report.yaml.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <fstream>
#include <regex>

#include "baton/runtime.h"
#include "support/http_fault_server.h"
#include "support/media.h"
#include "support/openai_server.h"
#include "support/util.h"

namespace baton {
namespace {

using testing::ReadFile;
using testing::TempDir;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// The shipped default pipeline, with its summarize step pointed at `llm_with` instead.
PipelineSpec VideoReport(const std::string& llm_with) {
  std::string yaml = ReadFile(testing::SourceDir() / "examples" / "video-report.yaml");
  const std::regex provider(R"(      provider: extractive[^\n]*\n)");
  yaml = std::regex_replace(yaml, provider, llm_with);
  PipelineSpec p = ParsePipeline(yaml, (testing::SourceDir() / "examples" / "video-report.yaml").string()).value();
  for (auto& s : p.steps) {
    s.backoff = 0.05;  // keep failing jobs' retries short
    if (s.uses == "download") s.with["backoff"] = 0.01;
  }
  return p;
}

class VideoReportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { RegisterBuiltinSteps(); }
  void SetUp() override {
    std::filesystem::create_directories(served_.path());
    std::filesystem::copy_file(testing::Mp4Clip(), served_ / "talk.mp4");
    std::filesystem::copy_file(testing::WebmClip(), served_ / "talk.webm");
    server_ = std::make_unique<testing::HttpFaultServer>(served_.path());
  }
  TempDir served_, out_;
  std::unique_ptr<testing::HttpFaultServer> server_;
};

TEST_F(VideoReportTest, ReportsHoldWhatWasShownAndSaidAndFailuresSayWhy) {
  testing::OpenAiServer llm;
  setenv("BATON_TEST_LLM_KEY", "sk-test-secret-0123456789", 1);
  RunOptions o;
  o.inputs = {server_->url("/files/talk.mp4"), server_->url("/files/talk.webm"), server_->url("/status/404"),
              server_->url("/html")};
  o.out = out_.path();
  o.trace = out_ / "trace.json";
  FILE* log = fopen((out_ / "log.txt").c_str(), "w");
  o.log_stream = log;
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(VideoReport("      provider: custom\n      base_url: " + llm.base_url() +
                                  "\n      model: test-model\n      api_key_env: BATON_TEST_LLM_KEY\n"),
                      {}, o)
          .value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  fclose(log);
  ASSERT_EQ(r.jobs.size(), 4u);
  EXPECT_EQ(r.succeeded, 2) << r.jobs[0].error << " | " << r.jobs[1].error;
  EXPECT_EQ(r.failed, 2);

  for (const char* job : {"job-0", "job-1"}) {
    const Json& analyze = r.jobs[job == std::string("job-0") ? 0 : 1].results["analyze"];
    EXPECT_EQ(testing::SchemaErrors(analyze, "analyze_result", "docs/schema/analysis.schema.json"), "") << job;
    const std::string md = ReadFile(out_ / job / "report.md");
    ASSERT_FALSE(md.empty()) << job;
    for (const char* section : {"## Media", "## Summary", "## Chapters", "## Transcript", "## Processing record"})
      EXPECT_NE(md.find(section), std::string::npos) << job << " lacks " << section;
    // OCR read both slides; ASR heard the narration; the summary came from the LLM server.
    EXPECT_NE(md.find("Quarterly Results"), std::string::npos) << job;
    EXPECT_NE(md.find("Revenue grew twelve percent"), std::string::npos) << job;
    EXPECT_NE(Lower(md).find("quarterly results meeting"), std::string::npos) << job;
    EXPECT_NE(md.find("SUMMARY"), std::string::npos) << job;
    EXPECT_NE(md.find("test-model"), std::string::npos) << job;
    const std::string html = ReadFile(out_ / job / "report.html");
    EXPECT_NE(html.find("data:image/jpeg;base64,"), std::string::npos) << job;
    EXPECT_EQ(html.find("src=\"http"), std::string::npos) << job << ": the report loads something from outside";
  }
  EXPECT_GE(llm.request_count(), 2u);
  for (const auto& req : llm.requests()) EXPECT_EQ(req.headers.at("authorization"), "Bearer sk-test-secret-0123456789");

  EXPECT_NE(r.jobs[2].error.find("404"), std::string::npos) << r.jobs[2].error;
  EXPECT_EQ(r.jobs[2].attempts.size(), 1u) << "a 404 is not worth retrying";
  EXPECT_NE(r.jobs[3].error.find("HTML"), std::string::npos) << r.jobs[3].error;
  EXPECT_FALSE(std::filesystem::exists(out_ / "job-2" / "report.md"));

  // The key never reaches a file the run wrote.
  for (const auto& f : {out_ / "summary.json", out_ / "trace.json", out_ / "log.txt", out_ / "job-0" / "report.md",
                        out_ / "job-0" / "report.html"})
    EXPECT_EQ(ReadFile(f).find("sk-test-secret"), std::string::npos) << f;
}

TEST_F(VideoReportTest, ThreeNodesKeepAnalyzeOnTheDownloadingNodeAndDocumentsOnTheHead) {
  RunOptions o;
  o.inputs = {server_->url("/files/talk.mp4"), server_->url("/files/talk.webm"), server_->url("/redirect/talk.mp4")};
  o.out = out_.path();
  o.log_format = RunOptions::LogFormat::kNone;
  o.keep_work = true;  // the analysis files are looked at below
  const std::unique_ptr<Runtime> rt_owner = Runtime::Create(VideoReport("      provider: extractive\n"),
             LoadCluster(testing::SourceDir() / "examples" / "clusters" / "three-nodes.yaml").value(), o).value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  ASSERT_EQ(r.succeeded, 3) << r.jobs[0].error;
  std::set<std::string> download_nodes;
  for (const auto& j : r.jobs) {
    ASSERT_EQ(j.attempts.size(), 4u);
    EXPECT_EQ(j.attempts[1].node, j.attempts[0].node) << j.id;
    EXPECT_EQ(j.attempts[3].node, "head") << j.id;
    download_nodes.insert(j.attempts[0].node);
    // The video stayed in the downloading node's folder.
    EXPECT_TRUE(std::filesystem::exists(out_ / "nodes" / j.attempts[0].node / j.id / "analysis.json")) << j.id;
    const std::string md = ReadFile(out_ / j.id / "report.md");
    EXPECT_NE(md.find("offline extractive"), std::string::npos) << j.id;
    // One copy of the report: in OUT/<job>/, not in the node's work folder.
    EXPECT_FALSE(std::filesystem::exists(out_ / "nodes" / "head" / j.id / "report.md")) << j.id;
  }
  EXPECT_EQ(download_nodes.size(), 3u);  // admission spreads the jobs: one per node
}

}  // namespace
}  // namespace baton
