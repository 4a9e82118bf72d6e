// `command`: runs an argv as a subprocess (no shell). Placeholders {input} {job} {step} {node}
// {attempt} {workdir} {outdir} {gpus} and {results.STEP.KEY} are replaced argument by argument,
// so an input can never inject a shell command. {workdir}, {outdir} and $BATON_WORKDIR are
// absolute even when the folders were given relative (`baton node --workdir work`). CUDA_VISIBLE_DEVICES is set to the granted GPUs.
// stdout/stderr go to <workdir>/logs/<step>.<attempt>.stdout|stderr; exit status != 0 is a
// failure naming the status and stderr's last line. When stdout's last line is a JSON object it
// becomes the result's "output".
#include <cstdlib>
#include <regex>
#include <set>

#include "util/process.h"
#include "steps/builtin.h"

namespace baton {
namespace {

const std::regex& Placeholder() {
  static const std::regex re(R"(\{([A-Za-z_][A-Za-z0-9_.-]*)\})");
  return re;
}

bool KnownPlaceholder(const std::string& name) {
  static const char* kNames[] = {"input", "job", "step", "node", "attempt", "workdir", "outdir", "gpus"};
  for (const char* n : kNames)
    if (name == n) return true;
  return name.rfind("results.", 0) == 0 && std::count(name.begin(), name.end(), '.') >= 2;
}

std::string JoinGpus(const std::vector<int>& gpus) {
  std::string s;
  for (int g : gpus) s += (s.empty() ? "" : ",") + std::to_string(g);
  return s;
}

// When Baton itself was given a subset of the machine's GPUs (Slurm, a container runtime, a
// user) through CUDA_VISIBLE_DEVICES, its GPU i is the i-th entry of that list: a step must see
// the same physical device, not the machine's device i.
std::string VisibleDevices(const std::vector<int>& gpus) {
  static const std::vector<std::string> parent = [] {
    std::vector<std::string> ids;
    const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
    std::string s = v ? v : "";
    if (s.empty() || s == "-1") return ids;
    size_t pos = 0;
    while (pos <= s.size()) {
      const size_t comma = s.find(',', pos);
      ids.push_back(s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    return ids;
  }();
  if (parent.empty()) return JoinGpus(gpus);
  std::string out;
  for (int g : gpus) out += (out.empty() ? "" : ",") + (g >= 0 && static_cast<size_t>(g) < parent.size() ? parent[g] : std::to_string(g));
  return out;
}

class CommandStep : public Step {
 public:
  explicit CommandStep(const Json& with) {
    if (!with.contains("argv") || !with["argv"].is_array() || with["argv"].empty())
      throw ConfigError("with.argv: required, a non-empty list of arguments (no shell string)");
    for (size_t i = 0; i < with["argv"].size(); ++i) {
      const Json& a = with["argv"][i];
      if (!a.is_string() && !a.is_number()) throw ConfigError("with.argv[" + std::to_string(i) + "]: must be a string");
      std::string s = a.is_string() ? a.get<std::string>() : a.dump();
      for (std::sregex_iterator it(s.begin(), s.end(), Placeholder()), end; it != end; ++it)
        if (!KnownPlaceholder((*it)[1]))
          throw ConfigError("with.argv[" + std::to_string(i) + "]: unknown placeholder {" + std::string((*it)[1]) +
                            "} (known: {input} {job} {step} {node} {attempt} {workdir} {outdir} {gpus} {results.STEP.KEY})");
      argv_.push_back(std::move(s));
    }
    if (argv_[0].empty()) throw ConfigError("with.argv[0]: the program must not be empty");
    if (with.contains("env")) {
      if (!with["env"].is_object()) throw ConfigError("with.env: must be a mapping of NAME: value");
      for (const auto& [k, v] : with["env"].items()) env_[k] = v.is_string() ? v.get<std::string>() : v.dump();
    }
    if (with.contains("pass_env")) {
      const Json& names = with["pass_env"];
      if (!names.is_array()) throw ConfigError("with.pass_env: must be a list of variable names");
      for (const auto& n : names) {
        if (!n.is_string() || n.get<std::string>().empty()) throw ConfigError("with.pass_env: must be a list of variable names");
        pass_env_.insert(n.get<std::string>());
      }
    }
    for (const auto& [k, v] : with.items())
      if (k != "argv" && k != "env" && k != "pass_env" && k[0] != '_')
        throw ConfigError("with." + k + ": unknown parameter (command takes argv, env, pass_env)");
  }

  StepOutcome Run(StepContext& ctx) const override {
    std::vector<std::string> argv;
    for (const auto& a : argv_) {
      std::string err;
      argv.push_back(Substitute(a, ctx, &err));
      if (!err.empty()) return StepOutcome::Failure(err, false);
    }
    ProcessSpec spec;
    spec.argv = argv;
    spec.env = env_;
    spec.pass_env = pass_env_;
    spec.env["CUDA_VISIBLE_DEVICES"] = VisibleDevices(ctx.gpus);
    spec.env["BATON_JOB"] = ctx.job;
    spec.env["BATON_STEP"] = ctx.step;
    spec.env["BATON_NODE"] = ctx.node;
    spec.env["BATON_ATTEMPT"] = std::to_string(ctx.attempt);
    spec.env["BATON_WORKDIR"] = Absolute(ctx.workdir).string();
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
    Json result = {{"exit_code", r.exit_code}, {"stdout", spec.stdout_path.string()}, {"stderr", spec.stderr_path.string()}};
    if (!r.ok()) {
      std::string last = LastLine(spec.stderr_path);
      return StepOutcome::Failure(argv[0] + ": " + r.Describe() + (last.empty() ? "" : " (stderr: " + last + ")"));
    }
    const std::string out_last = LastLine(spec.stdout_path);
    if (!out_last.empty() && out_last.front() == '{') {
      Json parsed = Json::parse(out_last, nullptr, false);
      if (!parsed.is_discarded()) result["output"] = parsed;
    }
    return StepOutcome::Ok(result);
  }

 private:
  static std::filesystem::path Absolute(const std::filesystem::path& p) {
    return p.empty() ? p : std::filesystem::absolute(p).lexically_normal();
  }
  static std::string Substitute(const std::string& arg, const StepContext& ctx, std::string* err) {
    std::string out;
    auto begin = arg.cbegin();
    for (std::sregex_iterator it(arg.begin(), arg.end(), Placeholder()), end; it != end; ++it) {
      out.append(begin, arg.cbegin() + it->position());
      begin = arg.cbegin() + it->position() + it->length();
      const std::string name = (*it)[1];
      if (name == "input") out += ctx.input;
      else if (name == "job") out += ctx.job;
      else if (name == "step") out += ctx.step;
      else if (name == "node") out += ctx.node;
      else if (name == "attempt") out += std::to_string(ctx.attempt);
      else if (name == "workdir") out += Absolute(ctx.workdir).string();  // the program may change directory
      else if (name == "outdir") out += Absolute(ctx.outdir).string();
      else if (name == "gpus") out += JoinGpus(ctx.gpus);
      else {  // results.STEP.KEY[.KEY...]
        const std::string path = name.substr(8);
        const size_t dot = path.find('.');
        const Json* v = &ctx.result_of(path.substr(0, dot));
        std::string rest = path.substr(dot + 1);
        while (v != nullptr && !rest.empty()) {
          const size_t d = rest.find('.');
          const std::string key = rest.substr(0, d);
          v = v->is_object() && v->contains(key) ? &(*v)[key] : nullptr;
          rest = d == std::string::npos ? "" : rest.substr(d + 1);
        }
        if (v == nullptr || v->is_null()) {
          *err = "placeholder {" + name + "}: no such result";
          return "";
        }
        out += v->is_string() ? v->get<std::string>() : v->dump();
      }
    }
    out.append(begin, arg.cend());
    return out;
  }

  std::vector<std::string> argv_;
  std::map<std::string, std::string> env_;
  std::set<std::string> pass_env_;  // secret-looking variables of Baton's environment to hand down
};

}  // namespace

void RegisterCommandStep(StepRegistry& r) {
  r.Register("command", [](const Json& with) { return std::make_unique<CommandStep>(with); });
}

}  // namespace baton
