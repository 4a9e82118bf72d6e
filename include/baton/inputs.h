// Inputs as users have them: an inputs file (or standard input) listing URLs, local files, folders
// and globs, expanded into one job input each (docs/cli.md, "Inputs"). The details of a line's
// forms are in src/config/inputs.h.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "baton/status.h"

namespace baton {

// Reads an inputs file: one input per line; '#' comments and blank lines are skipped and
// duplicates dropped, each with a warning line "FILE:LINE: ..." appended to `warnings`. An
// unreadable file or a line naming nothing: the one-line error "FILE:LINE: what".
Result<std::vector<std::string>> ReadInputs(const std::filesystem::path& file, std::vector<std::string>* warnings);

// The same file ("-": standard input) read one input at a time, as a run admits its jobs
// (RunOptions::next_input), in bounded memory: a folder or glob line's files are listed when that
// line is reached, and duplicates are looked for among the first 1,000,000 distinct inputs only
// (a warning says so past them). Warnings are appended to `warnings` as lines are read.
class InputStream {
 public:
  static constexpr size_t kDedupeLimit = 1000000;
  static Result<std::unique_ptr<InputStream>> Open(const std::filesystem::path& file,
                                                   std::vector<std::string>* warnings);
  ~InputStream();
  // The next input; false at the end, or at an error (status() has its one line "FILE:LINE: what").
  bool Next(std::string* input);
  const Status& status() const { return status_; }
  size_t count() const;  // inputs given so far

 private:
  InputStream() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Status status_;
};

}  // namespace baton
