// Inputs files: one line each a URL, a path, a folder, a glob or a word (inputs.h says which).
#include "config/inputs.h"

#include <fnmatch.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <unordered_map>

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

InputLines::InputLines(std::istream& in, std::string name, fs::path base, std::vector<std::string>* warnings,
                       size_t dedupe_limit)
    : in_(in), name_(std::move(name)), base_(std::move(base)), warnings_(warnings), dedupe_limit_(dedupe_limit) {}

// True when `input` is new (or no longer looked for); else warns and returns false.
bool InputLines::Fresh(const std::string& input, bool expanded) {
  if (dedupe_limit_ == 0) return true;
  const auto [it, fresh] = seen_.emplace(std::hash<std::string>{}(input), n_);
  if (fresh) {
    if (seen_.size() >= dedupe_limit_) {
      warnings_->push_back(fmt::format("{}:{}: {} inputs: duplicates are no longer looked for after this line", name_,
                                       n_, seen_.size()));
      dedupe_limit_ = 0;
      std::unordered_map<uint64_t, int>().swap(seen_);
    }
    return true;
  }
  if (expanded)
    warnings_->push_back(fmt::format("{}:{}: {}: already listed by line {}, skipped", name_, n_, input, it->second));
  else
    warnings_->push_back(fmt::format("{}:{}: duplicate of line {} skipped", name_, n_, it->second));
  return false;
}

bool InputLines::Next(std::string* input) {
  while (true) {
    while (next_expanded_ < expanded_.size()) {
      std::string& m = expanded_[next_expanded_++];
      if (Fresh(m, true)) {
        *input = std::move(m);
        ++count_;
        return true;
      }
    }
    expanded_.clear();
    next_expanded_ = 0;
    std::string line;
    if (!std::getline(in_, line)) {
      if (count_ == 0) throw LoadError(name_ + ": no inputs (one URL, path, folder or glob per line)");
      return false;
    }
    ++n_;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    const size_t start = line.find_first_not_of(" \t");
    line = start == std::string::npos ? "" : line.substr(start);
    if (n_ == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a UTF-8 byte order mark
    if (line.empty()) {
      warnings_->push_back(fmt::format("{}:{}: blank line skipped", name_, n_));
      continue;
    }
    if (line[0] == '#') continue;
    std::string one;
    if (line.find("://") != std::string::npos) {
      one = std::move(line);
    } else {
      std::error_code ec;
      if (HasGlobChars(line) && !fs::exists(Resolve(line, base_), ec)) {
        const auto matched = Glob(Resolve(line, base_));
        if (matched.empty()) throw LoadError(fmt::format("{}:{}: {}: the pattern matches no file", name_, n_, line));
        expanded_.assign(matched.begin(), matched.end());
        continue;
      }
      const fs::path path = Resolve(line, base_);
      if (fs::is_directory(path, ec)) {
        std::set<std::string> media;
        MediaUnder(path, &media);
        if (media.empty()) {
          throw LoadError(fmt::format("{}:{}: {}: the folder holds no media file (.mp4, .mkv, .webm, .mov, .mp3, "
                                      ".wav, ... see docs/cli.md)", name_, n_, line));
        }
        expanded_.assign(media.begin(), media.end());
        continue;
      } else if (fs::exists(path, ec)) {
        one = path.string();
      } else if (line.find('/') != std::string::npos || line[0] == '~' || IsMediaFileName(line)) {
        throw LoadError(fmt::format("{}:{}: {}: no such file or folder", name_, n_, path.string()));
      } else {
        one = std::move(line);  // a word, for steps that take names
      }
    }
    if (!Fresh(one, false)) continue;
    *input = std::move(one);
    ++count_;
    return true;
  }
}

std::vector<std::string> ReadInputLines(std::istream& in, const std::string& name, const fs::path& base,
                                        std::vector<std::string>* warnings) {
  InputLines lines(in, name, base, warnings, SIZE_MAX);
  std::vector<std::string> inputs;
  for (std::string input; lines.Next(&input);) inputs.push_back(std::move(input));
  return inputs;
}

struct InputStream::Impl {
  std::ifstream file;
  std::unique_ptr<InputLines> lines;
};

InputStream::~InputStream() = default;

Result<std::unique_ptr<InputStream>> InputStream::Open(const fs::path& file, std::vector<std::string>* warnings) {
  std::unique_ptr<InputStream> s(new InputStream);
  s->impl_ = std::make_unique<Impl>();
  if (file == "-") {
    // Standard input through a buffered stream of its own (std::cin, synced with C's stdio, reads
    // a character at a time: a third of a 10M-input resume's time); std::cin where it cannot be
    // opened by name (a socket).
    s->impl_->file.open("/dev/stdin");
    std::istream& in = s->impl_->file ? static_cast<std::istream&>(s->impl_->file) : std::cin;
    s->impl_->lines = std::make_unique<InputLines>(in, "stdin", fs::current_path(), warnings, kDedupeLimit);
    return s;
  }
  s->impl_->file.open(file);
  if (!s->impl_->file)
    return Status::Invalid(file.string() + ": cannot read inputs file (" +
                           (fs::exists(file) ? "permission denied" : "no such file") + ")");
  s->impl_->lines = std::make_unique<InputLines>(s->impl_->file, file.string(), fs::absolute(file).parent_path(),
                                                 warnings, kDedupeLimit);
  return s;
}

bool InputStream::Next(std::string* input) {
  if (!status_.ok()) return false;
  try {  // the module's edge: InputLines throws LoadError inside it
    return impl_->lines->Next(input);
  } catch (const LoadError& e) {
    status_ = Status::Invalid(e.what());
    return false;
  }
}

size_t InputStream::count() const { return impl_->lines->count(); }

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
