// MarkdownToHtml (cmark-gfm) on what LLM summaries actually contain: GitHub tables, numbered
// lists with nested bullets, links, code blocks, and raw HTML that must never reach the page.
#include "steps/document/markdown_html.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <string>

namespace baton::document {
namespace {

size_t Count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

// The text between the first `open` at or after `from` and its matching `close`, tags included.
std::string Element(const std::string& html, const std::string& tag, size_t from = 0) {
  const std::string open = "<" + tag, close = "</" + tag + ">";
  const size_t start = html.find(open, from);
  if (start == std::string::npos) return "";
  int depth = 0;
  for (size_t p = start; p < html.size();) {
    const size_t o = html.find(open, p), c = html.find(close, p);
    if (c == std::string::npos) return "";
    if (o != std::string::npos && o < c) {
      ++depth;
      p = o + open.size();
    } else {
      if (--depth == 0) return html.substr(start, c + close.size() - start);
      p = c + close.size();
    }
  }
  return "";
}

// A reply shaped like the ones gpt-4o-mini and friends give for "summarise this talk".
constexpr const char* kLlmReply = R"(## Key points

The talk compares **three schedulers** and ~~one~~ two baselines.

| Scheduler | Makespan (s) | GPU use |
|-----------|-------------:|:-------:|
| Ray       | 137          | 84%     |
| Baton     | 107          | 96%     |

1. Download the videos
   - over HTTP
   - with retries
2. Analyze on the GPU
   1. scene changes
   2. OCR of slides
3. Summarize

- [x] slides read
- [ ] speech checked

See [the paper](https://example.org/paper.pdf "Paper") or https://example.org/talk directly.

```python
print("<b>not bold</b>")
```

<script>alert("x")</script>

Inline <img src=x onerror=alert(1)> and <b>bold?</b> and [bad](javascript:alert(1)).

![diagram](https://example.org/d.png)
)";

TEST(MarkdownHtmlTest, TypicalLlmReplyKeepsItsStructure) {
  const std::string html = MarkdownToHtml(kLlmReply, 2);
  SCOPED_TRACE(html);
  // Heading moved under the report's h2.
  EXPECT_NE(html.find("<h4>Key points</h4>"), std::string::npos);
  EXPECT_NE(html.find("<strong>three schedulers</strong> and <del>one</del> two"), std::string::npos);

  // The table: a header row and two body rows, alignment kept, no raw pipes left.
  const std::string table = Element(html, "table");
  ASSERT_FALSE(table.empty());
  EXPECT_EQ(Count(table, "<tr>"), 3u);
  EXPECT_EQ(Count(Element(table, "thead"), "</th>"), 3u);
  EXPECT_EQ(Count(Element(table, "tbody"), "</td>"), 6u);
  EXPECT_NE(table.find("<th align=\"right\">Makespan (s)</th>"), std::string::npos);
  EXPECT_NE(table.find("<td align=\"right\">107</td>"), std::string::npos);
  EXPECT_EQ(html.find("| Ray"), std::string::npos);
  EXPECT_EQ(html.find("|---"), std::string::npos);

  // One numbered list of three items; the nested bullets and numbers live inside items 1 and 2.
  const std::string ol = Element(html, "ol");
  ASSERT_FALSE(ol.empty());
  EXPECT_EQ(Count(html, "<ol>"), 2u);  // the outer list and the nested one in item 2, nothing split
  EXPECT_TRUE(std::regex_search(
      ol,
      std::regex(R"(<li>Download the videos\s*<ul>\s*<li>over HTTP</li>\s*<li>with retries</li>\s*</ul>\s*</li>)")));
  EXPECT_TRUE(std::regex_search(
      ol,
      std::regex(
          R"(<li>Analyze on the GPU\s*<ol>\s*<li>scene changes</li>\s*<li>OCR of slides</li>\s*</ol>\s*</li>)"
          R"(\s*<li>Summarize</li>\s*</ol>$)")));

  // Task list items.
  EXPECT_EQ(Count(html, "type=\"checkbox\""), 2u);
  EXPECT_EQ(Count(html, "checked=\"\""), 1u);

  // Links, with and without brackets.
  EXPECT_NE(html.find("<a href=\"https://example.org/paper.pdf\" title=\"Paper\">the paper</a>"), std::string::npos);
  EXPECT_NE(html.find("<a href=\"https://example.org/talk\">https://example.org/talk</a>"), std::string::npos);

  // Code block: language kept as a class, content escaped.
  EXPECT_NE(
      html.find("<pre><code class=\"language-python\">print(&quot;&lt;b&gt;not bold&lt;/b&gt;&quot;)\n</code></pre>"),
      std::string::npos);
}

TEST(MarkdownHtmlTest, RawHtmlAndDangerousTargetsNeverReachThePage) {
  const std::string html = MarkdownToHtml(kLlmReply, 2);
  SCOPED_TRACE(html);
  std::string lower = html;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* s : {"<script", "<img", "<b>", "javascript:", "raw html omitted"})
    EXPECT_EQ(lower.find(s), std::string::npos) << s;
  // No tag carries an attribute that loads or runs something (the escaped text may spell them).
  EXPECT_FALSE(std::regex_search(lower, std::regex(R"(<[a-z][^>]*\b(src|onerror|onload|style)=)")));
  // The raw HTML is shown as text instead of disappearing.
  EXPECT_NE(html.find("<p>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</p>"), std::string::npos);
  EXPECT_NE(html.find("Inline &lt;img src=x onerror=alert(1)&gt; and &lt;b&gt;bold?&lt;/b&gt;"), std::string::npos);
  // A javascript: link keeps its text but loses its target; an image becomes a plain link.
  EXPECT_NE(html.find("<a href=\"\">bad</a>"), std::string::npos);
  EXPECT_NE(html.find("<a href=\"https://example.org/d.png\">diagram</a>"), std::string::npos);
}

TEST(MarkdownHtmlTest, HeadingLevelsStayWithinHtml) {
  EXPECT_EQ(MarkdownToHtml("# One\n###### Six\n", 2), "<h3>One</h3>\n<h6>Six</h6>\n");
  EXPECT_EQ(MarkdownToHtml("Setext\n===\n", 0), "<h1>Setext</h1>\n");
  EXPECT_EQ(MarkdownToHtml("", 2), "");
}

TEST(MarkdownHtmlTest, InvalidUtf8IsReplaced) {
  const std::string html = MarkdownToHtml("caf\xC3\xA9 \xFF ok", 0);
  EXPECT_EQ(html, "<p>caf\xC3\xA9 \xEF\xBF\xBD ok</p>\n");
}

TEST(MarkdownHtmlTest, HtmlEscapeCoversAttributes) {
  EXPECT_EQ(HtmlEscape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
}

}  // namespace
}  // namespace baton::document
