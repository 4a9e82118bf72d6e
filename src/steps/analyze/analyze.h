// The built-in `analyze` step: turns a local video (or audio) file into scenes with keyframes and
// their on-screen text, and a timed transcript, using FFmpeg 5.1, Tesseract 5 and PocketSphinx.
//
// The step is assembled from stages that are plain functions, each usable and tested alone:
//
//   ProbeMedia          file -> MediaInfo (duration, container, codecs, resolution, fps)
//   ScanVideo           file -> scenes (FFmpeg scene score) + one JPEG keyframe per scene
//   DecodeAudio16k      file -> 16 kHz mono s16 samples;  SplitAtSilences -> utterance spans
//   PocketSphinxAsr     utterance samples -> timed transcript segment
//   TesseractOcr        keyframe (gray) -> text
//   RunAsrCommand / RunOcrCommand: the same through a user's program (argv, JSON on stdout)
//
// See README.md in this folder for the data flow and docs/steps/analyze.md for `with:`.
//
// Thread-safety: the free functions are thread-safe (they share no state). PocketSphinxAsr and
// TesseractOcr objects are used by one thread at a time; make one per thread. The step object
// is immutable after construction and its Run may be called from many threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "baton/step.h"

namespace baton {

// Registers "analyze" in `registry`.
void RegisterAnalyzeStep(StepRegistry& registry);

namespace analyze {

// Outcome of a stage: ok, or a one-line message a user can act on.
struct Status {
  enum class Code { kOk, kNotMedia, kFailed, kCancelled };
  Code code = Code::kOk;
  std::string message;
  bool retryable = true;

  static Status Ok() { return {}; }
  // The input is not something FFmpeg can read (missing, empty, corrupt): retrying cannot help.
  static Status NotMedia(std::string m) { return {Code::kNotMedia, std::move(m), false}; }
  static Status Failed(std::string m, bool retryable = true) {
    return {Code::kFailed, std::move(m), retryable};
  }
  static Status Cancelled() { return {Code::kCancelled, "cancelled", false}; }
  bool ok() const { return code == Code::kOk; }
};

// A value or the Status saying why there is none.
template <class T>
struct [[nodiscard]] Result {
  Status status;
  T value{};
  Result(T v) : value(std::move(v)) {}          // NOLINT: implicit by design
  Result(Status s) : status(std::move(s)) {}    // NOLINT
  bool ok() const { return status.ok(); }
};

// ---- Probe -----------------------------------------------------------------------------------

struct VideoInfo {
  std::string codec;  // FFmpeg codec name: "h264", "vp9", ...
  int width = 0;
  int height = 0;
  double fps = 0;
  int stream_index = -1;
};

struct AudioInfo {
  std::string codec;  // "aac", "opus", "pcm_s16le", ...
  int sample_rate = 0;
  int channels = 0;
  int stream_index = -1;
};

struct MediaInfo {
  double duration = 0;    // seconds, from the container (0 when unknown)
  std::string container;  // "mp4", "webm", "matroska", "wav", "mov", ...
  int64_t bit_rate = 0;
  std::optional<VideoInfo> video;  // the best video stream; cover art does not count
  std::optional<AudioInfo> audio;  // the best audio stream
  Json streams = Json::array();    // every stream: {index, type, codec}
};

// {"duration","container","video": {...} | null,"audio": {...} | null} as in the analyze result.
Json MediaJson(const MediaInfo& info);

// Reads the container and stream parameters. NotMedia for missing, empty and unreadable files,
// and for files with neither a video nor an audio stream.
Result<MediaInfo> ProbeMedia(const std::filesystem::path& file);

// ---- Video: decode, scenes, keyframes --------------------------------------------------------

// An 8-bit gray image, rows `width` bytes apart.
struct GrayImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;
};

// FFmpeg's scene score (libavfilter's `select` filter, `scene` variable) on gray frames: the mean
// absolute luma difference to the previous frame, minus that of the frame before (so steady
// motion does not count), over 100, clipped to [0, 1]. The first frame scores 0.
class SceneScorer {
 public:
  double Push(const uint8_t* gray, int width, int height, int stride);

