#include "support/media.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>

#include "support/util.h"

namespace baton::testing {
namespace {

constexpr const char* kFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

std::mutex g_mu;

void Run(const std::vector<std::string>& argv, const std::filesystem::path& log) {
  if (RunProgram(argv, log.string()) != 0) {
    std::string cmd;
    for (const auto& a : argv) cmd += a + " ";
    throw std::runtime_error("test media: failed: " + cmd + "\n" + ReadFile(log));
  }
}

// Makes `name` in MediaDir() with `make` on first use. `make` writes a temporary name (same
// extension) that is renamed into place, so a file under the final name is always complete, also
// for other test processes sharing the folder.
const std::filesystem::path& Cached(const std::string& name,
                                    const std::function<void(const std::filesystem::path&)>& make) {
  static std::map<std::string, std::filesystem::path> made;
  std::lock_guard lock(g_mu);
  auto it = made.find(name);
  if (it != made.end()) return it->second;
  const auto path = MediaDir() / name;
  if (!std::filesystem::exists(path)) {
    const std::string tmp_name = ".tmp-" + std::to_string(getpid()) + "-" + name;
    make(MediaDir() / tmp_name);
    std::filesystem::rename(MediaDir() / tmp_name, path);
    // Drop the helpers' leftovers (logs, speech WAVs) named after the temporary file.
    for (const auto& entry : std::filesystem::directory_iterator(MediaDir())) {
      if (entry.path().filename().string().rfind(tmp_name, 0) == 0) std::filesystem::remove(entry.path());
    }
  }
  return made.emplace(name, path).first->second;
}

void FirstHalf(const std::filesystem::path& from, const std::filesystem::path& to) {
  const std::string bytes = ReadFile(from);
  std::ofstream(to, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() / 2));
}

const std::vector<std::string> kH264Aac = {"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                                           "-c:a", "aac", "-b:a", "64k"};

}  // namespace

const std::vector<SlideSpec>& StandardSlides() {
  static const std::vector<SlideSpec> slides = {
      {6.0, "navy", "white", "Quarterly Results", "Welcome to the quarterly results meeting."},
      {6.0, "khaki", "black", "Revenue grew twelve percent", "Revenue grew twelve percent this year."},
  };
  return slides;
}

const std::filesystem::path& MediaDir() {
  // ctest runs every test case in its own process: keep the media next to the test executable
  // (in the build tree) so they are made once and shared by all of them, and by later runs.
  static const std::filesystem::path dir = [] {
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    auto d = (ec ? std::filesystem::temp_directory_path() : exe.parent_path()) /
             "test-media-v1";  // bump when the media change
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

void RenderSlides(const std::vector<SlideSpec>& slides, const std::filesystem::path& out,
                  const std::vector<std::string>& codec_args, bool with_audio) {
  const auto log = out.string() + ".log";
  std::vector<std::string> argv = {"ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"};
  std::string graph, vcat, acat;
  for (size_t i = 0; i < slides.size(); ++i) {
    const auto& s = slides[i];
    const std::string d = std::to_string(s.seconds);
    if (with_audio) {
      const auto wav = out.string() + ".say" + std::to_string(i) + ".wav";
      Run({"flite", "-voice", "slt", "-t", s.say, "-o", wav}, log);
      argv.insert(argv.end(), {"-i", wav});
      graph += "[" + std::to_string(i) + ":a]aresample=44100,adelay=500:all=1,apad=whole_dur=" + d +
               ",atrim=0:" + d + "[a" + std::to_string(i) + "];";
      acat += "[a" + std::to_string(i) + "]";
    }
    graph += "color=c=" + s.background + ":s=1280x720:r=25:d=" + d + ",drawtext=fontfile=" + kFont +
             ":text='" + s.text + "':fontsize=72:fontcolor=" + s.ink + ":x=(w-tw)/2:y=(h-th)/2[v" +
             std::to_string(i) + "];";
    vcat += "[v" + std::to_string(i) + "]";
  }
  const std::string n = std::to_string(slides.size());
  graph += vcat + "concat=n=" + n + ":v=1:a=0[v]";
  if (with_audio) graph += ";" + acat + "concat=n=" + n + ":v=0:a=1[a]";
  argv.insert(argv.end(), {"-filter_complex", graph, "-map", "[v]"});
  if (with_audio) argv.insert(argv.end(), {"-map", "[a]"});
  argv.insert(argv.end(), codec_args.begin(), codec_args.end());
  argv.push_back(out.string());
  Run(argv, log);
}

const std::filesystem::path& Mp4Clip() {
  return Cached("clip.mp4", [](const auto& p) { RenderSlides(StandardSlides(), p, kH264Aac); });
}

const std::filesystem::path& FaststartMp4Clip() {
  const auto& src = Mp4Clip();
  return Cached("clip-faststart.mp4", [&](const auto& p) {
    Run({"ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", src.string(), "-c", "copy", "-movflags",
         "+faststart", p.string()}, p.string() + ".log");
  });
}

const std::filesystem::path& WebmClip() {
  const auto& src = Mp4Clip();
  return Cached("clip.webm", [&](const auto& p) {
    Run({"ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", src.string(), "-c:v", "libvpx-vp9",
         "-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k", "-c:a", "libopus", "-b:a", "48k", p.string()},
        p.string() + ".log");
  });
}

const std::filesystem::path& MkvClip() {
  const auto& src = Mp4Clip();
  return Cached("clip.mkv", [&](const auto& p) {
    Run({"ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", src.string(), "-c", "copy", p.string()},
        p.string() + ".log");
  });
}

const std::filesystem::path& NoAudioClip() {
  const auto& src = Mp4Clip();
  return Cached("clip-noaudio.mp4", [&](const auto& p) {
    Run({"ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", src.string(), "-an", "-c:v", "copy", p.string()},
        p.string() + ".log");
  });
}

const std::filesystem::path& AudioOnlyWav() {
  const auto& src = Mp4Clip();
  return Cached("clip-audio.wav", [&](const auto& p) {
    Run({"ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", src.string(), "-vn", "-c:a", "pcm_s16le",
         p.string()}, p.string() + ".log");
  });
}

const std::filesystem::path& TruncatedMp4() {
  const auto& src = Mp4Clip();
  return Cached("clip-truncated.mp4", [&](const auto& p) { FirstHalf(src, p); });
}

const std::filesystem::path& TruncatedFaststartMp4() {
  const auto& src = FaststartMp4Clip();
  return Cached("clip-faststart-truncated.mp4", [&](const auto& p) { FirstHalf(src, p); });
}

const std::filesystem::path& ZeroByteFile() {
  return Cached("video.mp4", [](const auto& p) { std::ofstream(p, std::ios::binary); });
}

const std::filesystem::path& TextFile() {
  return Cached("notes.mp4", [](const auto& p) {
    std::ofstream(p) << "These are meeting notes, not a video.\n";
  });
}

void MakeCjkSlidesVideo(const std::vector<std::string>& slides, const std::string& font,
                        const std::filesystem::path& work, const std::filesystem::path& out) {
  std::string graph, inputs;
  for (size_t i = 0; i < slides.size(); ++i) {
    const auto txt = work / ("slide" + std::to_string(i) + ".txt");
    std::ofstream(txt) << slides[i];
    const bool dark = i % 2 == 0;
    graph += std::string("color=c=") + (dark ? "navy" : "khaki") + ":s=1280x720:r=25:d=6,drawtext=fontfile=" + font +
             ":textfile=" + txt.string() + ":fontsize=56:line_spacing=20:fontcolor=" + (dark ? "white" : "black") +
             ":x=(w-tw)/2:y=(h-th)/2[v" + std::to_string(i) + "];";
    inputs += "[v" + std::to_string(i) + "]";
  }
  graph += inputs + "concat=n=" + std::to_string(slides.size()) + ":v=1:a=0[v]";
  const auto log = work / "ffmpeg.log";
  const std::vector<std::string> argv = {"ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                                         "sine=frequency=440:duration=" + std::to_string(6 * slides.size()),
                                         "-filter_complex", graph, "-map", "[v]", "-map", "0:a", "-c:v", "libx264",
                                         "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", out.string()};
  if (RunProgram(argv, log.string()) != 0) throw std::runtime_error("ffmpeg failed: " + ReadFile(log));
}

}  // namespace baton::testing
