// Inputs as users have them: the lines of an inputs file (or standard input) expanded into job
// inputs. The public entry point is baton::ReadInputs (baton/inputs.h); this header holds the
// parts tests and other commands use directly.
//
// A line is, in this order:
//   - a '#' comment or blank (skipped; a blank line with a warning);
//   - a URL (it contains "://"): kept as it is (the download step checks the scheme);
//   - a glob (it contains '*', '?' or '['): every regular file it matches, sorted; `**` matches
//     any number of folders; a glob that matches nothing is an error;
//   - a path (absolute, `~/`, or relative to the inputs file's folder) of a file: that file, as an
//     absolute path; of a folder: every media file under it (recursively, sorted, hidden names
//     skipped); a folder with no media file is an error;
//   - a path that looks like one (it has a '/' or a media extension) but does not exist: an error;
//   - anything else (a word such as `ok` or `job-7`): kept as it is, for steps that take names.
// Errors are LoadError with one line "FILE:LINE: what: problem". Thread-compatible (pure apart
// from reading the file system).
#pragma once

#include <cstdint>
#include <filesystem>
#include <istream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace baton {

// True when the name ends in one of the media extensions (case-insensitive): video .mp4 .m4v .mov
// .mkv .webm .avi .mpg .mpeg .ts .flv .wmv .3gp, audio .mp3 .m4a .wav .ogg .oga .opus .flac .aac.
bool IsMediaFileName(std::string_view name);

// The lines of `in` read one input at a time (what ReadInputLines and InputStream are made of):
// a folder or glob line's files are listed when that line is reached. Duplicates are dropped (a
// warning names the first line) while fewer than `dedupe_limit` distinct inputs were seen (a hash
// and a line number each); past it, a warning says duplicates are no longer looked for, so memory
// stays bounded for any number of lines. Next throws LoadError like ReadInputLines.
class InputLines {
 public:
  InputLines(std::istream& in, std::string name, std::filesystem::path base, std::vector<std::string>* warnings,
             size_t dedupe_limit);
  // The next input; false at the end (LoadError when the stream held none at all).
  bool Next(std::string* input);
  size_t count() const { return count_; }

 private:
  bool Fresh(const std::string& input, bool expanded);
  std::istream& in_;
  std::string name_;
  std::filesystem::path base_;
  std::vector<std::string>* warnings_;
  size_t dedupe_limit_;
  std::unordered_map<uint64_t, int> seen_;  // hash of an input -> the line it came from
  std::vector<std::string> expanded_;       // the current folder or glob line's files
  size_t next_expanded_ = 0;
  int n_ = 0;                               // lines read
  size_t count_ = 0;                        // inputs given
};

// Reads lines from `in`; `name` is used in messages ("in.txt", "stdin"), `base` is the folder
// relative paths are read against. Same contract as ReadInputs.
std::vector<std::string> ReadInputLines(std::istream& in, const std::string& name, const std::filesystem::path& base,
                                        std::vector<std::string>* warnings);

}  // namespace baton
