#include "dashboard/request.h"

#include <arpa/inet.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

namespace baton::dashboard {

std::string CookieValue(std::string_view cookies, std::string_view name) {
  size_t pos = 0;
  while (pos < cookies.size()) {
    size_t end = cookies.find(';', pos);
    if (end == std::string_view::npos) end = cookies.size();
    std::string_view item = cookies.substr(pos, end - pos);
    const size_t start = item.find_first_not_of(' ');
    if (start != std::string_view::npos) item = item.substr(start);
    if (item.size() > name.size() && item.compare(0, name.size(), name) == 0 && item[name.size()] == '=')
      return std::string(item.substr(name.size() + 1));
    pos = end + 1;
  }
  return "";
}

std::string HostPart(std::string_view value, bool host_only) {
  const size_t scheme = value.find("://");
  if (scheme != std::string_view::npos) value = value.substr(scheme + 3);
  if (!host_only) return std::string(value);
  if (!value.empty() && value[0] == '[') {
    const size_t close = value.find(']');
    return std::string(close == std::string_view::npos ? value : value.substr(1, close - 1));
  }
  return std::string(value.substr(0, value.find(':')));
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  return false;
}

std::optional<size_t> ParseCount(std::string_view text, size_t max) {
  if (text.empty() || text[0] == '-') return std::nullopt;
  const std::string v(text);
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  if (end == nullptr || *end != '\0' || end == v.c_str()) return std::nullopt;
  return std::min<unsigned long long>(n, max);
}

const std::set<std::string>& JobStates() {
  static const std::set<std::string> states = {"ready", "backoff", "running", "succeeded", "failed", "cancelled"};
  return states;
}

bool ParseStates(std::string_view list, std::set<std::string>* states, std::string* unknown) {
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string s(list.substr(pos, comma - pos));
    if (!s.empty()) {
      if (!JobStates().count(s)) {
        *unknown = s;
        return false;
      }
      states->insert(s);
    }
    pos = comma + 1;
  }
  return true;
}

bool SafeJobId(std::string_view id) {
  if (id.empty() || id == "." || id == "..") return false;
  for (char c : id)
    if (c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return false;
  return true;
}

bool SafeReportPath(std::string_view rest) {
  if (rest.find('\\') != std::string_view::npos || rest.find('\0') != std::string_view::npos) return false;
  const std::filesystem::path rel{std::string(rest)};
  if (rel.is_absolute()) return false;
  for (const auto& part : rel)
    if (part == ".." || part == ".") return false;
  return true;
}

}  // namespace baton::dashboard
