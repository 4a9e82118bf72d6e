// Inputs as users have them: an inputs file (or standard input) listing URLs, local files, folders
// and globs, expanded into one job input each (docs/cli.md, "Inputs"). The details of a line's
// forms are in src/config/inputs.h.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "baton/status.h"

namespace baton {

// Reads an inputs file: one input per line; '#' comments and blank lines are skipped and
// duplicates dropped, each with a warning line "FILE:LINE: ..." appended to `warnings`. An
// unreadable file or a line naming nothing: the one-line error "FILE:LINE: what".
Result<std::vector<std::string>> ReadInputs(const std::filesystem::path& file, std::vector<std::string>* warnings);

}  // namespace baton
