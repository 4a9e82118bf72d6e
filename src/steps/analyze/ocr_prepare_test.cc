// PrepareForOcr on synthetic pages: the background flattening that keeps a gradient from being
// read as ink, and the CJK-only language split used to compare readings by confidence.
#include <gtest/gtest.h>

#include "steps/analyze/analyze.h"

namespace baton::analyze {
namespace {

// A 600x300 page whose background darkens from 250 (left) to 100 (right), with three "lines" of
// 32 px tall dark bars (4 px strokes every 12 px) of ink level 20. `ink` marks the bar pixels.
GrayImage GradientPage(std::vector<bool>* ink) {
  GrayImage g;
  g.width = 600;
  g.height = 300;
  g.pixels.resize(size_t(g.width) * g.height);
  ink->assign(g.pixels.size(), false);
  for (int y = 0; y < g.height; ++y)
    for (int x = 0; x < g.width; ++x) {
      const size_t i = size_t(y) * g.width + x;
      const bool in_line = (y >= 40 && y < 72) || (y >= 130 && y < 162) || (y >= 220 && y < 252);
      const bool stroke = in_line && x >= 20 && x < 580 && x % 12 < 4;
      (*ink)[i] = stroke;
      g.pixels[i] = stroke ? 20 : static_cast<uint8_t>(250 - 150 * x / (g.width - 1));
    }
  return g;
}

// Pixels of the prepared page (16 px margin, no scaling at line height 32) that disagree with `ink`.
size_t Wrong(const GrayImage& out, const std::vector<bool>& ink, int width, int height) {
  size_t wrong = 0;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      const uint8_t p = out.pixels[size_t(y + 16) * out.width + x + 16];
      wrong += (p == 0) != ink[size_t(y) * width + x];
    }
  return wrong;
}

TEST(PrepareForOcr, AGradientBackgroundIsNotReadAsInk) {
  std::vector<bool> ink;
  const GrayImage page = GradientPage(&ink);
  const GrayImage flat = PrepareForOcr(page, 32, true, true);
  ASSERT_EQ(flat.width, page.width + 32);  // not scaled
  EXPECT_EQ(Wrong(flat, ink, page.width, page.height), 0u);
  // One global threshold cannot split this page: the dark end of the background falls below it.
  const GrayImage global = PrepareForOcr(page, 32, true, false);
  EXPECT_GT(Wrong(global, ink, page.width, page.height), 1000u);
}

TEST(PrepareForOcr, APlainPageIsUnchangedByFlattening) {
  GrayImage g;
  g.width = 300;
  g.height = 120;
  g.pixels.assign(size_t(g.width) * g.height, 230);
  for (int y = 40; y < 80; ++y)
    for (int x = 30; x < 270; ++x)
      if (x % 10 < 3) g.pixels[size_t(y) * g.width + x] = 30;
  EXPECT_EQ(PrepareForOcr(g, 40, true, true).pixels, PrepareForOcr(g, 40, true, false).pixels);
}

TEST(FullWidthCjkPunctuation, AStopReadAsCommaAndStopIsOneStop) {
  EXPECT_EQ(FullWidthCjkPunctuation("擴大海外市場，降低成本,。"), "擴大海外市場，降低成本。");
  EXPECT_EQ(FullWidthCjkPunctuation("降低成本，。\n明年"), "降低成本。\n明年");
  EXPECT_EQ(FullWidthCjkPunctuation("a,. b"), "a,. b");  // Latin text is left alone
}

}  // namespace
}  // namespace baton::analyze
