// The `fetch` step: resolves an artifact (a file an earlier step of the job made, on another node
// fetched through that agent's artifact server) and records its path, size and sha256.
#include <filesystem>

#include "cluster/artifacts.h"
#include "cluster/node.h"

namespace baton::cluster {

namespace {

class FetchStep : public Step {
 public:
  explicit FetchStep(const Json& with) {
    if (!with.contains("from") || !with["from"].is_string())
      throw ConfigError("with.from: required, the earlier step that made the file");
    if (!with.contains("path") || !with["path"].is_string() || !SafeRelative(with["path"].get<std::string>()))
      throw ConfigError("with.path: required, a relative path inside that step's job folder");
    from_ = with["from"];
    path_ = with["path"];
    for (const auto& [k, v] : with.items())
      if (k != "from" && k != "path" && k[0] != '_')
        throw ConfigError("with." + k + ": unknown parameter (fetch takes from, path)");
  }
  StepOutcome Run(StepContext& ctx) const override {
    if (!ctx.artifact) return StepOutcome::Failure("no artifact access in this context", false);
    Result<std::filesystem::path> fetched = ctx.artifact(from_, path_);
    if (!fetched.ok()) return StepOutcome::Failure(fetched.error());
    const std::filesystem::path& p = *fetched;
    return StepOutcome::Ok({{"path", p.string()}, {"bytes", std::filesystem::file_size(p)}, {"sha256", Sha256File(p)}});
  }

 private:
  std::string from_, path_;
};

}  // namespace

void RegisterClusterSteps(StepRegistry& registry) {
  if (!registry.Has("fetch"))
    registry.Register("fetch", StepFactoryOf([](const Json& w) { return std::make_unique<FetchStep>(w); }));
}

}  // namespace baton::cluster
