// ocr_cjk_bench: how exactly the analyze step's OCR reads Chinese slides.
//
// Makes slides with ffmpeg's drawtext in CJK fonts from Debian packages (fonts-wqy-zenhei,
// fonts-wqy-microhei, fonts-arphic-uming) at several sizes on plain, dark and gradient
// backgrounds, encodes each as H.264 (as a downloaded video would be), decodes the frame's luma
// and reads it with TesseractOcr under several settings. Prints the character error rate (edit
// distance over code points, whitespace ignored) per setting and, for the default, per font,
// size and background, and the machine it ran on.
//
//   build/bench/ocr_cjk/ocr_cjk_bench [--quick] [--keep DIR]
//   OCR_CJK_ONLY=default build/bench/ocr_cjk/ocr_cjk_bench    (only the settings named so)
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "steps/analyze/analyze.h"

namespace fs = std::filesystem;
using namespace baton::analyze;

namespace {

struct Font { const char* name; const char* file; };
struct Background { const char* name; std::string source; const char* ink; };
struct Text { const char* lang; const char* script; std::string text; };

const std::vector<Font> kFonts = {
    {"wqy-zenhei", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"},
    {"wqy-microhei", "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"},
    {"arphic-uming", "/usr/share/fonts/truetype/arphic/uming.ttc"},
};
const std::vector<int> kSizes = {28, 40, 56, 72};
const std::vector<Background> kBackgrounds = {
    {"white", "color=c=white", "black"},
    {"navy", "color=c=navy", "white"},
    {"khaki", "color=c=khaki", "black"},
    {"gradient", "gradients=c0=0x102040:c1=0x4070a0:x0=0:y0=0:x1=1280:y1=720:speed=0.00001:seed=1:type=linear",
     "white"},
};
const std::vector<Text> kTexts = {
    {"chi_sim", "simplified", "季度报告\n收入增长了百分之十二。\n新产品在华东地区销售最好！"},
    {"chi_sim", "simplified", "第二季度经营情况\n用户数量达到三百万；\n下一步：扩大海外市场，降低成本。"},
    {"chi_sim", "simplified", "2024年研发投入\n研发人员增加到450人。\n新版本将于9月发布。"},
    {"chi_tra", "traditional", "季度報告\n營收成長了百分之十二。\n新產品在華東地區銷售最好！"},
};

std::u32string Decode(const std::string& s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    if (i + n > s.size()) n = 1;
    char32_t c = n == 1 ? b : (b & (0x7F >> n));
    for (size_t k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    if (c != ' ' && c != '\n' && c != '\t' && c != '\r') out.push_back(c);
    i += n;
  }
  return out;
}

size_t EditDistance(const std::u32string& a, const std::u32string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

void Run(const std::string& cmd) {
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "failed: %s\n", cmd.c_str());
    std::exit(1);
  }
}

struct Slide {
  std::string font, background, script, lang, text;
  int size;
  GrayImage gray;
};

Slide Make(const fs::path& dir, int i, const Font& f, int size, const Background& bg, const Text& t) {
  const fs::path txt = dir / fmt::format("s{}.txt", i), mp4 = dir / fmt::format("s{}.mp4", i),
                 raw = dir / fmt::format("s{}.gray", i);
  std::ofstream(txt) << t.text;
  Run(fmt::format("ffmpeg -nostdin -loglevel error -y -f lavfi -i '{}:s=1280x720:r=25:d=1' -vf "
                  "\"drawtext=fontfile={}:textfile={}:fontsize={}:fontcolor={}:line_spacing={}:x=(w-tw)/2:y=(h-th)/2\" "
                  "-c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p {}",
                  bg.source, f.file, txt.string(), size, bg.ink, size / 3, mp4.string()));
  Run(fmt::format("ffmpeg -nostdin -loglevel error -y -ss 0.5 -i {} -frames:v 1 -f rawvideo -pix_fmt gray {}",
                  mp4.string(), raw.string()));
  Slide s{f.name, bg.name, t.script, t.lang, t.text, size, {}};
  std::ifstream in(raw, std::ios::binary);
  s.gray.width = 1280;
  s.gray.height = 720;
  s.gray.pixels.assign(std::istreambuf_iterator<char>(in), {});
  return s;
}

struct Tally {
  size_t errors = 0, chars = 0, exact = 0, slides = 0;
  double seconds = 0;
  void Add(size_t e, size_t n, bool ok, double s) { errors += e; chars += n; exact += ok; ++slides; seconds += s; }
  std::string Cer() const { return fmt::format("{:.2f}%", chars ? 100.0 * errors / chars : 0.0); }
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  fs::path keep;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--keep" && i + 1 < argc) keep = argv[++i];
    else { std::fprintf(stderr, "usage: ocr_cjk_bench [--quick] [--keep DIR]\n"); return 2; }
  }
  setenv("OMP_THREAD_LIMIT", "1", 1);
  const fs::path dir = keep.empty() ? fs::temp_directory_path() / fmt::format("ocr_cjk_bench.{}", getpid()) : keep;
  fs::create_directories(dir);

