// ProbeMedia: container and stream facts, read from the file's headers (no decoding).
#include <algorithm>
#include <cctype>

#include "steps/analyze/analyze.h"
#include "steps/analyze/av_util.h"

namespace baton::analyze {
namespace {

// FFmpeg names demuxers by family ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"); report the member
// the file is: by its extension when that is one of the names, else by the mp4 brand.
std::string ContainerName(const AVFormatContext* fmt, const std::filesystem::path& file) {
  const std::string names = fmt->iformat->name;
  std::string ext = file.extension().string();
  if (!ext.empty()) ext.erase(0, 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  std::vector<std::string> parts;
  size_t pos = 0;
  while (pos <= names.size()) {
    size_t comma = names.find(',', pos);
    if (comma == std::string::npos) comma = names.size();
    parts.push_back(names.substr(pos, comma - pos));
    pos = comma + 1;
  }
  if (parts.size() == 1) return parts[0];
  if (std::find(parts.begin(), parts.end(), ext) != parts.end()) return ext;
  if (ext == "mkv" || ext == "mka") return "matroska";
  if (parts[0] == "mov") {
    const AVDictionaryEntry* brand = av_dict_get(fmt->metadata, "major_brand", nullptr, 0);
    const std::string b = brand != nullptr ? brand->value : "";
    if (b.rfind("qt", 0) == 0) return "mov";
    if (b.rfind("M4A", 0) == 0) return "m4a";
    if (!b.empty()) return "mp4";
  }
  return parts[0];
}

double StreamFps(const AVFormatContext* fmt, AVStream* st) {
  AVRational r = av_guess_frame_rate(const_cast<AVFormatContext*>(fmt), st, nullptr);
  if (r.num <= 0 || r.den <= 0) return 0;
  return av_q2d(r);
}

}  // namespace

Json MediaJson(const MediaInfo& info) {
  Json j = {{"duration", info.duration}, {"container", info.container}, {"video", nullptr}, {"audio", nullptr}};
  if (info.video) {
    j["video"] = {{"codec", info.video->codec}, {"width", info.video->width},
                  {"height", info.video->height}, {"fps", info.video->fps}};
  }
  if (info.audio) {
    j["audio"] = {{"codec", info.audio->codec}, {"sample_rate", info.audio->sample_rate},
                  {"channels", info.audio->channels}};
  }
  return j;
}

Result<MediaInfo> ProbeMedia(const std::filesystem::path& file) {
  auto opened = av::OpenInput(file);
  if (!opened.ok()) return opened.status;
  AVFormatContext* fmt = opened.value.get();

  MediaInfo info;
  info.container = ContainerName(fmt, file);
  info.duration = fmt->duration > 0 ? fmt->duration / double(AV_TIME_BASE) : 0.0;
  info.bit_rate = fmt->bit_rate;
  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    const AVCodecParameters* par = fmt->streams[i]->codecpar;
    const char* type = av_get_media_type_string(par->codec_type);
    info.streams.push_back({{"index", i}, {"type", type ? type : "unknown"},
                            {"codec", avcodec_get_name(par->codec_id)},
                            {"cover_art", (fmt->streams[i]->disposition & AV_DISPOSITION_ATTACHED_PIC) != 0}});
  }
  int v = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (v >= 0 && (fmt->streams[v]->disposition & AV_DISPOSITION_ATTACHED_PIC) == 0) {
    AVStream* st = fmt->streams[v];
    info.video = VideoInfo{avcodec_get_name(st->codecpar->codec_id), st->codecpar->width,
                           st->codecpar->height, StreamFps(fmt, st), v};
  }
  int a = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, nullptr, 0);
  if (a >= 0) {
    AVStream* st = fmt->streams[a];
    info.audio = AudioInfo{avcodec_get_name(st->codecpar->codec_id), st->codecpar->sample_rate,
                           st->codecpar->ch_layout.nb_channels, a};
  }
  if (!info.video && !info.audio) {
    return Status::NotMedia(file.string() + " has neither a video nor an audio stream");
  }
  return info;
}

}  // namespace baton::analyze
