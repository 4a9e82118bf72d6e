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

struct TesseractOcr::Impl {
  tesseract::TessBaseAPI api;
  ~Impl() { api.End(); }
};

TesseractOcr::TesseractOcr(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TesseractOcr::~TesseractOcr() = default;

Result<std::unique_ptr<TesseractOcr>> TesseractOcr::Create(const std::string& lang, int dpi) {
  auto impl = std::make_unique<Impl>();
  // Init reads shared traineddata files; Tesseract documents no guarantee for concurrent Inits.
  static std::mutex init_mu;
  std::lock_guard lock(init_mu);
  if (impl->api.Init(nullptr, lang.c_str(), tesseract::OEM_LSTM_ONLY) != 0) {
    return Status::Failed("Tesseract could not load language '" + lang + "' (install tesseract-ocr-" + lang + ")", false);
  }
  impl->api.SetPageSegMode(tesseract::PSM_AUTO);
  // Without a resolution Tesseract guesses one and says so on stderr for every image.
  impl->api.SetVariable("user_defined_dpi", std::to_string(dpi).c_str());
  return std::unique_ptr<TesseractOcr>(new TesseractOcr(std::move(impl)));
}

Result<std::string> TesseractOcr::Read(const GrayImage& image) {
  if (image.width <= 0 || image.height <= 0 || image.pixels.size() < size_t(image.width) * image.height) {
    return Status::Failed("OCR given an empty image");
  }
  impl_->api.SetImage(image.pixels.data(), image.width, image.height, 1, image.width);
  char* text = impl_->api.GetUTF8Text();
  if (text == nullptr) return Status::Failed("Tesseract failed to recognize the image");
  std::string out = Tidy(text);
  delete[] text;
  impl_->api.Clear();
  return out;
}

}  // namespace baton::analyze