  std::vector<Slide> slides;
  std::string only;  // OCR_CJK_ONLY=TEXT: only the settings whose name contains TEXT
  if (const char* o = std::getenv("OCR_CJK_ONLY")) only = o;
  int i = 0;
  for (const auto& f : kFonts)
    for (int size : kSizes)
      for (const auto& bg : kBackgrounds) {
        if (quick && (size != 40 || f.name != std::string("wqy-zenhei"))) continue;
        const Text& t = kTexts[i % kTexts.size()];
        slides.push_back(Make(dir, i++, f, size, bg, t));
      }
  std::printf("%zu slides (%zu fonts x %zu sizes x %zu backgrounds, simplified and traditional text), 1280x720 H.264\n",
              slides.size(), kFonts.size(), kSizes.size(), kBackgrounds.size());

  // lang: "" = the slide's chi_sim/chi_tra alone; "+eng" appended to it.
  struct Config { std::string name; OcrSettings s; };
  auto settings = [](std::string lang, bool flatten, bool compare) {
    OcrSettings s;
    s.lang = std::move(lang);
    s.flatten = flatten;
    s.compare_cjk_alone = compare;
    return s;
  };
  const std::vector<Config> configs = {
      {"before: chi_*, auto layout, 96 dpi, raw frame", {"", 96, "auto", false}},
      {"prepared 48 px, chi_* alone (last default)", settings("", false, false)},
      {"prepared, chi_*+eng", settings("+eng", false, false)},
      {"prepared + flattened, chi_* alone", settings("", true, false)},
      {"prepared + flattened, chi_*+eng", settings("+eng", true, false)},
      {"default: flattened, chi_*+eng vs chi_* by confidence", settings("+eng", true, true)},
  };
  std::map<std::string, std::unique_ptr<TesseractOcr>> engines;
  for (const auto& c : configs) {
    if (!only.empty() && c.name.find(only) == std::string::npos) continue;
    Tally all;
    std::map<std::string, Tally> by;
    std::vector<std::string> misses;
    for (const auto& s : slides) {
      OcrSettings set = c.s;
      set.lang = s.lang + c.s.lang;  // the slide's chi_sim or chi_tra, then "" or "+eng"
      const std::string key = c.name + set.lang;
      if (!engines.count(key)) {
        auto made = TesseractOcr::Create(set);
        if (!made.ok()) { std::fprintf(stderr, "%s\n", made.status.message.c_str()); return 1; }
        engines[key] = std::move(made.value);
      }
      const auto t0 = std::chrono::steady_clock::now();
      auto read = engines[key]->Read(s.gray);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const std::string got = read.ok() ? read.value : "";
      const auto ref = Decode(s.text), hyp = Decode(got);
      const size_t e = EditDistance(ref, hyp);
      all.Add(e, ref.size(), got == s.text, secs);
      by["font " + s.font].Add(e, ref.size(), got == s.text, secs);
      by[fmt::format("size {:>2} px", s.size)].Add(e, ref.size(), got == s.text, secs);
      by["background " + s.background].Add(e, ref.size(), got == s.text, secs);
      by["script " + s.script].Add(e, ref.size(), got == s.text, secs);
      if (e > 0 && misses.size() < 4)
        misses.push_back(fmt::format("{} {}px {}: {}", s.font, s.size, s.background, got));
    }
    std::printf("\n%-46s CER %7s  exact %zu/%zu slides  %.2f s per slide\n", c.name.c_str(), all.Cer().c_str(),
                all.exact, all.slides, all.seconds / all.slides);
    if (&c == &configs.back()) {
      for (const auto& [k, t] : by)
        std::printf("  %-26s CER %7s  exact %zu/%zu\n", k.c_str(), t.Cer().c_str(), t.exact, t.slides);
    }
    for (const auto& m : misses) std::printf("  miss: %s\n", m.c_str());
  }
  struct utsname u {};
  uname(&u);
  std::printf("\nmachine: %s %s, %u hardware threads; Tesseract %s; one OCR thread (OMP_THREAD_LIMIT=1)\n", u.nodename,
              u.machine, std::thread::hardware_concurrency(), "5 (libtesseract, LSTM)");
  if (keep.empty()) fs::remove_all(dir);
  return 0;
}
