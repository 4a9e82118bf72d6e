// The analyze step: resolves the input file, runs the stages (README.md draws the flow), and
// writes analysis.json and keyframes/ into the job folder.
//
// Concurrency: the Run thread decodes the video while a WorkPool (one worker per core) runs
// speech recognition per utterance and OCR per keyframe, each worker with its own engines. Audio
// is decoded first (a few hundred times faster than real time) so ASR work is queued before video
// decoding starts; the pool and the decoder then share the cores until both are done.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <tesseract/baseapi.h>

#include "util/atomic_file.h"
#include "steps/analyze/analyze.h"
#include "steps/analyze/engine_cache.h"
#include "steps/analyze/stopwatch.h"
#include "steps/analyze/work_pool.h"

namespace baton::analyze {
namespace {

double R3(double v) { return std::round(v * 1000.0) / 1000.0; }

bool LooksLikeUrl(const std::string& s) { return s.find("://") != std::string::npos; }

// The file to analyze: with.path, else the `from` step's result "path", else a local job input.
Result<std::filesystem::path> ResolveInput(const AnalyzeOptions& o, const StepContext& ctx) {
  if (!o.path.empty()) return std::filesystem::absolute(o.path);
  const Json& from = ctx.result_of(o.from);
  if (!from.is_null()) {
    if (!from.is_object() || !from.value("path", Json()).is_string()) {
      return Status::Failed("the result of step '" + o.from + "' has no \"path\" string", false);
    }
    std::filesystem::path p = from["path"].get<std::string>();
    std::error_code ec;
    // In a cluster the file may live on another node: ask for it as an artifact.
    if (!std::filesystem::exists(p, ec) && ctx.artifact && from.value("file", Json()).is_string()) {
      baton::Result<std::filesystem::path> fetched = ctx.artifact(o.from, from["file"].get<std::string>());
      if (!fetched.ok()) return Status::Failed("cannot fetch the file of step '" + o.from + "': " + fetched.error());
      p = std::move(*fetched);
    }
    return p;
  }
  std::string input = ctx.input;
  if (input.rfind("file://", 0) == 0) input.erase(0, 7);
  if (!input.empty() && !LooksLikeUrl(input)) return std::filesystem::absolute(input);
  return Status::Failed("no input file: step '" + o.from +
                            "' has no result, `with.path` is not set and the job input '" + ctx.input +
                            "' is not a local file",
                        false);
}

// Idle engines shared by all attempts in this process (engine_cache.h says why).
size_t MaxIdleEngines() { return 2 * std::max(1u, std::thread::hardware_concurrency()); }
EngineCache<PocketSphinxAsr>& AsrCache() {
  static EngineCache<PocketSphinxAsr> cache(MaxIdleEngines());
  return cache;
}
EngineCache<TesseractOcr>& OcrCache() {
  static EngineCache<TesseractOcr> cache(MaxIdleEngines());
  return cache;
}
std::string AsrKey(const EngineOptions& e) { return e.model + (e.fast ? "|fast" : ""); }
std::string OcrKey(const EngineOptions& e) {
  return e.lang + "|" + std::to_string(e.dpi) + "|" + e.layout + (e.prepare ? "|prepare" : "");
}

// Per-worker engines, taken from the caches on first use by that worker and given back at the
// end of the attempt.
struct WorkerEngines {
  const AnalyzeOptions* options = nullptr;
  std::unique_ptr<PocketSphinxAsr> asr;
  std::unique_ptr<TesseractOcr> ocr;

