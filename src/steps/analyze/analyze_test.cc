// Tests of the analyze step and its stages on media made at test time (tests/support/media.h).
// Over 500 lines: one fixture makes the media once for every stage's tests (probe, scenes,
// keyframes, OCR, ASR, engines), and splitting it would make that media twice.
#include "steps/analyze/analyze.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <thread>

#include "support/media.h"
#include "support/util.h"

namespace baton::analyze {
namespace {

namespace fs = std::filesystem;
using baton::testing::ReadFile;
using baton::testing::TempDir;

constexpr const char kAnalysisSchema[] = "docs/schema/analysis.schema.json";

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool HasWord(const std::string& text, const std::string& word) {
  return Lower(text).find(Lower(word)) != std::string::npos;
}

std::string AllTranscript(const Json& result) {
  std::string all;
  for (const auto& seg : result["transcript"]["segments"]) all += seg["text"].get<std::string>() + " ";
  return all;
}

// A context for one attempt in `dir`, reading `file` as the download result.
struct Attempt {
  explicit Attempt(const fs::path& file, std::vector<int> gpus = {}) {
    results = Json{{"download", {{"path", file.string()}, {"file", file.filename().string()}}}};
    if (file.empty()) results = Json::object();
    ctx.job = "job-0";
    ctx.step = "analyze";
    ctx.node = "head";
    ctx.results = &results;
    ctx.workdir = dir.path();
    ctx.outdir = dir.path();
    ctx.gpus = std::move(gpus);
    ctx.cancel = &cancel;
    ctx.log = [this](LogLevel, std::string_view line) { log += std::string(line) + "\n"; };
  }
  StepOutcome Run(const Json& with = Json::object()) {
    StepOutcome out = RunAnalyze(ParseAnalyzeOptions(with), ctx);
    // Every result is the published analysis shape (docs/schema/analysis.schema.json).
    if (out.ok()) {
      EXPECT_EQ(baton::testing::SchemaErrors(out.result, "analyze_result", kAnalysisSchema), "");
    }
    return out;
  }

