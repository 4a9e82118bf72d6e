// The pipeline YAML loader (src/config, ParsePipeline): any text gives a PipelineSpec or a
// LoadError with one line "FILE:LINE: KEY: what"; nothing else escapes.
#include "baton/pipeline.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(FuzzInput(data, size));
  try {
    const baton::PipelineSpec p = baton::ParsePipeline(yaml, "fuzz.yaml");
    FUZZ_CHECK(!p.steps.empty());
    for (const auto& s : p.steps) FUZZ_CHECK(!s.name.empty() && s.retries >= 0 && s.backoff >= 0);
  } catch (const baton::LoadError& e) {
    const std::string what = e.what();
    FUZZ_CHECK(what.rfind("fuzz.yaml", 0) == 0);
    FUZZ_CHECK(what.find('\n') == std::string::npos);
  }
  return 0;
}