  Status EnsureAsr() {
    if (asr) return Status::Ok();
    asr = AsrCache().Take(AsrKey(options->asr));
    if (asr) return Status::Ok();
    auto made = PocketSphinxAsr::Create(options->asr.model, options->asr.fast);
    if (!made.ok()) return made.status;
    asr = std::move(made.value);
    return Status::Ok();
  }
  Status EnsureOcr() {
    if (ocr) return Status::Ok();
    ocr = OcrCache().Take(OcrKey(options->ocr));
    if (ocr) return Status::Ok();
    auto made = TesseractOcr::Create(
        OcrSettings{options->ocr.lang, options->ocr.dpi, options->ocr.layout, options->ocr.prepare});
    if (!made.ok()) return made.status;
    ocr = std::move(made.value);
    // Tesseract's own static cache of language data (made by the first Init) complains at exit
    // about engines still alive: free ours first. atexit handlers registered after a static was
    // made run before that static is destroyed.
    static const bool registered = (std::atexit([] { OcrCache().Clear(); }), true);
    (void)registered;
    return Status::Ok();
  }
  ~WorkerEngines() {
    if (options == nullptr) return;
    AsrCache().Give(AsrKey(options->asr), std::move(asr));
    OcrCache().Give(OcrKey(options->ocr), std::move(ocr));
  }
};

// Shared state between the Run thread and the pool's tasks.
struct Shared {
  std::mutex mu;
  Status error;                                  // first failure; GUARDED_BY(mu)
  std::vector<TranscriptSegment> transcript;     // GUARDED_BY(mu)
  std::map<int, std::string> ocr;                // scene index -> text; GUARDED_BY(mu)
  double asr_seconds = 0, ocr_seconds = 0;       // CPU (command: wall) seconds; GUARDED_BY(mu)
  std::atomic<bool> stop{false};
  std::mutex command_mu;                         // one OCR command at a time

  void Fail(Status s) {
    std::lock_guard lock(mu);
    if (error.ok()) error = std::move(s);
    stop = true;
  }
};

std::string JoinMedia(const MediaInfo& m) {
  std::string s = fmt::format("{}, {:.1f} s", m.container, m.duration);
  if (m.video) s += fmt::format(", {} {}x{} {:.3g} fps", m.video->codec, m.video->width, m.video->height, m.video->fps);
  if (m.audio) s += fmt::format(", {} {} Hz {} ch", m.audio->codec, m.audio->sample_rate, m.audio->channels);
  return s;
}

StepOutcome ToOutcome(const Status& s) {
  if (s.code == Status::Code::kCancelled) return StepOutcome::Cancelled();
  return StepOutcome::Failure("analyze: " + s.message, s.retryable);
}

Status WriteJsonAtomically(const std::filesystem::path& file, const Json& j) {
  // A temporary name unique to this write: two attempts of a step never write the same file.
  const baton::Status st = baton::WriteFileAtomically(file, j.dump(2) + "\n");
  return st.ok() ? Status::Ok() : Status::Failed(st.message());
}

Json EngineJson(const EngineOptions& e) {
  if (e.engine == "command") return {{"engine", "command"}, {"program", e.argv.empty() ? "" : e.argv[0]}};
  if (e.engine == "pocketsphinx") return {{"engine", "pocketsphinx"}, {"model", e.model}, {"fast", e.fast}};
  if (e.engine == "tesseract") {
    return {{"engine", "tesseract"}, {"version", tesseract::TessBaseAPI::Version()}, {"lang", e.lang},
            {"layout", e.layout}, {"prepare", e.prepare}};
  }
  return {{"engine", e.engine}};
}

}  // namespace

namespace {

// The keyframes of one attempt, written into a hidden folder of its own: two attempts of the step
// running at once on one job folder (an abandoned one and its retry) never remove or overwrite
// each other's files. Publish swaps the folder in as `keyframes/` in one step (RENAME_EXCHANGE;
// where the file system lacks it, remove and rename), so readers see one attempt's whole set.
class PrivateKeyframes {
 public:
  explicit PrivateKeyframes(const StepContext& ctx) {
    static std::atomic<unsigned> serial{0};
    dir = ctx.workdir / fmt::format(".keyframes-{}-{}-{}", ctx.attempt, getpid(), serial.fetch_add(1));
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
  }
  ~PrivateKeyframes() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);  // after Publish: the set it replaced
  }
  PrivateKeyframes(const PrivateKeyframes&) = delete;
  PrivateKeyframes& operator=(const PrivateKeyframes&) = delete;

  Status Publish(const std::filesystem::path& target) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    std::filesystem::create_directories(target, ec);
    if (renameat2(AT_FDCWD, dir.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) return Status::Ok();
    std::filesystem::remove_all(target, ec);
    if (std::rename(dir.c_str(), target.c_str()) != 0) {
      return Status::Failed(fmt::format("cannot move keyframes to {}: {}", target.string(), std::strerror(errno)));
    }
    return Status::Ok();
  }

  std::filesystem::path dir;
};

}  // namespace

namespace {

// One attempt of the step: the stages in order (Run), each a member function over the state
// they share with the pool's tasks. Members are declared in the order the stages make them, so
// they go in the reverse: the pool (joined) before the engines and data its tasks use.
class Analysis {
 public:
  Analysis(const AnalyzeOptions& o, StepContext& ctx) : o(o), ctx(ctx), cancel(ctx.cancel) {}

