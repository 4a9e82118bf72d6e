// Small RAII holders and helpers for FFmpeg 5.1's C API, shared by the analyze stages.
//
// Each holder owns one FFmpeg object and frees it with the matching FFmpeg call; they are plain
// move-only values with no shared state, so they are as thread-safe as the object they hold (one
// thread at a time).
#pragma once

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
}

#include <filesystem>
#include <memory>
#include <string>

#include "steps/analyze/analyze.h"

namespace baton::analyze::av {

struct FormatCloser {
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
};
struct CodecFreer {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FrameFreer {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketFreer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsFreer {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};
struct SwrFreer {
  void operator()(SwrContext* s) const { swr_free(&s); }
};
struct BufferUnref {
  void operator()(AVBufferRef* b) const { av_buffer_unref(&b); }
};

using FormatPtr = std::unique_ptr<AVFormatContext, FormatCloser>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecFreer>;
using FramePtr = std::unique_ptr<AVFrame, FrameFreer>;
using PacketPtr = std::unique_ptr<AVPacket, PacketFreer>;
using SwsPtr = std::unique_ptr<SwsContext, SwsFreer>;
using SwrPtr = std::unique_ptr<SwrContext, SwrFreer>;
using BufferPtr = std::unique_ptr<AVBufferRef, BufferUnref>;

// FFmpeg's text for an AVERROR code ("Invalid data found when processing input").
std::string ErrorText(int averror);

// Opens `file` and reads its stream parameters. Files that are missing, empty or not media come
// back as Status::NotMedia with a one-line reason naming the file.
Result<FormatPtr> OpenInput(const std::filesystem::path& file);

// Opens a decoder for `stream` with `threads` threads (0: FFmpeg's choice).
Result<CodecPtr> OpenDecoder(const AVStream* stream, int threads);

// Seconds of `ts` in `tb` relative to the file's start time (so the first frame is near 0).
double SecondsFromStart(const AVFormatContext* fmt, int64_t ts, AVRational tb);

// Quiets FFmpeg's own logging (once per process): its warnings about damaged input would go to
// stderr, untagged; the stages report problems as values instead.
void QuietLogs();

}  // namespace baton::analyze::av
