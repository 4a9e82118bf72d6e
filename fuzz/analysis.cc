// The analysis reader (src/steps/analysis, the shape of docs/schema/analysis.schema.json): any
// JSON a step returns, as a contribution and as a job's results, gives a merged analysis or one
// line naming the bad field; never a crash. Properties: a contribution merges exactly when its
// check passes; a read error names the step; merged transcripts hold no blank segment and the
// primary transcript is one of them.
#include "fuzz.h"
#include "steps/analysis/analysis.h"
#include "util/json_depth.h"

namespace a = baton::analysis;

namespace {

bool Blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

void CheckMerged(const a::Analysis& an) {
  for (const auto& t : an.transcripts)
    for (const auto& s : t.segments) FUZZ_CHECK(!Blank(s.text));
  for (const char* lang : {"", "en", "zh-CN"}) {
    const a::Transcript* p = an.Primary(lang);
    FUZZ_CHECK(p == nullptr || (p >= an.transcripts.data() && p < an.transcripts.data() + an.transcripts.size()));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = FuzzInput(data, size);
  // Outputs reach the reader only within the depth their producers allow (command and worker
  // outputs: 32 levels; copying a Json recurses).
  if (baton::JsonNestedDeeperThan(text, 32)) return 0;
  const baton::Json j = baton::Json::parse(text, nullptr, false);
  if (j.is_discarded()) return 0;

  // As one step's contribution.
  const std::string check = a::CheckContribution(j);
  a::Analysis merged;
  const std::string merge = a::Merge(j, "analyze", &merged);
  FUZZ_CHECK(merge == check);
  if (merge.empty()) CheckMerged(merged);

  // As a job's results (step name -> result), read as llm and document read them.
  if (j.is_object()) {
    baton::StepContext ctx;
    ctx.results = &j;
    a::ReadResult r = a::ReadAnalysis(ctx, "analyze");
    if (r.ok()) CheckMerged(r.analysis);
    else FUZZ_CHECK(r.error.rfind("step '", 0) == 0);
  }
  return 0;
}
