// A small Markdown-to-HTML converter for LLM summaries inside the HTML report: headings, bullet
// and numbered lists, block quotes, fenced code, paragraphs, and inline `code`, **strong** and
// *emphasis* / _emphasis_, with backslash escapes. Everything else is text. All text is
// HTML-escaped and no link, image or raw HTML is ever produced, so a summary cannot make the
// report load anything or run script.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace baton::document {

std::string HtmlEscape(std::string_view text);

// `heading_offset` is added to heading levels (a summary's "#" under the report's h2 becomes h3).
std::string MarkdownToHtml(std::string_view markdown, int heading_offset);

}  // namespace baton::document
