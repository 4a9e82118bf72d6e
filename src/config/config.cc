// YAML loaders for pipeline and cluster files, with one-line errors "FILE:LINE: KEY: problem".
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <yaml-cpp/yaml.h>

#include "baton/language.h"
#include "baton/pipeline.h"
#include "rates/rate_config.h"

namespace baton {
namespace {

// Load errors are one line whatever the file holds: a key, a value or yaml-cpp's own message may
// carry line breaks or other control bytes (fuzz regressions pipeline_yaml/multiline_key.yaml,
// cluster_yaml/newline_in_yaml_error.yaml).
std::string OneLine(std::string text) {
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return text;
}

class Ctx {
 public:
  explicit Ctx(std::string file) : file_(std::move(file)) {}
  [[noreturn]] void Fail(const YAML::Node& at, const std::string& key, const std::string& what) const {
    const int line = at.Mark().line >= 0 ? at.Mark().line + 1 : 0;
    throw LoadError(file_ + ":" + std::to_string(line) + ": " + OneLine(key + ": " + what));
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

void CheckKeys(const Ctx& ctx, const YAML::Node& map, const std::string& where, const std::set<std::string>& allowed) {
  if (!map.IsMap()) ctx.Fail(map, where.empty() ? "(top)" : where, "must be a mapping");
  for (const auto& kv : map) {
    const std::string key = kv.first.as<std::string>();
    if (!allowed.count(key)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      ctx.Fail(kv.first, where.empty() ? key : where + "." + key, "unknown key (allowed: " + list + ")");
    }
  }
}

std::string Scalar(const Ctx& ctx, const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) ctx.Fail(n, key, "must be a single value");
  return n.Scalar();
}

double Number(const Ctx& ctx, const YAML::Node& n, const std::string& key, bool quantity) {
  const std::string s = Scalar(ctx, n, key);
  if (quantity) {
    const Result<double> q = ParseQuantity(s);
    if (!q.ok()) ctx.Fail(n, key, "'" + s + "' is not a number");
    return *q;
  }
  try {
    return std::stod(s);
  } catch (const std::exception&) {
    ctx.Fail(n, key, "'" + s + "' is not a number");
  }
}

int Integer(const Ctx& ctx, const YAML::Node& n, const std::string& key, int min) {
  const std::string s = Scalar(ctx, n, key);
  size_t used = 0;
  int v = 0;
  try {
    v = std::stoi(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty()) ctx.Fail(n, key, "'" + s + "' is not a whole number");
  if (v < min) ctx.Fail(n, key, "must be >= " + std::to_string(min) + " (got " + s + ")");
  return v;
}

double Duration(const Ctx& ctx, const YAML::Node& n, const std::string& key) {
  const std::string s = Scalar(ctx, n, key);
  const Result<double> d = ParseDuration(s);
  if (!d.ok()) ctx.Fail(n, key, "'" + s + "' is not a duration (use 30, 30s, 5m, 1h or 250ms)");
  if (*d < 0) ctx.Fail(n, key, "must not be negative (got " + s + ")");
  return *d;
}

Json ToJson(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      Json j = Json::object();
      for (const auto& kv : n) j[kv.first.as<std::string>()] = ToJson(kv.second);
      return j;
    }
    case YAML::NodeType::Sequence: {
      Json j = Json::array();
      for (const auto& e : n) j.push_back(ToJson(e));
      return j;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (n.Tag() == "!") return s;  // quoted: keep as string
      if (s == "true" || s == "yes") return true;
      if (s == "false" || s == "no") return false;
      if (s == "null" || s == "~") return nullptr;
      static const std::regex kInt(R"(^[-+]?[0-9]+$)");
      static const std::regex kFloat(R"(^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$)");
      if (std::regex_match(s, kInt)) {
        try {
          return std::stoll(s);
        } catch (...) {
        }
      }
      if (std::regex_match(s, kFloat)) return std::stod(s);
      return s;
    }
    default:
      return nullptr;
  }
}

std::map<std::string, double> Resources(const Ctx& ctx, const YAML::Node& n, const std::string& key) {
  std::map<std::string, double> out;
  if (!n.IsMap()) ctx.Fail(n, key, "must be a mapping of resource: amount");
  static const std::regex kName(R"(^[A-Za-z_][A-Za-z0-9_.-]*$)");
  for (const auto& kv : n) {
    const std::string name = kv.first.as<std::string>();
    const std::string k = key + "." + name;
    if (!std::regex_match(name, kName)) ctx.Fail(kv.first, k, "is not a valid resource name");
    const double v = Number(ctx, kv.second, k, true);
    if (!(v >= 0) || std::isinf(v)) ctx.Fail(kv.second, k, "must be a non-negative number");
    if (name == "gpu" && v > 1 && std::floor(v) != v)
      ctx.Fail(kv.second, k, "more than one GPU must be a whole number (got " + kv.second.Scalar() + ")");
    out[name] = v;
  }
  return out;
}

std::map<std::string, std::string> Labels(const Ctx& ctx, const YAML::Node& n, const std::string& key) {
  std::map<std::string, std::string> out;
  if (!n.IsMap()) ctx.Fail(n, key, "must be a mapping of label: value");
  for (const auto& kv : n)
    out[kv.first.as<std::string>()] = Scalar(ctx, kv.second, key + "." + kv.first.as<std::string>());
  return out;
}

YAML::Node ParseYaml(const std::string& text, const std::string& file) {
  try {
    YAML::Node root = YAML::Load(text);
    if (!root.IsMap()) throw LoadError(file + ":1: (top): must be a mapping");
    return root;
  } catch (const YAML::Exception& e) {
    throw LoadError(file + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + OneLine(e.msg));
  }
}

std::string ReadWhole(const std::filesystem::path& file, const char* what) {
  std::ifstream in(file);
  if (!in)
    throw LoadError(file.string() + ": cannot read " + what + " file (" +
                    (std::filesystem::exists(file) ? "permission denied" : "no such file") + ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int PipelineSpec::StepIndex(const std::string& name) const {
  for (size_t i = 0; i < steps.size(); ++i)
    if (steps[i].name == name) return static_cast<int>(i);
  return -1;
}

// The number a matched pattern starts with; out of range (1e999) is not a number.
static std::optional<double> Leading(const std::smatch& m) {
  errno = 0;
  const std::string digits = m[1];
  const double v = std::strtod(digits.c_str(), nullptr);
  if (errno == ERANGE || !std::isfinite(v)) return std::nullopt;
  return v;
}

Result<double> ParseDuration(const std::string& text) {
  static const std::regex kRe(R"(^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*$)");
  std::smatch m;
  std::optional<double> number;
  if (!std::regex_match(text, m, kRe) || !(number = Leading(m)))
    return Status::Invalid("'" + text + "' is not a duration (e.g. 30, 30s, 5m, 1h or 250ms)");
  double v = *number;
  const std::string unit = m[2];
  if (unit == "ms") v /= 1000;
  if (unit == "m") v *= 60;
  if (unit == "h") v *= 3600;
  if (unit == "d") v *= 86400;
  return v;
}

Result<double> ParseQuantity(const std::string& text) {
  static const std::regex kRe(R"(^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T)?\s*$)");
  std::smatch m;
  std::optional<double> number;
  if (!std::regex_match(text, m, kRe) || !(number = Leading(m)))
    return Status::Invalid("'" + text + "' is not a quantity (e.g. 16Gi, 512Mi, 2G or a number)");
  double v = *number;
  const std::string u = m[2];
  static const std::map<std::string, double> kMul = {{"Ki", 1024.0}, {"Mi", 1048576.0}, {"Gi", 1073741824.0},
                                                     {"Ti", 1099511627776.0}, {"k", 1e3}, {"K", 1e3},
                                                     {"M", 1e6}, {"G", 1e9}, {"T", 1e12}};
  if (!u.empty()) v *= kMul.at(u);
  return v;
}

// The loaders' edge: inside, a mistake throws LoadError (and yaml-cpp throws from as<>() on a
// node of another kind, a list used as a key, say); out of it comes a Result with the one line.
template <typename F>
static auto AtEdge(const std::string& file, F parse) -> Result<decltype(parse())> {
  try {
    return parse();
  } catch (const LoadError& e) {
    return Status::Invalid(e.what());
  } catch (const YAML::Exception& e) {
    return Status::Invalid(file + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + OneLine(e.msg));
  }
}

// A rates/ parser's value; its error goes on as this file's LoadError (caught at the edge above).
template <typename T>
static T Take(Result<T> r) {
  if (!r.ok()) throw LoadError(r.error());
  return std::move(*r);
}

static PipelineSpec ParsePipelineChecked(const std::string& yaml, const std::string& file);
static ClusterSpec ParseClusterChecked(const std::string& yaml, const std::string& file);

Result<PipelineSpec> ParsePipeline(const std::string& yaml, const std::string& file) {
  return AtEdge(file, [&] { return ParsePipelineChecked(yaml, file); });
}

Result<ClusterSpec> ParseCluster(const std::string& yaml, const std::string& file) {
  return AtEdge(file, [&] { return ParseClusterChecked(yaml, file); });
}

static PipelineSpec ParsePipelineChecked(const std::string& yaml, const std::string& file) {
  Ctx ctx(file);
  YAML::Node root = ParseYaml(yaml, file);
  CheckKeys(ctx, root, "", {"name", "description", "language", "prefetch", "steps", "pools", "rates", "budget"});
  PipelineSpec p;
  p.file = file;
  p.name = root["name"] ? Scalar(ctx, root["name"], "name") : std::filesystem::path(file).stem().string();
  if (root["prefetch"]) p.prefetch = Integer(ctx, root["prefetch"], "prefetch", 1);
  if (root["pools"]) p.pools = Resources(ctx, root["pools"], "pools");
  if (root["language"]) {  // language.h: checked here, handed to every step as with._language
    p.language = Scalar(ctx, root["language"], "language");
    if (!FindLanguage(p.language))
      ctx.Fail(root["language"], "language",
               "unknown language tag '" + p.language + "' (known: " + KnownLanguageTags() + ")");
    p.language = FindLanguage(p.language)->tag;
  }
  if (root["rates"]) p.rates = Take(rates::ParseRates(root["rates"], file));
  if (root["budget"]) p.budget_usd = Take(rates::ParseBudget(root["budget"], file));
  const YAML::Node steps = root["steps"];
  if (!steps) ctx.Fail(root, "steps", "missing: a pipeline needs at least one step");
  if (!steps.IsSequence() || steps.size() == 0) ctx.Fail(steps, "steps", "must be a non-empty list");
  static const std::regex kStepName(R"(^[A-Za-z0-9_][A-Za-z0-9_-]*$)");
  for (size_t i = 0; i < steps.size(); ++i) {
    const YAML::Node s = steps[i];
    const std::string where = "steps[" + std::to_string(i) + "]";
    CheckKeys(ctx, s, where,
              {"name", "uses", "with", "resources", "prefer", "placement", "retries", "backoff", "max_backoff",
               "timeout"});
    StepSpec st;
    st.line = s.Mark().line + 1;
    if (!s["name"]) ctx.Fail(s, where + ".name", "missing");
    st.name = Scalar(ctx, s["name"], where + ".name");
    if (!std::regex_match(st.name, kStepName))
      ctx.Fail(s["name"], where + ".name", "'" + st.name + "' may hold only letters, digits, '_' and '-'");
    if (p.StepIndex(st.name) >= 0) ctx.Fail(s["name"], where + ".name", "duplicate step name '" + st.name + "'");
    const std::string at = "steps." + st.name;
    if (!s["uses"])
      ctx.Fail(s, at + ".uses", "missing (a built-in such as sleep, command, download, analyze, llm, document)");
    st.uses = Scalar(ctx, s["uses"], at + ".uses");
    if (s["with"]) {
      if (!s["with"].IsMap()) ctx.Fail(s["with"], at + ".with", "must be a mapping");
      try {
        st.with = ToJson(s["with"]);
      } catch (const std::out_of_range&) {  // stod of a number past double's range ("1e309")
        ctx.Fail(s["with"], at + ".with", "a number is out of range");
      }
    }
    st.with["_base_dir"] = std::filesystem::absolute(std::filesystem::path(file)).parent_path().string();
    if (!p.language.empty()) st.with["_language"] = p.language;
    if (s["resources"]) st.resources = Resources(ctx, s["resources"], at + ".resources");
    if (s["prefer"]) {
      st.prefer = Resources(ctx, s["prefer"], at + ".prefer");
      for (const auto& [k, v] : st.prefer)
        if (k != "gpu") ctx.Fail(s["prefer"], at + ".prefer." + k, "only gpu can be preferred");
    }
    if (s["placement"]) {
      const YAML::Node pl = s["placement"];
      CheckKeys(ctx, pl, at + ".placement", {"same_node_as", "labels"});
      if (pl["same_node_as"]) {
        st.same_node_as = Scalar(ctx, pl["same_node_as"], at + ".placement.same_node_as");
        int idx = p.StepIndex(st.same_node_as);
        if (idx < 0) {
          bool later = false;
          for (size_t k = i + 1; k < steps.size(); ++k)
            if (steps[k]["name"] && steps[k]["name"].IsScalar() && steps[k]["name"].Scalar() == st.same_node_as)
              later = true;
          if (st.same_node_as == st.name)
            ctx.Fail(pl["same_node_as"], at + ".placement.same_node_as", "a step cannot be placed beside itself");
          ctx.Fail(pl["same_node_as"], at + ".placement.same_node_as",
                   later ? "step '" + st.same_node_as + "' comes later; same_node_as must name an earlier step"
                         : "unknown step '" + st.same_node_as + "'");
        }
      }
      if (pl["labels"]) st.labels = Labels(ctx, pl["labels"], at + ".placement.labels");
    }
    if (s["retries"]) st.retries = Integer(ctx, s["retries"], at + ".retries", 0);
    if (s["backoff"]) st.backoff = Duration(ctx, s["backoff"], at + ".backoff");
    if (s["max_backoff"]) st.max_backoff = Duration(ctx, s["max_backoff"], at + ".max_backoff");
    if (s["timeout"]) {
      st.timeout = Duration(ctx, s["timeout"], at + ".timeout");
      if (st.timeout <= 0) ctx.Fail(s["timeout"], at + ".timeout", "must be positive");
    }
    if (st.uses == "worker") {  // the engine sizes workers from these (the step reads the rest)
      if (st.timeout > 0) st.with["_timeout"] = st.timeout;
      try {
        st.worker = WorkerOptionsFrom(st.with);
      } catch (const ConfigError& e) {
        const std::string what = e.what();  // "with.KEY: why"
        const size_t colon = what.find(": ");
        ctx.Fail(s["with"] ? s["with"] : s, at + "." + what.substr(0, colon),
                 colon == std::string::npos ? what : what.substr(colon + 2));
      }
    }
    p.steps.push_back(std::move(st));
  }
  return p;
}

Result<PipelineSpec> LoadPipeline(const std::filesystem::path& file) {
  return AtEdge(file.string(), [&] { return ParsePipelineChecked(ReadWhole(file, "pipeline"), file.string()); });
}

static ClusterSpec ParseClusterChecked(const std::string& yaml, const std::string& file) {
  Ctx ctx(file);
  YAML::Node root = ParseYaml(yaml, file);
  CheckKeys(ctx, root, "", {"name", "nodes", "pools", "rates"});
  ClusterSpec c;
  c.file = file;
  if (root["pools"]) c.pools = Resources(ctx, root["pools"], "pools");
  if (root["rates"]) c.rates = Take(rates::ParseRates(root["rates"], file));
  const YAML::Node nodes = root["nodes"];
  if (!nodes) ctx.Fail(root, "nodes", "missing: a cluster file lists its nodes");
  if (!nodes.IsSequence() || nodes.size() == 0) ctx.Fail(nodes, "nodes", "must be a non-empty list");
  static const std::regex kNodeName(R"(^[A-Za-z0-9_][A-Za-z0-9_.-]*$)");
  std::set<std::string> names;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const YAML::Node n = nodes[i];
    const std::string where = "nodes[" + std::to_string(i) + "]";
    CheckKeys(ctx, n, where, {"name", "cpus", "gpus", "memory", "resources", "labels", "workdir"});
    NodeSpec ns;
    if (!n["name"]) ctx.Fail(n, where + ".name", "missing");
    ns.name = Scalar(ctx, n["name"], where + ".name");
    if (!std::regex_match(ns.name, kNodeName))
      ctx.Fail(n["name"], where + ".name", "'" + ns.name + "' is not a valid node name");
    if (!names.insert(ns.name).second) ctx.Fail(n["name"], where + ".name", "duplicate node name '" + ns.name + "'");
    const std::string at = "nodes." + ns.name;
    ns.cpus = n["cpus"] ? Number(ctx, n["cpus"], at + ".cpus", false) : std::thread::hardware_concurrency();
    if (!(ns.cpus >= 0)) ctx.Fail(n["cpus"], at + ".cpus", "must be >= 0");
    if (n["gpus"]) {
      ns.gpus = Integer(ctx, n["gpus"], at + ".gpus", 0);
      if (ns.gpus > 64) ctx.Fail(n["gpus"], at + ".gpus", "at most 64 GPUs per node");
    }
    if (n["memory"]) ns.memory = Number(ctx, n["memory"], at + ".memory", true);
    if (n["resources"]) ns.resources = Resources(ctx, n["resources"], at + ".resources");
    for (const char* reserved : {"cpu", "gpu", "memory"})
      if (ns.resources.count(reserved))
        ctx.Fail(n["resources"], at + ".resources." + reserved,
                 std::string("use the node's ") + reserved + "s key instead");
    if (n["labels"]) ns.labels = Labels(ctx, n["labels"], at + ".labels");
    if (n["workdir"]) ns.workdir = Scalar(ctx, n["workdir"], at + ".workdir");
    c.nodes.push_back(std::move(ns));
  }
  return c;
}

Result<ClusterSpec> LoadCluster(const std::filesystem::path& file) {
  return AtEdge(file.string(), [&] { return ParseClusterChecked(ReadWhole(file, "cluster"), file.string()); });
}

}  // namespace baton
