#include "steps/document/markdown_html.h"

#include <cctype>
#include <vector>

namespace baton::document {
namespace {

bool IsPunct(char c) { return std::ispunct(static_cast<unsigned char>(c)) != 0; }

std::string_view TrimLeft(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

// Inline spans of one line. Unmatched markers stay literal text.
std::string Inline(std::string_view s) {
  std::string out;
  bool strong = false, em = false;
  char em_char = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\\' && i + 1 < s.size() && IsPunct(s[i + 1])) {
      out += HtmlEscape(s.substr(i + 1, 1));
      ++i;
    } else if (c == '`') {
      const size_t close = s.find('`', i + 1);
      if (close == std::string_view::npos) {
        out += "`";
        continue;
      }
      out += "<code>" + HtmlEscape(s.substr(i + 1, close - i - 1)) + "</code>";
      i = close;
    } else if (c == '*' && i + 1 < s.size() && s[i + 1] == '*' &&
               (strong || s.find("**", i + 2) != std::string_view::npos)) {
      out += strong ? "</strong>" : "<strong>";
      strong = !strong;
      ++i;
    } else if ((c == '*' || c == '_') && (em ? c == em_char : true)) {
      // Opens only before a non-space with a closer later; closes after a non-space. An '_'
      // inside a word (snake_case) is text.
      const bool prev_word = i > 0 && std::isalnum(static_cast<unsigned char>(s[i - 1]));
      const bool next_space = i + 1 >= s.size() || s[i + 1] == ' ';
      if (!em && !next_space && !(c == '_' && prev_word) && s.find(c, i + 1) != std::string_view::npos) {
        out += "<em>";
        em = true;
        em_char = c;
      } else if (em && i > 0 && s[i - 1] != ' ' &&
                 !(c == '_' && i + 1 < s.size() && std::isalnum(static_cast<unsigned char>(s[i + 1])))) {
        out += "</em>";
        em = false;
      } else {
        out.push_back(c);
      }
    } else {
      out += HtmlEscape(s.substr(i, 1));
    }
  }
  if (em) out += "</em>";
  if (strong) out += "</strong>";
  return out;
}

}  // namespace

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string MarkdownToHtml(std::string_view md, int heading_offset) {
  std::string out;
  std::string open;  // "ul", "ol", "p", "blockquote" or ""
  std::string fence;
  auto close = [&] {
    if (!open.empty()) out += "</" + open + ">\n";
    open.clear();
  };
  size_t pos = 0;
  while (pos <= md.size()) {
    size_t nl = md.find('\n', pos);
    if (nl == std::string_view::npos) nl = md.size();
    std::string_view line = md.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::string_view t = TrimLeft(line);
    if (!fence.empty()) {
      if (t.substr(0, fence.size()) == fence) {
        out += "</code></pre>\n";
        fence.clear();
      } else {
        out += HtmlEscape(line) + "\n";
      }
      if (nl == md.size()) break;
      continue;
    }
    if (t.substr(0, 3) == "```" || t.substr(0, 3) == "~~~") {
      close();
      size_t n = 0;
      while (n < t.size() && t[n] == t[0]) ++n;
      fence = std::string(t.substr(0, n));
      out += "<pre><code>";
    } else if (t.empty()) {
      close();
    } else if (t[0] == '#') {
      size_t level = 0;
      while (level < t.size() && t[level] == '#') ++level;
      if (level <= 6 && (level == t.size() || t[level] == ' ')) {
        close();
        const int h = std::min(6, static_cast<int>(level) + heading_offset);
        out += "<h" + std::to_string(h) + ">" + Inline(TrimLeft(t.substr(level))) + "</h" + std::to_string(h) + ">\n";
      } else {
        if (open != "p") { close(); out += "<p>"; open = "p"; } else { out += "<br>\n"; }
        out += Inline(t);
      }
    } else if ((t[0] == '-' || t[0] == '*' || t[0] == '+') && t.size() > 1 && t[1] == ' ') {
      if (open != "ul") { close(); out += "<ul>\n"; open = "ul"; }
      out += "<li>" + Inline(TrimLeft(t.substr(2))) + "</li>\n";
    } else if (std::isdigit(static_cast<unsigned char>(t[0])) && t.find(". ") != std::string_view::npos &&
               t.find_first_not_of("0123456789") == t.find(". ")) {
      if (open != "ol") { close(); out += "<ol>\n"; open = "ol"; }
      out += "<li>" + Inline(TrimLeft(t.substr(t.find(". ") + 2))) + "</li>\n";
    } else if (t[0] == '>') {
      if (open != "blockquote") { close(); out += "<blockquote>"; open = "blockquote"; } else { out += "<br>\n"; }
      out += Inline(TrimLeft(t.substr(1)));
    } else {
      if (open == "ul" || open == "ol") {  // a continuation line of a list item
        out.insert(out.size() - 6, " " + Inline(t));
      } else {
        if (open != "p") { close(); out += "<p>"; open = "p"; } else { out += "<br>\n"; }
        out += Inline(t);
      }
    }
    if (nl == md.size()) break;
  }
  if (!fence.empty()) out += "</code></pre>\n";
  close();
  return out;
}

}  // namespace baton::document
