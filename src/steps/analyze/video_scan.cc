// ScanVideo: one decoding pass over the video stream that scores every frame for scene changes
// and saves one JPEG keyframe per scene.
//
// Cost model: decoding dominates. The scene score reads only a point-sampled quarter-resolution
// luma (the same per-pixel differences FFmpeg's `select` averages, on every 4th pixel of every
// 4th row), so no filter graph and no full-frame conversion runs per frame; only the chosen
// keyframe is converted (to full-range YUV) and JPEG-encoded at full size.
#include <cmath>
#include <cstdio>
#include <fstream>

#include "steps/analyze/analyze.h"
#include "steps/analyze/av_util.h"
#include "steps/analyze/stopwatch.h"

extern "C" {
#include <libavutil/hwcontext.h>
#include <libavutil/pixdesc.h>
}

namespace baton::analyze {

double SceneScorer::Push(const uint8_t* gray, int width, int height, int stride) {
  double score = 0;
  if (width == width_ && height == height_ && !prev_.empty()) {
    uint64_t sad = 0;
    for (int y = 0; y < height; ++y) {
      const uint8_t* a = gray + size_t(y) * stride;
      const uint8_t* b = prev_.data() + size_t(y) * width;
      uint32_t row = 0;
      for (int x = 0; x < width; ++x) row += uint32_t(std::abs(int(a[x]) - int(b[x])));
      sad += row;
    }
    const double mafd = double(sad) / (double(width) * height);
    const double diff = std::fabs(mafd - prev_mafd_);
    score = std::clamp(std::min(mafd, diff) / 100.0, 0.0, 1.0);
    prev_mafd_ = mafd;
  }
  width_ = width;
  height_ = height;
  prev_.resize(size_t(width) * height);
  for (int y = 0; y < height; ++y) {
    std::copy_n(gray + size_t(y) * stride, width, prev_.data() + size_t(y) * width);
  }
  return score;
}

namespace {

constexpr int kSample = 4;  // scene score reads every 4th pixel of every 4th row

AVPixelFormat PickCuda(AVCodecContext*, const AVPixelFormat* formats) {
  for (const AVPixelFormat* f = formats; *f != AV_PIX_FMT_NONE; ++f) {
    if (*f == AV_PIX_FMT_CUDA) return *f;
  }
  for (const AVPixelFormat* f = formats; *f != AV_PIX_FMT_NONE; ++f) {
    if ((av_pix_fmt_desc_get(*f)->flags & AV_PIX_FMT_FLAG_HWACCEL) == 0) return *f;
  }
  return AV_PIX_FMT_NONE;
}

// Opens a decoder that decodes on CUDA device `gpu`, or says why it cannot (note).
av::CodecPtr OpenCudaDecoder(const AVStream* st, int gpu, std::string* note) {
  const AVCodec* codec = avcodec_find_decoder(st->codecpar->codec_id);
  if (codec == nullptr) return nullptr;
  bool supported = false;
  for (int i = 0;; ++i) {
    const AVCodecHWConfig* cfg = avcodec_get_hw_config(codec, i);
    if (cfg == nullptr) break;
    if ((cfg->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX) != 0 &&
        cfg->device_type == AV_HWDEVICE_TYPE_CUDA) {
      supported = true;
    }
  }
  if (!supported) {
    *note = std::string("GPU granted but the ") + codec->name + " decoder has no CUDA support; decoded on the CPU";
    return nullptr;
  }
  AVBufferRef* raw = nullptr;
  int rc = av_hwdevice_ctx_create(&raw, AV_HWDEVICE_TYPE_CUDA, std::to_string(gpu).c_str(), nullptr, 0);
  if (rc < 0) {
    *note = "GPU " + std::to_string(gpu) + " granted but FFmpeg cannot open it with CUDA (" +
            av::ErrorText(rc) + "); decoded on the CPU";
    return nullptr;
  }
  av::BufferPtr device(raw);
  av::CodecPtr ctx(avcodec_alloc_context3(codec));
  if (!ctx || avcodec_parameters_to_context(ctx.get(), st->codecpar) < 0) return nullptr;
  ctx->pkt_timebase = st->time_base;
  ctx->hw_device_ctx = av_buffer_ref(device.get());
  ctx->get_format = PickCuda;
  rc = avcodec_open2(ctx.get(), codec, nullptr);
  if (rc < 0) {
    *note = "CUDA decoder failed to open (" + av::ErrorText(rc) + "); decoded on the CPU";
    return nullptr;
  }
  return ctx;
}

// True when plane 0 of `fmt` is 8-bit luma, one byte per pixel (yuv420p, nv12, yuvj4xxp, gray).
bool HasPlainLuma(AVPixelFormat fmt) {
  const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(fmt);
  if (d == nullptr) return false;
  if ((d->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_HWACCEL)) != 0) return false;
  return d->comp[0].plane == 0 && d->comp[0].depth == 8 && d->comp[0].step == 1;
}

class Scanner {
 public:
  Scanner(const ScanOptions& opts, const AVFormatContext* fmt, const AVStream* st)
      : opts_(opts), fmt_(fmt), st_(st) {
    key_offset_ = std::min(1.0, opts.min_scene / 2);
    double fps = av_q2d(av_guess_frame_rate(const_cast<AVFormatContext*>(fmt), const_cast<AVStream*>(st), nullptr));
    frame_step_ = fps > 0 ? 1.0 / fps : 0.04;
  }