  TempDir dir;
  Json results;
  CancelToken cancel;
  StepContext ctx;
  std::string log;
};

// ---- with: ------------------------------------------------------------------------------------

std::string ConfigMessage(const Json& with) {
  try {
    ParseAnalyzeOptions(with);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(AnalyzeOptions, Defaults) {
  const AnalyzeOptions o = ParseAnalyzeOptions(Json());
  EXPECT_EQ(o.from, "download");
  EXPECT_DOUBLE_EQ(o.scene_threshold, 0.3);
  EXPECT_DOUBLE_EQ(o.min_scene, 2.0);
  EXPECT_EQ(o.asr.engine, "pocketsphinx");
  EXPECT_EQ(o.ocr.engine, "tesseract");
  const AnalyzeOptions s =
      ParseAnalyzeOptions(Json{{"asr", "none"}, {"ocr", {{"engine", "tesseract"}, {"lang", "eng"}}}});
  EXPECT_EQ(s.asr.engine, "none");
}

TEST(AnalyzeOptions, InvalidParametersNameTheKey) {
  EXPECT_NE(ConfigMessage({{"asr", {{"engine", "whisper"}}}}).find("with.asr.engine: unknown engine 'whisper'"),
            std::string::npos);
  EXPECT_NE(ConfigMessage({{"ocr", "easyocr"}}).find("with.ocr.engine"), std::string::npos);
  EXPECT_NE(ConfigMessage({{"scene_threshold", 1.5}}).find("with.scene_threshold: must be in (0, 1], got 1.5"),
            std::string::npos);
  EXPECT_NE(ConfigMessage({{"scene_threshold", 0}}).find("with.scene_threshold"), std::string::npos);
  EXPECT_NE(ConfigMessage({{"scene_threshold", "high"}}).find("with.scene_threshold: must be a number"),
            std::string::npos);
  EXPECT_NE(ConfigMessage({{"min_scene", -1}}).find("with.min_scene"), std::string::npos);
  EXPECT_NE(ConfigMessage({{"scene_treshold", 0.4}}).find("with.scene_treshold: unknown parameter"), std::string::npos);
  EXPECT_NE(ConfigMessage({{"asr", {{"engine", "command"}}}}).find("with.asr.argv: required"), std::string::npos);
  EXPECT_NE(ConfigMessage({{"asr", {{"engine", "command"}, {"argv", {"whisper-cli", "x.wav"}}}}})
                .find("must contain {audio}"),
            std::string::npos);
  EXPECT_NE(ConfigMessage({{"ocr", {{"engine", "command"}, {"argv", {"ocr", 3}}}}})
                .find("with.ocr.argv[1]: must be a string"),
            std::string::npos);
  EXPECT_NE(ConfigMessage({{"threads", 0}}).find("with.threads"), std::string::npos);
  EXPECT_NE(ConfigMessage(Json::array()).find("with: must be a mapping"), std::string::npos);
}

TEST(AnalyzeOptions, RegistryRefusesBadWith) {
  RegisterAnalyzeStep(StepRegistry::Global());
  ASSERT_TRUE(StepRegistry::Global().Has("analyze"));
  EXPECT_TRUE(StepRegistry::Global().Create("analyze", Json::object()).ok());
  const baton::Result<std::unique_ptr<Step>> refused =
      StepRegistry::Global().Create("analyze", Json{{"asr", {{"engine", "nope"}}}});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.error().find("with.asr.engine"), std::string::npos) << refused.error();
}

// ---- pure stages ------------------------------------------------------------------------------

TEST(SceneScorer, MatchesFfmpegFormula) {
  SceneScorer scorer;
  std::vector<uint8_t> a(64 * 36, 50), b(64 * 36, 80), c(64 * 36, 250);
  EXPECT_DOUBLE_EQ(scorer.Push(a.data(), 64, 36, 64), 0.0);  // first frame
  EXPECT_NEAR(scorer.Push(b.data(), 64, 36, 64), 0.30, 1e-9); // mafd 30, previous mafd 0
  EXPECT_NEAR(scorer.Push(b.data(), 64, 36, 64), 0.0, 1e-9);  // still picture
  EXPECT_NEAR(scorer.Push(c.data(), 64, 36, 64), 1.0, 1e-9);  // clipped at 1
}

std::vector<int16_t> Tone(double seconds, int amplitude) {
  std::vector<int16_t> v(size_t(seconds * kAsrSampleRate));
  for (size_t i = 0; i < v.size(); ++i) v[i] = int16_t(amplitude * std::sin(double(i) * 0.2));
  return v;
}

TEST(SplitAtSilences, FindsUtterancesBetweenSilences) {
  std::vector<int16_t> audio;
  for (auto part : {Tone(1, 0), Tone(1.0, 8000), Tone(1, 0), Tone(0.8, 8000), Tone(1, 0)}) {
    audio.insert(audio.end(), part.begin(), part.end());
  }
  const auto spans = SplitAtSilences(audio);
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_NEAR(spans[0].begin / 16000.0, 0.85, 0.02);
  EXPECT_NEAR(spans[0].end / 16000.0, 2.15, 0.02);
  EXPECT_NEAR(spans[1].begin / 16000.0, 2.85, 0.02);
  EXPECT_NEAR(spans[1].end / 16000.0, 3.95, 0.02);
  EXPECT_TRUE(SplitAtSilences(Tone(3, 0)).empty());
  EXPECT_TRUE(SplitAtSilences({}).empty());
}

TEST(SplitAtSilences, CutsLongSpeech) {
  const auto spans = SplitAtSilences(Tone(70, 8000), SplitOptions{0.3, 30, 0.15});
  ASSERT_EQ(spans.size(), 3u);
  for (const auto& s : spans) EXPECT_LE(double(s.end - s.begin) / kAsrSampleRate, 30.3);
}

TEST(EngineOutput, ParsesAsrShapes) {
  auto a = ParseAsrOutput(R"({"segments":[{"start":1.5,"end":3,"text":" hello world "}]})");
  ASSERT_TRUE(a.ok()) << a.status.message;
  ASSERT_EQ(a.value.size(), 1u);
  EXPECT_DOUBLE_EQ(a.value[0].start, 1.5);
  EXPECT_EQ(a.value[0].text, "hello world");
  auto w =
      ParseAsrOutput(R"({"transcription":[{"timestamps":{},"offsets":{"from":500,"to":2250},"text":" Hi there."}]})");
  ASSERT_TRUE(w.ok()) << w.status.message;
  ASSERT_EQ(w.value.size(), 1u);
  EXPECT_DOUBLE_EQ(w.value[0].start, 0.5);
  EXPECT_DOUBLE_EQ(w.value[0].end, 2.25);
  EXPECT_EQ(w.value[0].text, "Hi there.");
  EXPECT_NE(ParseAsrOutput("not json").status.message.find("not a JSON object"), std::string::npos);
  EXPECT_NE(ParseAsrOutput(R"({"segments":[{"start":"x"}]})").status.message.find("segments[0]"), std::string::npos);
  EXPECT_NE(ParseAsrOutput(R"({"text":"x"})").status.message.find("expected"), std::string::npos);
}

TEST(EngineOutput, ParsesOcrShapes) {
  EXPECT_EQ(ParseOcrOutput(R"({"text": "Slide one\n"})").value, "Slide one");
  EXPECT_EQ(ParseOcrOutput("  plain words\n").value, "plain words");
  EXPECT_FALSE(ParseOcrOutput(R"({"words": []})").ok());
}

TEST(EngineOutput, SubstitutesPlaceholders) {
  const auto argv =
      SubstituteArgv({"x", "--in={audio}", "{gpus}", "{image}"}, {{"{audio}", "/a.wav"}, {"{gpus}", "0,2"}});
  EXPECT_EQ(argv, (std::vector<std::string>{"x", "--in=/a.wav", "0,2", "{image}"}));
}

// ---- stages on real media -----------------------------------------------------------------------

TEST(Probe, Mp4Facts) {
  auto p = ProbeMedia(baton::testing::Mp4Clip());
  ASSERT_TRUE(p.ok()) << p.status.message;
  EXPECT_NEAR(p.value.duration, 12.0, 0.2);
  EXPECT_EQ(p.value.container, "mp4");
  ASSERT_TRUE(p.value.video.has_value());
  EXPECT_EQ(p.value.video->codec, "h264");
  EXPECT_EQ(p.value.video->width, 1280);
  EXPECT_EQ(p.value.video->height, 720);
  EXPECT_NEAR(p.value.video->fps, 25.0, 0.01);
  ASSERT_TRUE(p.value.audio.has_value());
  EXPECT_EQ(p.value.audio->codec, "aac");
  EXPECT_EQ(p.value.audio->sample_rate, 44100);
  EXPECT_EQ(p.value.audio->channels, 1);
}

TEST(Probe, WebmAndMkvFacts) {
  auto w = ProbeMedia(baton::testing::WebmClip());
  ASSERT_TRUE(w.ok()) << w.status.message;
  EXPECT_EQ(w.value.container, "webm");
  EXPECT_NEAR(w.value.duration, 12.0, 0.2);
  EXPECT_EQ(w.value.video->codec, "vp9");
  EXPECT_EQ(w.value.audio->codec, "opus");
  auto m = ProbeMedia(baton::testing::MkvClip());
  ASSERT_TRUE(m.ok()) << m.status.message;
  EXPECT_EQ(m.value.container, "matroska");
  EXPECT_EQ(m.value.video->codec, "h264");
  EXPECT_EQ(m.value.audio->codec, "aac");
}

TEST(Probe, NotMediaIsAClearError) {
  auto z = ProbeMedia(baton::testing::ZeroByteFile());
  EXPECT_EQ(z.status.code, Status::Code::kNotMedia);
  EXPECT_NE(z.status.message.find("empty (0 bytes)"), std::string::npos);
  auto t = ProbeMedia(baton::testing::TextFile());
  EXPECT_EQ(t.status.code, Status::Code::kNotMedia);
  EXPECT_NE(t.status.message.find("notes.mp4"), std::string::npos);
  auto m = ProbeMedia("/nonexistent/video.mp4");
  EXPECT_NE(m.status.message.find("not found"), std::string::npos);
}

TEST(ScanVideo, ScenesAndJpegKeyframes) {
  TempDir dir;
  ScanOptions o;
  o.keyframe_dir = dir / "keyframes";
  o.all_frames = true;
  std::vector<Keyframe> seen;
  o.on_keyframe = [&](Keyframe k) { seen.push_back(std::move(k)); };
  auto scan = ScanVideo(baton::testing::Mp4Clip(), o);
  ASSERT_TRUE(scan.ok()) << scan.status.message;
  ASSERT_EQ(scan.value.scenes.size(), 2u);
  EXPECT_DOUBLE_EQ(scan.value.scenes[0].start, 0.0);
  EXPECT_NEAR(scan.value.scenes[1].start, 6.0, 0.5);
  EXPECT_NEAR(scan.value.scenes[1].end, 12.0, 0.2);
  EXPECT_EQ(scan.value.frames, 300);
  EXPECT_EQ(scan.value.device, "cpu");
  EXPECT_EQ(scan.value.scenes[1].keyframe, "keyframes/scene-002.jpg");
  for (int i = 1; i <= 2; ++i) {
    const fs::path jpg = dir / ("keyframes/scene-00" + std::to_string(i) + ".jpg");
    const std::string bytes = ReadFile(jpg);
    ASSERT_GT(bytes.size(), 1000u) << jpg;
    EXPECT_EQ(bytes.substr(0, 3), "\xFF\xD8\xFF");  // JPEG SOI marker
    auto p = ProbeMedia(jpg);
    ASSERT_TRUE(p.ok()) << p.status.message;
    EXPECT_EQ(p.value.video->codec, "mjpeg");
    EXPECT_EQ(p.value.video->width, 1280);
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].scene_index, 2);
  EXPECT_EQ(seen[1].gray.width, 1280);

  // The keyframe's text is readable by Tesseract.
  auto ocr = TesseractOcr::Create();
  ASSERT_TRUE(ocr.ok()) << ocr.status.message;
  auto text = ocr.value->Read(seen[1].gray);
  ASSERT_TRUE(text.ok());
  EXPECT_TRUE(HasWord(text.value, "revenue")) << text.value;
  EXPECT_TRUE(HasWord(text.value, "twelve")) << text.value;
}

TEST(ScanVideo, MinSceneMergesCloseCuts) {
  ScanOptions o;
  o.min_scene = 7.0;  // the cut at 6 s is too close to the start
  auto scan = ScanVideo(baton::testing::Mp4Clip(), o);
  ASSERT_TRUE(scan.ok()) << scan.status.message;
  EXPECT_EQ(scan.value.scenes.size(), 1u);
}

TEST(ScanVideo, UnusableGpuFallsBackToCpu) {
  ScanOptions o;
  o.gpus = {0};
  auto scan = ScanVideo(baton::testing::Mp4Clip(), o);
  ASSERT_TRUE(scan.ok()) << scan.status.message;
  // By default only reference frames are decoded; the cut is still found near 6 s.
  ASSERT_EQ(scan.value.scenes.size(), 2u);
  EXPECT_NEAR(scan.value.scenes[1].start, 6.0, 0.5);
  EXPECT_LE(scan.value.frames, 300);
  if (scan.value.device == "cpu") {
    EXPECT_NE(scan.value.device_note.find("CPU"), std::string::npos) << scan.value.device_note;
  } else {
    EXPECT_EQ(scan.value.device, "cuda:0");  // a machine with a working GPU
  }
}

TEST(ScanVideo, CancelStopsDecoding) {
  CancelToken cancel;
  ScanOptions o;
  o.all_frames = true;
  o.cancel = &cancel;
  int progress_calls = 0;
  o.on_progress = [&](double) {  // first called after 250 of the 300 frames
    ++progress_calls;
    cancel.cancel();
  };
  auto scan = ScanVideo(baton::testing::Mp4Clip(), o);
  EXPECT_EQ(scan.status.code, Status::Code::kCancelled);
  EXPECT_EQ(progress_calls, 1);
}

TEST(Audio, DecodesTo16kMono) {
  auto pcm = DecodeAudio16k(baton::testing::Mp4Clip());
  ASSERT_TRUE(pcm.ok()) << pcm.status.message;
  EXPECT_NEAR(double(pcm.value.samples.size()) / kAsrSampleRate, 12.0, 0.2);
  const auto spans = SplitAtSilences(pcm.value.samples);
  ASSERT_EQ(spans.size(), 2u);  // one sentence per slide
  EXPECT_NEAR(spans[0].begin / 16000.0, 0.5, 0.3);
  EXPECT_NEAR(spans[1].begin / 16000.0, 6.5, 0.3);
  EXPECT_EQ(DecodeAudio16k(baton::testing::NoAudioClip()).status.code, Status::Code::kNotMedia);
}

// ---- the whole step -----------------------------------------------------------------------------

TEST(AnalyzeStep, Mp4GivesScenesOcrAndTranscript) {
  Attempt a(baton::testing::Mp4Clip());
  auto out = a.Run();
  ASSERT_TRUE(out.ok()) << out.error;
  const Json& r = out.result;
  EXPECT_EQ(r["analysis"], "analysis.json");
  EXPECT_EQ(r["device"], "cpu");
  EXPECT_NEAR(r["media"]["duration"].get<double>(), 12.0, 0.2);
  EXPECT_EQ(r["media"]["video"]["codec"], "h264");
  EXPECT_EQ(r["media"]["audio"]["codec"], "aac");
  ASSERT_EQ(r["scenes"].size(), 2u);
  EXPECT_NEAR(r["scenes"][1]["start"].get<double>(), 6.0, 0.5);
  EXPECT_TRUE(fs::exists(a.dir / r["scenes"][0]["keyframe"].get<std::string>()));
  const std::string ocr1 = r["scenes"][0]["ocr"], ocr2 = r["scenes"][1]["ocr"];
  EXPECT_TRUE(HasWord(ocr1, "quarterly") && HasWord(ocr1, "results")) << ocr1;
  EXPECT_TRUE(HasWord(ocr2, "revenue") && HasWord(ocr2, "percent")) << ocr2;
  const std::string said = AllTranscript(r);
  EXPECT_TRUE(HasWord(said, "quarterly")) << said;
  EXPECT_TRUE(HasWord(said, "revenue")) << said;
  EXPECT_TRUE(HasWord(said, "twelve")) << said;
  ASSERT_GE(r["transcript"]["segments"].size(), 2u);
  // The second sentence is spoken from 6.5 s.
  bool found = false;
  for (const auto& seg : r["transcript"]["segments"]) {
    if (HasWord(seg["text"], "revenue")) {
      found = true;
      EXPECT_NEAR(seg["start"].get<double>(), 6.6, 0.5);
    }
  }
  EXPECT_TRUE(found);
  for (const char* k : {"decode", "scenes", "ocr", "asr"}) EXPECT_TRUE(r["timings"].contains(k)) << k;
  EXPECT_EQ(r["engines"]["asr"]["engine"], "pocketsphinx");
  EXPECT_EQ(r["engines"]["ocr"]["engine"], "tesseract");

  const Json analysis = Json::parse(ReadFile(a.dir / "analysis.json"));
  EXPECT_EQ(analysis["scenes"].size(), 2u);
  EXPECT_EQ(analysis["transcript"].size(), r["transcript"]["segments"].size());
  EXPECT_FALSE(analysis["transcript"][0]["words"].empty());
  EXPECT_EQ(analysis["media"]["video"]["width"], 1280);
  EXPECT_FALSE(fs::exists(a.dir / ".analysis.json.tmp"));
  for (const char* stage :
       {"analyze: probe", "analyze: audio", "analyze: video", "analyze: asr", "analyze: ocr", "analyze: done"}) {
    EXPECT_NE(a.log.find(stage), std::string::npos) << stage << " missing in log:\n" << a.log;
  }
}

TEST(AnalyzeStep, WebmWorks) {
  Attempt a(baton::testing::WebmClip());
  auto out = a.Run();
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(out.result["media"]["container"], "webm");
  ASSERT_EQ(out.result["scenes"].size(), 2u);
  EXPECT_NEAR(out.result["scenes"][1]["start"].get<double>(), 6.0, 0.5);
  EXPECT_TRUE(HasWord(out.result["scenes"][1]["ocr"], "revenue"));
  EXPECT_TRUE(HasWord(AllTranscript(out.result), "revenue")) << AllTranscript(out.result);
}

TEST(AnalyzeStep, MkvWorksWithEnginesOff) {
  Attempt a(baton::testing::MkvClip());
  auto out = a.Run({{"asr", "none"}, {"ocr", "none"}});
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(out.result["media"]["container"], "matroska");
  EXPECT_EQ(out.result["scenes"].size(), 2u);
  EXPECT_EQ(out.result["scenes"][0]["ocr"], "");
  // asr: none leaves the transcript to a later step, and hands it the audio and the keyframes.
  EXPECT_FALSE(out.result.contains("transcript"));
  ASSERT_TRUE(out.result["audio"].is_string());
  EXPECT_EQ(out.result["audio"], (fs::absolute(a.dir.path()) / "audio-16k.wav").string());
  EXPECT_EQ(ReadFile(out.result["audio"].get<std::string>()).substr(0, 4), "RIFF");
  ASSERT_EQ(out.result["keyframes"].size(), 2u);
  for (const auto& k : out.result["keyframes"]) EXPECT_TRUE(fs::is_regular_file(k.get<std::string>())) << k;
  EXPECT_EQ(out.result["engines"]["asr"]["engine"], "none");
}

TEST(AnalyzeStep, NoAudioGivesEmptyTranscriptWithNote) {
  Attempt a(baton::testing::NoAudioClip());
  auto out = a.Run({{"ocr", "none"}});
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_TRUE(out.result["media"]["audio"].is_null());
  EXPECT_TRUE(out.result["transcript"]["segments"].empty());
  EXPECT_FALSE(out.result.contains("audio"));
  EXPECT_EQ(out.result["notes"][0], "no audio stream");
  EXPECT_EQ(out.result["scenes"].size(), 2u);
}

TEST(AnalyzeStep, AudioOnlyGivesTranscriptOnly) {
  Attempt a(baton::testing::AudioOnlyWav());
  auto out = a.Run();
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_TRUE(out.result["media"]["video"].is_null());
  EXPECT_EQ(out.result["media"]["container"], "wav");
  EXPECT_TRUE(out.result["scenes"].empty());
  EXPECT_FALSE(fs::exists(a.dir / "keyframes"));
  EXPECT_TRUE(HasWord(AllTranscript(out.result), "revenue")) << AllTranscript(out.result);
}

TEST(AnalyzeStep, TruncatedFilesGiveClearOutcomes) {
  {  // moov at the end: the index is gone, nothing can be read
    Attempt a(baton::testing::TruncatedMp4());
    auto out = a.Run();
    ASSERT_FALSE(out.ok());
    EXPECT_FALSE(out.retryable);
    EXPECT_NE(out.error.find("analyze: cannot read"), std::string::npos) << out.error;
    EXPECT_NE(out.error.find("clip-truncated.mp4"), std::string::npos) << out.error;
    EXPECT_EQ(out.error.find('\n'), std::string::npos);
  }
  {  // moov at the front: the first half decodes, and the result says where it stopped
    Attempt a(baton::testing::TruncatedFaststartMp4());
    auto out = a.Run({{"ocr", "none"}});
    ASSERT_TRUE(out.ok()) << out.error;
    ASSERT_FALSE(out.result["scenes"].empty());
    EXPECT_LT(out.result["scenes"].back()["end"].get<double>(), 10.0);
    EXPECT_NE(out.result["notes"].dump().find("truncated or damaged"), std::string::npos) << out.result["notes"];
  }
}

TEST(AnalyzeStep, NotMediaFailsWithoutRetry) {
  for (const fs::path& p :
       {baton::testing::ZeroByteFile(), baton::testing::TextFile(), fs::path("/nonexistent/v.mp4")}) {
    Attempt a(p);
    auto out = a.Run();
    ASSERT_EQ(out.kind, StepOutcome::Kind::kFailed) << p;
    EXPECT_FALSE(out.retryable) << p;
    EXPECT_NE(out.error.find(p.filename().string()), std::string::npos) << out.error;
  }
  Attempt a(baton::testing::ZeroByteFile());
  EXPECT_NE(a.Run().error.find("empty (0 bytes)"), std::string::npos);
}

TEST(AnalyzeStep, InputFromPathOrJobInput) {
  Attempt a(fs::path{});  // no download result
  a.ctx.input = baton::testing::NoAudioClip().string();
  auto out = a.Run({{"asr", "none"}, {"ocr", "none"}});
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(out.result["scenes"].size(), 2u);

  Attempt b(fs::path{});
  b.ctx.input = "https://example.com/v.mp4";
  auto missing = b.Run();
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.error.find("no input file"), std::string::npos) << missing.error;

