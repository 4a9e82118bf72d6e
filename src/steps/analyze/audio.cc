// Audio for speech recognition: decode + resample to 16 kHz mono s16, find the utterances between
// silences, write a WAV for command engines.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "util/atomic_file.h"
#include "steps/analyze/analyze.h"
#include "steps/analyze/av_util.h"

extern "C" {
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
}

namespace baton::analyze {

Result<Pcm> DecodeAudio16k(const std::filesystem::path& file, const CancelToken* cancel) {
  auto opened = av::OpenInput(file);
  if (!opened.ok()) return opened.status;
  AVFormatContext* fmt = opened.value.get();
  const int ai = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, nullptr, 0);
  if (ai < 0) return Status::NotMedia(file.string() + " has no audio stream");
  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    if (int(i) != ai) fmt->streams[i]->discard = AVDISCARD_ALL;
  }
  AVStream* st = fmt->streams[ai];
  auto dec = av::OpenDecoder(st, 1);
  if (!dec.ok()) return Status::NotMedia(file.string() + ": " + dec.status.message);

  Pcm pcm;
  av::SwrPtr swr;
  av::PacketPtr pkt(av_packet_alloc());
  av::FramePtr frame(av_frame_alloc());
  bool first = true;
  int64_t packets = 0;

  auto convert = [&](const AVFrame* f) -> Status {
    const int in_count = f ? f->nb_samples : 0;
    const int out_max = swr_get_out_samples(swr.get(), in_count);
    if (out_max <= 0) return Status::Ok();
    const size_t old = pcm.samples.size();
    pcm.samples.resize(old + size_t(out_max));
    uint8_t* out = reinterpret_cast<uint8_t*>(pcm.samples.data() + old);
    const int got =
        swr_convert(swr.get(), &out, out_max, f ? const_cast<const uint8_t**>(f->extended_data) : nullptr, in_count);
    if (got < 0) return Status::Failed("resampling audio failed: " + av::ErrorText(got));
    pcm.samples.resize(old + size_t(got));
    return Status::Ok();
  };
  auto drain = [&]() -> Status {
    while (avcodec_receive_frame(dec.value.get(), frame.get()) >= 0) {
      if (first) {
        // The resampler is set up from the first frame: headers may not know the real layout.
        first = false;
        pcm.start = std::max(0.0, av::SecondsFromStart(fmt, frame->best_effort_timestamp, st->time_base));
        AVChannelLayout in_layout;
        if (frame->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC || frame->ch_layout.nb_channels == 0) {
          av_channel_layout_default(&in_layout, std::max(1, frame->ch_layout.nb_channels));
        } else {
          av_channel_layout_copy(&in_layout, &frame->ch_layout);
        }
        AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
        SwrContext* raw = nullptr;
        int rc = swr_alloc_set_opts2(&raw, &mono, AV_SAMPLE_FMT_S16, kAsrSampleRate, &in_layout,
                                     AVSampleFormat(frame->format), frame->sample_rate, 0, nullptr);
        av_channel_layout_uninit(&in_layout);
        swr.reset(raw);
        if (rc < 0 || (rc = swr_init(swr.get())) < 0) {
          return Status::Failed("cannot set up audio resampling: " + av::ErrorText(rc));
        }
      }
      Status s = convert(frame.get());
      av_frame_unref(frame.get());
      if (!s.ok()) return s;
    }
    return Status::Ok();
  };

  while (true) {
    if (++packets % 256 == 0 && cancel != nullptr && cancel->cancelled()) return Status::Cancelled();
    int rc = av_read_frame(fmt, pkt.get());
    if (rc < 0) break;
    if (pkt->stream_index == ai) {
      rc = avcodec_send_packet(dec.value.get(), pkt.get());
      if (rc < 0 && rc != AVERROR(EAGAIN)) ++pcm.errors;
    }
    av_packet_unref(pkt.get());
    Status s = drain();
    if (!s.ok()) return s;
  }
  avcodec_send_packet(dec.value.get(), nullptr);
  Status s = drain();
  if (!s.ok()) return s;
  if (swr) {
    s = convert(nullptr);
    if (!s.ok()) return s;
  }
  return pcm;
}

namespace {

constexpr size_t kFrame = kAsrSampleRate / 100;  // 10 ms

double Percentile(std::vector<float> v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, size_t(p * double(v.size() - 1)));
  std::nth_element(v.begin(), v.begin() + long(k), v.end());
  return v[k];
}

