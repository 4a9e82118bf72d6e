// Tests of the document step: results JSON built by hand, a real JPEG keyframe made by ffmpeg.
#include "steps/document/document.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "steps/document/markdown_html.h"
#include "support/util.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using testing::ReadFile;

constexpr const char* kTitle = "<script>alert(1)</script> & Co";
constexpr const char* kSource = "https://example.org/v.mp4?a=1&b=2";

size_t Count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

class DocumentTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { RegisterDocumentStep(StepRegistry::Global()); }

  void SetUp() override {
    fs::create_directories(analyze_dir / "keyframes");
    for (const char* name : {"scene-001.jpg", "scene-002.jpg"}) {
      const std::string path = (analyze_dir / "keyframes" / name).string();
      ASSERT_EQ(testing::RunProgram({"ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=64x36",
                                     "-frames:v", "1", path}), 0);
    }
    jpeg = ReadFile(analyze_dir / "keyframes" / "scene-001.jpg");
    ASSERT_GT(jpeg.size(), 100u);
    results = {
        {"download", {{"title", kTitle}, {"url", kSource}, {"file", "v.mp4"}, {"bytes", 3145728}, {"sha256", "ab12"}}},
        {"analyze",
         {{"analysis", "analysis.json"},
          {"media",
           {{"duration", 20.0},
            {"container", "mov,mp4"},
            {"video", {{"codec", "h264"}, {"width", 1280}, {"height", 720}, {"fps", 25}}},
            {"audio", {{"codec", "aac"}, {"sample_rate", 44100}, {"channels", 2}}}}},
          {"scenes",
           {{{"index", 1},
             {"start", 0.0},
             {"end", 10.0},
             {"keyframe", "keyframes/scene-001.jpg"},
             {"ocr", "Intro Slide\nuse ```code``` here"}},
            {{"index", 2},
             {"start", 10.0},
             {"end", 20.0},
             {"keyframe", "keyframes/scene-002.jpg"},
             {"ocr", "Second Slide"}}}},
          {"transcript",
           {{{"start", 1.0}, {"end", 4.0}, {"text", "hello *not bold* | pipe"}},
            {{"start", 12.0}, {"end", 15.0}, {"text", "the second part begins"}}}},
          {"device", "cpu"}}},
        {"summarize",
         {{"summary", "# Overview\nThe **talk** covers scheduling.\n\n- point one\n- see https://x.test\n"},
          {"provider", "openai"},
          {"model", "gpt-4o-mini"},
          {"extractive", false},
          {"chunks", 1},
          {"usage", {{"requests", 2}, {"prompt_tokens", 150}, {"completion_tokens", 30}, {"cost_usd", 0.0000405}}}}}};
    history = {
        {"download", "head", 1, 1.5, {}}, {"analyze", "gpu-node-1", 2, 12.25, {0}}, {"summarize", "head", 1, 3.0, {}}};
    ctx.history = &history;
    fs::create_directories(dir / "work");
    ctx.job = "job-7";
    ctx.step = "document";
    ctx.node = "head";
    ctx.results = &results;
    ctx.workdir = dir / "work";
    ctx.outdir = dir / "out";
    ctx.artifact = [this](std::string_view step, std::string_view rel) -> Result<fs::path> {
      EXPECT_EQ(step, "analyze");
      return analyze_dir / std::string(rel);
    };
    ctx.log = [this](LogLevel, std::string_view line) { logs += std::string(line) + "\n"; };
  }

  StepOutcome RunWith(const Json& with = Json::object()) {
    return StepRegistry::Global().Create("document", with).value()->Run(ctx);
  }

  testing::TempDir dir;
  fs::path analyze_dir = dir / "analyze-job";
  std::string jpeg;
  Json results;
  std::vector<StepRun> history;
  StepContext ctx;
  std::string logs;
};

