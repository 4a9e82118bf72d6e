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

// Lower-case ASCII words (letters, digits, apostrophes); each non-ASCII code point is a word of
// its own, which is crude but language-neutral (it makes CJK text score by character frequency).
std::vector<std::string> Words(const std::string& s) {
  std::vector<std::string> words;
  std::string cur;
  auto flush = [&] {
    while (!cur.empty() && cur.back() == '\'') cur.pop_back();
    if (!cur.empty()) words.push_back(cur);
    cur.clear();
  };
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (std::isalnum(c) || (c == '\'' && !cur.empty())) cur.push_back(static_cast<char>(std::tolower(c)));
      else flush();
      ++i;
    } else {
      flush();
      size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      n = std::min(n, s.size() - i);
      words.push_back(s.substr(i, n));
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

// Splits at . ! ? and their CJK forms, keeping the punctuation.
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
    if ((c == '.' || c == '!' || c == '?') && (i + 1 == text.size() || std::isspace(static_cast<unsigned char>(text[i + 1])))) {
      flush();
    } else if (text.compare(i, 3, "。") == 0 || text.compare(i, 3, "！") == 0 || text.compare(i, 3, "？") == 0) {
      cur.append(text, i + 1, 2);
      i += 2;
      flush();
    } else if (c == '\n' && screen) {
      flush();  // OCR lines are separate statements even without punctuation
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

std::string ExtractiveSummary(const Material& m, int keep, const std::string& language) {
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
  md << "> **Offline extractive summary — no LLM was used.** Made by Baton's extractive summariser: "
        "the sentences below are quoted verbatim from the transcript and on-screen text, chosen by "
        "word frequency. Nothing was rewritten or checked for meaning.\n";
  if (!language.empty()) md << ">\n> (The requested language, " << EscapeInline(language) << ", was not applied: this summariser does not translate.)\n";
  md << "\n## Key sentences\n\n";
  if (candidates.empty()) {
    md << "_No transcript or on-screen text with enough words to pick sentences from._\n";
  }
  for (const auto& s : candidates) {
    md << "- [" << FormatTimestamp(s.time) << "] " << EscapeInline(s.text) << (s.from_screen ? " _(on screen)_" : "") << "\n";
  }
  std::vector<std::string> titles;
  std::set<std::string> seen_titles;
  md << "\n## Slides\n\n";
  for (const auto& scene : m.scenes) {
    std::string title = Collapse(scene.text.substr(0, scene.text.find('\n')));
    if (title.empty() || !seen_titles.insert(title).second) continue;
    md << "- [" << FormatTimestamp(scene.start) << "] " << EscapeInline(title) << "\n";
    titles.push_back(title);
  }
  if (titles.empty()) md << "_No on-screen text was found._\n";
  return md.str();
}

}  // namespace baton::llm