  // Scores one decoded (software) frame and emits a keyframe when its scene wants one.
  Status OnFrame(AVFrame* frame, VideoScan& scan) {
    const double t = av::SecondsFromStart(fmt_, frame->best_effort_timestamp, st_->time_base);
    Stopwatch sw;
    Status s = SampleLuma(frame);
    if (!s.ok()) return s;
    const double score = scorer_.Push(small_.data(), small_w_, small_h_, small_w_);
    scan.scene_seconds += sw.Lap();

    if (scan.scenes.empty()) {
      scan.scenes.push_back(Scene{1, 0.0, 0.0, 0.0, 0.0, ""});
    } else if (score > opts_.threshold && t - scan.scenes.back().start >= opts_.min_scene) {
      if (!key_done_ && held_) {
        s = EmitKeyframe(held_.get(), held_time_, scan);
        if (!s.ok()) return s;
      }
      held_.reset();
      scan.scenes.back().end = t;
      scan.scenes.push_back(Scene{int(scan.scenes.size()) + 1, t, 0.0, score, 0.0, ""});
      key_done_ = false;
    }
    if (!key_done_) {
      if (t >= scan.scenes.back().start + key_offset_) {
        s = EmitKeyframe(frame, t, scan);
        if (!s.ok()) return s;
        held_.reset();
      } else {
        // Hold this frame in case the scene ends before the wanted offset.
        if (!held_) held_.reset(av_frame_alloc());
        av_frame_unref(held_.get());
        if (av_frame_ref(held_.get(), frame) < 0) return Status::Failed("out of memory holding a frame");
        held_time_ = t;
      }
    }
    const double duration = frame->pkt_duration > 0 ? frame->pkt_duration * av_q2d(st_->time_base) : frame_step_;
    scan.last_time = std::max(scan.last_time, t + duration);
    return Status::Ok();
  }

  Status Finish(VideoScan& scan) {
    if (!key_done_ && held_) {
      Status s = EmitKeyframe(held_.get(), held_time_, scan);
      if (!s.ok()) return s;
    }
    if (!scan.scenes.empty()) scan.scenes.back().end = std::max(scan.last_time, scan.scenes.back().start);
    return Status::Ok();
  }

 private:
  Status SampleLuma(const AVFrame* f) {
    const auto fmt = AVPixelFormat(f->format);
    small_w_ = (f->width + kSample - 1) / kSample;
    small_h_ = (f->height + kSample - 1) / kSample;
    small_.resize(size_t(small_w_) * small_h_);
    if (HasPlainLuma(fmt)) {
      for (int y = 0; y < small_h_; ++y) {
        const uint8_t* row = f->data[0] + size_t(y) * kSample * f->linesize[0];
        uint8_t* out = small_.data() + size_t(y) * small_w_;
        for (int x = 0; x < small_w_; ++x) out[x] = row[x * kSample];
      }
      return Status::Ok();
    }
    // Other formats (RGB, 10-bit): let swscale point-sample to gray.
    gray_sws_.reset(sws_getCachedContext(gray_sws_.release(), f->width, f->height, fmt, small_w_,
                                         small_h_, AV_PIX_FMT_GRAY8, SWS_POINT, nullptr, nullptr, nullptr));
    if (!gray_sws_) return Status::Failed(std::string("cannot convert pixel format ") + av_get_pix_fmt_name(fmt));
    uint8_t* dst[4] = {small_.data(), nullptr, nullptr, nullptr};
    int dst_stride[4] = {small_w_, 0, 0, 0};
    sws_scale(gray_sws_.get(), f->data, f->linesize, 0, f->height, dst, dst_stride);
    return Status::Ok();
  }

