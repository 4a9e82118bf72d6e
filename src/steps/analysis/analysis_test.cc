// The analysis shape's reader: checks naming the field, merge rules, pipeline order.
#include "steps/analysis/analysis.h"

#include <gtest/gtest.h>

namespace baton::analysis {
namespace {

Json AnalyzeResult() {
  return Json::parse(R"({
    "media": {"duration": 12.0, "container": "mp4",
              "video": {"codec": "h264", "width": 1280, "height": 720, "fps": 25.0},
              "audio": {"codec": "aac", "sample_rate": 44100, "channels": 1}},
    "scenes": [{"index": 1, "start": 0.0, "end": 6.0, "keyframe": "keyframes/scene-001.jpg", "ocr": "Quarterly"},
               {"index": 2, "start": 6.0, "end": 12.0, "keyframe": "keyframes/scene-002.jpg", "ocr": "Revenue"}],
    "transcript": {"language": "en", "engine": "pocketsphinx",
                   "segments": [{"start": 0.6, "end": 2.9, "text": "welcome to the meeting"}]},
    "device": "cpu", "notes": ["no audio stream"]})");
}

TEST(AnalysisShape, CheckNamesTheField) {
  EXPECT_EQ(CheckContribution(AnalyzeResult()), "");
  EXPECT_EQ(CheckContribution(
                Json::parse(R"({"transcript": {"language": "en", "segments": [{"end": 1, "text": "x"}]}})")),
            "transcript.segments[0].start: missing");
  EXPECT_EQ(CheckContribution(Json::parse(R"({"transcript": {"language": "en", "segments": {"a": 1}}})")),
            "transcript.segments: must be a list of {start, end, text}");
  EXPECT_EQ(CheckContribution(Json::parse(R"({"transcript": {"segments": []}})")), "transcript.language: missing");
  EXPECT_EQ(CheckContribution(Json::parse(R"({"transcript": {"language": "en"}})")), "transcript.segments: missing");
  EXPECT_EQ(CheckContribution(Json::parse(R"({"transcript": {"language": "en", "segments": [
              {"start": 2, "end": 1, "text": "x"}]}})")), "transcript.segments[0].end: must not be before start");
  EXPECT_EQ(CheckContribution(Json::parse(R"({"tags": {"engine": "clip", "items": [{"confidence": 0.5}]}})")),
            "tags.items[0].text: missing");
  EXPECT_EQ(CheckContribution(Json::parse(R"({"captions": [{"items": []}]})")), "captions[0].engine: missing");
  EXPECT_EQ(CheckContribution(Json::parse(R"({"scenes": [{"start": "0", "end": 1}]})")),
            "scenes[0].start: must be a number, got \"0\"");
  EXPECT_EQ(CheckContribution(Json::parse(R"({"notes": [3]})")),
            "notes[0]: must be a string or an object {text, engine}");
  EXPECT_EQ(CheckContribution(Json::parse(R"({"answer": 42})")), "");  // keys outside the shape
  EXPECT_FALSE(IsContribution(Json::parse(R"({"answer": 42, "notes": ["x"]})")));
  EXPECT_TRUE(IsContribution(Json::parse(R"({"tags": {"engine": "e", "items": ["a"]}})")));
}

TEST(AnalysisShape, CommandStepsContributeTheirOutput) {
  const Json command = {{"exit_code", 0}, {"stdout", "/x"}, {"stderr", "/y"}, {"output", {{"tags", 1}}}};
  EXPECT_EQ(ContributionOf(command), command["output"]);
  EXPECT_TRUE(ContributionOf(Json{{"exit_code", 0}, {"stdout", "/x"}, {"stderr", "/y"}}).is_null());
  EXPECT_EQ(ContributionOf(AnalyzeResult()), AnalyzeResult());
}

