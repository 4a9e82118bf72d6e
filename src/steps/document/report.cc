#include "steps/document/report.h"

#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include "steps/document/markdown_html.h"
#include "steps/document/strings.h"

namespace baton::document {
namespace {

// --- Markdown -------------------------------------------------------------------------------

// User text (titles, transcript, OCR) placed inline: escape what would start emphasis, code,
// links, HTML, headings or table cells, and fold newlines so the text stays in its line.
std::string MdInline(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n' || c == '\r' || c == '\t') {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
      continue;
    }
    if (std::string_view("\\`*_[]<>#|~!").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// A fenced block that the text cannot close: the fence is longer than any backtick run in it.
std::string MdFenced(std::string_view s) {
  size_t longest = 0, run = 0;
  for (char c : s) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  const std::string fence(std::max<size_t>(3, longest + 1), '`');
  std::string body(s);
  while (!body.empty() && (body.back() == '\n' || body.back() == ' ')) body.pop_back();
  return fence + "text\n" + body + "\n" + fence + "\n";
}

// --- HTML -----------------------------------------------------------------------------------

std::string Base64(std::string_view data) {
  static constexpr char kTable[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    const uint32_t n = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    out += {kTable[n >> 18], kTable[(n >> 12) & 63], kTable[(n >> 6) & 63], kTable[n & 63]};
  }
  if (i + 1 == data.size()) {
    const uint32_t n = uint8_t(data[i]) << 16;
    out += {kTable[n >> 18], kTable[(n >> 12) & 63], '=', '='};
  } else if (i + 2 == data.size()) {
    const uint32_t n = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8);
    out += {kTable[n >> 18], kTable[(n >> 12) & 63], kTable[(n >> 6) & 63], '='};
  }
  return out;
}

constexpr const char kCss[] = R"CSS(
:root { color-scheme: light dark; --muted: #667; --line: #ccd; --accent: #2a5db0; }
body { font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans CJK SC", "Source Han Sans SC",
  "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", sans-serif;
  margin: 0; }
:lang(zh-TW) body, :lang(zh-HK) body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans CJK TC",
  "Source Han Sans TC", "PingFang TC", "Microsoft JhengHei", "WenQuanYi Zen Hei", "AR PL UMing TW", sans-serif; }
:lang(ja) body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans CJK JP", "Hiragino Sans",
  "Yu Gothic", "Meiryo", sans-serif; }
main { max-width: 60rem; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.8rem; margin: 0 0 .3rem; }
h2 { border-bottom: 2px solid var(--line); padding-bottom: .2rem; margin-top: 2.2rem; }
.source, .by, .note { color: var(--muted); } .source span { word-break: break-all; }
.note { font-style: italic; }
nav > ol { columns: 2; padding-left: 1.2rem; } nav ol ol { columns: 1; } nav li { break-inside: avoid; }
a { color: var(--accent); }
table { border-collapse: collapse; width: 100%; font-size: .93rem; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: rgba(127,127,127,.1); } td.t { white-space: nowrap; font-variant-numeric: tabular-nums; width: 5rem; }
.chapter { border: 1px solid var(--line); border-radius: 6px; padding: .8rem 1rem; margin: 1rem 0; }
.chapter img { max-width: 100%; height: auto; border: 1px solid var(--line); }
pre { white-space: pre-wrap; background: rgba(127,127,127,.1); padding: .6rem; border-radius: 4px; }
blockquote { border-left: 4px solid var(--accent); margin: 0 0 1rem; padding: .3rem .8rem;
  background: rgba(42,93,176,.08); }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
)CSS";

void HtmlNote(std::string* out, const std::string& note) {
  *out += "<p class=\"note\">" + HtmlEscape(note) + "</p>\n";
}

