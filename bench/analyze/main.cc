// analyze_bench: how many times faster than real time the analyze step runs, per stage.
//
//   analyze_bench [--seconds N] [--media FILE] [--threads N] [--asr-fast]
//
// Makes (once, cached in /tmp/baton-bench-media) an N-second (default 600) 1280x720 slide video
// with flite speech through scripts/make-samples.sh, then measures on this machine:
//   1. the peer: `ffmpeg -i FILE -vf select='gt(scene,0.3)' -f null -` (FFmpeg's own scene pass),
//   2. ScanVideo alone (decode + scene score + keyframes, one decoder thread),
//   3. the whole step (probe, audio, video, OCR and ASR sharing the cores),
// and prints each stage as a multiple of real time, plus the core count.
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "steps/analyze/analyze.h"
#include "steps/analyze/stopwatch.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using baton::analyze::Stopwatch;

int Spawn(const std::vector<std::string>& argv, bool quiet) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (quiet) posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string X(double media_seconds, double seconds) {
  return seconds > 0 ? fmt::format("{:7.1f}x", media_seconds / seconds) : "      -";
}

}  // namespace

int main(int argc, char** argv) {
  // Tesseract runs OpenMP loops with up to 10 threads each; libgomp reads OMP_THREAD_LIMIT only
  // when it loads, so set it and start again (as a deployment would in its environment).
  if (std::getenv("OMP_THREAD_LIMIT") == nullptr) {
    setenv("OMP_THREAD_LIMIT", "1", 1);
    execv("/proc/self/exe", argv);
  }
  int seconds = 600, threads = 0;
  bool asr_fast = false;
  std::string media;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (std::strcmp(argv[i], "--asr-fast") == 0) {
      asr_fast = true;
    } else if (std::strcmp(argv[i], "--seconds") == 0 && has_value) {
      seconds = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--media") == 0 && has_value) {
      media = argv[++i];
    } else if (std::strcmp(argv[i], "--threads") == 0 && has_value) {
      threads = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: analyze_bench [--seconds N] [--media FILE] [--threads N] [--asr-fast]\n");
      return 2;
    }
  }
  if (media.empty()) {
    const std::string dir = "/tmp/baton-bench-media";
    media = fmt::format("{}/long-{}.mp4", dir, seconds);
    if (!fs::exists(media)) {
      std::printf("making %s (once) ...\n", media.c_str());
      std::fflush(stdout);
      if (Spawn({std::string(BATON_SOURCE_DIR) + "/scripts/make-samples.sh", dir, "--long", std::to_string(seconds)},
                true) != 0) {
        std::fprintf(stderr, "analyze_bench: make-samples.sh failed\n");
        return 1;
      }
    }
  }
  auto probe = baton::analyze::ProbeMedia(media);
  if (!probe.ok()) {
    std::fprintf(stderr, "analyze_bench: %s\n", probe.status.message.c_str());
    return 1;
  }
  const double dur = probe.value.duration;
  const unsigned cores = std::thread::hardware_concurrency();
  std::printf("analyze_bench: %s, %.0f s, %dx%d %s; %u cores; OMP_THREAD_LIMIT=%s\n", media.c_str(), dur,
              probe.value.video ? probe.value.video->width : 0, probe.value.video ? probe.value.video->height : 0,
              probe.value.video ? probe.value.video->codec.c_str() : "-", cores, std::getenv("OMP_THREAD_LIMIT"));

  // 1. Peer: FFmpeg's own decode + scene filter (all cores, its default threads).
  Stopwatch sw;
  Spawn({"ffmpeg", "-nostdin", "-loglevel", "error", "-i", media, "-map", "0:v", "-vf", "select='gt(scene,0.3)'",
         "-f", "null", "-"}, true);
  const double peer = sw.Lap();

  // 2. Video pass alone.
  char tmpl[] = "/tmp/baton-analyze-bench-XXXXXX";
  const fs::path work = mkdtemp(tmpl);
  baton::analyze::ScanOptions so;
  so.keyframe_dir = work / "scan-keyframes";
  so.decoder_threads = 1;
  sw.Lap();
  auto scan = baton::analyze::ScanVideo(media, so);
  const double scan_wall = sw.Lap();
  if (!scan.ok()) {
    std::fprintf(stderr, "analyze_bench: %s\n", scan.status.message.c_str());
    return 1;
  }

  // 3. The whole step.
  baton::Json results = baton::Json{{"download", {{"path", media}}}};
  baton::CancelToken cancel;
  baton::StepContext ctx;
  ctx.job = "bench";
  ctx.step = "analyze";
  ctx.results = &results;
  ctx.workdir = work;
  ctx.cancel = &cancel;
  ctx.log = [](baton::LogLevel, std::string_view line) { std::printf("  | %.*s\n", int(line.size()), line.data()); };
  baton::Json with = baton::Json::object();
  if (threads > 0) with["threads"] = threads;
  if (asr_fast) with["asr"] = {{"engine", "pocketsphinx"}, {"fast", true}};
  auto cpu_now = [] {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  };
  const double cpu0 = cpu_now();
  sw.Lap();
  auto out = baton::analyze::RunAnalyze(baton::analyze::ParseAnalyzeOptions(with), ctx);
  const double step_wall = sw.Lap();
  const double step_cpu = cpu_now() - cpu0;
  fs::remove_all(work);
  if (!out.ok()) {
    std::fprintf(stderr, "analyze_bench: %s\n", out.error.c_str());
    return 1;
  }
  const auto& t = out.result["timings"];
  const double decode = t["decode"], scenes = t["scenes"], ocr = t["ocr"], asr = t["asr"],
               audio = t.value("audio", 0.0);

  std::printf("\n%-44s %9s %9s\n", "stage (media seconds / stage seconds)", "seconds", "x real");
  std::printf("%-44s %9.2f %s\n", "peer: ffmpeg decode + select=scene filter", peer, X(dur, peer).c_str());
  std::printf("%-44s %9.2f %s\n", "ScanVideo alone (1 decoder thread)", scan_wall, X(dur, scan_wall).c_str());
  std::printf("%-44s %9.2f %s\n", "  of which decode", scan.value.decode_seconds,
              X(dur, scan.value.decode_seconds).c_str());
  std::printf("%-44s %9.2f %s\n", "  of which scene score", scan.value.scene_seconds,
              X(dur, scan.value.scene_seconds).c_str());
  std::printf("%-44s %9.2f %s\n", "  of which keyframes (JPEG)", scan.value.keyframe_seconds,
              X(dur, scan.value.keyframe_seconds).c_str());
  std::printf(
      "in the step (stages overlap; decode/scenes: wall on the decoding thread; OCR/ASR: CPU seconds summed over "
      "workers):\n");
  std::printf("%-44s %9.2f %s\n", "  audio decode + resample", audio, X(dur, audio).c_str());
  std::printf("%-44s %9.2f %s\n", "  decode", decode, X(dur, decode).c_str());
  std::printf("%-44s %9.2f %s\n", "  scenes + keyframes", scenes, X(dur, scenes).c_str());
  std::printf("%-44s %9.2f %s   (%zu keyframes)\n", "  ocr (tesseract)", ocr, X(dur, ocr).c_str(),
              out.result["scenes"].size());
  std::printf("%-44s %9.2f %s   (%zu segments)\n", "  asr (pocketsphinx)", asr, X(dur, asr).c_str(),
              out.result.value("transcript", baton::Json::object()).value("segments", baton::Json::array()).size());
  std::printf("%-44s %9.2f %s\n", "total (wall)", step_wall, X(dur, step_wall).c_str());
  std::printf("%-44s %9.2f %s\n", "lower bound: step CPU seconds / cores", step_cpu / cores,
              X(dur, step_cpu / cores).c_str());
  std::printf("\nratios: step wall / CPU lower bound %.2f (1.00 = every core busy throughout); "
              "video pass / ffmpeg scene filter %.2f; goal 10x real time: %s\n",
              step_wall / (step_cpu / cores), scan_wall / peer, dur / step_wall >= 10 ? "met" : "NOT met");
  return 0;
}
