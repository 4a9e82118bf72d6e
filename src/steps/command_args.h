// What `command` and `worker` share: the argv (never a shell string) with its {placeholders}, the
// extra environment, the secret-looking variables passed on by name, and the GPU list a child
// sees as CUDA_VISIBLE_DEVICES.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "baton/step.h"

namespace baton {

struct CommandArgs {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::set<std::string> pass_env;

  // Reads `with.argv`, `with.env` and `with.pass_env`. An argv placeholder must be one of
  // `placeholders` or, with `results`, {results.STEP.KEY}. Throws ConfigError naming the key.
  static CommandArgs From(const Json& with, const std::vector<std::string>& placeholders, bool results);
};

// Replaces each {name} of `arg` by `value(name)`; a name without a value is an error
// ("placeholder {results.x.y}: no such result").
Result<std::string> SubstitutePlaceholders(
    const std::string& arg, const std::function<std::optional<std::string>(const std::string&)>& value);
// {results.STEP.KEY[.KEY...]} of an attempt's earlier results, as text (strings unquoted).
std::optional<std::string> ResultPlaceholder(const StepContext& ctx, const std::string& name);

std::string JoinGpus(const std::vector<int>& gpus);
// CUDA_VISIBLE_DEVICES for granted GPUs: when Baton itself was given a subset of the machine's
// GPUs (Slurm, a container runtime) through CUDA_VISIBLE_DEVICES, its GPU i is that list's i-th.
std::string VisibleDevices(const std::vector<int>& gpus);
std::filesystem::path AbsolutePath(const std::filesystem::path& p);  // "" stays ""

}  // namespace baton
