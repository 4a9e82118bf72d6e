// A C++ program that defines its own step and runs a pipeline with it through Baton's public API
// (include/baton/). Built with the project: build/examples/custom-step/custom_step_example.
//
//   build/examples/custom-step/custom_step_example examples/custom-step/shout.yaml hello world
#include <cstdio>
#include <string>

#include "baton/runtime.h"

namespace {

class Shout : public baton::Step {
 public:
  explicit Shout(const baton::Json& with) : suffix_(with.value("suffix", "!")) {
    if (suffix_.size() > 8) throw baton::ConfigError("with.suffix: at most 8 characters");
  }
  baton::StepOutcome Run(baton::StepContext& ctx) const override {
    if (ctx.input.empty()) return baton::StepOutcome::Failure("nothing to shout", /*retryable=*/false);
    std::string loud;
    for (char c : ctx.input) loud += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    ctx.info("shouting " + loud);
    return baton::StepOutcome::Ok({{"text", loud + suffix_}});
  }
  bool NeedsWorkdir() const override { return false; }

 private:
  std::string suffix_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s PIPELINE.yaml INPUT...\n", argv[0]);
    return 2;
  }
  baton::RegisterBuiltinSteps();
  // StepFactoryOf turns Shout's ConfigError into the error the loader reports, with file and line.
  baton::StepRegistry::Global().Register(
      "shout", baton::StepFactoryOf([](const baton::Json& with) { return std::make_unique<Shout>(with); }));
  baton::Result<baton::PipelineSpec> pipeline = baton::LoadPipeline(argv[1]);
  if (!pipeline.ok()) {
    std::fprintf(stderr, "error: %s\n", pipeline.error().c_str());
    return 2;
  }
  baton::RunOptions opts;
  opts.inputs.assign(argv + 2, argv + argc);
  opts.out = "out/custom-step";
  // An error when a step's `with:` is refused or no node can run a step: one line, file and key.
  baton::Result<std::unique_ptr<baton::Runtime>> runtime = baton::Runtime::Create(std::move(*pipeline), {}, opts);
  if (!runtime.ok()) {
    std::fprintf(stderr, "error: %s\n", runtime.error().c_str());
    return 2;
  }
  const baton::RunReport& report = (*runtime)->Run();
  for (const auto& job : report.jobs)
    std::printf("%s: %s\n", job.id.c_str(),
                job.status == "succeeded" ? job.results["shout"]["text"].get<std::string>().c_str() : job.error.c_str());
  return report.ExitCode();
}