TEST_F(DocumentTest, WritesCompleteMarkdownAndHtml) {
  StepOutcome out = RunWith();
  ASSERT_TRUE(out.ok()) << out.error;
  const fs::path md_path = dir / "out" / "job-7" / "report.md";
  const fs::path html_path = dir / "out" / "job-7" / "report.html";
  EXPECT_EQ(out.result["markdown"], md_path.string());
  EXPECT_EQ(out.result["html"], html_path.string());
  const std::string md = ReadFile(md_path);
  const std::string html = ReadFile(html_path);
  // One copy: the output folder; the work folder holds no report; both are declared deliverables.
  EXPECT_FALSE(fs::exists(dir / "work" / "report.md"));
  EXPECT_FALSE(fs::exists(dir / "work" / "report.html"));
  EXPECT_EQ(out.main_output, md_path.string());
  ASSERT_GE(out.deliverables.size(), 2u);
  EXPECT_NE(std::find(out.deliverables.begin(), out.deliverables.end(), md_path.string()), out.deliverables.end());
  EXPECT_NE(std::find(out.deliverables.begin(), out.deliverables.end(), html_path.string()), out.deliverables.end());
  for (const auto& d : out.deliverables) EXPECT_TRUE(fs::is_regular_file(d)) << d;

  // Markdown: every section, user text escaped.
  for (const char* s : {"# \\<script\\>alert(1)\\</script\\> & Co\n",
                        "Source: https://example.org/v.mp4?a=1&b=2",
                        "## Media",
                        "| Resolution | 1280×720 |",
                        "| Video codec | h264 |",
                        "| Audio | aac, 44100 Hz, 2 channel(s) |",
                        "| Duration | 0:20 (20.0 s) |",
                        "| Size | 3.0 MiB |",
                        "## Summary",
                        "_Summary by openai / gpt-4o-mini._",
                        "### Overview\nThe **talk** covers scheduling.",
                        "## Chapters",
                        "### Chapter 1 (0:00–0:10)",
                        "### Chapter 2 (0:10–0:20)",
                        "![Keyframe of chapter 1](report-keyframes/chapter-001.jpg)",
                        "````text\nIntro Slide\nuse ```code``` here\n````",
                        "- **[0:01]** hello \\*not bold\\* \\| pipe",
                        "## Transcript",
                        "- **[0:12]** the second part begins",
                        "## Processing record",
                        "| analyze | gpu-node-1 | 2 | ok | 12.25 | 0 |",
                        "Tokens: 150 prompt + 30 completion tokens in 2 request(s) to gpt-4o-mini, $0.000041"}) {
    EXPECT_NE(md.find(s), std::string::npos) << "markdown lacks: " << s << "\n" << md;
  }
  EXPECT_EQ(ReadFile(dir / "out" / "job-7" / "report-keyframes" / "chapter-001.jpg"), jpeg);
  // The chapter's speech is the segments inside it: 0:12 is in chapter 2, after its heading.
  EXPECT_GT(md.find("- **[0:12]**"), md.find("### Chapter 2"));
  EXPECT_LT(md.find("- **[0:01]**"), md.find("### Chapter 2"));

  // HTML: every section, escaped, images embedded, nothing external.
  for (const char* s : {"<title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co</title>",
                        "<h1>&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co</h1>", "id=\"media\"",
                        "<th>Resolution</th><td>1280×720</td>", "id=\"summary\"", "Summary by openai / gpt-4o-mini.",
                        "<h3>Overview</h3>", "<strong>talk</strong>", "<li>point one</li>", "id=\"chapter-1\"",
                        "id=\"chapter-2\"", "<pre>Intro Slide\nuse ```code``` here</pre>", "hello *not bold* | pipe",
                        "the second part begins", "id=\"transcript\"", "id=\"record\"",
                        "<td>analyze</td><td>gpu-node-1</td><td>2</td><td>ok</td><td>12.25</td><td>0</td>",
                        "Tokens: 150 prompt + 30 completion tokens in 2 request(s) to gpt-4o-mini, $0.000041"}) {
    EXPECT_NE(html.find(s), std::string::npos) << "html lacks: " << s;
  }
  EXPECT_EQ(Count(html, "src=\"data:image/jpeg;base64,/9j/"), 2u);
  std::string lower = html;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  EXPECT_EQ(lower.find("<script"), std::string::npos);
  std::string rest = html;
  const std::string escaped_source = document::HtmlEscape(kSource);
  EXPECT_EQ(Count(rest, escaped_source), 1u);
  for (size_t p; (p = rest.find(escaped_source)) != std::string::npos;) rest.erase(p, escaped_source.size());
  // The summary's URL is a link to follow (cmark-gfm's autolink), not something the page loads.
  const std::string summary_link = "see <a href=\"https://x.test\">https://x.test</a>";
  ASSERT_NE(rest.find(summary_link), std::string::npos);
  rest.erase(rest.find(summary_link), summary_link.size());
  for (const char* s : {"http://", "https://", "src=\"//", "href=\"//", "url(", "@import", "<link", "<a href=\"h"}) {
    EXPECT_EQ(rest.find(s), std::string::npos) << "external reference: " << s;
  }

  // Atomic writes leave no temporary files behind.
  for (const auto& e : fs::recursive_directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  }
}

