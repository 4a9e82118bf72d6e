// The cluster YAML loader (src/config, ParseCluster): a ClusterSpec or a one-line error; nothing
// escapes (an exception aborts the fuzzer).
#include "baton/pipeline.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(FuzzInput(data, size));
  const baton::Result<baton::ClusterSpec> c = baton::ParseCluster(yaml, "fuzz.yaml");
  if (c.ok()) {
    FUZZ_CHECK(!c->nodes.empty());
    for (const auto& n : c->nodes) FUZZ_CHECK(!n.name.empty() && n.cpus >= 0 && n.gpus >= 0 && n.gpus <= 64);
  } else {
    FUZZ_CHECK(c.error().rfind("fuzz.yaml", 0) == 0 && c.error().find('\n') == std::string::npos);
  }
  return 0;
}
