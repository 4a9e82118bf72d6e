// The run journal's decoder (src/journal): framing (Read) and records (Replay), as a resumed
// `baton run` reads OUT/.baton/journal. Any bytes give a Past or a Status naming what is wrong;
// never a crash or an allocation sized by the input (a header's step count is bounded first).
//
// Each input is replayed twice: as it is (the framing: cuts, bad checksums, bad magic), and with
// every frame's checksum recomputed, so mutated payloads get past the CRC to the record decoder.
#include <cstring>
#include <sstream>

#include "fuzz.h"
#include "journal/journal.h"
#include "journal/records.h"

namespace j = baton::journal;

namespace {

void Check(const std::string& bytes) {
  std::istringstream in(bytes);
  auto past = j::Replay(in, "fuzz");
  if (!past.ok()) {
    FUZZ_CHECK(!past.error().empty());
    return;
  }
  FUZZ_CHECK(past->steps.size() <= j::kMaxSteps);
  FUZZ_CHECK(past->input_hash.size() == past->jobs.size());
  for (const auto& job : past->jobs) {
    FUZZ_CHECK(job != nullptr);  // nothing settles without ReplayOptions::settle
    FUZZ_CHECK(job->steps.size() == past->steps.size());
    FUZZ_CHECK(job->NextStep() <= job->steps.size());
  }
  FUZZ_CHECK(past->read.good_bytes + past->read.dropped_bytes == bytes.size() || past->read.good_bytes == 0);
}

// The input with its magic and every whole frame's CRC made right.
std::string Reframed(std::string_view input) {
  std::string out(j::kMagic);
  if (input.substr(0, j::kMagic.size()) == j::kMagic) input.remove_prefix(j::kMagic.size());
  out.append(input);
  size_t pos = j::kMagic.size();
  while (out.size() - pos >= 8) {
    uint32_t len;
    std::memcpy(&len, out.data() + pos, 4);
    if (len > out.size() - pos - 8) break;
    const uint32_t crc = j::Crc32c(out.data() + pos + 8, len);
    std::memcpy(out.data() + pos + 4, &crc, 4);
    pos += 8 + size_t{len};
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Each job holds one entry per step of the header: keep inputs small enough that even the
  // most steps a header may declare (kMaxSteps) times every job they could hold fit in memory.
  if (size > (size_t{1} << 14)) return 0;
  const std::string_view input = FuzzInput(data, size);
  Check(std::string(input));
  Check(Reframed(input));
  return 0;
}
