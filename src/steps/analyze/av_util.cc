#include "steps/analyze/av_util.h"

#include <mutex>
#include <system_error>

namespace baton::analyze::av {

std::string ErrorText(int averror) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(averror, buf, sizeof buf);
  return buf;
}

void QuietLogs() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(AV_LOG_FATAL); });
}

Result<FormatPtr> OpenInput(const std::filesystem::path& file) {
  QuietLogs();
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (ec || !std::filesystem::exists(status)) {
    return Status::NotMedia("input file " + file.string() + " not found");
  }
  if (!std::filesystem::is_regular_file(status)) {
    return Status::NotMedia("input " + file.string() + " is not a regular file");
  }
  if (std::filesystem::file_size(file, ec) == 0) {
    return Status::NotMedia("input file " + file.string() + " is empty (0 bytes), not a media file");
  }
  AVFormatContext* raw = nullptr;
  int rc = avformat_open_input(&raw, file.c_str(), nullptr, nullptr);
  if (rc < 0) {
    return Status::NotMedia("cannot read " + file.string() + " as media: " + ErrorText(rc) +
                            " (corrupt, truncated or not a video/audio file)");
  }
  FormatPtr fmt(raw);
  rc = avformat_find_stream_info(fmt.get(), nullptr);
  if (rc < 0) {
    return Status::NotMedia("cannot read the streams of " + file.string() + ": " + ErrorText(rc));
  }
  return fmt;
}

Result<CodecPtr> OpenDecoder(const AVStream* stream, int threads) {
  const AVCodec* codec = avcodec_find_decoder(stream->codecpar->codec_id);
  if (codec == nullptr) {
    return Status::NotMedia(std::string("no decoder for codec ") +
                            avcodec_get_name(stream->codecpar->codec_id));
  }
  CodecPtr ctx(avcodec_alloc_context3(codec));
  if (!ctx) return Status::Failed("out of memory allocating a decoder");
  int rc = avcodec_parameters_to_context(ctx.get(), stream->codecpar);
  if (rc < 0) return Status::NotMedia("bad codec parameters: " + ErrorText(rc));
  ctx->thread_count = threads;
  ctx->pkt_timebase = stream->time_base;
  rc = avcodec_open2(ctx.get(), codec, nullptr);
  if (rc < 0) {
    return Status::NotMedia(std::string("cannot open the ") + codec->name + " decoder: " + ErrorText(rc));
  }
  return ctx;
}

double SecondsFromStart(const AVFormatContext* fmt, int64_t ts, AVRational tb) {
  double t = ts == AV_NOPTS_VALUE ? 0.0 : ts * av_q2d(tb);
  if (fmt->start_time != AV_NOPTS_VALUE) t -= fmt->start_time / double(AV_TIME_BASE);
  return t;
}

}  // namespace baton::analyze::av