  // Flow: resolve the input -> Probe -> DecodeAudio -> StartWorkers (pool, ASR tasks) ->
  // ScanVideo (on this thread; OCR tasks to the pool) -> JoinWorkers -> NoteDamage -> Publish
  // (analysis.json, keyframes/, the result). A stage's outcome, when it has one, ends the attempt.
  StepOutcome Run() {
    auto input = ResolveInput(o, ctx);
    if (!input.ok()) return ToOutcome(input.status);
    file = input.value;
    if (auto out = Probe()) return *out;
    if (auto out = DecodeAudio()) return *out;
    if (auto out = StartWorkers()) return *out;
    ScanVideo();
    if (auto out = JoinWorkers()) return *out;
    NoteDamage();
    return Publish();
  }

 private:
  std::optional<StepOutcome> Probe();
  std::optional<StepOutcome> DecodeAudio();
  std::optional<StepOutcome> StartWorkers();
  void SubmitAsr();
  void ScanVideo();
  void SubmitOcr(Keyframe kf);
  std::optional<StepOutcome> JoinWorkers();
  void NoteDamage();
  StepOutcome Publish();
  Json ResultJson(const Json& engines_json) const;

  const AnalyzeOptions& o;
  StepContext& ctx;
  Stopwatch total;
  Json timings = Json::object();
  Json notes = Json::array();
  const CancelToken* cancel;
  std::filesystem::path file;
  Stopwatch sw;  // restarted when the input is resolved: the probe's and the audio's laps
  MediaInfo media;
  bool want_asr = false;
  Pcm pcm;
  std::vector<Span> spans;
  bool have_audio = false;
  int workers = 0;
  Shared shared;
  std::vector<WorkerEngines> engines;
  std::optional<WorkPool> pool;
  std::filesystem::path wav;
  bool wrote_wav = false;
  Stopwatch asr_wall;
  std::optional<PrivateKeyframes> private_keyframes;
  VideoScan scan;
  Status video_status;
};

// 1. Probe.
std::optional<StepOutcome> Analysis::Probe() {
  sw = Stopwatch();
  auto probed = ProbeMedia(file);
  if (!probed.ok()) return ToOutcome(probed.status);
  media = std::move(probed.value);
  timings["probe"] = R3(sw.Lap());
  ctx.info(fmt::format("analyze: probe {:.2f} s: {} ({})", timings["probe"].get<double>(), file.filename().string(),
                       JoinMedia(media)));
  if (ctx.cancelled()) return StepOutcome::Cancelled();
  return std::nullopt;
}

// 2. Audio, decoded up front so its ASR work can overlap video decoding.
std::optional<StepOutcome> Analysis::DecodeAudio() {
  want_asr = o.asr.engine != "none" && o.asr_note.empty();
  if (!o.asr_note.empty() && media.audio) ctx.warn("analyze: " + o.asr_note);
  if (!media.audio) {
    notes.push_back("no audio stream");
  } else if (want_asr || o.keep_audio) {
    auto decoded = DecodeAudio16k(file, cancel);
    if (decoded.status.code == Status::Code::kCancelled) return StepOutcome::Cancelled();
    if (!decoded.ok()) {
      if (!media.video) return ToOutcome(decoded.status);
      notes.push_back("audio could not be decoded: " + decoded.status.message);
    } else {
      pcm = std::move(decoded.value);
      have_audio = true;
      if (pcm.errors > 0) notes.push_back(fmt::format("{} damaged audio packets skipped", pcm.errors));
      if (want_asr && o.asr.engine == "pocketsphinx") spans = SplitAtSilences(pcm.samples);
    }
    timings["audio"] = R3(sw.Lap());
    ctx.info(fmt::format("analyze: audio {:.2f} s: {:.1f} s at 16 kHz mono, {} utterances",
                         timings["audio"].get<double>(), double(pcm.samples.size()) / kAsrSampleRate, spans.size()));
  }
  if (ctx.cancelled()) return StepOutcome::Cancelled();
  return std::nullopt;
}

// 3. Workers for ASR and OCR, and the ASR work.
std::optional<StepOutcome> Analysis::StartWorkers() {
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  workers = o.threads > 0 ? o.threads : cores;
  engines = std::vector<WorkerEngines>(static_cast<size_t>(workers));
  for (auto& e : engines) e.options = &o;
  pool.emplace(workers);
  // The WAV for a command engine, kept for later steps as audio-16k.wav (with.audio, default true).
  // A hidden WAV (not kept) is this attempt's own: another attempt of the step running at once on
  // this folder (an abandoned one and its retry) must not remove it under the command engine.
  static std::atomic<unsigned> wav_serial{0};
  wav = ctx.workdir / (o.keep_audio ? std::string("audio-16k.wav")
                                    : fmt::format(".analyze-audio-16k-{}-{}-{}.wav", ctx.attempt, getpid(),
                                                  wav_serial.fetch_add(1)));
  if (have_audio && o.keep_audio) {
    Status s = WriteWav16k(wav, pcm.samples);
    if (!s.ok()) return ToOutcome(s);
    wrote_wav = true;
  }
  asr_wall = Stopwatch();
  if (want_asr && have_audio && o.asr.engine == "command" && !wrote_wav) {
    Status s = WriteWav16k(wav, pcm.samples);
    if (!s.ok()) return ToOutcome(s);
    wrote_wav = true;
  }
  SubmitAsr();
  return std::nullopt;
}

void Analysis::SubmitAsr() {
  if (want_asr && have_audio && o.asr.engine == "pocketsphinx") {
    for (const Span& span : spans) {
      pool->Submit([this, span](int w) {
        if (shared.stop || ctx.cancelled()) return;
        const double cpu0 = ThreadCpuSeconds();
        auto& eng = engines[size_t(w)];
        if (Status s = eng.EnsureAsr(); !s.ok()) return shared.Fail(s);
        auto seg = eng.asr->Recognize(pcm.samples.data() + span.begin, span.end - span.begin,
                                      pcm.start + double(span.begin) / kAsrSampleRate, cancel);
        if (!seg.ok()) return shared.Fail(seg.status);
        std::lock_guard lock(shared.mu);
        if (seg.value) shared.transcript.push_back(std::move(*seg.value));
        shared.asr_seconds += ThreadCpuSeconds() - cpu0;
      });
    }
  } else if (want_asr && have_audio && o.asr.engine == "command") {
    pool->Submit([this](int) {
      Stopwatch t;
      auto segs = RunAsrCommand(o.asr.argv, wav, ctx.gpus, cancel);
      if (!segs.ok()) return shared.Fail(segs.status);
      std::lock_guard lock(shared.mu);
      for (auto& seg : segs.value) {
        seg.start += pcm.start;
        seg.end += pcm.start;
        shared.transcript.push_back(std::move(seg));
      }
      shared.asr_seconds += t.Elapsed();
    });
  }
}

// 4. Video on this thread; each keyframe goes to the pool for OCR.
void Analysis::ScanVideo() {
  private_keyframes.emplace(ctx);
  if (!media.video) return;
  ScanOptions so;
  so.threshold = o.scene_threshold;
  so.min_scene = o.min_scene;
  so.all_frames = o.all_frames;
  // Keyframes go to this attempt's own folder, published as keyframes/ when it succeeds.
  so.keyframe_dir = private_keyframes->dir;
  so.gpus = ctx.gpus;
  // The pool keeps the cores busy with ASR; frame threads would only contend with it.
  so.decoder_threads = want_asr && have_audio ? 1 : 0;
  so.cancel = cancel;
  if (o.ocr.engine != "none") so.on_keyframe = [this](Keyframe kf) { SubmitOcr(std::move(kf)); };
  so.on_progress = [this](double t) {
    if (ctx.progress) ctx.progress(Json{{"stage", "video"}, {"seconds", R3(t)}, {"total", R3(media.duration)}});
  };
  Stopwatch video_wall;
  auto scanned = analyze::ScanVideo(file, so);
  if (scanned.ok()) {
    scan = std::move(scanned.value);
    ctx.info(fmt::format(
        "analyze: video {:.2f} s: {} frames, {} scenes on {} (decode {:.2f} s, scenes {:.2f} s, keyframes {:.2f} s)",
        video_wall.Elapsed(), scan.frames, scan.scenes.size(), scan.device, scan.decode_seconds, scan.scene_seconds,
        scan.keyframe_seconds));
    if (!scan.device_note.empty()) ctx.warn("analyze: " + scan.device_note);
  } else {
    video_status = scanned.status;
    shared.stop = true;
  }
}

void Analysis::SubmitOcr(Keyframe kf) {
  auto job = std::make_shared<Keyframe>(std::move(kf));
  pool->Submit([this, job](int w) {
    if (shared.stop || ctx.cancelled()) return;
    const double cpu0 = ThreadCpuSeconds();
    Stopwatch t;
    Result<std::string> text = std::string();
    if (o.ocr.engine == "tesseract") {
      auto& eng = engines[size_t(w)];
      if (Status s = eng.EnsureOcr(); !s.ok()) return shared.Fail(s);
      text = eng.ocr->Read(job->gray);
    } else {
      std::lock_guard one_at_a_time(shared.command_mu);
      text = RunOcrCommand(o.ocr.argv, job->file, ctx.gpus, cancel);
    }
    if (!text.ok()) return shared.Fail(text.status);
    std::lock_guard lock(shared.mu);
    shared.ocr[job->scene_index] = std::move(text.value);
    // Tesseract works on this thread: its CPU time. A command works in a child: wall time.
    shared.ocr_seconds += o.ocr.engine == "tesseract" ? ThreadCpuSeconds() - cpu0 : t.Elapsed();
  }, /*urgent=*/true);
}

// The pool's work done: the hidden WAV goes; the first failure (cancel, video, a task) ends the attempt.
std::optional<StepOutcome> Analysis::JoinWorkers() {
  pool->Join();
  if (wrote_wav && !o.keep_audio) {
    std::error_code ec;
    std::filesystem::remove(wav, ec);
  }
  if (ctx.cancelled()) return StepOutcome::Cancelled();
  if (!video_status.ok()) return ToOutcome(video_status);
  if (!shared.error.ok()) return ToOutcome(shared.error);
  if (want_asr && have_audio) {
    ctx.info(fmt::format("analyze: asr {:.2f} s of CPU ({:.2f} s wall) on {} workers: {} segments ({})",
                         shared.asr_seconds, asr_wall.Elapsed(), workers, shared.transcript.size(), o.asr.engine));
  }
  if (media.video && o.ocr.engine != "none") {
    ctx.info(fmt::format("analyze: ocr {:.2f} s of work: {} keyframes ({})", shared.ocr_seconds, shared.ocr.size(),
                         o.ocr.engine));
  }
  return std::nullopt;
}

// 5. Notes on damaged input.
void Analysis::NoteDamage() {
  if (media.video && media.duration > 0 && scan.last_time < media.duration - 1.0) {
    notes.push_back(fmt::format("video decoding stopped at {:.1f} s of {:.1f} s (truncated or damaged file)",
                                scan.last_time, media.duration));
  }
  if (scan.errors > 0) notes.push_back(fmt::format("{} damaged video packets skipped", scan.errors));
  if (!media.video && have_audio && media.duration > 0) {
    const double got = pcm.start + double(pcm.samples.size()) / kAsrSampleRate;
    if (got < media.duration - 1.0) {
      notes.push_back(fmt::format("audio decoding stopped at {:.1f} s of {:.1f} s (truncated or damaged file)", got,
                                  media.duration));
    }
  }
}

// 6. Assemble: analysis.json (the full form) and keyframes/ into the job folder; the result.
StepOutcome Analysis::Publish() {
  std::sort(shared.transcript.begin(), shared.transcript.end(),
            [](const TranscriptSegment& a, const TranscriptSegment& b) { return a.start < b.start; });
  Json scenes_full = Json::array();
  for (const Scene& s : scan.scenes) {
    const auto it = shared.ocr.find(s.index);
    const std::string ocr = it == shared.ocr.end() ? "" : it->second;
    scenes_full.push_back({{"index", s.index}, {"start", R3(s.start)}, {"end", R3(s.end)}, {"score", R3(s.score)},
                           {"keyframe", s.keyframe}, {"keyframe_time", R3(s.keyframe_time)}, {"ocr", ocr}});
  }
  Json transcript_full = Json::array();
  for (const auto& seg : shared.transcript) {
    Json words = Json::array();
    for (const auto& w : seg.words) words.push_back({{"word", w.text}, {"start", R3(w.start)}, {"end", R3(w.end)}});
    transcript_full.push_back({{"start", R3(seg.start)}, {"end", R3(seg.end)}, {"text", seg.text}, {"words", words}});
  }
  timings["decode"] = R3(scan.decode_seconds);
  timings["scenes"] = R3(scan.scene_seconds + scan.keyframe_seconds);
  timings["ocr"] = R3(shared.ocr_seconds);
  timings["asr"] = R3(shared.asr_seconds);
  timings["total"] = R3(total.Elapsed());
  const Json engines_json = {{"asr", EngineJson(o.asr)}, {"ocr", EngineJson(o.ocr)}};
  Json result = ResultJson(engines_json);

  Json media_full = MediaJson(media);
  media_full["bit_rate"] = media.bit_rate;
  media_full["streams"] = media.streams;
  std::error_code ec;
  Json analysis = {{"version", 1},
                   {"input", {{"path", file.string()}, {"bytes", std::filesystem::file_size(file, ec)}}},
                   {"media", media_full}, {"scenes", scenes_full}, {"transcript", transcript_full},
                   {"device", result["device"]}, {"engines", engines_json}, {"timings", timings},
                   {"frames", scan.frames}, {"workers", workers}, {"notes", notes}};
  if (!scan.device_note.empty()) analysis["device_note"] = scan.device_note;
  Status s = WriteJsonAtomically(ctx.workdir / "analysis.json", analysis);
  if (s.ok() && media.video) s = private_keyframes->Publish(ctx.workdir / "keyframes");
  if (!s.ok()) return ToOutcome(s);

  const double secs = total.Elapsed();
  ctx.info(fmt::format("analyze: done in {:.2f} s ({:.1f}x real time): {} scenes, {} transcript segments", secs,
                       secs > 0 ? media.duration / secs : 0.0, scan.scenes.size(), shared.transcript.size()));
  return StepOutcome::Ok(std::move(result));
}

// The published analysis shape (docs/schema/analysis.md, version 1). The transcript is there
// when the built-in recogniser ran (or there was no audio to run it on): `asr: none` leaves
// it to a later step.
Json Analysis::ResultJson(const Json& engines_json) const {
  Json scenes_small = Json::array(), keyframes = Json::array();
  for (const Scene& s : scan.scenes) {
    const auto it = shared.ocr.find(s.index);
    const std::string ocr = it == shared.ocr.end() ? "" : it->second;
    scenes_small.push_back(
        {{"index", s.index}, {"start", R3(s.start)}, {"end", R3(s.end)}, {"keyframe", s.keyframe}, {"ocr", ocr}});
    if (!s.keyframe.empty()) keyframes.push_back(std::filesystem::absolute(ctx.workdir / s.keyframe).string());
  }
  Json transcript_small = Json::array();
  for (const auto& seg : shared.transcript)
    transcript_small.push_back({{"start", R3(seg.start)}, {"end", R3(seg.end)}, {"text", seg.text}});
  Json result = {{"analysis", "analysis.json"}, {"analysis_version", 1}, {"media", MediaJson(media)},
                 {"scenes", scenes_small}, {"keyframes", keyframes}, {"device", media.video ? scan.device : "cpu"},
                 {"engines", engines_json}, {"timings", timings}};
  if (want_asr) {
    result["transcript"] = {{"language", o.language}, {"engine", o.asr.engine}, {"segments", transcript_small}};
  }
  if (wrote_wav && o.keep_audio) result["audio"] = std::filesystem::absolute(wav).string();
  if (!scan.device_note.empty()) result["device_note"] = scan.device_note;
  if (!notes.empty()) result["notes"] = notes;
  result["language"] = o.language;
  if (!o.asr_note.empty() && media.audio) result["transcript_note"] = o.asr_note;
  return result;
}

}  // namespace

StepOutcome RunAnalyze(const AnalyzeOptions& o, StepContext& ctx) { return Analysis(o, ctx).Run(); }

namespace {

class AnalyzeStep : public Step {
 public:
  explicit AnalyzeStep(AnalyzeOptions o) : options_(std::move(o)) {}
  StepOutcome Run(StepContext& ctx) const override {
    try {
      return RunAnalyze(options_, ctx);
    } catch (const std::exception& e) {
      return StepOutcome::Failure(std::string("analyze: ") + e.what());
    }
  }

 private:
  const AnalyzeOptions options_;
};

}  // namespace
}  // namespace baton::analyze

namespace baton {

void RegisterAnalyzeStep(StepRegistry& registry) {
  registry.Register("analyze", StepFactoryOf([](const Json& with) {
    return std::make_unique<analyze::AnalyzeStep>(analyze::ParseAnalyzeOptions(with));
  }), StepTraits{.one_openmp_thread = true, .known_seconds = {}});
}

}  // namespace baton
