#include "util/secrets.h"

#include <algorithm>
#include <cctype>
#include <mutex>

namespace baton {
namespace {

std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}

std::set<std::string, std::less<>>& Registry() {
  static std::set<std::string, std::less<>> names;  // GUARDED_BY(RegistryMutex())
  return names;
}

}  // namespace

bool IsSecretName(std::string_view name) {
  if (name == "BATON_TOKEN" || name == "BATON_REDIS_PASSWORD" || name == "REDISCLI_AUTH") return true;
  for (std::string_view part : {"PASSWORD", "SECRET", "API_KEY", "APIKEY", "TOKEN", "PASSWD", "CREDENTIAL"})
    if (name.find(part) != std::string_view::npos) return true;
  std::lock_guard lock(RegistryMutex());
  return Registry().find(name) != Registry().end();
}

bool IsSecretValue(std::string_view value) {
  std::string lower(value);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower.find("password=") != std::string::npos) return true;
  // scheme://user:password@host...: a ':' in the user info, before the '@' that ends it.
  const size_t scheme = value.find("://");
  if (scheme == std::string_view::npos) return false;
  const std::string_view rest = value.substr(scheme + 3);
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  const size_t at = authority.rfind('@');
  return at != std::string_view::npos && authority.substr(0, at).find(':') != std::string_view::npos;
}

void RegisterSecretName(std::string_view name) {
  if (name.empty()) return;
  std::lock_guard lock(RegistryMutex());
  Registry().emplace(name);
}

bool WithheldFromChildren(std::string_view entry, const std::set<std::string>& pass_env) {
  const size_t eq = entry.find('=');
  const std::string_view name = entry.substr(0, eq);
  const std::string_view value = eq == std::string_view::npos ? std::string_view() : entry.substr(eq + 1);
  if (!IsSecretName(name) && !IsSecretValue(value)) return false;
  return pass_env.count(std::string(name)) == 0;
}

}  // namespace baton