 private:
  std::vector<uint8_t> prev_;
  int width_ = 0;
  int height_ = 0;
  double prev_mafd_ = 0;
};

struct Scene {
  int index = 0;  // 1-based
  double start = 0;
  double end = 0;
  double score = 0;          // scene score of the cut that opened it (0 for the first)
  double keyframe_time = 0;  // time of the frame saved as its keyframe
  std::string keyframe;      // "keyframes/scene-001.jpg" (relative to the job folder) or ""
};

// A keyframe just written, handed to the caller while scanning goes on (for OCR).
struct Keyframe {
  int scene_index = 0;
  std::filesystem::path file;  // absolute path of the JPEG
  GrayImage gray;              // full-size luma of the same frame
};

struct ScanOptions {
  double threshold = 0.3;  // scene score above which a new scene starts
  double min_scene = 2.0;  // seconds: cuts closer than this to the previous one are ignored
  // Folder for scene-NNN.jpg (created); empty: no keyframes are made.
  std::filesystem::path keyframe_dir;
  std::string keyframe_prefix = "keyframes/";  // how Scene::keyframe names the file
  std::vector<int> gpus;   // non-empty: try CUDA decoding on gpus[0]
  int decoder_threads = 0; // 0: FFmpeg's choice
  // false: decode only frames other frames refer to (AVDISCARD_NONREF) — about half the decoding
  // work for H.264 with B-frames; cuts then land within ~2 frames. true: score every frame.
  bool all_frames = false;
  const CancelToken* cancel = nullptr;
  std::function<void(Keyframe)> on_keyframe;   // called on the scanning thread
  std::function<void(double seconds)> on_progress;
};

struct VideoScan {
  std::vector<Scene> scenes;
  std::string device = "cpu";  // "cpu" or "cuda:N"
  std::string device_note;     // why a granted GPU was not used
  int64_t frames = 0;          // frames decoded
  double last_time = 0;        // end of the last decoded frame (s)
  int errors = 0;              // packets the decoder refused (damaged data)
  double decode_seconds = 0;   // in the decoder (and GPU->host copies)
  double scene_seconds = 0;    // scoring frames
  double keyframe_seconds = 0; // converting and encoding keyframes
};

// Decodes the best video stream of `file` once, scoring every frame, and writes one JPEG per
// scene (the frame about 1 s into it). NotMedia when the file has no video stream.
Result<VideoScan> ScanVideo(const std::filesystem::path& file, const ScanOptions& options);

// ---- Audio -----------------------------------------------------------------------------------

inline constexpr int kAsrSampleRate = 16000;

struct Pcm {
  std::vector<int16_t> samples;  // 16 kHz mono
  double start = 0;              // time of samples[0] (s)
  int errors = 0;                // packets the decoder refused
};

// Decodes the best audio stream and resamples it to 16 kHz mono s16.
Result<Pcm> DecodeAudio16k(const std::filesystem::path& file, const CancelToken* cancel = nullptr);

// [begin, end) in samples.
struct Span {
  size_t begin = 0;
  size_t end = 0;
};

struct SplitOptions {
  double min_silence = 0.3;  // seconds of quiet that end an utterance
  double max_utterance = 30; // seconds; longer speech is cut at its quietest point
  double pad = 0.15;         // seconds of context kept on each side
};

// Finds the utterances in 16 kHz audio: stretches of speech between silences, where silence is
// energy well below the recording's own speech level (so it adapts to noise). Pure silence gives
// no spans.
std::vector<Span> SplitAtSilences(const std::vector<int16_t>& samples, const SplitOptions& options = {});

// Writes 16 kHz mono s16 samples as a WAV file (temp file + rename).
Status WriteWav16k(const std::filesystem::path& file, const std::vector<int16_t>& samples);

// ---- Speech to text --------------------------------------------------------------------------

struct Word {
  std::string text;
  double start = 0;
  double end = 0;
};

struct TranscriptSegment {
  double start = 0;
  double end = 0;
  std::string text;
  std::vector<Word> words;  // empty when the engine gives none
};

// One PocketSphinx decoder (Debian's en-us model). Not thread-safe: one per thread.
class PocketSphinxAsr {
 public:
  static constexpr const char* kDefaultModelDir = "/usr/share/pocketsphinx/model/en-us";
  // Loads the model (~0.4 s). Failed when the model files are missing. `fast` tightens the
  // search's pruning (-maxhmmpf 3000 -maxwpf 10): ~40% less work, slightly more word errors.
  static Result<std::unique_ptr<PocketSphinxAsr>> Create(const std::filesystem::path& model_dir = kDefaultModelDir,
                                                         bool fast = false);
  ~PocketSphinxAsr();
  PocketSphinxAsr(const PocketSphinxAsr&) = delete;
  PocketSphinxAsr& operator=(const PocketSphinxAsr&) = delete;

