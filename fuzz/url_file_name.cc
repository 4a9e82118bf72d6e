// URL to file name (src/steps/download, SafeFileName), its title and Retry-After: the name never
// leaves the download folder, is never hidden, never an option, at most 120 bytes.
#include "fuzz.h"
#include "steps/download/download.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view url = FuzzInput(data, size);
  const std::string name = baton::SafeFileName(url);
  FUZZ_CHECK(!name.empty() && name.size() <= 120);
  FUZZ_CHECK(name != "." && name != "..");
  FUZZ_CHECK(name[0] != '.' && name[0] != '-' && name[0] != '_');
  FUZZ_CHECK(name.find_first_of(std::string_view("/\\\0", 3)) == std::string::npos);
  for (unsigned char c : name) FUZZ_CHECK(c >= 0x80 || c > 0x20);
  FUZZ_CHECK(!baton::TitleFromFileName(name).empty());
  FUZZ_CHECK(!baton::TitleFromFileName(url).empty());
  if (auto wait = baton::RetryAfterSeconds(url, 1700000000, 600)) FUZZ_CHECK(*wait >= 0 && *wait <= 600);
  return 0;
}