TEST(AnalysisShape, MergesInPipelineOrder) {
  Json results = {{"download", {{"path", "/v.mp4"}, {"title", "v"}}},
                  {"analyze", AnalyzeResult()},
                  {"transcribe", Json::parse(R"({"transcript": {"language": "en", "engine": "whisper",
                      "segments": [{"start": 7.0, "end": 9.0, "text": "later"},
                                   {"start": 0.5, "end": 3.0, "text": "welcome everyone", "confidence": 0.9}]},
                      "captions": {"engine": "blip", "items": [{"text": "a slide", "scene": 1}]}})")},
                  {"zh", {{"exit_code", 0}, {"stdout", "o"}, {"stderr", "e"},
                          {"output", Json::parse(R"({"transcript": {"language": "zh-CN", "segments": [
                              {"start": 0.5, "end": 3.0, "text": "大家好"}]},
                              "tags": [{"engine": "clip", "items": ["finance", {"text": "chart", "confidence": 0.7}]}],
                              "notes": [{"text": "two speakers", "engine": "diar"}]})")}}}};
  std::vector<StepRun> history = {{"download", "n", 1, 1, {}}, {"analyze", "n", 1, 1, {}},
                                  {"transcribe", "n", 1, 1, {}}, {"zh", "n", 1, 1, {}}};
  StepContext ctx;
  ctx.results = &results;
  ctx.history = &history;
  ReadResult r = ReadAnalysis(ctx, "analyze");
  ASSERT_TRUE(r.ok()) << r.error;
  const Analysis& a = r.analysis;
  EXPECT_EQ(a.steps, (std::vector<std::string>{"analyze", "transcribe", "zh"}));
  EXPECT_DOUBLE_EQ(a.media.duration, 12.0);
  ASSERT_TRUE(a.media.video.has_value());
  EXPECT_EQ(a.scenes.size(), 2u);
  EXPECT_EQ(a.scenes[0].step, "analyze");
  ASSERT_EQ(a.transcripts.size(), 2u);  // the later English transcript replaced analyze's
  const Transcript* en = a.Primary("en");
  ASSERT_NE(en, nullptr);
  EXPECT_EQ(en->engine, "whisper");
  ASSERT_EQ(en->segments.size(), 2u);
  EXPECT_EQ(en->segments[0].text, "welcome everyone");  // sorted by time
  EXPECT_DOUBLE_EQ(en->segments[0].confidence, 0.9);
  EXPECT_EQ(a.Primary("zh-CN")->segments[0].text, "大家好");
  EXPECT_EQ(a.Primary("fr")->language, "zh-CN");  // none in French: the last with segments
  ASSERT_EQ(a.captions.size(), 1u);
  EXPECT_EQ(a.captions[0].items[0].scene, 1);
  ASSERT_EQ(a.tags.size(), 1u);
  EXPECT_EQ(a.tags[0].items.size(), 2u);
  EXPECT_EQ(a.tags[0].step, "zh");
  ASSERT_EQ(a.notes.size(), 2u);
  EXPECT_EQ(a.notes[1].engine, "diar");
  EXPECT_EQ(a.device, "cpu");
}

// Language tags compare as BCP 47 says, without regard to case (and "_" is read as "-"): a
// later "ZH_cn" transcript replaces an earlier "zh-CN" one, a "zh-TW" one is another language.
TEST(AnalysisShape, ALaterTranscriptReplacesOneWithTheSameTagInAnyCase) {
  Analysis a;
  const auto transcript = [](const char* tag, const char* text) {
    return Json{{"transcript", {{"language", tag}, {"segments", {{{"start", 0}, {"end", 1}, {"text", text}}}}}}};
  };
  ASSERT_EQ(Merge(transcript("zh-CN", "一"), "a", &a), "");
  ASSERT_EQ(Merge(transcript("ZH_cn", "二"), "b", &a), "");
  ASSERT_EQ(Merge(transcript("zh-TW", "三"), "c", &a), "");
  ASSERT_EQ(a.transcripts.size(), 2u);
  EXPECT_EQ(a.transcripts[0].segments[0].text, "二");
  EXPECT_EQ(a.transcripts[1].language, "zh-TW");
}

TEST(AnalysisShape, LegacyListAndBrokenContribution) {
  Json results = {{"analyze", {{"transcript", Json::parse(R"([{"start": 1, "end": 2, "text": "old form"}])")}}},
                  {"transcribe", Json::parse(R"({"transcript": {"language": "en", "segments": [{"text": "x"}]}})")}};
  StepContext ctx;
  ctx.results = &results;
  ReadResult r = ReadAnalysis(ctx, "analyze");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error, "step 'transcribe' breaks the analysis shape (docs/schema/analysis.md): "
                     "transcript.segments[0].start: missing");
  results.erase("transcribe");
  r = ReadAnalysis(ctx, "analyze");
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_NE(r.analysis.Primary("en"), nullptr);
  EXPECT_EQ(r.analysis.Primary("en")->segments[0].text, "old form");
}

}  // namespace
}  // namespace baton::analysis
