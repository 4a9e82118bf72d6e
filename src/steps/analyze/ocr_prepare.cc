// PrepareForOcr, JoinCjkSpaces and the Tesseract data checks: the pure parts of OCR.
//
// Why prepare at all: Tesseract's LSTM models are trained on dark text on a light page at about
// 30-60 px per line. Slides are often light-on-dark, and 720p keyframes with 24-32 px text are
// small for CJK characters, whose strokes then blur together (~15% character errors on such
// slides without it; see docs/performance.md, bench/ocr_cjk).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "steps/analyze/analyze.h"

namespace baton::analyze {
namespace {

int OtsuThreshold(const std::vector<uint8_t>& pixels) {
  std::array<double, 256> hist{};
  for (uint8_t p : pixels) hist[p] += 1;
  const double total = static_cast<double>(pixels.size());
  double sum = 0;
  for (int i = 0; i < 256; ++i) sum += i * hist[i];
  double sum_b = 0, w_b = 0, best = -1;
  int threshold = 127;
  for (int t = 0; t < 256; ++t) {
    w_b += hist[t];
    if (w_b == 0) continue;
    const double w_f = total - w_b;
    if (w_f == 0) break;
    sum_b += t * hist[t];
    const double m_b = sum_b / w_b, m_f = (sum - sum_b) / w_f;
    const double between = w_b * w_f * (m_b - m_f) * (m_b - m_f);
    if (between > best) {
      best = between;
      threshold = t;
    }
  }
  return threshold;
}

// Median height of the runs of rows holding ink (pixels <= threshold), or 0 when none.
int MedianLineHeight(const GrayImage& img, int threshold) {
  const int min_ink = std::max(2, img.width / 500);
  std::vector<int> runs;
  int run = 0;
  for (int y = 0; y <= img.height; ++y) {
    int ink = 0;
    if (y < img.height) {
      const uint8_t* row = &img.pixels[size_t(y) * img.width];
      for (int x = 0; x < img.width; ++x) ink += row[x] <= threshold;
    }
    if (ink >= min_ink) {
      ++run;
    } else {
      if (run >= 4) runs.push_back(run);
      run = 0;
    }
  }
  if (runs.empty()) return 0;
  std::nth_element(runs.begin(), runs.begin() + runs.size() / 2, runs.end());
  return runs[runs.size() / 2];
}

GrayImage Resize(const GrayImage& in, double scale) {
  GrayImage out;
  out.width = std::max(1, static_cast<int>(std::lround(in.width * scale)));
  out.height = std::max(1, static_cast<int>(std::lround(in.height * scale)));
  out.pixels.resize(size_t(out.width) * out.height);
  for (int y = 0; y < out.height; ++y) {
    const double sy = std::clamp((y + 0.5) / scale - 0.5, 0.0, in.height - 1.0);
    const int y0 = static_cast<int>(sy), y1 = std::min(y0 + 1, in.height - 1);
    const double fy = sy - y0;
    for (int x = 0; x < out.width; ++x) {
      const double sx = std::clamp((x + 0.5) / scale - 0.5, 0.0, in.width - 1.0);
      const int x0 = static_cast<int>(sx), x1 = std::min(x0 + 1, in.width - 1);
      const double fx = sx - x0;
      auto at = [&](int xx, int yy) { return static_cast<double>(in.pixels[size_t(yy) * in.width + xx]); };
      const double v =
          (at(x0, y0) * (1 - fx) + at(x1, y0) * fx) * (1 - fy) + (at(x0, y1) * (1 - fx) + at(x1, y1) * fx) * fy;
      out.pixels[size_t(y) * out.width + x] = static_cast<uint8_t>(std::lround(v));
    }
  }
  return out;
}

// Running maximum over a window of `w` pixels along rows (horizontal) or columns; O(n) per pass
// with the van Herk / Gil-Werman split into blocks of w.
void MaxFilter1D(std::vector<uint8_t>& px, int width, int height, int w, bool horizontal) {
  if (w <= 1) return;
  const int n = horizontal ? width : height, lines = horizontal ? height : width;
  std::vector<uint8_t> line(n), pre(n), suf(n);
  const int r = w / 2;
  for (int l = 0; l < lines; ++l) {
    auto at = [&](int i) -> uint8_t& { return horizontal ? px[size_t(l) * width + i] : px[size_t(i) * width + l]; };
    for (int i = 0; i < n; ++i) line[i] = at(i);
    for (int i = 0; i < n; ++i) pre[i] = i % w == 0 ? line[i] : std::max(pre[i - 1], line[i]);
    for (int i = n - 1; i >= 0; --i) suf[i] = (i % w == w - 1 || i == n - 1) ? line[i] : std::max(suf[i + 1], line[i]);
    for (int i = 0; i < n; ++i) {
      const int lo = std::max(0, i - r), hi = std::min(n - 1, i + r);
      at(i) = std::max(suf[lo], pre[hi]);
    }
  }
}

// Flattens an uneven background (gradients, vignettes) under dark text: each pixel is divided by
// the local background level, taken as the brightest value within `window` pixels (wider than any
// stroke, so the text itself never counts as background). A plain page is left unchanged.
void FlattenBackground(GrayImage& img, int window) {
  std::vector<uint8_t> bg = img.pixels;
  MaxFilter1D(bg, img.width, img.height, window, true);
  MaxFilter1D(bg, img.width, img.height, window, false);
  for (size_t i = 0; i < img.pixels.size(); ++i) {
    const int b = std::max<int>(bg[i], 1);
    img.pixels[i] = static_cast<uint8_t>(std::min(255, img.pixels[i] * 255 / b));
  }
}

// Decodes the code point at s[i] (invalid bytes decode as themselves); sets *len.
char32_t DecodeAt(std::string_view s, size_t i, size_t* len) {
  const auto b = static_cast<unsigned char>(s[i]);
  size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
  if (i + n > s.size()) n = 1;
  *len = n;
  if (n == 1) return b;
  char32_t c = b & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return c;
}

bool IsCjk(char32_t c) {
  return (c >= 0x2E80 && c <= 0x303F) ||   // radicals, CJK symbols and punctuation
         (c >= 0x3040 && c <= 0x30FF) ||   // kana
         (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xF900 && c <= 0xFAFF) ||
         (c >= 0xFF00 && c <= 0xFFEF) ||   // full-width forms (，！？：)
         (c >= 0x20000 && c <= 0x2FFFF);
}

}  // namespace

GrayImage PrepareForOcr(const GrayImage& image, int line_height, bool binarize, bool flatten) {
  GrayImage img = image;
  int t = OtsuThreshold(img.pixels);
  size_t dark = 0;
  for (uint8_t p : img.pixels) dark += p <= t;
  if (dark * 2 > img.pixels.size()) {  // light text on a dark background: make it dark on light
    for (uint8_t& p : img.pixels) p = static_cast<uint8_t>(255 - p);
    t = 254 - t;
  }
  if (binarize && flatten) {
    // A background that is not one shade (a gradient) defeats one global threshold: flatten it
    // with a window of 1/12 of the height (60 px at 720p: far wider than any stroke), then find
    // the threshold again.
    FlattenBackground(img, std::max(15, img.height / 12) | 1);
    t = OtsuThreshold(img.pixels);
  }
  const int line = MedianLineHeight(img, t);
  double scale = line > 0 ? std::clamp(static_cast<double>(line_height) / line, 1.0, 4.0) : 1.0;
  if (scale < 1.2) scale = 1.0;
  if (scale > 1.0) img = Resize(img, scale);
  constexpr int kMargin = 16;
  GrayImage out;
  out.width = img.width + 2 * kMargin;
  out.height = img.height + 2 * kMargin;
  // The margin takes the background's shade (the image's brightest common level after inversion).
  out.pixels.assign(size_t(out.width) * out.height, 255);
  for (int y = 0; y < img.height; ++y) {
    const uint8_t* src = &img.pixels[size_t(y) * img.width];
    uint8_t* dst = &out.pixels[size_t(y + kMargin) * out.width + kMargin];
    for (int x = 0; x < img.width; ++x) dst[x] = !binarize ? src[x] : src[x] <= t ? 0 : 255;
  }
  return out;
}

std::string JoinCjkSpaces(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  char32_t prev = 0;  // last code point written (0 at a line start)
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ' ') {
      size_t j = i;
      while (j < text.size() && text[j] == ' ') ++j;
      size_t len = 0;
      const char32_t next = j < text.size() ? DecodeAt(text, j, &len) : 0;
      if (!(prev != 0 && next != 0 && next != '\n' && (IsCjk(prev) || IsCjk(next)))) out.append(text.substr(i, j - i));
      i = j;
      continue;
    }
    size_t len = 0;
    const char32_t c = DecodeAt(text, i, &len);
    out.append(text.substr(i, len));
    prev = c == '\n' ? 0 : c;
    i += len;
  }
  return out;
}