  Status EmitKeyframe(const AVFrame* f, double t, VideoScan& scan) {
    key_done_ = true;
    Scene& scene = scan.scenes.back();
    scene.keyframe_time = t;
    if (opts_.keyframe_dir.empty()) return Status::Ok();
    Stopwatch sw;
    Status s = EncodeJpeg(f, scene);
    scan.keyframe_seconds += sw.Lap();
    return s;
  }

  Status EncodeJpeg(const AVFrame* f, Scene& scene) {
    const int w = f->width, h = f->height;
    rgb_sws_.reset(sws_getCachedContext(rgb_sws_.release(), w, h, AVPixelFormat(f->format), w, h,
                                        AV_PIX_FMT_YUVJ420P, SWS_BICUBIC, nullptr, nullptr, nullptr));
    if (!rgb_sws_) return Status::Failed("cannot convert the keyframe to JPEG colours");
    // Respect the source's range so a full-range source is not stretched twice.
    int* inv = nullptr;
    int* tbl = nullptr;
    int src_range = 0, dst_range = 0, brightness = 0, contrast = 0, saturation = 0;
    if (sws_getColorspaceDetails(rgb_sws_.get(), &inv, &src_range, &tbl, &dst_range, &brightness, &contrast,
                                 &saturation) >= 0) {
      sws_setColorspaceDetails(rgb_sws_.get(), inv, f->color_range == AVCOL_RANGE_JPEG ? 1 : src_range, tbl,
                               1, brightness, contrast, saturation);
    }
    av::FramePtr yuv(av_frame_alloc());
    yuv->format = AV_PIX_FMT_YUVJ420P;
    yuv->width = w;
    yuv->height = h;
    if (av_frame_get_buffer(yuv.get(), 0) < 0) return Status::Failed("out of memory for a keyframe");
    sws_scale(rgb_sws_.get(), f->data, f->linesize, 0, h, yuv->data, yuv->linesize);

    if (!jpeg_ || jpeg_->width != w || jpeg_->height != h) {
      const AVCodec* mjpeg = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
      if (mjpeg == nullptr) return Status::Failed("FFmpeg has no MJPEG encoder");
      jpeg_.reset(avcodec_alloc_context3(mjpeg));
      jpeg_->width = w;
      jpeg_->height = h;
      jpeg_->pix_fmt = AV_PIX_FMT_YUVJ420P;
      jpeg_->time_base = AVRational{1, 25};
      jpeg_->flags |= AV_CODEC_FLAG_QSCALE;
      jpeg_->global_quality = FF_QP2LAMBDA * 3;
      int rc = avcodec_open2(jpeg_.get(), mjpeg, nullptr);
      if (rc < 0) {
        jpeg_.reset();
        return Status::Failed("cannot open the JPEG encoder: " + av::ErrorText(rc));
      }
    }
    yuv->quality = FF_QP2LAMBDA * 3;
    yuv->pts = scene.index;
    av::PacketPtr pkt(av_packet_alloc());
    int rc = avcodec_send_frame(jpeg_.get(), yuv.get());
    if (rc >= 0) rc = avcodec_receive_packet(jpeg_.get(), pkt.get());
    if (rc < 0) return Status::Failed("JPEG encoding failed: " + av::ErrorText(rc));

    char name[32];
    std::snprintf(name, sizeof name, "scene-%03d.jpg", scene.index);
    std::error_code ec;
    std::filesystem::create_directories(opts_.keyframe_dir, ec);
    const auto final_path = opts_.keyframe_dir / name;
    const auto tmp_path = opts_.keyframe_dir / (std::string(".") + name + ".tmp");
    {
      std::ofstream out(tmp_path, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(pkt->data), pkt->size);
      if (!out) return Status::Failed("cannot write keyframe " + tmp_path.string());
    }
    std::filesystem::rename(tmp_path, final_path, ec);
    if (ec) return Status::Failed("cannot rename keyframe to " + final_path.string() + ": " + ec.message());
    scene.keyframe = opts_.keyframe_prefix + name;

    if (opts_.on_keyframe) {
      Keyframe kf;
      kf.scene_index = scene.index;
      kf.file = final_path;
      kf.gray.width = w;
      kf.gray.height = h;
      kf.gray.pixels.resize(size_t(w) * h);
      for (int y = 0; y < h; ++y) {
        std::copy_n(yuv->data[0] + size_t(y) * yuv->linesize[0], w, kf.gray.pixels.data() + size_t(y) * w);
      }
      opts_.on_keyframe(std::move(kf));
    }
    return Status::Ok();
  }