void HtmlSegments(std::string* out, const std::vector<Segment>& segments) {
  *out += "<table class=\"transcript\">\n";
  for (const auto& s : segments) {
    *out += "<tr><td class=\"t\">" + Timestamp(s.start) + "</td><td>" + HtmlEscape(s.text) + "</td></tr>\n";
  }
  *out += "</table>\n";
}

// The summary sits under the report's "## Summary": its headings move down two levels (max 6) so
// they cannot break the report's outline. Fenced code is left alone.
std::string DemoteHeadings(std::string_view md) {
  std::string out;
  bool fenced = false;
  size_t pos = 0;
  while (pos < md.size()) {
    size_t nl = md.find('\n', pos);
    if (nl == std::string_view::npos) nl = md.size();
    std::string_view line = md.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.substr(0, 3) == "```" || line.substr(0, 3) == "~~~") fenced = !fenced;
    size_t level = 0;
    while (!fenced && level < line.size() && line[level] == '#') ++level;
    if (level > 0 && level <= 6 && (level == line.size() || line[level] == ' ')) {
      out += std::string(std::min<size_t>(6, level + 2), '#');
      line.remove_prefix(level);
    }
    out.append(line);
    out.push_back('\n');
  }
  return out;
}

// An attempt's status ("ok", "failed", ...) in the report's language.
std::string StatusWord(const std::string& ui, const std::string& status) {
  for (const char* known : {"ok", "failed", "timeout", "lost", "cancelled"}) {
    if (status == known) return Tr(ui, std::string("status_") + known);
  }
  return status;
}

}  // namespace