TEST_F(DocumentTest, MissingAnalysisIsAClearError) {
  results.erase("analyze");
  StepOutcome out = RunWith();
  ASSERT_FALSE(out.ok());
  EXPECT_FALSE(out.retryable);
  EXPECT_EQ(out.error, "document: no result from step 'analyze' (with.analysis_from); the report needs the analysis");
  EXPECT_FALSE(fs::exists(dir / "out" / "job-7" / "report.html"));
}

TEST_F(DocumentTest, MissingOptionalInputsBecomeNotes) {
  results.erase("summarize");
  history.clear();
  results["analyze"]["media"]["audio"] = nullptr;
  results["analyze"]["transcript"] = Json::array();
  results["analyze"]["scenes"][1]["keyframe"] = "keyframes/missing.jpg";
  StepOutcome out = RunWith({{"title", "Override Title"}});
  ASSERT_TRUE(out.ok()) << out.error;
  const std::string md = ReadFile(dir / "out" / "job-7" / "report.md");
  const std::string html = ReadFile(dir / "out" / "job-7" / "report.html");
  for (const std::string& doc : {md, html}) {
    EXPECT_NE(doc.find("Override Title"), std::string::npos);
    EXPECT_NE(doc.find("No transcript: the video has no audio track."), std::string::npos);
    EXPECT_NE(doc.find("No processing record was available."), std::string::npos);
    EXPECT_NE(doc.find("Keyframe unavailable (keyframes/missing.jpg)"), std::string::npos);
    EXPECT_NE(doc.find("none (no audio track)"), std::string::npos);
  }
  EXPECT_NE(md.find("_No summary: no result from step 'summarize' (with.summary\\_from)._"), std::string::npos) << md;
  EXPECT_NE(html.find("No summary: no result from step &#39;summarize&#39; (with.summary_from)."), std::string::npos);
  EXPECT_EQ(Count(html, "data:image/jpeg;base64,"), 1u);
  EXPECT_NE(logs.find("Keyframe unavailable"), std::string::npos);
}

TEST_F(DocumentTest, ExtractiveSummaryIsLabelled) {
  results["summarize"] = {{"summary", "> **Offline extractive summary — no LLM was used.**\n\n- a sentence\n"},
                          {"provider", "extractive"}, {"model", "extractive (word frequency)"}, {"extractive", true},
                          {"usage", Json::array()}};
  ASSERT_TRUE(RunWith().ok());
  const std::string html = ReadFile(dir / "out" / "job-7" / "report.html");
  EXPECT_NE(html.find("Made by the offline extractive summariser: no LLM was used"), std::string::npos);
  EXPECT_NE(
      html.find("<blockquote>\n<p><strong>Offline extractive summary — no LLM was used.</strong></p>\n</blockquote>"),
      std::string::npos);
  EXPECT_EQ(html.find("Tokens:"), std::string::npos);
}