// Cuts [b, e) (in frames) into pieces of at most `max` frames at the quietest frame of the second
// half of each window, so a cut falls in a pause rather than mid-word.
void CutLong(size_t b, size_t e, size_t max, const std::vector<float>& db,
             std::vector<std::pair<size_t, size_t>>& out) {
  while (e - b > max) {
    size_t best = b + max / 2;
    for (size_t i = b + max / 2; i < b + max; ++i) {
      if (db[i] < db[best]) best = i;
    }
    out.emplace_back(b, best);
    b = best;
  }
  out.emplace_back(b, e);
}

}  // namespace

std::vector<Span> SplitAtSilences(const std::vector<int16_t>& samples, const SplitOptions& o) {
  const size_t frames = samples.size() / kFrame;
  if (frames == 0) return {};
  std::vector<float> db(frames);
  for (size_t i = 0; i < frames; ++i) {
    double sum = 0;
    const int16_t* p = samples.data() + i * kFrame;
    for (size_t k = 0; k < kFrame; ++k) sum += double(p[k]) * p[k];
    db[i] = float(10.0 * std::log10(sum / kFrame + 1.0));
  }
  const double loud = Percentile(db, 0.95);
  const double quiet = Percentile(db, 0.10);
  if (loud < 30.0) return {};  // below -60 dBFS everywhere: no speech
  // Speech is anything in the upper 70% of the span between the noise floor and the speech
  // level; with too little contrast (continuous sound) everything counts as speech.
  const double threshold = loud - quiet < 10.0 ? -1.0 : quiet + 0.3 * (loud - quiet);

  const size_t min_gap = size_t(o.min_silence * 100);
  const size_t max_len = std::max<size_t>(100, size_t(o.max_utterance * 100));
  const size_t pad = size_t(o.pad * 100);
  std::vector<std::pair<size_t, size_t>> runs;  // speech [begin, end) in frames
  size_t i = 0;
  while (i < frames) {
    while (i < frames && db[i] <= threshold) ++i;
    if (i == frames) break;
    size_t b = i, e = i;
    size_t quiet_run = 0;
    for (; i < frames; ++i) {
      if (db[i] > threshold) {
        e = i + 1;
        quiet_run = 0;
      } else if (++quiet_run >= min_gap) {
        break;
      }
    }
    if (e - b >= 10) runs.emplace_back(b, e);  // under 0.1 s is a click, not speech
  }
  std::vector<std::pair<size_t, size_t>> cut;
  for (auto [b, e] : runs) CutLong(b, e, max_len, db, cut);

  std::vector<Span> spans;
  for (size_t k = 0; k < cut.size(); ++k) {
    size_t b = cut[k].first >= pad ? cut[k].first - pad : 0;
    size_t e = std::min(frames, cut[k].second + pad);
    // Padding never reaches into the neighbour: stop halfway.
    if (k > 0) b = std::max(b, (cut[k - 1].second + cut[k].first) / 2);
    if (k + 1 < cut.size()) e = std::min(e, (cut[k].second + cut[k + 1].first + 1) / 2);
    spans.push_back(Span{b * kFrame, std::min(samples.size(), e * kFrame)});
  }
  return spans;
}

Status WriteWav16k(const std::filesystem::path& file, const std::vector<int16_t>& samples) {
  auto put32 = [](std::string& s, uint32_t v) { for (int i = 0; i < 4; ++i) s.push_back(char((v >> (8 * i)) & 0xff)); };
  auto put16 = [](std::string& s, uint16_t v) { s.push_back(char(v & 0xff)); s.push_back(char(v >> 8)); };
  const uint32_t data_bytes = uint32_t(samples.size() * 2);
  std::string h = "RIFF";
  put32(h, 36 + data_bytes);
  h += "WAVEfmt ";
  put32(h, 16);
  put16(h, 1);  // PCM
  put16(h, 1);  // mono
  put32(h, kAsrSampleRate);
  put32(h, kAsrSampleRate * 2);
  put16(h, 2);
  put16(h, 16);
  h += "data";
  put32(h, data_bytes);
  // WAV is little-endian, as is every machine this runs on.
  h.append(reinterpret_cast<const char*>(samples.data()), data_bytes);
  // A temporary name unique to this write: two attempts of a step never write the same file.
  const baton::Status st = baton::WriteFileAtomically(file, h);
  return st.ok() ? Status::Ok() : Status::Failed(st.message());
}

}  // namespace baton::analyze
