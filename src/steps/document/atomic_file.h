// Atomic file replacement: write to a temporary file in the same folder, fsync it, rename it over
// the target, fsync the folder. Readers see the old file or the new one, never a torn one, and a
// crash leaves at most a hidden ".NAME.tmp-XXXXXX" that the next successful write does not reuse.
//
// Thread-safety: safe for different targets; two writers of one target race (last rename wins).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace baton::document {

// Creates parent folders as needed. Returns "" on success, else a one-line error naming the path.
std::string WriteFileAtomically(const std::filesystem::path& path, std::string_view data);

}  // namespace baton::document
