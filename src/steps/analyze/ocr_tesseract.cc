// TesseractOcr: one Tesseract 5 LSTM engine reading gray keyframes.
#include <tesseract/baseapi.h>

#include <mutex>

#include "steps/analyze/analyze.h"

namespace baton::analyze {

// Tesseract's text with blank lines dropped, runs of spaces collapsed and lines kept apart by "\n".
static std::string Tidy(const char* raw) {
  std::string out, line;
  auto flush = [&] {
    while (!line.empty() && line.back() == ' ') line.pop_back();
    if (!line.empty()) out += (out.empty() ? "" : "\n") + line;
    line.clear();
  };
  for (const char* p = raw; *p != '\0'; ++p) {
    const char c = *p;
    if (c == '\n') {
      flush();
    } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f') {
      if (!line.empty() && line.back() != ' ') line.push_back(' ');
    } else {
      line.push_back(c);
    }
  }
  flush();
  return out;
}

// The CJK languages of a '+'-joined list ("chi_sim+eng" -> "chi_sim"), "" when it has none or
// nothing else (then there is no second reading to compare).
static std::string CjkAlone(const std::string& langs) {
  std::string cjk, other;
  size_t pos = 0;
  while (pos <= langs.size()) {
    size_t plus = langs.find('+', pos);
    if (plus == std::string::npos) plus = langs.size();
    const std::string l = langs.substr(pos, plus - pos);
    pos = plus + 1;
    if (l.empty()) continue;
    const bool is_cjk = l.rfind("chi_", 0) == 0 || l.rfind("jpn", 0) == 0 || l.rfind("kor", 0) == 0;
    std::string& into = is_cjk ? cjk : other;
    into += (into.empty() ? "" : "+") + l;
  }
  return other.empty() ? "" : cjk;
}

struct TesseractOcr::Impl {
  tesseract::TessBaseAPI api;
  // With a CJK language mixed with others ("chi_sim+eng"): the CJK language alone. Both read every
  // image and the reading with the higher mean word confidence wins: `+eng` reads Latin words
  // and digits on mixed slides, but guesses Latin for some short all-Chinese lines (a title
  // 季度报告 read as "= IRS"), which the CJK-only reading gets right with more confidence.
  std::unique_ptr<tesseract::TessBaseAPI> alone;
  bool prepare = false;
  int line_height = 48;
  bool binarize = true;
  bool flatten = true;
  bool cjk = false;  // full-width punctuation after CJK characters
  ~Impl() {
    api.End();
    if (alone) alone->End();
  }
};

TesseractOcr::TesseractOcr(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TesseractOcr::~TesseractOcr() = default;

Result<std::unique_ptr<TesseractOcr>> TesseractOcr::Create(const OcrSettings& settings) {
  if (const std::string missing = MissingTesseractLanguage(settings.lang); !missing.empty()) {
    return Status::Failed("Tesseract has no data for language '" + missing + "' (install the Debian package " +
                              TesseractPackage(missing) + ")", false);
  }
  tesseract::PageSegMode psm = tesseract::PSM_SINGLE_BLOCK;
  if (settings.layout == "auto") psm = tesseract::PSM_AUTO;
  else if (settings.layout == "sparse") psm = tesseract::PSM_SPARSE_TEXT;
  else if (settings.layout == "vertical") psm = tesseract::PSM_SINGLE_BLOCK_VERT_TEXT;
  else if (settings.layout != "block") return Status::Failed("unknown OCR layout '" + settings.layout + "'", false);
  auto impl = std::make_unique<Impl>();
  impl->prepare = settings.prepare;
  impl->line_height = settings.line_height;
  impl->binarize = settings.binarize;
  impl->flatten = settings.flatten;
  impl->cjk = settings.lang.find("chi_") != std::string::npos || settings.lang.find("jpn") != std::string::npos;
  // Init reads shared traineddata files; Tesseract documents no guarantee for concurrent Inits.
  static std::mutex init_mu;
  std::lock_guard lock(init_mu);
  if (impl->api.Init(nullptr, settings.lang.c_str(), tesseract::OEM_LSTM_ONLY) != 0) {
    return Status::Failed("Tesseract could not load language '" + settings.lang + "' (install " +
                              TesseractPackage(settings.lang.substr(0, settings.lang.find('+'))) + ")", false);
  }
  auto configure = [&](tesseract::TessBaseAPI& api) {
    api.SetPageSegMode(psm);
    // Without a resolution Tesseract guesses one and says so on stderr for every image.
    api.SetVariable("user_defined_dpi", std::to_string(settings.dpi).c_str());
    // Keep the spaces Tesseract sees between words as they are; JoinCjkSpaces then removes the
    // ones between CJK characters (which Chinese text does not have).
    api.SetVariable("preserve_interword_spaces", "1");
  };
  configure(impl->api);
  if (const std::string cjk = settings.compare_cjk_alone ? CjkAlone(settings.lang) : ""; !cjk.empty()) {
    impl->alone = std::make_unique<tesseract::TessBaseAPI>();
    if (impl->alone->Init(nullptr, cjk.c_str(), tesseract::OEM_LSTM_ONLY) != 0) {
      return Status::Failed("Tesseract could not load language '" + cjk + "' (install " + TesseractPackage(cjk) + ")",
                            false);
    }
    configure(*impl->alone);
  }
  return std::unique_ptr<TesseractOcr>(new TesseractOcr(std::move(impl)));
}

Result<std::string> TesseractOcr::Read(const GrayImage& input) {
  if (input.width <= 0 || input.height <= 0 || input.pixels.size() < size_t(input.width) * input.height) {
    return Status::Failed("OCR given an empty image");
  }
  GrayImage prepared;
  if (impl_->prepare) prepared = PrepareForOcr(input, impl_->line_height, impl_->binarize, impl_->flatten);
  const GrayImage& image = impl_->prepare ? prepared : input;
  auto read = [&](tesseract::TessBaseAPI& api, int* confidence) -> Result<std::string> {
    api.SetImage(image.pixels.data(), image.width, image.height, 1, image.width);
    char* text = api.GetUTF8Text();
    if (text == nullptr) return Status::Failed("Tesseract failed to recognize the image");
    std::string out = JoinCjkSpaces(Tidy(text));
    delete[] text;
    *confidence = api.MeanTextConf();
    api.Clear();
    return out;
  };
  int confidence = 0;
  Result<std::string> out = read(impl_->api, &confidence);
  if (!out.ok()) return out;
  if (impl_->alone) {
    int alone_confidence = 0;
    Result<std::string> other = read(*impl_->alone, &alone_confidence);
    if (other.ok() && alone_confidence > confidence) out = std::move(other);
  }
  if (impl_->cjk) out.value = FullWidthCjkPunctuation(out.value);
  return out;
}

}  // namespace baton::analyze
