// Whether a JSON text nests arrays and objects deeper than a limit, found in one pass over the text
// without parsing or recursion: safe whatever the depth. Parsing JSON is iterative, but copying a
// Json and dump() recurse, so text from outside (a command's output line, a stream entry) is checked
// with this before it becomes a Json that is copied or printed. Brackets inside strings are text.
// Header-only; thread-safe.
#pragma once

#include <cstddef>
#include <string_view>

namespace baton {

inline bool JsonNestedDeeperThan(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character is text, whatever it is
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

}  // namespace baton
