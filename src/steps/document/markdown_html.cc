#include "steps/document/markdown_html.h"

#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

namespace baton::document {
namespace {

constexpr const char* kExtensions[] = {"table", "strikethrough", "autolink", "tasklist"};

void RegisterExtensionsOnce() {
  static std::once_flag once;
  std::call_once(once, [] { cmark_gfm_core_extensions_ensure_registered(); });
}

struct ParserDeleter {
  void operator()(cmark_parser* p) const { cmark_parser_free(p); }
};
struct NodeDeleter {
  void operator()(cmark_node* n) const { cmark_node_free(n); }
};
struct CharDeleter {
  void operator()(char* s) const { free(s); }
};

// A text node holding `literal` (or nullptr when cmark cannot allocate).
cmark_node* TextNode(const std::string& literal) {
  cmark_node* t = cmark_node_new(CMARK_NODE_TEXT);
  if (t) cmark_node_set_literal(t, literal.c_str());
  return t;
}

// A paragraph showing `html` as text, line by line.
cmark_node* ParagraphOfText(std::string_view html) {
  while (!html.empty() && (html.back() == '\n' || html.back() == '\r')) html.remove_suffix(1);
  cmark_node* p = cmark_node_new(CMARK_NODE_PARAGRAPH);
  size_t start = 0;
  while (start <= html.size()) {
    const size_t nl = html.find('\n', start);
    const std::string line(html.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
    if (start > 0) cmark_node_append_child(p, cmark_node_new(CMARK_NODE_SOFTBREAK));
    cmark_node_append_child(p, TextNode(line));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return p;
}

// Puts `fresh` where `old` was and frees `old`; on failure frees `fresh` and returns false.
bool Replace(cmark_node* old, cmark_node* fresh) {
  if (fresh && cmark_node_replace(old, fresh)) {
    cmark_node_free(old);
    return true;
  }
  cmark_node_free(fresh);
  return false;
}

// Rewrites the tree so that rendering it cannot pass HTML through or load anything: raw HTML
// becomes text, images become links; headings move down by `offset`. Nodes are collected
// first, as changing the tree under a cmark iterator is not allowed.
void MakeSafe(cmark_node* doc, int offset) {
  std::vector<cmark_node*> nodes;
  cmark_iter* it = cmark_iter_new(doc);
  for (cmark_event_type ev; (ev = cmark_iter_next(it)) != CMARK_EVENT_DONE;)
    if (ev == CMARK_EVENT_ENTER) nodes.push_back(cmark_iter_get_node(it));
  cmark_iter_free(it);
  for (cmark_node* n : nodes) {
    switch (cmark_node_get_type(n)) {
      case CMARK_NODE_HEADING:
        cmark_node_set_heading_level(n, std::clamp(cmark_node_get_heading_level(n) + offset, 1, 6));
        break;
      case CMARK_NODE_HTML_INLINE: {
        const char* lit = cmark_node_get_literal(n);
        Replace(n, TextNode(lit ? lit : ""));  // else safe mode omits it
        break;
      }
      case CMARK_NODE_HTML_BLOCK: {
        const char* lit = cmark_node_get_literal(n);
        Replace(n, ParagraphOfText(lit ? lit : ""));
        break;
      }
      case CMARK_NODE_IMAGE: {
        cmark_node* link = cmark_node_new(CMARK_NODE_LINK);
        const char* url = cmark_node_get_url(n);
        const char* title = cmark_node_get_title(n);
        cmark_node_set_url(link, url ? url : "");
        cmark_node_set_title(link, title ? title : "");
        std::vector<cmark_node*> alt;
        for (cmark_node* c = cmark_node_first_child(n); c; c = cmark_node_next(c)) alt.push_back(c);
        for (cmark_node* c : alt) {
          cmark_node_unlink(c);
          cmark_node_append_child(link, c);
        }
        if (alt.empty()) cmark_node_append_child(link, TextNode(url ? url : "image"));
        if (!cmark_node_replace(n, link)) {  // cannot happen for valid trees; never load it anyway
          cmark_node_set_url(n, "");
          cmark_node_free(link);
          break;
        }
        cmark_node_free(n);
        break;
      }
      default:
        break;
    }
  }
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

std::string MarkdownToHtml(std::string_view markdown, int heading_offset) {
  RegisterExtensionsOnce();
  // No CMARK_OPT_UNSAFE: safe mode drops dangerous link targets (and any raw HTML MakeSafe missed).
  const int options = CMARK_OPT_VALIDATE_UTF8 | CMARK_OPT_FOOTNOTES;
  std::unique_ptr<cmark_parser, ParserDeleter> parser(cmark_parser_new(options));
  if (!parser) return "<pre>" + HtmlEscape(markdown) + "</pre>\n";
  for (const char* name : kExtensions)
    if (cmark_syntax_extension* ext = cmark_find_syntax_extension(name))
      cmark_parser_attach_syntax_extension(parser.get(), ext);
  cmark_parser_feed(parser.get(), markdown.data(), markdown.size());
  std::unique_ptr<cmark_node, NodeDeleter> doc(cmark_parser_finish(parser.get()));
  if (!doc) return "<pre>" + HtmlEscape(markdown) + "</pre>\n";
  MakeSafe(doc.get(), heading_offset);
  std::unique_ptr<char, CharDeleter> html(
      cmark_render_html(doc.get(), options, cmark_parser_get_syntax_extensions(parser.get())));
  return html ? std::string(html.get()) : std::string();
}

}  // namespace baton::document
