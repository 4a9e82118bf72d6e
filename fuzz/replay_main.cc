// The deterministic driver of the fuzz targets, for builds without libFuzzer (GCC, the normal
// ctest run): it replays every file given (the seed corpus and the regressions), then runs N
// deterministic mutations of each through the same LLVMFuzzerTestOneInput a libFuzzer build
// calls. A crash, a sanitizer report or an escaped exception fails the test; the mutated input
// that did it is written to fuzz-crash-<target>-<n> in the working folder first, ready to be
// copied into fuzz/regressions/<target>/.
//
//   fuzz_TARGET [--mutations N] [--seed S] FILE_OR_FOLDER...
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;

// splitmix64: the same sequence on every machine and compiler.
struct Rng {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }
};

// Bytes that often matter to the parsers under test: JSON and YAML punctuation, escapes,
// percent signs, UTF-8 lead bytes, numbers at the edges of int and double.
const char* const kTokens[] = {
    "{", "}", "[", "]", "\"", "\\", ":", ",", "'", "\n", "\r\n", "\t", " ", "-", "- ", ": ", "#",
    "&a", "*a", "!!", "|", ">", "---", "...", "%", "%2F", "%00", "%ff", "/", "..", "?", "#", "\x00",
    "\xff", "\xc3\xa9", "\xe5\xad\xa3", "\xf0\x9f\x98\x80", "\xed\xa0\x80", "0", "-1", "1e309",
    "-1e309", "2147483648", "4294967296", "18446744073709551616", "9223372036854775807", "1.5",
    "null", "true", "false", "NaN", "<", ">", "&", "*", "_", "`", "```", "~~~", "|---|", "[x]",
    "](", "![", "<script>", "javascript:", "\"v\":1", "\"t\":", "\"run\"", "\"results\"",
};

std::string Mutate(const std::string& in, const std::vector<std::string>& pool, Rng& rng) {
  std::string s = in;
  const int steps = 1 + static_cast<int>(rng.Below(4));
  for (int k = 0; k < steps; ++k) {
    const size_t pos = rng.Below(s.size() + 1);
    switch (rng.Below(8)) {
      case 0:  // flip a bit
        if (!s.empty()) s[pos % s.size()] ^= static_cast<char>(1u << rng.Below(8));
        break;
      case 1:  // a random byte
        if (!s.empty()) s[pos % s.size()] = static_cast<char>(rng.Below(256));
        break;
      case 2:  // insert a token
        s.insert(pos, kTokens[rng.Below(std::size(kTokens))]);
        break;
      case 3: {  // delete a run
        const size_t n = std::min(s.size() - std::min(pos, s.size()), 1 + rng.Below(16));
        s.erase(std::min(pos, s.size()), n);
        break;
      }
      case 4: {  // duplicate a run
        if (s.empty()) break;
        const size_t from = rng.Below(s.size());
        const size_t n = std::min(s.size() - from, 1 + rng.Below(32));
        s.insert(pos, s.substr(from, n));
        break;
      }
      case 5: {  // splice in part of another seed
        const std::string& other = pool[rng.Below(pool.size())];
        if (other.empty()) break;
        const size_t from = rng.Below(other.size());
        s.insert(pos, other.substr(from, 1 + rng.Below(64)));
        break;
      }
      case 6:  // cut the tail
        s.resize(pos);
        break;
      default: {  // replace a digit run by an edge number
        const size_t d = s.find_first_of("0123456789", pos);
        if (d == std::string::npos) break;
        const size_t e = s.find_first_not_of("0123456789.", d);
        static const char* const kNumbers[] = {"-1", "0", "1e309", "2147483648", "4294967296", "-9223372036854775809",
                                               "18446744073709551616", "1e-400", "65536", "99999999999999999999"};
        s.replace(d, (e == std::string::npos ? s.size() : e) - d, kNumbers[rng.Below(std::size(kNumbers))]);
        break;
      }
    }
  }
  return s;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void Run(const std::string& s, const std::string& target, size_t n) {
  // Written before the call, removed after it: what is left after a crash is the crashing input.
  const std::string keep = "fuzz-crash-" + target + "-" + std::to_string(n);
  {
    std::ofstream out(keep, std::ios::binary);
    out.write(s.data(), static_cast<std::streamsize>(s.size()));
  }
  // A copy in its own allocation, so ASan sees reads past the end.
  std::vector<uint8_t> buf(s.begin(), s.end());
  LLVMFuzzerTestOneInput(buf.empty() ? nullptr : buf.data(), buf.size());
  std::remove(keep.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  size_t mutations = 2000;
  uint64_t seed = 1;
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--mutations" || a == "--seed") && i + 1 < argc) {
      (a == "--mutations" ? mutations : seed) = std::strtoull(argv[++i], nullptr, 10);
    } else if (fs::is_directory(a)) {
      std::vector<fs::path> in;
      for (const auto& e : fs::directory_iterator(a))
        if (e.is_regular_file() && e.path().filename().string()[0] != '.') in.push_back(e.path());
      std::sort(in.begin(), in.end());  // directory order differs between file systems
      files.insert(files.end(), in.begin(), in.end());
    } else if (fs::is_regular_file(a)) {
      files.push_back(a);
    } else if (a.rfind("--", 0) == 0 || a.rfind("-", 0) == 0) {
      std::cerr << "usage: " << argv[0] << " [--mutations N] [--seed S] FILE_OR_FOLDER...\n";
      return 2;
    }  // a missing folder (no regressions yet) is fine
  }
  std::string target = fs::path(argv[0]).filename().string();
  std::vector<std::string> pool;
  for (const auto& f : files) pool.push_back(ReadFile(f));
  if (pool.empty()) {
    std::cerr << target << ": no seed files\n";
    return 2;
  }
  size_t n = 0;
  for (const auto& s : pool) Run(s, target, n++);
  Rng rng{seed};
  for (size_t i = 0; i < mutations; ++i) {
    const std::string& base = pool[i % pool.size()];
    Run(Mutate(base, pool, rng), target, n++);
  }
  std::cout << target << ": " << pool.size() << " files replayed, " << mutations << " mutations, no crash\n";
  return 0;
}
