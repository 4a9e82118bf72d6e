// PocketSphinxAsr: one PocketSphinx 5prealpha decoder with Debian's en-us model, recognizing one
// utterance at a time and reporting word times.
#include <pocketsphinx.h>

#include <mutex>
#include <string>
#include <vector>

#include "steps/analyze/analyze.h"

namespace baton::analyze {
namespace {

// sphinxbase keeps its log file in a global; set it up one decoder at a time.
std::mutex g_init_mu;

constexpr double kFramesPerSecond = 100.0;  // PocketSphinx's default -frate

// Fillers and markers that are not words: <s>, </s>, <sil>, [NOISE], [SPEECH] ...
bool IsFiller(const char* w) { return w == nullptr || w[0] == '<' || w[0] == '[' || w[0] == '\0'; }

// "read(2)" names the second pronunciation of "read".
std::string StripVariant(const char* w) {
  std::string s = w;
  const size_t paren = s.find('(');
  if (paren != std::string::npos && paren > 0) s.erase(paren);
  return s;
}

}  // namespace

struct PocketSphinxAsr::Impl {
  cmd_ln_t* config = nullptr;
  ps_decoder_t* ps = nullptr;
  ~Impl() {
    if (ps != nullptr) ps_free(ps);
    if (config != nullptr) cmd_ln_free_r(config);
  }
};

PocketSphinxAsr::PocketSphinxAsr(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PocketSphinxAsr::~PocketSphinxAsr() = default;

Result<std::unique_ptr<PocketSphinxAsr>> PocketSphinxAsr::Create(const std::filesystem::path& model_dir, bool fast) {
  const auto hmm = model_dir / "en-us";
  const auto lm = model_dir / "en-us.lm.bin";
  const auto dict = model_dir / "cmudict-en-us.dict";
  for (const auto& p : {hmm / "mdef", lm, dict}) {
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) {
      return Status::Failed("PocketSphinx model file " + p.string() + " is missing (install pocketsphinx-en-us)",
                            false);
    }
  }
  auto impl = std::make_unique<Impl>();
  std::lock_guard lock(g_init_mu);
  std::vector<std::string> args = {"analyze", "-hmm", hmm.string(), "-lm", lm.string(), "-dict", dict.string(),
                                   "-logfn", "/dev/null"};
  if (fast) {
    // PocketSphinx's own pruning limits: ~40% less work for about one more word error in 100 on
    // the bench's speech (docs/steps/analyze.md).
    args.insert(args.end(), {"-maxhmmpf", "3000", "-maxwpf", "10"});
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  impl->config = cmd_ln_parse_r(nullptr, ps_args(), int(argv.size()), argv.data(), TRUE);
  if (impl->config == nullptr) return Status::Failed("PocketSphinx rejected its configuration", false);
  impl->ps = ps_init(impl->config);
  if (impl->ps == nullptr)
    return Status::Failed("PocketSphinx could not load the model in " + model_dir.string(), false);
  return std::unique_ptr<PocketSphinxAsr>(new PocketSphinxAsr(std::move(impl)));
}

Result<std::optional<TranscriptSegment>> PocketSphinxAsr::Recognize(const int16_t* samples, size_t count,
                                                                    double offset, const CancelToken* cancel) {
  if (cancel != nullptr && cancel->cancelled()) return Status::Cancelled();
  ps_decoder_t* ps = impl_->ps;
  if (ps_start_utt(ps) < 0) return Status::Failed("PocketSphinx could not start an utterance");
  // One call with the whole utterance (full_utt): cepstral mean normalization then sees all of
  // it, which is more accurate than the live estimate. Utterances are short (split at silences).
  if (ps_process_raw(ps, samples, count, FALSE, TRUE) < 0) {
    ps_end_utt(ps);
    return Status::Failed("PocketSphinx failed on the audio");
  }
  ps_end_utt(ps);
  int32 score = 0;
  const char* hyp = ps_get_hyp(ps, &score);
  if (hyp == nullptr || hyp[0] == '\0') return std::optional<TranscriptSegment>();

  TranscriptSegment seg;
  seg.text = hyp;
  for (ps_seg_t* it = ps_seg_iter(ps); it != nullptr; it = ps_seg_next(it)) {
    const char* w = ps_seg_word(it);
    if (IsFiller(w)) continue;
    int sf = 0, ef = 0;
    ps_seg_frames(it, &sf, &ef);
    seg.words.push_back(Word{StripVariant(w), offset + sf / kFramesPerSecond, offset + (ef + 1) / kFramesPerSecond});
  }
  if (!seg.words.empty()) {
    seg.start = seg.words.front().start;
    seg.end = seg.words.back().end;
  } else {
    seg.start = offset;
    seg.end = offset + double(count) / kAsrSampleRate;
  }
  return std::optional<TranscriptSegment>(std::move(seg));
}

}  // namespace baton::analyze
