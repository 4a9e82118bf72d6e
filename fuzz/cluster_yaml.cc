// The cluster YAML loader (src/config, ParseCluster): a ClusterSpec or a one-line LoadError.
#include "baton/pipeline.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(FuzzInput(data, size));
  try {
    const baton::ClusterSpec c = baton::ParseCluster(yaml, "fuzz.yaml");
    FUZZ_CHECK(!c.nodes.empty());
    for (const auto& n : c.nodes) FUZZ_CHECK(!n.name.empty() && n.cpus >= 0 && n.gpus >= 0 && n.gpus <= 64);
  } catch (const baton::LoadError& e) {
    const std::string what = e.what();
    FUZZ_CHECK(what.rfind("fuzz.yaml", 0) == 0 && what.find('\n') == std::string::npos);
  }
  return 0;
}