std::string FullWidthCjkPunctuation(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  char32_t prev = 0;
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    const char32_t c = DecodeAt(text, i, &len);
    const char* wide = nullptr;
    if (IsCjk(prev) && !(prev >= 0xFF00 && prev <= 0xFFEF && c == prev - 0xFEE0)) {
      switch (c) {
        case ',': wide = "，"; break;
        case '.': wide = "。"; break;
        case '!': wide = "！"; break;
        case '?': wide = "？"; break;
        case ';': wide = "；"; break;
        case ':': wide = "："; break;
        case '(': wide = "（"; break;
        default: break;
      }
    }
    if (c == ')' && out.find("（") != std::string::npos) wide = "）";
    if (wide != nullptr) {
      out += wide;
      size_t wl = 0;
      prev = DecodeAt(wide, 0, &wl);
    } else {
      out.append(text.substr(i, len));
      prev = c == '\n' ? 0 : c;
    }
    i += len;
  }
  // "，。" never occurs in Chinese text: it is one full stop that OCR read twice (a comma for its
  // lower half, then the stop). The only correction made without a dictionary.
  for (size_t at = out.find("，。"); at != std::string::npos; at = out.find("，。", at)) out.erase(at, 3);
  return out;
}

std::string TesseractPackage(std::string_view lang) {
  std::string name = "tesseract-ocr-";
  for (char c : lang) name.push_back(c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return name;
}

std::string MissingTesseractLanguage(std::string_view langs) {
  std::vector<std::filesystem::path> dirs;
  if (const char* prefix = std::getenv("TESSDATA_PREFIX"); prefix != nullptr && *prefix != '\0') {
    dirs.emplace_back(prefix);
    dirs.emplace_back(std::filesystem::path(prefix) / "tessdata");
  }
  dirs.emplace_back("/usr/share/tesseract-ocr/5/tessdata");
  dirs.emplace_back("/usr/share/tesseract-ocr/4.00/tessdata");
  size_t pos = 0;
  while (pos <= langs.size()) {
    size_t plus = langs.find('+', pos);
    if (plus == std::string_view::npos) plus = langs.size();
    const std::string lang(langs.substr(pos, plus - pos));
    pos = plus + 1;
    if (lang.empty()) continue;
    bool found = false;
    std::error_code ec;
    for (const auto& d : dirs) found = found || std::filesystem::exists(d / (lang + ".traineddata"), ec);
    if (!found) return lang;
  }
  return "";
}

}  // namespace baton::analyze
