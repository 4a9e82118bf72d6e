#include "steps/llm/extractive.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "steps/llm/prompt.h"

namespace baton::llm {
namespace {

const std::unordered_set<std::string>& StopWords() {
  static const std::unordered_set<std::string> words = {
      "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as",
      "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by",
      "can", "could", "did", "do", "does", "doing", "don't", "down", "during", "each", "even", "few",
      "for", "from", "further", "get", "got", "had", "has", "have", "having", "he", "her", "here",
      "hers", "him", "his", "how", "i", "i'm", "if", "in", "into", "is", "it", "it's", "its",
      "just", "know", "like", "me", "more", "most", "my", "no", "nor", "not", "now", "of", "off",
      "oh", "ok", "okay", "on", "once", "one", "only", "or", "other", "our", "out", "over", "own",
      "really", "right", "same", "so", "some", "such", "than", "that", "that's", "the", "their",
      "them", "then", "there", "these", "they", "this", "those", "through", "to", "too", "um",
      "uh", "under", "until", "up", "us", "very", "was", "we", "well", "were", "what", "when",
      "where", "which", "while", "who", "whom", "why", "will", "with", "would", "yeah", "you",
      "your", "yours", "going", "want", "say", "said", "see", "thing", "things", "lot", "let"};
  return words;
}

bool IsCjk(char32_t c) {
  return (c >= 0x3040 && c <= 0x30FF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x20000 && c <= 0x2FFFF);
}

// Chinese function characters: a bigram made only of these says nothing about the topic.
bool IsCjkFunctionChar(std::string_view ch) {
  static const std::unordered_set<std::string_view> chars = {
      "的", "了", "是", "在", "和", "有", "我", "们", "們", "这", "這", "个", "個", "也", "就", "都", "而", "及",
      "与", "與", "着", "著", "或", "一", "不", "为", "為", "把", "被", "对", "對", "将", "將", "从", "從", "到",
      "于", "於", "他", "她", "它", "你", "那", "些", "之", "其", "以", "及", "吗", "嗎", "呢", "吧", "啊"};
  return chars.count(ch) > 0;
}

// Lower-case ASCII words (letters, digits, apostrophes). Runs of CJK characters, written without
// spaces, give their character bigrams (a lone character counts as itself): frequent bigrams are
// mostly the text's frequent words, without a dictionary. Other non-ASCII code points are words
// of their own.
std::vector<std::string> Words(const std::string& s) {
  std::vector<std::string> words;
  std::string cur;
  std::vector<std::string> run;  // the current CJK run, one code point per entry
  auto flush = [&] {
    while (!cur.empty() && cur.back() == '\'') cur.pop_back();
    if (!cur.empty()) words.push_back(cur);
    cur.clear();
    if (run.size() == 1 && !IsCjkFunctionChar(run[0])) words.push_back(run[0]);
    for (size_t k = 0; k + 1 < run.size(); ++k) {
      if (!(IsCjkFunctionChar(run[k]) && IsCjkFunctionChar(run[k + 1]))) words.push_back(run[k] + run[k + 1]);
    }
    run.clear();
  };
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (!run.empty()) flush();
      if (std::isalnum(c) || (c == '\'' && !cur.empty())) cur.push_back(static_cast<char>(std::tolower(c)));
      else flush();
      ++i;
    } else {
      size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      n = std::min(n, s.size() - i);
      char32_t cp = n == 1 ? c : (c & (0x7F >> n));
      for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      if (IsCjk(cp)) {
        if (!cur.empty()) flush();
        run.push_back(s.substr(i, n));
      } else {
        flush();
        words.push_back(s.substr(i, n));
      }
      i += n;
    }
  }
  flush();
  return words;
}

std::string Collapse(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
    } else {
      if (space) out.push_back(' ');
      space = false;
      out.push_back(c);
    }
  }
  return out;
}

struct Sentence {
  double time;
  std::string text;
  bool from_screen;
  double score = 0;
  size_t order = 0;
};

// Splits at . ! ? and the CJK 。！？；, and at line ends, keeping the punctuation.
void SplitSentences(const std::string& text, double time, bool screen, std::vector<Sentence>* out) {
  std::string cur;
  auto flush = [&] {
    std::string s = Collapse(cur);
    if (!s.empty()) out->push_back({time, s, screen});
    cur.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    cur.push_back(text[i]);
    const char c = text[i];
    if ((c == '.' || c == '!' || c == '?') &&
        (i + 1 == text.size() || std::isspace(static_cast<unsigned char>(text[i + 1])))) {
      flush();
    } else if (text.compare(i, 3, "。") == 0 || text.compare(i, 3, "！") == 0 || text.compare(i, 3, "？") == 0 ||
               text.compare(i, 3, "；") == 0) {
      cur.append(text, i + 1, 2);
      i += 2;
      flush();
    } else if (c == '\n') {
      flush();  // OCR lines (and a transcript's line ends) are separate statements without punctuation
    }
  }
  flush();
}

