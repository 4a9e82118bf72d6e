// Atomic file replacement, the one writer every part of Baton uses (summary.json, traces,
// reports): write to a temporary file in the same folder, fsync it, rename it over the target,
// fsync the folder. Readers see the old file or the new one, never a torn one, and a crash leaves
// at most a hidden ".NAME.tmp-XXXXXX" that the next write does not reuse.
//
// Thread-safety: safe for different targets; two writers of one target race (last rename wins).
#pragma once

#include <filesystem>
#include <string_view>

#include "baton/status.h"

namespace baton {

// Creates parent folders as needed. The error names the path and the system's reason.
Status WriteFileAtomically(const std::filesystem::path& path, std::string_view data);

}  // namespace baton
