// A Chinese video end to end, as a Chinese team would run it: slides of Simplified Chinese made by
// ffmpeg in a CJK font from Debian (fonts-wqy-zenhei), served as `季度报告.mp4` by a real local HTTP
// server, through a pipeline with `language: zh-CN`: exact slide text, a report written in
// Chinese with the decoded title, an extractive summary that quotes slide sentences, and Chinese
// speech from a stand-in `command` ASR engine (whisper.cpp's place) in the transcript.
#include <gtest/gtest.h>

#include <fstream>

#include "baton/runtime.h"
#include "support/http_fault_server.h"
#include "support/media.h"
#include "support/util.h"

namespace baton {
namespace {

using testing::ReadFile;
using testing::TempDir;

constexpr const char* kFont = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc";
const char* const kSlides[] = {"季度报告\n收入增长了百分之十二。\n新产品在华东地区销售最好！",
                               "下一步计划\n扩大海外市场，降低成本。\n明年推出三款新产品。"};
// What the stand-in ASR engine "hears" (whisper.cpp's -oj JSON shape).
constexpr const char* kAsrJson =
    R"({"transcription":[{"offsets":{"from":500,"to":3000},"text":"大家好，欢迎参加季度报告会。"},)"
    R"({"offsets":{"from":6500,"to":9000},"text":"我们明年要扩大海外市场。"}]})";

// Two 6-second 1280x720 slides with a tone as the audio track.
void MakeVideo(const std::filesystem::path& dir, const std::filesystem::path& out) {
  testing::MakeCjkSlidesVideo({kSlides[0], kSlides[1]}, kFont, dir, out);
}

std::string Pipeline(const std::string& language, const std::string& asr) {
  return "name: zh\n" + language +
         "steps:\n"
         "  - {name: download, uses: download}\n"
         "  - name: analyze\n    uses: analyze\n    with:\n      asr: " + asr + "\n"
         "  - {name: summarize, uses: llm, with: {provider: extractive}}\n"
         "  - {name: document, uses: document}\n";
}

class ChineseVideoTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { RegisterBuiltinSteps(); }
  void SetUp() override {
    if (!std::filesystem::exists(kFont) ||
        !std::filesystem::exists("/usr/share/tesseract-ocr/5/tessdata/chi_sim.traineddata"))
      GTEST_FAIL() << "run scripts/install-deps.sh (fonts-wqy-zenhei, tesseract-ocr-chi-sim)";
    std::filesystem::create_directories(served_.path());
    MakeVideo(work_.path(), served_ / "季度报告.mp4");
    server_ = std::make_unique<testing::HttpFaultServer>(served_.path());
  }
  RunReport RunJob(const std::string& yaml) {
    RunOptions o;
    o.inputs = {server_->url("/files/%E5%AD%A3%E5%BA%A6%E6%8A%A5%E5%91%8A.mp4")};
    o.out = out_.path();
    o.log_stream = log_ = fopen((work_ / "log.txt").c_str(), "w");
    const std::unique_ptr<Runtime> rt_owner =
        Runtime::Create(ParsePipeline(yaml, (work_ / "zh.yaml").string()).value(), {}, o).value();
    Runtime& rt = *rt_owner;
    RunReport r = rt.Run();
    fclose(log_);
    return r;
  }
  TempDir served_, out_, work_;
  FILE* log_ = nullptr;
  std::unique_ptr<testing::HttpFaultServer> server_;
};

TEST_F(ChineseVideoTest, ReportIsChineseWithExactSlidesTitleSummaryAndSpeech) {
  const std::string asr = std::string("{engine: command, argv: [/bin/sh, -c, 'printf \"%s\" \"$1\"', sh, '") +
                          kAsrJson + "', \"{audio}\"]}";
  const RunReport r = RunJob(Pipeline("language: zh-CN\n", asr));
  ASSERT_EQ(r.succeeded, 1) << r.jobs[0].error << "\n" << ReadFile(work_ / "log.txt");
  EXPECT_EQ(testing::SchemaErrors(r.jobs[0].results["analyze"], "analyze_result", "docs/schema/analysis.schema.json"),
            "");
  EXPECT_EQ(r.jobs[0].results["analyze"]["transcript"]["language"], "zh-CN");
  const std::string md = ReadFile(out_ / "job-0" / "report.md");
  // Exact slide text, line by line, as OCR read it.
  EXPECT_NE(md.find(std::string("```text\n") + kSlides[0] + "\n```"), std::string::npos) << md;
  EXPECT_NE(md.find(std::string("```text\n") + kSlides[1] + "\n```"), std::string::npos) << md;
  // Title from the percent-decoded file name; headings in Chinese.
  EXPECT_EQ(md.rfind("# 季度报告\n", 0), 0u) << md.substr(0, 200);
  for (const char* h : {"## 媒体信息", "## 摘要", "## 章节", "### 第 1 章（0:00–", "**屏幕文字**", "## 文字记录", "## 处理记录",
                        "| 步骤 | 节点 |", "生成日期：", "年"})
    EXPECT_NE(md.find(h), std::string::npos) << "lacks " << h;
  for (const char* en : {"## Summary", "## Chapters", "On-screen text", "Transcript"})
    EXPECT_EQ(md.find(en), std::string::npos) << "English left: " << en;
  // The stand-in engine's Chinese speech reached the transcript and the chapters.
  EXPECT_NE(md.find("- **[0:00]** 大家好，欢迎参加季度报告会。"), std::string::npos);
  EXPECT_NE(md.find("- **[0:06]** 我们明年要扩大海外市场。"), std::string::npos);
  // The extractive summary picked Chinese sentences from slides and speech.
  const std::string summary = md.substr(md.find("## 摘要"), md.find("## 章节") - md.find("## 摘要"));
  EXPECT_NE(summary.find("#### 关键句"), std::string::npos) << summary;
  EXPECT_NE(summary.find("收入增长了百分之十二。 _（屏幕）_"), std::string::npos) << summary;
  EXPECT_NE(summary.find("我们明年要扩大海外市场。"), std::string::npos) << summary;
  EXPECT_NE(summary.find("- [0:00] 季度报告"), std::string::npos) << summary;

  const std::string html = ReadFile(out_ / "job-0" / "report.html");
  EXPECT_NE(html.find("<html lang=\"zh-CN\">"), std::string::npos);
  EXPECT_NE(html.find("<title>季度报告</title>"), std::string::npos);
  EXPECT_NE(html.find("\"Noto Sans CJK SC\""), std::string::npos);
  EXPECT_NE(html.find("<h2>文字记录</h2>"), std::string::npos);
  // The downloaded file kept its Chinese name on disk.
  const Json jobs = testing::ReadJobs(out_.path());
  EXPECT_NE(jobs.dump().find("季度报告.mp4"), std::string::npos) << jobs.dump().substr(0, 400);
}

TEST_F(ChineseVideoTest, PocketSphinxIsNotAskedForChineseAndTheReportSaysSo) {
  const RunReport r = RunJob(Pipeline("language: zh-CN\n", "{engine: pocketsphinx}"));
  ASSERT_EQ(r.succeeded, 1) << r.jobs[0].error;
  EXPECT_EQ(testing::SchemaErrors(r.jobs[0].results["analyze"], "analyze_result", "docs/schema/analysis.schema.json"),
            "");
  EXPECT_FALSE(r.jobs[0].results["analyze"].contains("transcript"));  // not transcribed: no transcript
  const std::string md = ReadFile(out_ / "job-0" / "report.md");
  EXPECT_NE(md.find("_没有文字记录：语音未转写。PocketSphinx 没有中文模型"), std::string::npos) << md;
  EXPECT_NE(
      ReadFile(work_ / "log.txt").find("Speech was not transcribed: PocketSphinx has no Simplified Chinese model"),
      std::string::npos);
}

TEST(ChineseVideoConfig, UnknownTagsAndMissingOcrDataAreLoadErrors) {
  RegisterBuiltinSteps();
  auto klingon = ParsePipeline("name: x\nlanguage: klingon\nsteps: [{name: a, uses: sleep}]\n", "p.yaml");
  ASSERT_FALSE(klingon.ok()) << "accepted an unknown language";
  EXPECT_EQ(klingon.error().rfind("p.yaml:2: language: unknown language tag 'klingon' (known: en, zh-CN, zh-TW", 0), 0u)
      << klingon.error();
  const PipelineSpec p = ParsePipeline("language: zh_tw\nsteps: [{name: a, uses: sleep}]\n", "p.yaml").value();
  EXPECT_EQ(p.language, "zh-TW");
  EXPECT_EQ(p.steps[0].with["_language"], "zh-TW");
  const Result<std::unique_ptr<Step>> refused =
      StepRegistry::Global().Create("analyze", Json{{"ocr", {{"lang", "chi_sim+xyz_vert"}}}});
  ASSERT_FALSE(refused.ok()) << "accepted missing Tesseract data";
  EXPECT_NE(refused.error().find("with.ocr.lang: Tesseract has no data for 'xyz_vert'"), std::string::npos)
      << refused.error();
  EXPECT_NE(refused.error().find("install the Debian package tesseract-ocr-xyz-vert"), std::string::npos)
      << refused.error();
}

}  // namespace
}  // namespace baton
