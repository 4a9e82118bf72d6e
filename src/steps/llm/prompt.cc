#include "steps/llm/prompt.h"

#include <array>
#include <cmath>
#include <cstdio>

namespace baton::llm {
namespace {

constexpr std::array<std::string_view, 12> kPlaceholders = {
    "title", "source", "duration", "transcript", "ocr", "scenes",
    "chunk", "part", "parts", "summaries", "language", "annotations"};

bool IsKnown(std::string_view name) {
  for (auto p : kPlaceholders) {
    if (p == name) return true;
  }
  return false;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls fn(name, begin, end) for each {{...}} in tmpl; [begin, end) spans the braces.
template <typename Fn>
void ForEachPlaceholder(std::string_view tmpl, Fn fn) {
  size_t pos = 0;
  while ((pos = tmpl.find("{{", pos)) != std::string_view::npos) {
    const size_t close = tmpl.find("}}", pos + 2);
    if (close == std::string_view::npos) return;
    fn(Trim(tmpl.substr(pos + 2, close - pos - 2)), pos, close + 2);
    pos = close + 2;
  }
}

// Cost in quarter tokens of the code point starting at s[i]; sets len to its byte length.
int QuarterCost(std::string_view s, size_t i, size_t* len) {
  const auto b = static_cast<unsigned char>(s[i]);
  size_t n = 1;
  if (b >= 0xF0) n = 4;
  else if (b >= 0xE0) n = 3;
  else if (b >= 0xC0) n = 2;
  *len = std::min(n, s.size() - i);
  return b < 0x80 ? 1 : 4;
}

// Appends pieces of one over-long line, each at most max_quarters.
void CutLine(std::string_view line, long max_quarters, std::vector<std::string>* out) {
  while (!line.empty()) {
    long cost = 0;
    size_t i = 0, last_space = 0;
    while (i < line.size()) {
      size_t len;
      const int c = QuarterCost(line, i, &len);
      if (cost + c > max_quarters) break;
      cost += c;
      if (line[i] == ' ') last_space = i;
      i += len;
    }
    if (i < line.size() && last_space > 0) i = last_space + 1;
    if (i == 0) i = 1;  // a budget below one code point: still make progress
    out->emplace_back(Trim(line.substr(0, i)));
    if (out->back().empty()) out->pop_back();
    line.remove_prefix(i);
  }
}

}  // namespace

std::string FirstUnknownPlaceholder(std::string_view tmpl) {
  std::string unknown;
  ForEachPlaceholder(tmpl, [&](std::string_view name, size_t, size_t) {
    if (unknown.empty() && !IsKnown(name)) unknown = std::string(name);
  });
  return unknown;
}

std::string Render(std::string_view tmpl, const std::map<std::string, std::string>& values) {
  std::string out;
  out.reserve(tmpl.size());
  size_t copied = 0;
  ForEachPlaceholder(tmpl, [&](std::string_view name, size_t begin, size_t end) {
    if (!IsKnown(name)) return;
    out.append(tmpl.substr(copied, begin - copied));
    auto it = values.find(std::string(name));
    if (it != values.end()) out += it->second;
    copied = end;
  });
  out.append(tmpl.substr(copied));
  return out;
}

int EstimateTokens(std::string_view text) {
  long quarters = 0;
  for (size_t i = 0; i < text.size();) {
    size_t len;
    quarters += QuarterCost(text, i, &len);
    i += len;
  }
  return static_cast<int>((quarters + 3) / 4);
}

std::vector<std::string> SplitToFit(std::string_view text, int max_tokens) {
  std::vector<std::string> pieces;
  const long max_quarters = std::max(1L, static_cast<long>(max_tokens) * 4);
  std::string current;
  long current_quarters = 0;
  auto flush = [&] {
    if (current.find_first_not_of(" \t\r\n") != std::string::npos) pieces.push_back(current);
    current.clear();
    current_quarters = 0;
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    const std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    const long q = EstimateTokens(line) * 4L + 1;  // +1: the newline
    if (q > max_quarters) {
      flush();
      std::vector<std::string> cut;
      CutLine(line, max_quarters - 1, &cut);
      for (auto& c : cut) pieces.push_back(std::move(c));
      continue;
    }
    if (current_quarters + q > max_quarters) flush();
    current.append(line).push_back('\n');
    current_quarters += q;
  }
  flush();
  return pieces;
}

std::string FormatTimestamp(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  const long s = static_cast<long>(seconds);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  }
  return buf;
}

}  // namespace baton::llm
