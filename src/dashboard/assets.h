// The dashboard's static files (src/dashboard/assets/), compiled into the binary by
// embed_assets.cmake so that the UI works offline and nothing is read from disk at run time.
// Immutable data; thread-safe.
#pragma once

#include <cstddef>
#include <string_view>

namespace baton::dashboard {

struct Asset {
  std::string_view path;  // "/index.html", "/app.js", ...
  const unsigned char* data;
  size_t size;
};

// nullptr when there is no such asset.
const Asset* FindAsset(std::string_view path);

}  // namespace baton::dashboard