TEST_F(DocumentTest, FormatsAndConfigErrors) {
  ASSERT_TRUE(RunWith({{"formats", {"html"}}}).ok());
  EXPECT_TRUE(fs::exists(dir / "out" / "job-7" / "report.html"));
  EXPECT_FALSE(fs::exists(dir / "out" / "job-7" / "report.md"));
  auto expect_error = [](const Json& with, const std::string& needle) {
    const Result<std::unique_ptr<Step>> step = StepRegistry::Global().Create("document", with);
    ASSERT_FALSE(step.ok()) << "no ConfigError for " << with.dump();
    EXPECT_NE(step.error().find(needle), std::string::npos) << step.error();
  };
  expect_error({{"formats", {"pdf"}}}, "with.formats: unknown format 'pdf'");
  expect_error({{"formats", Json::array()}}, "with.formats: must be a non-empty list");
  expect_error({{"analysis_from", 3}}, "with.analysis_from: must be a string");
  expect_error({{"titel", "x"}}, "with.titel: unknown parameter");
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

// What users' models contributed (docs/schema/analysis.md): a later transcript of the same
// language replaces analyze's in the transcript and the chapters; captions and tags are listed
// with their engines, a transcript in another language beside them; a contribution that breaks
// the shape fails the step, naming the field.
TEST_F(DocumentTest, ContributionsOfModelStepsReachTheReport) {
  results["transcribe"] = Json::parse(R"({"transcript": {"language": "en", "engine": "whisper-large",
      "segments": [{"start": 2.0, "end": 3.0, "text": "Whisper heard this."},
                   {"start": 11.0, "end": 13.0, "text": "And this, in chapter two."}]}})");
  results["tagger"] = {{"exit_code", 0}, {"stdout", "/x"}, {"stderr", "/y"},
                       {"output", Json::parse(R"({"tags": {"engine": "clip", "items": [{"text": "finance",
                           "confidence": 0.92}, "slides"]},
                           "captions": {"engine": "blip", "items": [{"scene": 2, "text": "a second slide"}]},
                           "notes": [{"engine": "diarizer", "text": "one speaker"}],
                           "transcript": {"language": "fr", "engine": "whisper-fr",
                                          "segments": [{"start": 1.0, "end": 2.0, "text": "Bonjour."}]}})")}};
  history.push_back({"transcribe", "gpu-node-1", 1, 2.0, {0}});
  history.push_back({"tagger", "head", 1, 0.5, {}});
  ASSERT_TRUE(RunWith().ok());
  const std::string md = ReadFile(dir / "out" / "job-7" / "report.md");
  EXPECT_EQ(md.find("hello \\*not bold\\*"), std::string::npos) << "analyze's transcript was replaced";
  EXPECT_NE(md.find("_Transcript by whisper-large (en, step transcribe)._"), std::string::npos) << md;
  const size_t ch2 = md.find("### Chapter 2");
  EXPECT_NE(md.find("- **[0:11]** And this, in chapter two."), std::string::npos);
  EXPECT_GT(md.find("- **[0:11]** And this, in chapter two."), ch2);
  for (const char* s : {"## From models", "### Tags by clip (step tagger)", "- finance (0.92)", "- slides",
                        "### Captions by blip (step tagger)", "- (Chapter 2) a second slide", "### Notes",
                        "- diarizer: one speaker", "### Transcript in fr by whisper-fr (step tagger)",
                        "- \\[0:01\\] Bonjour."})
    EXPECT_NE(md.find(s), std::string::npos) << "lacks " << s << "\n" << md;
  const std::string html = ReadFile(dir / "out" / "job-7" / "report.html");
  EXPECT_NE(html.find("<section id=\"models\">"), std::string::npos);

  results["tagger"]["output"]["tags"]["items"][0].erase("text");
  const StepOutcome bad = RunWith();
  ASSERT_FALSE(bad.ok());
  EXPECT_FALSE(bad.retryable);
  EXPECT_EQ(bad.error, "document: step 'tagger' breaks the analysis shape (docs/schema/analysis.md): "
                       "tags.items[0].text: missing");
}

}  // namespace
}  // namespace baton
