// File names and titles derived from URLs, and the small pure decisions of the download step
// (Retry-After, backoff, "is this media?"). No IO here.
#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <charconv>

#include "steps/download/download.h"

namespace baton {
namespace {

constexpr size_t kMaxNameLength = 120;
constexpr size_t kMaxExtensionLength = 16;

bool IsSafeChar(unsigned char c) { return std::isalnum(c) || c == '.' || c == '_' || c == '-'; }

// Length of the safe character at s[i]: 1 for [A-Za-z0-9._-], 2-4 for a well-formed UTF-8 sequence
// of a visible non-ASCII code point, 0 for anything else.
size_t SafeUtf8Length(std::string_view s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return IsSafeChar(b) ? 1 : 0;
  const size_t n = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  char32_t c = b & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    const auto cont = static_cast<unsigned char>(s[i + k]);
    if ((cont & 0xC0) != 0x80) return 0;
    c = (c << 6) | (cont & 0x3F);
  }
  const bool overlong = (n == 3 && c < 0x800) || (n == 4 && c < 0x10000);
  const bool invisible = c <= 0x9F || c == 0xA0 || c == 0xAD || (c >= 0x200B && c <= 0x200F) ||
                         (c >= 0x2028 && c <= 0x202F) || (c >= 0x2060 && c <= 0x206F) || c == 0xFEFF ||
                         (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF || c == 0x3000;
  return overlong || invisible ? 0 : n;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// The path part of a URL without query or fragment. Parsed by hand rather than with curl_url so
// that a URL curl would refuse still gets a name (the transfer itself reports the bad URL).
std::string_view UrlPath(std::string_view url) {
  size_t start = 0;
  if (auto scheme = url.find("://"); scheme != std::string_view::npos) {
    start = url.find('/', scheme + 3);
    if (start == std::string_view::npos) return {};
  }
  std::string_view rest = url.substr(start);
  return rest.substr(0, rest.find_first_of("?#"));
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string SafeFileName(std::string_view url) {
  std::string_view path = UrlPath(url);
  const size_t slash = path.find_last_of('/');
  std::string_view segment = slash == std::string_view::npos ? path : path.substr(slash + 1);
  const std::string decoded = PercentDecode(segment);

  // Runs of unsafe bytes (including '/', '\\', NUL, invalid UTF-8 and invisible or control code
  // points) become one '_'; letters of any script stay ("季度报告.mp4").
  std::string name;
  for (size_t i = 0; i < decoded.size();) {
    const size_t n = SafeUtf8Length(decoded, i);
    if (n > 0) {
      name.append(decoded, i, n);
      i += n;
      continue;
    }
    if (name.empty() || name.back() != '_') name.push_back('_');
    ++i;
  }
  // The extension survives even when nothing usable is left of the stem ("视频.mp4").
  std::string ext;
  if (const size_t dot = name.rfind('.');
      dot != std::string::npos && dot + 1 < name.size() && name.size() - dot <= kMaxExtensionLength) {
    ext = name.substr(dot);
  }
  const size_t first = name.find_first_not_of("._-");
  name = first == std::string::npos ? "" : name.substr(first);
  while (!name.empty() && (name.back() == '_' || name.back() == '.')) name.pop_back();
  if (name.empty() || (!ext.empty() && name == ext.substr(1))) return "download" + (ext.empty() ? ".bin" : ext);

  if (name.size() > kMaxNameLength) {
    if (name.size() < ext.size() || name.compare(name.size() - ext.size(), ext.size(), ext) != 0) ext.clear();
    size_t cut = kMaxNameLength - ext.size();
    while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;  // whole code points
    name = name.substr(0, cut);
    while (!name.empty() && (name.back() == '.' || name.back() == '_')) name.pop_back();
    name += ext;
  }
  return name;
}

std::string TitleFromFileName(std::string_view file_name) {
  std::string_view stem = file_name;
  if (size_t dot = stem.rfind('.'); dot != std::string_view::npos && dot > 0) stem = stem.substr(0, dot);
  std::string title;
  for (char c : stem) {
    const bool sep = c == '_' || c == '-' || c == '.';
    if (sep) {
      if (!title.empty() && title.back() != ' ') title.push_back(' ');
    } else {
      title.push_back(c);
    }
  }
  while (!title.empty() && title.back() == ' ') title.pop_back();
  return title.empty() ? "download" : title;
}

std::optional<double> RetryAfterSeconds(std::string_view value, int64_t now_unix, double cap) {
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front()))) value.remove_prefix(1);
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  double seconds = 0;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int64_t n = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    seconds = ec == std::errc() ? static_cast<double>(n) : cap;  // overflow: "very long"
  } else {
    // curl_getdate parses the three HTTP date formats (RFC 9110 section 5.6.7).
    const time_t when = curl_getdate(std::string(value).c_str(), nullptr);
    if (when == -1) return std::nullopt;
    seconds = static_cast<double>(when - now_unix);
  }
  return std::clamp(seconds, 0.0, std::max(cap, 0.0));
}

double BackoffSeconds(int retry, double base, double cap, double jitter) {
  const double exp = base * std::pow(2.0, std::max(retry - 1, 0));
  const double capped = std::min(exp, cap);
  return capped * (0.5 + 0.5 * std::clamp(jitter, 0.0, 1.0));
}

bool IsNonMediaContentType(std::string_view content_type) {
  std::string type = Lower(content_type.substr(0, content_type.find(';')));
  type.erase(std::remove_if(type.begin(), type.end(), [](unsigned char c) { return std::isspace(c); }),
             type.end());
  return type == "text/html" || type == "application/xhtml+xml" || type == "application/json" ||
         type == "text/plain";
}

bool LooksLikeHtml(std::string_view head) {
  if (head.substr(0, 3) == "\xEF\xBB\xBF") head.remove_prefix(3);
  while (!head.empty() && std::isspace(static_cast<unsigned char>(head.front()))) head.remove_prefix(1);
  const std::string lower = Lower(head.substr(0, 16));
  return lower.rfind("<!doctype html", 0) == 0 || lower.rfind("<html", 0) == 0;
}

}  // namespace baton