// Markdown-safe inline text: the sentence is verbatim user data.
std::string EscapeInline(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\`*_[]<>#|").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string ExtractiveSummary(const Material& m, int keep, const std::string& language, const std::string& ui) {
  const bool zh = ui == "zh-Hans" || ui == "zh-Hant";
  const bool hant = ui == "zh-Hant";
  std::vector<Sentence> sentences;
  for (const auto& seg : m.transcript) SplitSentences(seg.text, seg.start, false, &sentences);
  for (const auto& scene : m.scenes) {
    // The first OCR line is the slide title; it is listed apart, not scored.
    const auto nl = scene.text.find('\n');
    if (nl != std::string::npos) SplitSentences(scene.text.substr(nl + 1), scene.start, true, &sentences);
  }

  std::unordered_map<std::string, double> freq;
  for (const auto& s : sentences) {
    for (const auto& w : Words(s.text)) {
      if (!StopWords().count(w) && !(w.size() == 1 && static_cast<unsigned char>(w[0]) < 0x80)) freq[w] += 1;
    }
  }
  double top = 1;
  for (const auto& [w, f] : freq) top = std::max(top, f);

  std::set<std::string> seen;
  std::vector<Sentence> candidates;
  for (size_t i = 0; i < sentences.size(); ++i) {
    Sentence s = sentences[i];
    s.order = i;
    const auto words = Words(s.text);
    int content = 0;
    for (const auto& w : words) {
      auto it = freq.find(w);
      if (it == freq.end()) continue;
      s.score += it->second / top;
      ++content;
    }
    if (content < 3 || !seen.insert(s.text).second) continue;  // fragments and repeats say little
    // Normalise by length (a long rambling sentence should not win by size alone) but gently.
    s.score /= std::sqrt(static_cast<double>(words.size()));
    candidates.push_back(std::move(s));
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Sentence& a, const Sentence& b) { return a.score > b.score; });
  if (candidates.size() > static_cast<size_t>(keep)) candidates.resize(keep);
  std::sort(candidates.begin(), candidates.end(),
            [](const Sentence& a, const Sentence& b) { return a.order < b.order; });

  std::ostringstream md;
  if (zh) {
    md << (hant ? "> **離線擷取式摘要——未使用大型語言模型。** 由 Baton 的擷取式摘要器產生：下列句子按詞頻選出，"
                  "均逐字引自逐字稿和螢幕文字，未經改寫，也未核對含義。\n"
                : "> **离线抽取式摘要——未使用大语言模型。** 由 Baton 的抽取式摘要器生成：下列句子按词频选出，"
                  "均逐字引自文字记录和屏幕文字，未经改写，也未核对含义。\n");
    if (!language.empty())
      md << ">\n> （" << (hant ? "要求的語言" : "要求的语言") << " " << EscapeInline(language)
         << (hant ? " 未套用：本摘要器不翻譯。）\n" : " 未应用：本摘要器不翻译。）\n");
    md << (hant ? "\n## 關鍵句\n\n" : "\n## 关键句\n\n");
    if (candidates.empty()) md << (hant ? "_沒有足夠的逐字稿或螢幕文字可供擷取句子。_\n" : "_没有足够的文字记录或屏幕文字可供抽取句子。_\n");
  } else {
    md << "> **Offline extractive summary — no LLM was used.** Made by Baton's extractive summariser: "
          "the sentences below are quoted verbatim from the transcript and on-screen text, chosen by "
          "word frequency. Nothing was rewritten or checked for meaning.\n";
    if (!language.empty())
      md << ">\n> (The requested language, " << EscapeInline(language)
         << ", was not applied: this summariser does not translate.)\n";
    md << "\n## Key sentences\n\n";
    if (candidates.empty()) md << "_No transcript or on-screen text with enough words to pick sentences from._\n";
  }
  for (const auto& s : candidates) {
    md << "- [" << FormatTimestamp(s.time) << "] " << EscapeInline(s.text)
       << (s.from_screen ? (zh ? (hant ? " _（螢幕）_" : " _（屏幕）_") : " _(on screen)_") : "") << "\n";
  }
  std::vector<std::string> titles;
  std::set<std::string> seen_titles;
  md << (zh ? (hant ? "\n## 投影片\n\n" : "\n## 幻灯片\n\n") : "\n## Slides\n\n");
  for (const auto& scene : m.scenes) {
    std::string title = Collapse(scene.text.substr(0, scene.text.find('\n')));
    if (title.empty() || !seen_titles.insert(title).second) continue;
    md << "- [" << FormatTimestamp(scene.start) << "] " << EscapeInline(title) << "\n";
    titles.push_back(title);
  }
  if (titles.empty()) md << (zh ? (hant ? "_沒有找到螢幕文字。_\n" : "_没有找到屏幕文字。_\n") : "_No on-screen text was found._\n");
  return md.str();
}

std::string ExtractiveSummary(const Material& m, const LlmConfig& c) {
  return ExtractiveSummary(m, c.sentences, c.language_requested ? c.language : "", c.ui);
}

}  // namespace baton::llm
