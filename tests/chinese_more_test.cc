// More Chinese end to end (issue 11): Traditional Chinese (`language: zh-TW`, OCR chi_tra) in the
// embedded runtime, and Simplified Chinese through a cluster (a real redis-server, a head and two
// agents): exact slide text, Chinese headings, `<html lang>`, the title from the percent-decoded
// file name `季度報告.mp4` / `季度报告.mp4` served by a real local HTTP server.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "baton/runtime.h"
#include "support/http_fault_server.h"
#include "support/local_cluster.h"
#include "support/media.h"
#include "support/util.h"

namespace baton {
namespace {

using testing::ReadFile;
using testing::TempDir;

constexpr const char* kZenHei = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc";
const std::vector<std::string> kSimplified = {"季度报告\n收入增长了百分之十二。\n新产品在华东地区销售最好！",
                                              "下一步计划\n扩大海外市场，降低成本。\n明年推出三款新产品。"};
const std::vector<std::string> kTraditional = {"季度報告\n營收成長了百分之十二。\n新產品在華東地區銷售最好！",
                                               "下一步計畫\n擴大海外市場，降低成本。\n明年推出三款新產品。"};

std::string Pipeline(const std::string& language) {
  return "name: zh\nlanguage: " + language +
         "\nsteps:\n"
         "  - {name: download, uses: download, resources: {cpu: 0.25}}\n"
         "  - {name: analyze, uses: analyze, resources: {cpu: 1}, placement: {same_node_as: download}}\n"
         "  - {name: summarize, uses: llm, with: {provider: extractive}, resources: {cpu: 0.25}}\n"
         "  - {name: document, uses: document, resources: {cpu: 0.25}, placement: {labels: {role: head}}}\n";
}

// Without the full-width sentence punctuation (，。！？；：).
std::string NoPunctuation(std::string s) {
  for (const char* p : {"，", "。", "！", "？", "；", "："})
    for (size_t at = s.find(p); at != std::string::npos; at = s.find(p)) s.erase(at, 3);
  return s;
}

// Every slide's text appears as one of the report's ```text blocks, exact but for punctuation.
void ExpectSlidesExceptPunctuation(const std::string& md, const std::vector<std::string>& slides) {
  std::vector<std::string> blocks;
  for (size_t at = md.find("```text\n"); at != std::string::npos; at = md.find("```text\n", at + 1)) {
    const size_t end = md.find("\n```", at + 8);
    if (end == std::string::npos) break;
    blocks.push_back(NoPunctuation(md.substr(at + 8, end - at - 8)));
  }
  for (const auto& s : slides)
    EXPECT_NE(std::find(blocks.begin(), blocks.end(), NoPunctuation(s)), blocks.end())
        << "slide not read: " << s << "\n"
        << md;
}

void ExpectExactSlides(const std::string& md, const std::vector<std::string>& slides) {
  for (const auto& s : slides)
    EXPECT_NE(md.find("```text\n" + s + "\n```"), std::string::npos) << "slide not exact: " << s << "\n" << md;
}

class ChineseMoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { RegisterBuiltinSteps(); }
  void Need(const char* tessdata) {
    if (!std::filesystem::exists(kZenHei) ||
        !std::filesystem::exists(std::string("/usr/share/tesseract-ocr/5/tessdata/") + tessdata + ".traineddata"))
      GTEST_FAIL() << "run scripts/install-deps.sh (fonts-wqy-zenhei, tesseract-ocr-chi-sim, tesseract-ocr-chi-tra)";
  }
  TempDir served_, work_;
};

TEST_F(ChineseMoreTest, TraditionalChineseReportWithExactSlides) {
  Need("chi_tra");
  testing::MakeCjkSlidesVideo(kTraditional, kZenHei, work_.path(), served_ / "季度報告.mp4");
  testing::HttpFaultServer http(served_.path());
  TempDir out;
  RunOptions o;
  o.inputs = {http.url("/files/%E5%AD%A3%E5%BA%A6%E5%A0%B1%E5%91%8A.mp4")};
  o.out = out.path();
  FILE* log = fopen((work_ / "log.txt").c_str(), "w");
  o.log_stream = log;
  const PipelineSpec spec = ParsePipeline(Pipeline("zh-TW"), (work_ / "zh.yaml").string()).value();
  EXPECT_EQ(spec.steps[1].with["_language"], "zh-TW");
  const std::unique_ptr<Runtime> rt_owner = Runtime::Create(spec, {}, o).value();
  Runtime& rt = *rt_owner;
  const RunReport r = rt.Run();
  fclose(log);
  ASSERT_EQ(r.succeeded, 1) << r.jobs[0].error << "\n" << ReadFile(work_ / "log.txt");
  const std::string md = ReadFile(out / "job-0" / "report.md");
  // Every character exact, line by line. Punctuation is not yet: chi_tra expects the Traditional
  // full stop centred in its cell, and wqy-zenhei draws 。 at the bottom left as Simplified fonts
  // do, so it reads "，" for some (docs/performance.md, OCR on Chinese slides).
  ExpectSlidesExceptPunctuation(md, kTraditional);
  EXPECT_EQ(md.rfind("# 季度報告\n", 0), 0u) << md.substr(0, 200);
  for (const char* h : {"## 媒體資訊", "## 摘要", "## 章節", "### 第 1 章（0:00–", "**螢幕文字**", "## 處理紀錄", "| 步驟 | 節點 |", "產生日期："})
    EXPECT_NE(md.find(h), std::string::npos) << "lacks " << h;
  for (const char* simplified : {"## 章节", "屏幕文字", "处理记录", "## Summary"})
    EXPECT_EQ(md.find(simplified), std::string::npos) << "not Traditional: " << simplified;
  const std::string html = ReadFile(out / "job-0" / "report.html");
  EXPECT_NE(html.find("<html lang=\"zh-TW\">"), std::string::npos);
  EXPECT_NE(html.find("<title>季度報告</title>"), std::string::npos);
  // OCR read the slides with the Traditional data.
  EXPECT_NE(ReadFile(out / "jobs.jsonl").find("chi_tra"), std::string::npos);
}

TEST_F(ChineseMoreTest, SimplifiedChineseThroughTwoAgentsOnRedis) {
  Need("chi_sim");
  testing::MakeCjkSlidesVideo(kSimplified, kZenHei, work_.path(), served_ / "季度报告.mp4");
  testing::HttpFaultServer http(served_.path());
  testing::LocalCluster c;
  ASSERT_TRUE(c.StartRedis()) << c.Logs();
  c.StartHead();
  // One CPU each: analyze (cpu 1) runs one job per node at a time, so the two jobs use both.
  c.StartNode("a", {"--gpus", "0", "--cpus", "1", "--labels", "role=head"});
  c.StartNode("b", {"--gpus", "0", "--cpus", "1"});
  ASSERT_TRUE(c.WaitNodesAlive(2, 15)) << c.Logs();
  const auto pipeline = work_ / "zh.yaml";
  std::ofstream(pipeline) << Pipeline("zh-CN");
  const std::string url = http.url("/files/%E5%AD%A3%E5%BA%A6%E6%8A%A5%E5%91%8A.mp4");
  ASSERT_EQ(c.SubmitAndWait(pipeline, {url, url + "?copy=2"}, 240), 0) << c.Logs();
  std::set<std::string> analyzed_on;
  for (const std::string id : {"job-0", "job-1"}) {
    const nlohmann::json j = c.StatusJson(id);
    ASSERT_EQ(j.value("state", ""), "succeeded") << j.dump();
    for (const auto& a : j["attempts"])
      if (a["step"] == "analyze" && a["status"] == "ok") analyzed_on.insert(a["node"].get<std::string>());
    const std::string md = ReadFile(c.OutDir("a") / id / "report.md");  // document runs on the head-labelled agent
    ExpectExactSlides(md, kSimplified);
    EXPECT_EQ(md.rfind("# 季度报告\n", 0), 0u) << id << ": " << md.substr(0, 200);
    for (const char* h : {"## 媒体信息", "## 摘要", "## 章节", "**屏幕文字**", "## 处理记录", "| 步骤 | 节点 |"})
      EXPECT_NE(md.find(h), std::string::npos) << id << " lacks " << h;
    const std::string summary = md.substr(md.find("## 摘要"), md.find("## 章节") - md.find("## 摘要"));
    EXPECT_NE(summary.find("收入增长了百分之十二。"), std::string::npos) << summary;
    const std::string html = ReadFile(c.OutDir("a") / id / "report.html");
    EXPECT_NE(html.find("<html lang=\"zh-CN\">"), std::string::npos) << id;
    EXPECT_NE(html.find("<title>季度报告</title>"), std::string::npos) << id;
  }
  EXPECT_EQ(analyzed_on, (std::set<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace baton
