// The pipeline YAML loader (src/config, ParsePipeline): any text gives a PipelineSpec or a
// one-line error "FILE:LINE: KEY: what"; nothing escapes (an exception aborts the fuzzer).
#include "baton/pipeline.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(FuzzInput(data, size));
  const baton::Result<baton::PipelineSpec> p = baton::ParsePipeline(yaml, "fuzz.yaml");  // throws nothing
  if (p.ok()) {
    FUZZ_CHECK(!p->steps.empty());
    for (const auto& s : p->steps) FUZZ_CHECK(!s.name.empty() && s.retries >= 0 && s.backoff >= 0);
  } else {
    FUZZ_CHECK(p.error().rfind("fuzz.yaml", 0) == 0);
    FUZZ_CHECK(p.error().find('\n') == std::string::npos);
  }
  return 0;
}