std::string Timestamp(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  const long s = static_cast<long>(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

std::string RenderMarkdown(const ReportData& r) {
  const std::string& ui = r.ui;
  auto T = [&](std::string_view key) -> const std::string& { return Tr(ui, key); };
  std::string md = "# " + MdInline(r.title) + "\n\n";
  if (!r.source.empty()) md += T("source") + T("colon") + MdInline(r.source) + "  \n";
  md += T("job") + T("colon") + MdInline(r.job) +
        (r.date.empty() ? "" : "  \n" + T("generated") + T("colon") + MdInline(r.date)) + "\n\n";

  md += "## " + T("media") + "\n\n| | |\n|---|---|\n";
  for (const auto& [k, v] : r.facts) md += "| " + MdInline(k) + " | " + MdInline(v) + " |\n";

  md += "\n## " + T("summary") + "\n\n";
  if (r.summary.empty()) {
    md += "_" + MdInline(r.summary_note) + "_\n";
  } else {
    md += "_" + MdInline(r.summary_by) + "_\n\n" + DemoteHeadings(r.summary);
  }

  md += "\n## " + T("chapters") + "\n\n";
  if (r.chapters.empty()) md += "_" + MdInline(r.chapters_note) + "_\n";
  for (const auto& c : r.chapters) {
    md += "### " + TrF(ui, "chapter_span", c.index, Timestamp(c.start), Timestamp(c.end)) + "\n\n";
    if (!c.image_file.empty()) {
      md += fmt::format("![{}]({})\n\n", TrF(ui, "keyframe_of", c.index), c.image_file);
    } else {
      md += "_" + MdInline(c.image_note) + "_\n\n";
    }
    md += "**" + T("on_screen") + "**\n\n";
    md += c.ocr.find_first_not_of(" \t\r\n") == std::string::npos ? "_" + T("no_on_screen") + "_\n\n"
                                                                  : MdFenced(c.ocr) + "\n";
    md += "**" + T("speech") + "**\n\n";
    if (c.segments.empty()) md += "_" + T("no_speech") + "_\n";
    for (const auto& s : c.segments) md += "- **[" + Timestamp(s.start) + "]** " + MdInline(s.text) + "\n";
    md += "\n";
  }

  md += "## " + T("transcript") + "\n\n";
  if (!r.transcript_by.empty() && !r.transcript.empty()) md += "_" + MdInline(r.transcript_by) + "_\n\n";
  if (r.transcript.empty()) md += "_" + MdInline(r.transcript_note) + "_\n";
  for (const auto& s : r.transcript) md += "- **[" + Timestamp(s.start) + "]** " + MdInline(s.text) + "\n";

  if (!r.models.empty()) {
    md += "\n## " + T("models") + "\n";
    for (const auto& m : r.models) {
      md += "\n### " + MdInline(m.heading) + "\n\n";
      for (const auto& line : m.lines) md += "- " + MdInline(line) + "\n";
    }
  }
  md += "\n## " + T("record") + "\n\n";
  if (r.record.empty()) {
    md += "_" + MdInline(r.record_note) + "_\n";
  } else {
    md += fmt::format("| {} | {} | {} | {} | {} | {} |\n|---|---|---|---|---|---|\n", T("col_step"), T("col_node"),
                      T("col_attempt"), T("col_status"), T("col_seconds"), T("col_gpus"));
    for (const auto& row : r.record) {
      md += fmt::format("| {} | {} | {} | {} | {:.2f} | {} |\n", MdInline(row.step), MdInline(row.node), row.attempt,
                        MdInline(StatusWord(ui, row.status)), row.seconds, MdInline(row.gpus.empty() ? "-" : row.gpus));
    }
  }
  if (!r.tokens.empty()) md += "\n" + MdInline(TrF(ui, "tokens", r.tokens)) + "\n";
  return md;
}

std::string RenderHtml(const ReportData& r) {
  const std::string& ui = r.ui;
  auto T = [&](std::string_view key) { return HtmlEscape(Tr(ui, key)); };
  std::string h;
  h.reserve(64 * 1024);
  h += "<!DOCTYPE html>\n<html lang=\"" + HtmlEscape(r.lang) + "\">\n<head>\n<meta charset=\"utf-8\">\n";
  // Belt and braces: even if some text slipped through as markup, the browser may load nothing
  // but the inline style and data: images.
  h += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src "
       "'unsafe-inline'\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += "<meta name=\"generator\" content=\"Baton\">\n";
  h +=
      "<title>" + HtmlEscape(r.title) + "</title>\n<style>" + std::string(kCss) + "</style>\n</head>\n<body>\n<main>\n";
  h += "<header>\n<h1>" + HtmlEscape(r.title) + "</h1>\n";
  if (!r.source.empty())
    h += "<p class=\"source\">" + T("source") + T("colon") + "<span>" + HtmlEscape(r.source) + "</span></p>\n";
  h += "<p class=\"source\">" + T("job") + T("colon") + HtmlEscape(r.job) + "</p>\n";
  if (!r.date.empty())
    h += "<p class=\"source\">" + T("generated") + T("colon") + "<time>" + HtmlEscape(r.date) + "</time></p>\n";
  h += "</header>\n";

  h += "<nav><h2>" + T("contents") + "</h2><ol>\n<li><a href=\"#media\">" + T("media") +
       "</a></li>\n<li><a href=\"#summary\">" + T("summary") + "</a></li>\n<li><a href=\"#chapters\">" + T("chapters") +
       "</a><ol>\n";
  for (const auto& c : r.chapters) {
    h += fmt::format("<li><a href=\"#chapter-{}\">{}</a></li>\n", c.index,
                     HtmlEscape(TrF(ui, "chapter_span", c.index, Timestamp(c.start), Timestamp(c.end))));
  }
  h += "</ol></li>\n<li><a href=\"#transcript\">" + T("transcript") + "</a></li>\n";
  if (!r.models.empty()) h += "<li><a href=\"#models\">" + T("models") + "</a></li>\n";
  h += "<li><a href=\"#record\">" + T("record") + "</a></li>\n</ol></nav>\n";

  h += "<section id=\"media\">\n<h2>" + T("media") + "</h2>\n<table>\n";
  for (const auto& [k, v] : r.facts) h += "<tr><th>" + HtmlEscape(k) + "</th><td>" + HtmlEscape(v) + "</td></tr>\n";
  h += "</table>\n</section>\n";

  h += "<section id=\"summary\">\n<h2>" + T("summary") + "</h2>\n";
  if (r.summary.empty()) {
    HtmlNote(&h, r.summary_note);
  } else {
    h += "<p class=\"by\">" + HtmlEscape(r.summary_by) + "</p>\n<div class=\"summary\">\n" +
         MarkdownToHtml(r.summary, 2) + "</div>\n";
  }
  h += "</section>\n";

  h += "<section id=\"chapters\">\n<h2>" + T("chapters") + "</h2>\n";
  if (r.chapters.empty()) HtmlNote(&h, r.chapters_note);
  for (const auto& c : r.chapters) {
    h += fmt::format("<article class=\"chapter\" id=\"chapter-{}\">\n<h3>{}</h3>\n", c.index,
                     HtmlEscape(TrF(ui, "chapter_span", c.index, Timestamp(c.start), Timestamp(c.end))));
    if (!c.image_bytes.empty()) {
      h += fmt::format("<figure><img alt=\"{}\" src=\"data:{};base64,", HtmlEscape(TrF(ui, "keyframe_of", c.index)),
                       HtmlEscape(c.image_mime));
      h += Base64(c.image_bytes);
      h += "\"></figure>\n";
    } else {
      HtmlNote(&h, c.image_note);
    }
    h += "<h4>" + T("on_screen") + "</h4>\n";
    if (c.ocr.find_first_not_of(" \t\r\n") == std::string::npos) HtmlNote(&h, Tr(ui, "no_on_screen"));
    else h += "<pre>" + HtmlEscape(c.ocr) + "</pre>\n";
    h += "<h4>" + T("speech") + "</h4>\n";
    if (c.segments.empty()) HtmlNote(&h, Tr(ui, "no_speech"));
    else HtmlSegments(&h, c.segments);
    h += "</article>\n";
  }
  h += "</section>\n";

  h += "<section id=\"transcript\">\n<h2>" + T("transcript") + "</h2>\n";
  if (r.transcript.empty()) {
    HtmlNote(&h, r.transcript_note);
  } else {
    if (!r.transcript_by.empty()) h += "<p class=\"by\">" + HtmlEscape(r.transcript_by) + "</p>\n";
    HtmlSegments(&h, r.transcript);
  }
  h += "</section>\n";
  if (!r.models.empty()) {
    h += "<section id=\"models\">\n<h2>" + T("models") + "</h2>\n";
    for (const auto& m : r.models) {
      h += "<h3>" + HtmlEscape(m.heading) + "</h3>\n<ul>\n";
      for (const auto& line : m.lines) h += "<li>" + HtmlEscape(line) + "</li>\n";
      h += "</ul>\n";
    }
    h += "</section>\n";
  }

  h += "<section id=\"record\">\n<h2>" + T("record") + "</h2>\n";
  if (r.record.empty()) {
    HtmlNote(&h, r.record_note);
  } else {
    h += fmt::format("<table>\n<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>\n",
                     T("col_step"), T("col_node"), T("col_attempt"), T("col_status"), T("col_seconds"), T("col_gpus"));
    for (const auto& row : r.record) {
      h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2f}</td><td>{}</td></tr>\n",
                       HtmlEscape(row.step), HtmlEscape(row.node), row.attempt, HtmlEscape(StatusWord(ui, row.status)),
                       row.seconds, HtmlEscape(row.gpus.empty() ? "-" : row.gpus));
    }
    h += "</table>\n";
  }
  if (!r.tokens.empty()) h += "<p>" + HtmlEscape(TrF(ui, "tokens", r.tokens)) + "</p>\n";
  h += "</section>\n<footer>" + T("footer") + "</footer>\n</main>\n</body>\n</html>\n";
  return h;
}

}  // namespace baton::document
