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

#include <filesystem>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

namespace baton {

// True when the name ends in one of the media extensions (case-insensitive): video .mp4 .m4v .mov
// .mkv .webm .avi .mpg .mpeg .ts .flv .wmv .3gp, audio .mp3 .m4a .wav .ogg .oga .opus .flac .aac.
bool IsMediaFileName(std::string_view name);

// Reads lines from `in`; `name` is used in messages ("in.txt", "stdin"), `base` is the folder
// relative paths are read against. Same contract as ReadInputs.
std::vector<std::string> ReadInputLines(std::istream& in, const std::string& name, const std::filesystem::path& base,
                                        std::vector<std::string>* warnings);

}  // namespace baton
