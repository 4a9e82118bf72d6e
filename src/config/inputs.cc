// Inputs files: one line each a URL, a path, a folder, a glob or a word (inputs.h says which).
#include "config/inputs.h"

#include <fnmatch.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "baton/inputs.h"
#include "baton/pipeline.h"

namespace baton {
namespace {

namespace fs = std::filesystem;

bool HasGlobChars(std::string_view s) { return s.find_first_of("*?[") != std::string_view::npos; }

bool Hidden(const fs::path& p) {
  const std::string n = p.filename().string();
  return !n.empty() && n[0] == '.';
}

fs::path Resolve(const std::string& line, const fs::path& base) {
  fs::path p;
  if (line == "~" || line.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    p = fs::path(home != nullptr ? home : "") / line.substr(line.size() > 1 ? 2 : 1);
  } else {
    p = fs::path(line);
  }
  if (p.is_relative()) p = base / p;
  return fs::absolute(p).lexically_normal();
}

// Every media file under `dir`, recursively, hidden names skipped.
void MediaUnder(const fs::path& dir, std::set<std::string>* out) {
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (Hidden(it->path())) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && IsMediaFileName(it->path().filename().string())) out->insert(it->path().string());
  }
}

// Matches parts[i..] below `dir`; `**` is any number of folders (hidden ones skipped).
void GlobFrom(const fs::path& dir, const std::vector<std::string>& parts, size_t i, std::set<std::string>* out) {
  std::error_code ec;
  if (i == parts.size()) {
    if (fs::is_regular_file(dir, ec)) out->insert(dir.string());
    return;
  }
  const std::string& part = parts[i];
  if (part == "**") {
    GlobFrom(dir, parts, i + 1, out);
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (!Hidden(it->path()) && it->is_directory(ec)) GlobFrom(it->path(), parts, i, out);
    }
    return;
  }
  if (!HasGlobChars(part)) {
    GlobFrom(dir / part, parts, i + 1, out);
    return;
  }
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (fnmatch(part.c_str(), name.c_str(), FNM_PERIOD) == 0) GlobFrom(it->path(), parts, i + 1, out);
  }
}

std::set<std::string> Glob(const fs::path& pattern) {
  std::vector<std::string> parts;
  for (const auto& c : pattern.relative_path()) parts.push_back(c.string());
  std::set<std::string> out;
  GlobFrom(pattern.root_path(), parts, 0, &out);
  return out;
}

}  // namespace

bool IsMediaFileName(std::string_view name) {
  static const char* const kExtensions[] = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg",
                                            ".mpeg", ".ts", ".flv", ".wmv", ".3gp", ".mp3", ".m4a",
                                            ".wav", ".ogg", ".oga", ".opus", ".flac", ".aac"};
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  std::string ext(name.substr(dot));
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return std::any_of(std::begin(kExtensions), std::end(kExtensions), [&](const char* e) { return ext == e; });
}

std::vector<std::string> ReadInputLines(std::istream& in, const std::string& name, const fs::path& base,
                                        std::vector<std::string>* warnings) {
  std::vector<std::string> inputs;
  std::map<std::string, int> seen;  // input -> line it came from
  auto add = [&](const std::string& input, int n, bool expanded) {
    auto [it, fresh] = seen.emplace(input, n);
    if (fresh) {
      inputs.push_back(input);
    } else if (expanded) {
      warnings->push_back(fmt::format("{}:{}: {}: already listed by line {}, skipped", name, n, input, it->second));
    } else {
      warnings->push_back(fmt::format("{}:{}: duplicate of line {} skipped", name, n, it->second));
    }
  };
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    const size_t start = line.find_first_not_of(" \t");
    line = start == std::string::npos ? "" : line.substr(start);
    if (n == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a UTF-8 byte order mark
    if (line.empty()) {
      warnings->push_back(fmt::format("{}:{}: blank line skipped", name, n));
      continue;
    }
    if (line[0] == '#') continue;
    if (line.find("://") != std::string::npos) {
      add(line, n, false);
      continue;
    }
    std::error_code ec;
    if (HasGlobChars(line) && !fs::exists(Resolve(line, base), ec)) {
      const auto matched = Glob(Resolve(line, base));
      if (matched.empty()) throw LoadError(fmt::format("{}:{}: {}: the pattern matches no file", name, n, line));
      for (const auto& m : matched) add(m, n, true);
      continue;
    }
    const fs::path path = Resolve(line, base);
    if (fs::is_directory(path, ec)) {
      std::set<std::string> media;
      MediaUnder(path, &media);
      if (media.empty()) {
        throw LoadError(fmt::format("{}:{}: {}: the folder holds no media file (.mp4, .mkv, .webm, .mov, .mp3, "
                                    ".wav, ... see docs/cli.md)", name, n, line));
      }
      for (const auto& m : media) add(m, n, true);
    } else if (fs::exists(path, ec)) {
      add(path.string(), n, false);
    } else if (line.find('/') != std::string::npos || line[0] == '~' || IsMediaFileName(line)) {
      throw LoadError(fmt::format("{}:{}: {}: no such file or folder", name, n, path.string()));
    } else {
      add(line, n, false);  // a word, for steps that take names
    }
  }
  if (inputs.empty()) throw LoadError(name + ": no inputs (one URL, path, folder or glob per line)");
  return inputs;
}

Result<std::vector<std::string>> ReadInputs(const fs::path& file, std::vector<std::string>* warnings) {
  try {  // the module's edge: ReadInputLines throws LoadError inside it
    if (file == "-") return ReadInputLines(std::cin, "stdin", fs::current_path(), warnings);
    std::ifstream in(file);
    if (!in)
      return Status::Invalid(file.string() + ": cannot read inputs file (" +
                             (fs::exists(file) ? "permission denied" : "no such file") + ")");
    return ReadInputLines(in, file.string(), fs::absolute(file).parent_path(), warnings);
  } catch (const LoadError& e) {
    return Status::Invalid(e.what());
  }
}

}  // namespace baton