  const ScanOptions& opts_;
  const AVFormatContext* fmt_;
  const AVStream* st_;
  double key_offset_ = 1.0;
  double frame_step_ = 0.04;
  SceneScorer scorer_;
  std::vector<uint8_t> small_;
  int small_w_ = 0, small_h_ = 0;
  bool key_done_ = false;
  av::FramePtr held_;
  double held_time_ = 0;
  av::SwsPtr gray_sws_, rgb_sws_;
  av::CodecPtr jpeg_;
};

}  // namespace

Result<VideoScan> ScanVideo(const std::filesystem::path& file, const ScanOptions& opts) {
  auto opened = av::OpenInput(file);
  if (!opened.ok()) return opened.status;
  AVFormatContext* fmt = opened.value.get();
  int vi = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (vi < 0 || (fmt->streams[vi]->disposition & AV_DISPOSITION_ATTACHED_PIC) != 0) {
    return Status::NotMedia(file.string() + " has no video stream");
  }
  AVStream* st = fmt->streams[vi];
  // Let the demuxer drop the other streams' packets early.
  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    if (int(i) != vi) fmt->streams[i]->discard = AVDISCARD_ALL;
  }

  VideoScan scan;
  av::CodecPtr dec;
  bool want_cuda = false;
  if (!opts.gpus.empty()) {
    dec = OpenCudaDecoder(st, opts.gpus[0], &scan.device_note);
    want_cuda = dec != nullptr;
  }
  if (!dec) {
    auto cpu = av::OpenDecoder(st, opts.decoder_threads);
    if (!cpu.ok()) return Status::NotMedia(file.string() + ": " + cpu.status.message);
    dec = std::move(cpu.value);
  }

  if (!opts.all_frames) dec->skip_frame = AVDISCARD_NONREF;
  Scanner scanner(opts, fmt, st);
  av::PacketPtr pkt(av_packet_alloc());
  av::FramePtr frame(av_frame_alloc());
  av::FramePtr sw_frame(av_frame_alloc());
  bool device_known = false;
  int64_t packets = 0;
  Stopwatch clock;

  // Receives every frame the decoder has ready.
  auto drain = [&]() -> Status {
    while (true) {
      int rc = avcodec_receive_frame(dec.get(), frame.get());
      if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return Status::Ok();
      if (rc < 0) {
        ++scan.errors;
        return Status::Ok();
      }
      AVFrame* use = frame.get();
      if (!device_known) {
        device_known = true;
        if (frame->format == AV_PIX_FMT_CUDA) {
          scan.device = "cuda:" + std::to_string(opts.gpus[0]);
        } else if (want_cuda) {
          scan.device_note = "CUDA could not decode this stream; decoded on the CPU";
        }
      }
      if (frame->format == AV_PIX_FMT_CUDA) {
        av_frame_unref(sw_frame.get());
        rc = av_hwframe_transfer_data(sw_frame.get(), frame.get(), 0);
        if (rc < 0) return Status::Failed("copying a frame from the GPU failed: " + av::ErrorText(rc));
        av_frame_copy_props(sw_frame.get(), frame.get());
        use = sw_frame.get();
      }
      scan.decode_seconds += clock.Lap();
      ++scan.frames;
      Status s = scanner.OnFrame(use, scan);
      av_frame_unref(frame.get());
      if (!s.ok()) return s;
      if (opts.on_progress && scan.frames % 250 == 0) opts.on_progress(scan.last_time);
      clock.Lap();  // scene and keyframe time are counted by the scanner
    }
  };

  while (true) {
    if (++packets % 128 == 0 && opts.cancel != nullptr && opts.cancel->cancelled()) {
      return Status::Cancelled();
    }
    int rc = av_read_frame(fmt, pkt.get());
    if (rc < 0) break;  // end of file, or a damaged tail: decode what we have
    if (pkt->stream_index == vi) {
      rc = avcodec_send_packet(dec.get(), pkt.get());
      if (rc < 0 && rc != AVERROR(EAGAIN)) ++scan.errors;
    }
    av_packet_unref(pkt.get());
    Status s = drain();
    if (!s.ok()) return s;
  }
  avcodec_send_packet(dec.get(), nullptr);
  Status s = drain();
  if (!s.ok()) return s;
  scan.decode_seconds += clock.Lap();
  s = scanner.Finish(scan);
  if (!s.ok()) return s;
  if (scan.frames == 0) {
    return Status::NotMedia(file.string() + ": no video frame could be decoded (corrupt or truncated)");
  }
  return scan;
}

}  // namespace baton::analyze
