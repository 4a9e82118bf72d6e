// `command`: runs an argv as a subprocess (no shell). Placeholders {input} {job} {step} {node}
// {attempt} {workdir} {outdir} {gpus} and {results.STEP.KEY} are replaced argument by argument,
// so an input can never inject a shell command. {workdir}, {outdir} and $BATON_WORKDIR are
// absolute even when the folders were given relative (`baton node --workdir work`). CUDA_VISIBLE_DEVICES is set to the
// granted GPUs. stdout/stderr go to <workdir>/logs/<step>.<attempt>.stdout|stderr; exit status != 0 is a failure naming
// the status and stderr's last line (shortened). When stdout's last line is a JSON object (read whole, at most 1 MiB;
// longer fails the attempt) it becomes the result's "output".
#include <optional>

#include <fmt/format.h>

#include "util/json_depth.h"
#include "util/process.h"
#include "steps/analysis/analysis.h"
#include "steps/builtin.h"
#include "steps/command_args.h"

namespace baton {
namespace {

const std::vector<std::string>& Placeholders() {
  static const std::vector<std::string> names = {"input",   "job",     "step",   "node",
                                                 "attempt", "workdir", "outdir", "gpus"};
  return names;
}

// The longest stdout line read as the step's JSON output.
constexpr size_t kMaxOutputLine = size_t{1} << 20;
// Its deepest nesting: room under the cluster protocol's limit (protocol::kMaxNesting, 64), where
// the output travels inside a result inside a message.
constexpr int kMaxOutputNesting = 32;

class CommandStep : public Step {
 public:
  explicit CommandStep(const Json& with) : args_(CommandArgs::From(with, Placeholders(), true)) {
    for (const auto& [k, v] : with.items())
      if (k != "argv" && k != "env" && k != "pass_env" && k[0] != '_')
        throw ConfigError("with." + k + ": unknown parameter (command takes argv, env, pass_env)");
  }

  StepOutcome Run(StepContext& ctx) const override {
    std::vector<std::string> argv;
    const auto value = [&ctx](const std::string& name) -> std::optional<std::string> {
      if (name == "input") return ctx.input;
      if (name == "job") return ctx.job;
      if (name == "step") return ctx.step;
      if (name == "node") return ctx.node;
      if (name == "attempt") return std::to_string(ctx.attempt);
      if (name == "workdir") return AbsolutePath(ctx.workdir).string();  // the program may change directory
      if (name == "outdir") return AbsolutePath(ctx.outdir).string();
      if (name == "gpus") return JoinGpus(ctx.gpus);
      return ResultPlaceholder(ctx, name);
    };
    for (const auto& a : args_.argv) {
      Result<std::string> arg = SubstitutePlaceholders(a, value);
      if (!arg.ok()) return StepOutcome::Failure(arg.error(), false);
      argv.push_back(std::move(*arg));
    }
    ProcessSpec spec;
    spec.argv = argv;
    spec.env = args_.env;
    spec.pass_env = args_.pass_env;
    spec.env["CUDA_VISIBLE_DEVICES"] = VisibleDevices(ctx.gpus);
    spec.env["BATON_JOB"] = ctx.job;
    spec.env["BATON_STEP"] = ctx.step;
    spec.env["BATON_NODE"] = ctx.node;
    spec.env["BATON_ATTEMPT"] = std::to_string(ctx.attempt);
    spec.env["BATON_WORKDIR"] = AbsolutePath(ctx.workdir).string();
    spec.cwd = ctx.workdir;
    const auto logs = ctx.workdir / "logs";
    std::filesystem::create_directories(logs);
    const std::string base = ctx.step + "." + std::to_string(ctx.attempt);
    spec.stdout_path = logs / (base + ".stdout");
    spec.stderr_path = logs / (base + ".stderr");
    ProcessResult r = RunProcess(spec, ctx.cancel, [&](pid_t pid) {
      ctx.info("started " + argv[0] + " (pid " + std::to_string(pid) + ")");
    });
    if (!r.started) return StepOutcome::Failure(r.error, false);
    if (r.cancelled) return StepOutcome::Cancelled();
    Json result = {
        {"exit_code", r.exit_code}, {"stdout", spec.stdout_path.string()}, {"stderr", spec.stderr_path.string()}};
    if (!r.ok()) {
      std::string last = LastLine(spec.stderr_path);
      return StepOutcome::Failure(argv[0] + ": " + r.Describe() + (last.empty() ? "" : " (stderr: " + last + ")"));
    }
    // The output line is data: read whole (LastLine shortens to 300 characters, for messages), up
    // to kMaxOutputLine; a longer JSON line fails the attempt rather than going missing.
    const WholeLastLine out_last = ReadLastLine(spec.stdout_path, kMaxOutputLine);
    if (!out_last.line.empty() && out_last.line.front() == '{') {
      if (out_last.too_long)
        return StepOutcome::Failure(
            fmt::format("{}: stdout's last line ({} bytes, starting {:.40}...) is longer than the 1 MiB limit of "
                        "a JSON output line; write large results to a file",
                        argv[0], out_last.size, out_last.line),
            false);
      // Parsing is iterative, but copying and printing the result recurse: a deeply nested line
      // would overflow the stack of the runtime or agent that holds it.
      if (JsonNestedDeeperThan(out_last.line, kMaxOutputNesting))
        return StepOutcome::Failure(fmt::format("{}: stdout's last line nests JSON deeper than {} levels, the limit of "
                                                "a JSON output line", argv[0], kMaxOutputNesting),
                                    false);
      Json parsed = Json::parse(out_last.line, nullptr, false);
      if (!parsed.is_discarded()) result["output"] = parsed;
    }
    // An output with parts of the analysis shape must follow it: nothing downstream runs on half
    // an analysis (docs/schema/analysis.md).
    if (result.contains("output") && analysis::IsContribution(result["output"])) {
      if (std::string e = analysis::CheckContribution(result["output"]); !e.empty()) {
        return StepOutcome::Failure(argv[0] + ": output breaks the analysis shape (docs/schema/analysis.md): " + e,
                                    false);
      }
    }
    return StepOutcome::Ok(result);
  }

 private:
  CommandArgs args_;
};

}  // namespace

void RegisterCommandStep(StepRegistry& r) {
  r.Register("command", StepFactoryOf([](const Json& with) { return std::make_unique<CommandStep>(with); }));
}

}  // namespace baton
