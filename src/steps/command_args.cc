#include "steps/command_args.h"

#include <algorithm>
#include <cstdlib>
#include <regex>

namespace baton {
namespace {

const std::regex& Placeholder() {
  static const std::regex re(R"(\{([A-Za-z_][A-Za-z0-9_.-]*)\})");
  return re;
}

}  // namespace

CommandArgs CommandArgs::From(const Json& with, const std::vector<std::string>& placeholders, bool results) {
  CommandArgs c;
  if (!with.contains("argv") || !with["argv"].is_array() || with["argv"].empty())
    throw ConfigError("with.argv: required, a non-empty list of arguments (no shell string)");
  std::string known;
  for (const auto& p : placeholders) known += (known.empty() ? "{" : " {") + p + "}";
  if (results) known += " {results.STEP.KEY}";
  for (size_t i = 0; i < with["argv"].size(); ++i) {
    const Json& a = with["argv"][i];
    if (!a.is_string() && !a.is_number()) throw ConfigError("with.argv[" + std::to_string(i) + "]: must be a string");
    std::string s = a.is_string() ? a.get<std::string>() : a.dump();
    for (std::sregex_iterator it(s.begin(), s.end(), Placeholder()), end; it != end; ++it) {
      const std::string name = (*it)[1];
      const bool ok = std::find(placeholders.begin(), placeholders.end(), name) != placeholders.end() ||
                      (results && name.rfind("results.", 0) == 0 && std::count(name.begin(), name.end(), '.') >= 2);
      if (!ok)
        throw ConfigError("with.argv[" + std::to_string(i) + "]: unknown placeholder {" + name + "} (known: " + known +
                          ")");
    }
    c.argv.push_back(std::move(s));
  }
  if (c.argv[0].empty()) throw ConfigError("with.argv[0]: the program must not be empty");
  if (with.contains("env")) {
    if (!with["env"].is_object()) throw ConfigError("with.env: must be a mapping of NAME: value");
    for (const auto& [k, v] : with["env"].items()) c.env[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  if (with.contains("pass_env")) {
    const Json& names = with["pass_env"];
    if (!names.is_array()) throw ConfigError("with.pass_env: must be a list of variable names");
    for (const auto& n : names) {
      if (!n.is_string() || n.get<std::string>().empty())
        throw ConfigError("with.pass_env: must be a list of variable names");
      c.pass_env.insert(n.get<std::string>());
    }
  }
  return c;
}

Result<std::string> SubstitutePlaceholders(
    const std::string& arg, const std::function<std::optional<std::string>(const std::string&)>& value) {
  std::string out;
  auto begin = arg.cbegin();
  for (std::sregex_iterator it(arg.begin(), arg.end(), Placeholder()), end; it != end; ++it) {
    out.append(begin, arg.cbegin() + it->position());
    begin = arg.cbegin() + it->position() + it->length();
    const std::string name = (*it)[1];
    std::optional<std::string> v = value(name);
    if (!v) {
      return Status::Invalid("placeholder {" + name + "}: " +
                             (name.rfind("results.", 0) == 0 ? "no such result" : "no value here"));
    }
    out += *v;
  }
  out.append(begin, arg.cend());
  return out;
}

std::optional<std::string> ResultPlaceholder(const StepContext& ctx, const std::string& name) {
  if (name.rfind("results.", 0) != 0) return std::nullopt;
  const std::string path = name.substr(8);
  const size_t dot = path.find('.');
  const Json* v = &ctx.result_of(path.substr(0, dot));
  std::string rest = dot == std::string::npos ? "" : path.substr(dot + 1);
  while (v != nullptr && !rest.empty()) {
    const size_t d = rest.find('.');
    const std::string key = rest.substr(0, d);
    v = v->is_object() && v->contains(key) ? &(*v)[key] : nullptr;
    rest = d == std::string::npos ? "" : rest.substr(d + 1);
  }
  if (v == nullptr || v->is_null()) return std::nullopt;
  return v->is_string() ? v->get<std::string>() : v->dump();
}

std::string JoinGpus(const std::vector<int>& gpus) {
  std::string s;
  for (int g : gpus) s += (s.empty() ? "" : ",") + std::to_string(g);
  return s;
}

std::string VisibleDevices(const std::vector<int>& gpus) {
  static const std::vector<std::string> parent = [] {
    std::vector<std::string> ids;
    const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
    std::string s = v ? v : "";
    if (s.empty() || s == "-1") return ids;
    size_t pos = 0;
    while (pos <= s.size()) {
      const size_t comma = s.find(',', pos);
      ids.push_back(s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    return ids;
  }();
  if (parent.empty()) return JoinGpus(gpus);
  std::string out;
  for (int g : gpus)
    out += (out.empty() ? "" : ",") +
           (g >= 0 && static_cast<size_t>(g) < parent.size() ? parent[g] : std::to_string(g));
  return out;
}

std::filesystem::path AbsolutePath(const std::filesystem::path& p) {
  return p.empty() ? p : std::filesystem::absolute(p).lexically_normal();
}

}  // namespace baton