  Attempt c(fs::path{});
  auto by_path = c.Run({{"path", baton::testing::NoAudioClip().string()}, {"asr", "none"}, {"ocr", "none"}});
  EXPECT_TRUE(by_path.ok()) << by_path.error;
}

TEST(AnalyzeStep, CancelledBeforeStart) {
  Attempt a(baton::testing::Mp4Clip());
  a.cancel.cancel();
  EXPECT_EQ(a.Run().kind, StepOutcome::Kind::kCancelled);
}

// ---- command engines ----------------------------------------------------------------------------

// Writes an executable /bin/sh script into `dir`.
fs::path Script(const TempDir& dir, const std::string& name, const std::string& body) {
  const fs::path p = dir / name;
  std::ofstream(p) << "#!/bin/sh\n" << body;
  fs::permissions(p, fs::perms::owner_all);
  return p;
}

TEST(CommandEngine, AsrCommandGetsAudioAndGpus) {
  TempDir tools;
  const fs::path rec = tools / "record";
  const auto script =
      Script(tools, "fake-asr",
             "printf '%s\\n' \"$@\" > " + rec.string() +
                 ".argv\n"
                 "printf '%s' \"$CUDA_VISIBLE_DEVICES\" > " +
                 rec.string() +
                 ".env\n"
                 "head -c 4 \"$2\" > " +
                 rec.string() +
                 ".head\n"
                 "echo '{\"segments\":[{\"start\":0.5,\"end\":2.0,\"text\":\"hello from the command\"}]}'\n");
  Attempt a(baton::testing::Mp4Clip(), {1, 3});
  auto out =
      a.Run({{"asr", {{"engine", "command"}, {"argv", {script.string(), "--audio", "{audio}", "--gpus={gpus}"}}}},
             {"ocr", "none"}});
  ASSERT_TRUE(out.ok()) << out.error;
  ASSERT_EQ(out.result["transcript"]["segments"].size(), 1u);
  EXPECT_EQ(out.result["transcript"]["segments"][0]["text"], "hello from the command");
  EXPECT_NEAR(out.result["transcript"]["segments"][0]["start"].get<double>(), 0.5, 0.05);
  EXPECT_EQ(out.result["engines"]["asr"]["engine"], "command");

  const std::string argv = ReadFile(rec.string() + ".argv");
  EXPECT_EQ(argv.find("{audio}"), std::string::npos) << argv;
  EXPECT_NE(argv.find((a.dir.path() / "audio-16k.wav").string()), std::string::npos) << argv;
  EXPECT_NE(argv.find("--gpus=1,3"), std::string::npos) << argv;
  EXPECT_EQ(ReadFile(rec.string() + ".env"), "1,3");
  EXPECT_EQ(ReadFile(rec.string() + ".head"), "RIFF");  // it was a WAV when the command ran
  EXPECT_TRUE(fs::exists(a.dir / "audio-16k.wav"));  // and is kept for later steps (with.audio)
  // No GPU here: the granted GPU is reported as not used.
  if (out.result["device"] == "cpu") {
    EXPECT_TRUE(out.result.contains("device_note"));
  }
}

TEST(CommandEngine, WhisperShapeAndOcrCommand) {
  TempDir tools;
  const auto asr =
      Script(tools, "whisper",
             "echo '{\"transcription\":[{\"offsets\":{\"from\":1000,\"to\":2500},\"text\":\" Whisper says hi\"}]}'\n");
  const auto ocr = Script(tools, "ocr", "test -s \"$1\" && echo \"SLIDE $(basename \"$1\")\"\n");
  Attempt a(baton::testing::Mp4Clip());
  auto out = a.Run({{"asr", {{"engine", "command"}, {"argv", {asr.string(), "{audio}"}}}},
                    {"ocr", {{"engine", "command"}, {"argv", {ocr.string(), "{image}"}}}}});
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(out.result["transcript"]["segments"][0]["text"], "Whisper says hi");
  EXPECT_NEAR(out.result["transcript"]["segments"][0]["end"].get<double>(), 2.5, 0.05);
  ASSERT_EQ(out.result["scenes"].size(), 2u);
  EXPECT_EQ(out.result["scenes"][1]["ocr"], "SLIDE scene-002.jpg");
}

TEST(CommandEngine, FailuresAreClear) {
  TempDir tools;
  const auto fails = Script(tools, "fails", "echo 'model file missing' >&2\nexit 3\n");
  const auto garbage = Script(tools, "garbage", "echo 'this is not json'\n");
  auto run = [&](const std::vector<std::string>& argv) {
    Attempt a(baton::testing::AudioOnlyWav());
    return a.Run({{"asr", {{"engine", "command"}, {"argv", argv}}}});
  };
  auto missing = run({"/nonexistent/whisper-cli", "{audio}"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error.find("asr command '/nonexistent/whisper-cli'"), std::string::npos) << missing.error;
  EXPECT_NE(missing.error.find("not found"), std::string::npos) << missing.error;
  EXPECT_FALSE(missing.retryable);

  auto exit3 = run({fails.string(), "{audio}"});
  ASSERT_FALSE(exit3.ok());
  EXPECT_NE(exit3.error.find("exited with status 3: model file missing"), std::string::npos) << exit3.error;

  auto bad = run({garbage.string(), "{audio}"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error.find("not a JSON object"), std::string::npos) << bad.error;
}

// An abandoned attempt and its retry run at once on one job folder: the first's speech command
// stalls until the second has finished. Neither may remove the other's audio or keyframes.
TEST(CommandEngine, TwoAttemptsAtOnceKeepTheirOwnFiles) {
  TempDir tools;
  const std::string first = (tools / "first").string(), release = (tools / "release").string();
  const auto asr = Script(tools, "stall-asr",
                          "if mkdir " + first + " 2>/dev/null; then\n"
                          "  while [ ! -e " + release + " ]; do sleep 0.02; done\n"
                          "fi\n"
                          "test -s \"$1\" || { echo \"no audio at $1\" >&2; exit 4; }\n"
                          "echo '{\"segments\":[{\"start\":0,\"end\":1,\"text\":\"heard\"}]}'\n");
  const auto ocr = Script(tools, "ocr", "test -s \"$1\" && echo \"SLIDE $(basename \"$1\")\"\n");
  const Json with = {{"audio", false},
                     {"asr", {{"engine", "command"}, {"argv", {asr.string(), "{audio}"}}}},
                     {"ocr", {{"engine", "command"}, {"argv", {ocr.string(), "{image}"}}}}};
  Attempt abandoned(baton::testing::Mp4Clip());
  Attempt retry(baton::testing::Mp4Clip());
  retry.ctx.workdir = retry.ctx.outdir = abandoned.dir.path();
  retry.ctx.attempt = 2;
  StepOutcome late;
  std::thread t([&] { late = abandoned.Run(with); });
  while (!fs::exists(first)) std::this_thread::sleep_for(std::chrono::milliseconds(5));

  StepOutcome out = retry.Run(with);
  ASSERT_TRUE(out.ok()) << out.error;
  std::ofstream(release) << "go";
  t.join();
  ASSERT_TRUE(late.ok()) << late.error;
  EXPECT_EQ(late.result["transcript"]["segments"][0]["text"], "heard");
  ASSERT_EQ(late.result["scenes"].size(), 2u);
  EXPECT_EQ(late.result["scenes"][1]["ocr"], "SLIDE scene-002.jpg");
  for (const auto& kf : out.result["keyframes"]) EXPECT_GT(fs::file_size(kf.get<std::string>()), 0u) << kf;
  // Nothing private is left behind: only the published names.
  for (const auto& e : fs::directory_iterator(abandoned.dir.path())) {
    EXPECT_NE(e.path().filename().string()[0], '.') << e.path();
  }
  for (const auto& e : fs::directory_iterator(abandoned.dir / "keyframes")) {
    EXPECT_NE(e.path().filename().string()[0], '.') << e.path();
  }
}

TEST(CommandEngine, CancelKillsTheCommand) {
  TempDir tools;
  const auto slow = Script(tools, "slow", "sleep 30\necho '{\"segments\":[]}'\n");
  Attempt a(baton::testing::AudioOnlyWav());
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    a.cancel.cancel();
  });
  auto out = a.Run({{"asr", {{"engine", "command"}, {"argv", {slow.string(), "{audio}"}}}}});
  canceller.join();
  EXPECT_EQ(out.kind, StepOutcome::Kind::kCancelled);
}

}  // namespace
}  // namespace baton::analyze
