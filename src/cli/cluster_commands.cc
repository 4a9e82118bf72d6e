// `baton head|node|submit|status|cancel|nodes`: thin shells over src/cluster (docs/cluster.md).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "baton/events.h"
#include "baton/pipeline.h"
#include "baton/report.h"
#include "baton/validate.h"
#include "cli/commands.h"
#include "cli/readiness.h"
#include "cli/signals.h"
#include "cluster/client.h"
#include "cluster/head.h"
#include "cluster/node.h"
#include "dashboard/head_source.h"
#include "dashboard/server.h"

namespace baton::cli {

namespace {

struct ClusterArgs {
  std::string redis = "redis://127.0.0.1:6379";
  std::string redis_password_file;
  std::string prefix = "baton";
  std::string log_format = "text";
  // head
  std::string heartbeat_timeout = "5s";
  int max_node_losses = 3;
  int turn_jobs = 20000;
  std::string cancel_grace = "10s";
  std::string retain = "7d", export_file;
  std::string forget_nodes = "1d";
  std::string dashboard, token, token_file;
  bool dashboard_requested = false;
  bool keep_work = false;  // head and node: --keep-work
  // node
  std::string name, gpus = "auto", workdir = "baton-work", address, listen = "0.0.0.0", heartbeat = "1s";
  std::string max_artifact = "1Gi";
  double cpus = 0;
  std::string memory;
  std::vector<std::string> resources, labels;
  // submit
  std::string pipeline, inputs, trace;
  int jobs = 0;
  bool wait = false;
  // status / cancel / nodes
  std::string job;
  std::string drain_timeout = "30s";
  std::string drain_node;
  bool json = false;
};

ClusterArgs g_args;
CLI::App *g_head, *g_node, *g_node_drain, *g_submit, *g_status, *g_cancel, *g_nodes;
CLI::Option* g_head_dashboard = nullptr;
void CommonOptions(CLI::App* c) {
  c->add_option(
       "--redis", g_args.redis,
       "Redis URL redis://HOST:PORT[/DB]; the password comes from --redis-password-file or BATON_REDIS_PASSWORD")
      ->envname("BATON_REDIS")
      ->capture_default_str();
  c->add_option("--redis-password-file", g_args.redis_password_file,
                "File holding the Redis password (first line), e.g. /etc/baton/redis.pass mode 0600")
      ->envname("BATON_REDIS_PASSWORD_FILE");
  c->add_option("--prefix", g_args.prefix, "Key prefix, so several clusters share one Redis")->capture_default_str();
}

LogFormat Format() { return ParseLogFormat(g_args.log_format); }

bool Connect(cluster::Redis& db, const cluster::RedisUrl& url) {
  if (db.Connect(url)) return true;
  std::fprintf(stderr, "baton: error: %s\n", db.error().c_str());
  return false;
}

// A duration or quantity flag's value into `out`, or the one line naming the flag.
Status FlagValue(const char* flag, const std::string& text, Result<double> (*parse)(const std::string&),
                 double* out) {
  const Result<double> v = parse(text);
  if (!v.ok()) return Status::Invalid(std::string(flag) + " " + v.status().message());
  *out = *v;
  return Status::Ok();
}

int HeadCommand(const cluster::RedisUrl& url) {
  cluster::HeadOptions o;
  o.redis = url;
  o.prefix = g_args.prefix;
  for (const auto& [flag, text, out] :
       {std::tuple{"--heartbeat-timeout", &g_args.heartbeat_timeout, &o.heartbeat_timeout},
        std::tuple{"--retain", &g_args.retain, &o.retain},
        std::tuple{"--forget-nodes", &g_args.forget_nodes, &o.forget_nodes},
        std::tuple{"--cancel-grace", &g_args.cancel_grace, &o.cancel_grace}})
    if (Status st = FlagValue(flag, *text, ParseDuration, out); !st.ok()) return Fail(st);
  o.max_node_losses = g_args.max_node_losses;
  o.turn_jobs = static_cast<size_t>(g_args.turn_jobs);
  o.export_file = g_args.export_file;
  o.keep_work = g_args.keep_work;
  o.log_format = Format();
  o.on_ready = [prefix = g_args.prefix] { NotifyReady("head", "scheduling (prefix " + prefix + ")"); };
  cluster::Head head(o);
  std::unique_ptr<dashboard::HeadSource> source;
  std::unique_ptr<dashboard::DashboardServer> server;
  if (g_args.dashboard_requested) {
    dashboard::DashboardOptions options;
    if (!g_args.dashboard.empty()) options.address = g_args.dashboard;
    Result<std::string> token = DashboardToken(g_args.token, g_args.token_file);
    if (!token.ok()) return Fail(token.status());
    options.token = std::move(*token);
    source = std::make_unique<dashboard::HeadSource>(head);
    auto started = dashboard::DashboardServer::Start(*source, options);
    if (!started.server) {
      std::fprintf(stderr, "baton: error: %s\n", started.error.c_str());
      return 2;
    }
    server = std::move(started.server);
    std::fprintf(stderr, "baton: dashboard at %s\n", server->url().c_str());
  }
  StopSignals signals([&head](int sig) {
    NotifyStopping("head", sig);
    head.RequestStop();
  });
  const int rc = head.Run();  // 0 after a clean stop
  if (server) server->Stop();
  return rc;
}

int NodeCommand(const cluster::RedisUrl& url) {
  cluster::NodeOptions o;
  o.redis = url;
  o.prefix = g_args.prefix;
  NodeSpec local = DetectLocalNode();
  o.name = g_args.name.empty() ? local.name : g_args.name;
  o.cpus = g_args.cpus > 0 ? g_args.cpus : local.cpus;
  o.memory = local.memory;
  if (!g_args.memory.empty())
    if (Status st = FlagValue("--memory", g_args.memory, ParseQuantity, &o.memory); !st.ok()) return Fail(st);
  if (g_args.gpus == "auto") {
    o.gpus = DetectGpuCount();
  } else {
    try {
      o.gpus = std::stod(g_args.gpus);
    } catch (const std::exception&) {
      return Fail(Status::Invalid("--gpus " + g_args.gpus + ": expected a number or auto"));
    }
    if (o.gpus < 0 || o.gpus > 64) return Fail(Status::Invalid("--gpus " + g_args.gpus + ": must be 0..64"));
  }
  if (Status st = AddResourcesAndLabels(g_args.resources, g_args.labels, &o.resources, &o.labels); !st.ok())
    return Fail(st);
  o.workdir = g_args.workdir;
  o.keep_work = g_args.keep_work;
  o.address = g_args.address;
  o.listen = g_args.listen;
  double max_artifact = 0;
  for (const auto& [flag, text, out] : {std::tuple{"--heartbeat", &g_args.heartbeat, &o.heartbeat},
                                        std::tuple{"--drain-timeout", &g_args.drain_timeout, &o.drain_timeout}})
    if (Status st = FlagValue(flag, *text, ParseDuration, out); !st.ok()) return Fail(st);
  if (Status st = FlagValue("--max-artifact-bytes", g_args.max_artifact, ParseQuantity, &max_artifact); !st.ok())
    return Fail(st);
  o.max_artifact_bytes = static_cast<uint64_t>(max_artifact);
  o.log_format = Format();
  o.on_ready = [name = o.name] { NotifyReady("node", "registered as " + name); };
  cluster::NodeAgent agent(o);
  StopSignals signals([&agent](int sig) {
    NotifyStopping("node", sig);
    agent.RequestStop();  // drains: running attempts finish or are handed back, then it deregisters
  });
  return agent.Run();  // 0 after a clean stop
}

void PrintFailures(const Json& snapshot) {
  for (const auto& j : snapshot["jobs"])
    if (j.value("state", "") == "failed")
      std::fprintf(stderr, "baton:   %s (%s): %s\n", j.value("id", "").c_str(), j.value("input", "").c_str(),
                   j.value("error", "").c_str());
}

int SubmitCommand(const cluster::RedisUrl& url) {
  if (g_args.inputs.empty() && g_args.jobs <= 0) {
    std::fprintf(stderr, "baton submit: give --inputs FILE or --jobs N\n");
    return 2;
  }
  Result<PipelineSpec> loaded = LoadPipeline(g_args.pipeline);
  if (!loaded.ok()) return Fail(loaded.status());
  const PipelineSpec& spec = *loaded;
  if (Status checked = CheckSteps(spec); !checked.ok()) return Fail(checked);
  std::vector<std::string> inputs, warnings;
  if (!g_args.inputs.empty()) {
    Result<std::vector<std::string>> read = ReadInputs(g_args.inputs, &warnings);
    if (!read.ok()) return Fail(read.status());
    inputs = std::move(*read);
  } else {
    inputs.assign(static_cast<size_t>(g_args.jobs), "");
  }
  for (const auto& w : warnings) std::fprintf(stderr, "baton: warning: %s\n", w.c_str());
  std::ifstream in(g_args.pipeline);
  std::stringstream yaml;
  yaml << in.rdbuf();
  cluster::Redis db;
  if (!Connect(db, url)) return 2;
  const cluster::Keys keys(g_args.prefix);
  Result<std::vector<std::string>> submitted =
      cluster::SubmitJobs(db, keys, std::filesystem::absolute(g_args.pipeline), yaml.str(), spec, inputs);
  if (!submitted.ok()) return Fail(submitted.status());
  const std::vector<std::string>& ids = *submitted;
  std::fprintf(stderr, "baton: submitted %zu job%s (%s .. %s) of %s to %s\n", ids.size(), ids.size() == 1 ? "" : "s",
               ids.front().c_str(), ids.back().c_str(), spec.name.c_str(), url.Redacted().c_str());
  if (!g_args.wait) {
    for (const auto& id : ids) std::printf("%s\n", id.c_str());
    return 0;
  }
  std::atomic<bool> stop{false};
  StopSignals signals([&stop](int) { stop = true; });
  const auto t0 = std::chrono::steady_clock::now();
  // Poll only the jobs that have not ended yet: an ended job's state never changes again.
  std::vector<std::string> pending = ids;
  int ok = 0, failed = 0, cancelled = 0;
  while (!stop) {
    Result<std::vector<std::string>> polled = cluster::JobStates(db, keys, pending);
    if (!polled.ok()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      db.Connect(url);
      continue;
    }
    const std::vector<std::string>& states = *polled;
    std::vector<std::string> still;
    for (size_t i = 0; i < states.size(); ++i) {
      const std::string& st = states[i];
      if (!cluster::TerminalState(st)) {
        still.push_back(pending[i]);
        continue;
      }
      ok += st == "succeeded";
      failed += st == "failed";
      cancelled += st == "cancelled";
    }
    pending.swap(still);
    if (pending.empty()) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "baton: %d succeeded, %d failed, %d cancelled in %.2fs\n", ok, failed, cancelled, secs);
      if (failed) {
        Result<Json> snap = cluster::ClusterSnapshot(db, keys, &ids);
        if (!snap.ok()) return Fail(snap.status());
        PrintFailures(*snap);
      }
      return failed || cancelled ? 1 : 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ExitBy(signals.received());  // the jobs go on in the cluster; this follower ends as interrupted
}

int StatusCommand(const cluster::RedisUrl& url) {
  cluster::Redis db;
  if (!Connect(db, url)) return 2;
  const cluster::Keys keys(g_args.prefix);
  if (!g_args.trace.empty()) {
    std::vector<std::string> names;
    Result<RunReport> read = cluster::ClusterReport(db, keys, &names);
    if (!read.ok()) return Fail(read.status());
    const RunReport& report = *read;
    if (Status st = WriteChromeTrace(g_args.trace, report, names); !st.ok()) return Fail(st);
    std::fprintf(stderr, "baton: trace of %zu jobs written to %s\n", report.jobs.size(), g_args.trace.c_str());
  }
  if (!g_args.job.empty()) {
    Result<Json> found = cluster::ClusterJob(db, keys, g_args.job);
    if (!found.ok()) return Fail(found.status());
    const Json& j = *found;
    if (j.is_null()) {
      std::fprintf(stderr, "baton: error: no job %s in %s (prefix %s)\n", g_args.job.c_str(), url.Redacted().c_str(),
                   g_args.prefix.c_str());
      return 1;
    }
    if (g_args.json) {
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    std::printf("%s  %s  step %s  input %s\n", j.value("id", "").c_str(), j.value("state", "").c_str(),
                j.value("step", "").c_str(), j.value("input", "").c_str());
    if (j.contains("error")) std::printf("  error: %s\n", j["error"].get<std::string>().c_str());
    for (const auto& a : j["attempts"])
      std::printf("  %-12s #%d  %-10s %-9s %8.3fs .. %8.3fs  %s\n", a.value("step", "").c_str(), a.value("attempt", 0),
                  a.value("node", "").c_str(), a.value("status", "").c_str(), a.value("start", 0.0),
                  a.value("end", 0.0), a.value("error", "").c_str());
    return 0;
  }
  if (!g_args.trace.empty() && !g_args.json) return 0;
  Result<Json> read = cluster::ClusterSnapshot(db, keys);
  if (!read.ok()) return Fail(read.status());
  const Json& snap = *read;
  if (g_args.json) {
    std::printf("%s\n", snap.dump(2).c_str());
    return 0;
  }
  std::map<std::string, int> counts;
  std::printf("%-12s %-10s %-12s %-12s %s\n", "JOB", "STATE", "STEP", "NODE", "WAIT");
  for (const auto& j : snap["jobs"]) {
    std::string node, wait;
    for (const auto& s : j["steps"])
      if (s.value("name", "") == j.value("step", "")) {
        node = s.value("node", "");
        wait = s.value("wait", "");
      }
    const std::string state = j.value("state", "");
    ++counts[state];
    std::printf("%-12s %-10s %-12s %-12s %s\n", j.value("id", "").c_str(), state.c_str(), j.value("step", "").c_str(),
                node.c_str(), state == "running" && wait.rfind("running on ", 0) == 0 ? "" : wait.c_str());
  }
  std::string summary;
  for (const auto& [k, v] : counts) summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", v, k);
  std::printf("%zu jobs%s%s\n", snap["jobs"].size(), summary.empty() ? "" : ": ", summary.c_str());
  if (const Json& llm = snap.value("llm", Json()); llm.is_object() && llm.value("requests", 0LL) > 0)
    std::printf("LLM: %lld requests, %lld prompt + %lld completion tokens, $%.6f\n", llm.value("requests", 0LL),
                llm.value("prompt_tokens", 0LL), llm.value("completion_tokens", 0LL), llm.value("cost_usd", 0.0));
  return 0;
}

int NodesCommand(const cluster::RedisUrl& url) {
  cluster::Redis db;
  if (!Connect(db, url)) return 2;
  const cluster::Keys keys(g_args.prefix);
  Result<Json> read = cluster::ClusterSnapshot(db, keys, nullptr);
  if (!read.ok()) return Fail(read.status());
  const Json& snap = *read;
  const Json& nodes = snap["nodes"];
  if (g_args.json) {
    std::printf("%s\n", nodes.dump(2).c_str());
    return 0;
  }
  std::printf("%-14s %-6s %-40s %-20s %s\n", "NODE", "STATE", "RESOURCES (used/total)", "LABELS", "ADDRESS");
  for (const auto& n : nodes) {
    std::string res, labels;
    for (const auto& [k, v] : n["total"].items()) {
      double total = v.get<double>(), used = n["used"].value(k, 0.0);
      if (k == "memory")
        res += fmt::format("{}memory {:.1f}/{:.1f}Gi", res.empty() ? "" : " ", used / (1 << 30), total / (1 << 30));
      else res += fmt::format("{}{} {:g}/{:g}", res.empty() ? "" : " ", k, used, total);
    }
    for (const auto& [k, v] : n["labels"].items())
      labels += fmt::format("{}{}={}", labels.empty() ? "" : ",", k, v.get<std::string>());
    std::printf("%-14s %-6s %-40s %-20s %s\n", n.value("name", "").c_str(), n.value("alive", false) ? "alive" : "lost",
                res.c_str(), labels.c_str(), n.value("address", "").c_str());
  }
  if (nodes.empty()) std::printf("(no nodes known to the head yet)\n");
  return 0;
}

}  // namespace

void AddClusterCommands(CLI::App& app) {
  cluster::RegisterClusterSteps();
  g_head = app.add_subcommand("head", "Run the cluster scheduler against Redis");
  CommonOptions(g_head);
  g_head->add_option("--heartbeat-timeout", g_args.heartbeat_timeout, "A node silent this long is lost (e.g. 5s)")
      ->capture_default_str();
  g_head->add_option("--max-node-losses", g_args.max_node_losses,
                     "A step whose node is lost this many times while running it fails (0: never)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  g_head->add_option("--turn-jobs", g_args.turn_jobs,
                     "Submitted jobs one turn admits at most; the rest wait for the next turns (the lease is kept)")
      ->check(CLI::Range(1, 100000000))
      ->capture_default_str();
  g_head->add_option("--cancel-grace", g_args.cancel_grace,
                     "An attempt told to stop (cancel, timeout) that its agent still runs this long after is given up")
      ->capture_default_str();
  g_head->add_option("--retain", g_args.retain, "Finished jobs leave Redis this long after they ended (0: never)")
      ->capture_default_str();
  g_head
      ->add_option("--forget-nodes", g_args.forget_nodes,
                   "An agent dead this long has its keys removed from Redis (registration, stream; 0: never)")
      ->capture_default_str();
  g_head->add_option("--export", g_args.export_file,
                     "Append each finished job's detail (JSON lines) to FILE before it leaves Redis");
  g_head->add_flag(
      "--keep-work", g_args.keep_work,
      "Tell no node to remove an ended job's work folder (each node's own --keep-work does it for that node)");
  g_head->add_option("--log-format", g_args.log_format, "text, json or none")
      ->check(CLI::IsMember({"text", "json", "none"}));
  g_head_dashboard =
      g_head->add_option("--dashboard", g_args.dashboard, "Serve the dashboard at ADDR (default 127.0.0.1:8265)")
          ->expected(0, 1);
  g_head->add_option("--token-file", g_args.token_file,
                     "File whose first line is the dashboard token (required off loopback; or BATON_TOKEN)");
  g_head->add_option("--token", g_args.token,
                     "Dashboard token on the command line (visible in ps: prefer --token-file)");

  g_node = app.add_subcommand("node", "Run a node agent: runs attempts the head places here");
  CommonOptions(g_node);
  g_node->add_option("--name", g_args.name, "Node name (default: host name)");
  g_node->add_option("--gpus", g_args.gpus, "Logical GPUs: N, or auto to detect")->capture_default_str();
  g_node->add_option("--cpus", g_args.cpus, "CPUs (default: detected)");
  g_node->add_option("--memory", g_args.memory, "Memory, e.g. 64Gi (default: detected)");
  g_node->add_option("--resources", g_args.resources, "Custom resources NAME=N[,NAME=N]");
  g_node->add_option("--labels", g_args.labels, "Labels KEY=VALUE[,...]");
  g_node->add_option("--workdir", g_args.workdir, "Work folder (one subfolder per job)")->capture_default_str();
  g_node->add_flag("--keep-work", g_args.keep_work,
                   "Keep ended jobs' work folders (WORKDIR/JOB); by default they go when the head says the job "
                   "succeeded or was cancelled");
  g_node->add_option("--address", g_args.address,
                     "HOST[:PORT] other nodes use to fetch artifacts (default: host name, any port)");
  g_node->add_option("--listen", g_args.listen, "Interface the artifact server binds")->capture_default_str();
  g_node->add_option("--heartbeat", g_args.heartbeat, "Heartbeat interval")->capture_default_str();
  g_node->add_option("--max-artifact-bytes", g_args.max_artifact, "Largest artifact served or fetched")
      ->capture_default_str();
  g_node->add_option("--log-format", g_args.log_format, "text, json or none")
      ->check(CLI::IsMember({"text", "json", "none"}));
  g_node->add_option("--drain-timeout", g_args.drain_timeout,
                     "On SIGTERM or drain: how long running attempts may finish before the rest are handed back")
      ->capture_default_str();
  g_node_drain = g_node->add_subcommand("drain", "Drain a running agent: as SIGTERM does, from anywhere");
  CommonOptions(g_node_drain);
  g_node_drain->add_option("name", g_args.drain_node, "Node name")->required();

  g_submit = app.add_subcommand("submit", "Submit jobs of a pipeline to the cluster");
  CommonOptions(g_submit);
  g_submit->add_option("pipeline", g_args.pipeline, "Pipeline YAML file")->required();
  auto* in = g_submit->add_option("--inputs", g_args.inputs, "File with one input per line");
  auto* jobs = g_submit->add_option("--jobs", g_args.jobs, "N jobs with empty inputs")->check(CLI::Range(1, 100000000));
  in->excludes(jobs);
  g_submit->add_flag("--wait", g_args.wait, "Follow until every job ended; exit 0 when all succeeded, 1 otherwise");

  g_status = app.add_subcommand("status", "Jobs of the cluster (or one job with its attempts)");
  CommonOptions(g_status);
  g_status->add_option("job", g_args.job, "A job id");
  g_status->add_flag("--json", g_args.json, "JSON output (the dashboard's shapes)");
  g_status->add_option("--trace", g_args.trace, "Write a Chrome trace of every attempt to FILE");

  g_cancel = app.add_subcommand("cancel", "Cancel a job");
  CommonOptions(g_cancel);
  g_cancel->add_option("job", g_args.job, "Job id")->required();

  g_nodes = app.add_subcommand("nodes", "Nodes with resources used/total, labels, alive or lost");
  CommonOptions(g_nodes);
  g_nodes->add_flag("--json", g_args.json, "JSON output");
}

// The Redis URL and password, from where a password may come: a file or the environment, never
// the command line (every local user sees it in `ps`).
bool ResolveRedis(cluster::RedisUrl* url) {
  Result<cluster::RedisUrl> parsed = cluster::RedisUrl::Parse(g_args.redis);
  if (!parsed.ok()) {
    Fail(parsed.status());
    return false;
  }
  *url = std::move(*parsed);
  const char* from_env = std::getenv("BATON_REDIS");
  if (url->password_in_url && !(from_env && g_args.redis == from_env)) {
    std::fprintf(
        stderr,
        "baton: error: --redis: a password in the URL is visible to every local user in `ps`; put it in a file "
        "(--redis-password-file) or in BATON_REDIS_PASSWORD\n");
    return false;
  }
  if (!g_args.redis_password_file.empty()) {
    std::ifstream in(g_args.redis_password_file);
    std::string line;
    if (!in || !std::getline(in, line)) {
      std::fprintf(stderr, "baton: error: --redis-password-file %s: cannot read it\n",
                   g_args.redis_password_file.c_str());
      return false;
    }
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) {
      std::fprintf(stderr, "baton: error: --redis-password-file %s: the first line is empty\n",
                   g_args.redis_password_file.c_str());
      return false;
    }
    url->password = line;
  }
  return true;
}

// Loud, because anyone who reaches such a Redis runs commands on every agent's machine. On
// loopback that is every local user (any account, any container sharing the network).
void WarnIfRedisIsOpen(const cluster::RedisUrl& url) {
  if (!url.password.empty()) return;
  if (url.loopback()) {
    std::fprintf(stderr,
                 "baton: WARNING: Redis at %s has no password: any user of this machine can reach it on loopback, "
                 "submit pipelines and so run commands on every agent. Set `requirepass` in redis.conf and give "
                 "Baton the password (--redis-password-file or BATON_REDIS_PASSWORD); see docs/cluster.md "
                 "\"Running it\".\n",
                 url.Redacted().c_str());
    return;
  }
  std::fprintf(stderr,
               "baton: WARNING: Redis at %s has no password and is not on loopback: anyone who can reach it can run "
               "commands on every agent. Set `requirepass` in redis.conf and give Baton the password "
               "(--redis-password-file or BATON_REDIS_PASSWORD); see docs/cluster.md \"Running it\".\n",
               url.Redacted().c_str());
}

int RunClusterCommand(CLI::App&) {
  cluster::RedisUrl url;
  if (!ResolveRedis(&url)) return 2;
  if (g_head->parsed() || g_node->parsed()) WarnIfRedisIsOpen(url);
  if (g_head->parsed()) {
    g_args.dashboard_requested = g_head_dashboard->count() > 0;
    return HeadCommand(url);
  }
  if (g_node_drain->parsed()) {
    cluster::Redis db;
    if (!Connect(db, url)) return 2;
    Result<bool> drained = cluster::RequestDrain(db, cluster::Keys(g_args.prefix), g_args.drain_node);
    if (!drained.ok()) return Fail(drained.status());
    if (!*drained) {
      std::fprintf(stderr, "baton: error: no node %s (prefix %s)\n", g_args.drain_node.c_str(), g_args.prefix.c_str());
      return 1;
    }
    std::fprintf(stderr, "baton: drain of %s requested\n", g_args.drain_node.c_str());
    return 0;
  }
  if (g_node->parsed()) return NodeCommand(url);
  if (g_submit->parsed()) return SubmitCommand(url);
  if (g_status->parsed()) return StatusCommand(url);
  if (g_nodes->parsed()) return NodesCommand(url);
  if (g_cancel->parsed()) {
    cluster::Redis db;
    if (!Connect(db, url)) return 2;
    Result<bool> cancelled = cluster::RequestCancel(db, cluster::Keys(g_args.prefix), g_args.job);
    if (!cancelled.ok()) return Fail(cancelled.status());
    if (!*cancelled) {
      std::fprintf(stderr, "baton: error: no job %s (prefix %s)\n", g_args.job.c_str(), g_args.prefix.c_str());
      return 1;
    }
    std::fprintf(stderr, "baton: cancel of %s requested\n", g_args.job.c_str());
    return 0;
  }
  return 2;
}

}  // namespace baton::cli