  // Recognizes one utterance; times are `offset` + position in `samples`. No segment (nullopt)
  // when nothing was recognized.
  Result<std::optional<TranscriptSegment>> Recognize(const int16_t* samples, size_t count,
                                                     double offset, const CancelToken* cancel);

 private:
  struct Impl;
  explicit PocketSphinxAsr(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Parses an ASR command's stdout: {"segments":[{"start","end","text"}]} (seconds) or whisper.cpp's
// -oj shape {"transcription":[{"offsets":{"from","to"} (ms),"text"}]}.
Result<std::vector<TranscriptSegment>> ParseAsrOutput(std::string_view text);

// ---- OCR -------------------------------------------------------------------------------------

// How a keyframe is read. Slides are large text on a plain background: by default the frame is
// prepared (PrepareForOcr) and read as one block of lines (page segmentation mode 6).
struct OcrSettings {
  std::string lang = "eng";   // Tesseract languages, '+'-joined: "chi_sim", "chi_sim+eng"
  int dpi = 300;              // user_defined_dpi of the (prepared) image
  std::string layout = "block";  // block (PSM 6) | auto (PSM 3) | sparse (PSM 11) | vertical (PSM 5)
  bool prepare = true;        // PrepareForOcr before reading
  int line_height = 48;       // PrepareForOcr's target text line height (px)
  bool binarize = true;       // PrepareForOcr binarises (false: gray, Tesseract thresholds)
  bool flatten = true;        // PrepareForOcr flattens uneven backgrounds before binarising
  // With a CJK language mixed with others ("chi_sim+eng"), also read with the CJK language alone
  // and keep the reading Tesseract is more confident of (twice the OCR time).
  bool compare_cjk_alone = true;
};

// A keyframe made easy for Tesseract: dark-on-light (inverted when the background is dark),
// scaled so text lines are at least about `line_height` pixels tall (small text is enlarged, never more
// than 4x; large text is left alone), with an uneven background (a gradient) flattened (each pixel
// divided by the brightest level within about one line: `flatten`), then binarised with Otsu's
// threshold, with a white margin.
GrayImage PrepareForOcr(const GrayImage& image, int line_height = 48, bool binarize = true, bool flatten = true);

// Drops the spaces Tesseract puts between CJK characters (and next to CJK punctuation); spaces
// between Latin words stay.
std::string JoinCjkSpaces(std::string_view text);

// Chinese and Japanese text uses full-width punctuation; Tesseract often returns the ASCII forms.
// An ASCII , . ! ? ; : ( ) right after a CJK character becomes ，。！？；：（）, and "，。" (one full
// stop read as two marks; never written in Chinese) becomes "。".
std::string FullWidthCjkPunctuation(std::string_view text);

// The Debian package that holds Tesseract's data for `lang` ("chi_sim" -> tesseract-ocr-chi-sim).
std::string TesseractPackage(std::string_view lang);
// The first of the '+'-joined `langs` whose traineddata is not installed (TESSDATA_PREFIX or
// Debian's folder), or "" when all are.
std::string MissingTesseractLanguage(std::string_view langs);

// One Tesseract 5 LSTM engine. Not thread-safe: one per thread.
class TesseractOcr {
 public:
  static Result<std::unique_ptr<TesseractOcr>> Create(const OcrSettings& settings);
  static Result<std::unique_ptr<TesseractOcr>> Create(const std::string& lang = "eng", int dpi = 96) {
    return Create(OcrSettings{lang, dpi, "auto", false});
  }
  ~TesseractOcr();
  TesseractOcr(const TesseractOcr&) = delete;
  TesseractOcr& operator=(const TesseractOcr&) = delete;

  // The text on the image, whitespace runs collapsed to single spaces (lines to "\n").
  Result<std::string> Read(const GrayImage& image);

 private:
  struct Impl;
  explicit TesseractOcr(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Parses an OCR command's stdout: {"text": "..."} or, when it is not a JSON object, the plain text.
Result<std::string> ParseOcrOutput(std::string_view text);

// ---- Command engines -------------------------------------------------------------------------

// Replaces {audio}, {image}, {gpus} inside each argument (`{gpus}`: ids joined by commas).
std::vector<std::string> SubstituteArgv(const std::vector<std::string>& argv,
                                        const std::vector<std::pair<std::string, std::string>>& values);

struct CommandOutput {
  int exit_code = 0;
  std::string out;       // stdout (capped at 64 MiB)
  std::string err_tail;  // the last line of stderr, for messages
};

// Runs argv with posix_spawnp (no shell), CUDA_VISIBLE_DEVICES set to `gpus` joined by commas
// ("" when none), capturing stdout. Failed when it cannot start; Cancelled (child killed) on cancel.
Result<CommandOutput> RunCommand(const std::vector<std::string>& argv, const std::vector<int>& gpus,
                                 const CancelToken* cancel);

// An engine command run to completion and parsed. `what` ("asr", "ocr") names it in messages.
Result<std::vector<TranscriptSegment>> RunAsrCommand(const std::vector<std::string>& argv,
                                                     const std::filesystem::path& wav,
                                                     const std::vector<int>& gpus,
                                                     const CancelToken* cancel);
Result<std::string> RunOcrCommand(const std::vector<std::string>& argv,
                                  const std::filesystem::path& image, const std::vector<int>& gpus,
                                  const CancelToken* cancel);

// ---- The step --------------------------------------------------------------------------------

struct EngineOptions {
  std::string engine;             // asr: pocketsphinx | command | none; ocr: tesseract | command | none
  std::vector<std::string> argv;  // command engine
  std::string lang = "eng";       // tesseract (ocr); set from the job's language unless given
  int dpi = 300;                  // tesseract user_defined_dpi
  std::string model;              // pocketsphinx model folder
  bool fast = false;              // pocketsphinx: tighter pruning
  std::string layout = "block";   // tesseract: see OcrSettings
  bool prepare = true;            // tesseract: PrepareForOcr
};

struct AnalyzeOptions {
  std::string from = "download";
  std::string path;  // explicit input file; wins over `from`
  double scene_threshold = 0.3;
  double min_scene = 2.0;
  bool all_frames = false;  // see ScanOptions::all_frames
  // Keep the 16 kHz mono WAV of the audio track as audio-16k.wav in the job folder and name it in
  // the result ("audio"), for a later step's own recogniser (`asr: none`).
  bool keep_audio = true;
  int threads = 0;   // worker threads for ASR/OCR; 0: one per core
  EngineOptions asr{"pocketsphinx", {}, "eng", 96, PocketSphinxAsr::kDefaultModelDir, false};
  EngineOptions ocr{"tesseract", {}, "eng", 300, "", false};
  std::string language = "en";  // the job's language tag (baton/language.h)
  // Set when speech will not be transcribed because the engine has no model for the language.
  std::string asr_note;
};

// Validates `with` (an object or null). Throws ConfigError("with.KEY: ...") naming the key.
AnalyzeOptions ParseAnalyzeOptions(const Json& with);

// Runs the whole analysis for one attempt (what the step's Run does).
StepOutcome RunAnalyze(const AnalyzeOptions& options, StepContext& ctx);

}  // namespace analyze
}  // namespace baton
