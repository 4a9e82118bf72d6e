// Markdown to HTML for LLM summaries inside the HTML report, through cmark-gfm (CommonMark's
// reference implementation with GitHub's extensions: tables, strikethrough, autolinks, task
// lists, footnotes). The output is safe to embed in a self-contained page:
//   - raw HTML (inline or block) is shown as text, never passed through: a summary that writes
//     `<script>` or `<img onerror=...>` shows those characters;
//   - images become links to the image (the report never loads anything from elsewhere);
//   - links whose scheme is dangerous (javascript:, vbscript:, file:, most data:) lose their
//     target (cmark's safe mode);
//   - invalid UTF-8 is replaced.
//
// Thread-safety: pure functions; the extensions are registered once on first use.
#pragma once

#include <string>
#include <string_view>

namespace baton::document {

// Escapes &, <, >, " and ' for HTML text and attribute values.
std::string HtmlEscape(std::string_view text);

// `heading_offset` is added to heading levels, at most 6 (a summary's "#" under the report's h2
// becomes h3 with an offset of 2).
std::string MarkdownToHtml(std::string_view markdown, int heading_offset);

}  // namespace baton::document
