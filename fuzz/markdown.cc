// The Markdown renderer of the HTML report (src/steps/document, MarkdownToHtml): whatever an LLM
// writes, the HTML carries no live script or raw tag from it.
#include "fuzz.h"
#include "steps/document/markdown_html.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view md = FuzzInput(data, size);
  const int offset = size > 0 ? data[0] % 8 : 0;
  const std::string html = baton::document::MarkdownToHtml(md, offset);
  FUZZ_CHECK(html.find("<script") == std::string::npos);
  FUZZ_CHECK(html.find("<img") == std::string::npos);
  FUZZ_CHECK(html.find("href=\"javascript:") == std::string::npos);
  FUZZ_CHECK(html.find("<h7") == std::string::npos && html.find("<h8") == std::string::npos);
  const std::string escaped = baton::document::HtmlEscape(md);
  FUZZ_CHECK(escaped.find_first_of("<>\"'") == std::string::npos);
  return 0;
}
