// cluster_bench: no-op steps per second and dispatch latency (placement -> start on the node) of
// cluster mode with 4 node agents on loopback, against the embedded runtime (baton::Runtime, 4
// virtual nodes, same pipeline) in the same run; Redis commands per step (INFO commandstats
// before/after); head memory per 100k queued jobs (VmRSS with no nodes, before/after a submit).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "baton/pipeline.h"
#include "baton/runtime.h"
#include "cluster/client.h"
#include "redis/redis.h"
#include "support/child_process.h"
#include "support/util.h"

extern char** environ;
using namespace baton;

namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
long long TotalCalls(cluster::Redis& db) {
  std::string info = db.Command({"INFO", "commandstats"}).str();
  long long total = 0;
  size_t pos = 0;
  while ((pos = info.find("calls=", pos)) != std::string::npos) {
    total += std::atoll(info.c_str() + pos + 6);
    pos += 6;
  }
  return total;
}
long RssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return 0;
}
double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

const char* kPipeline = R"(name: noop
steps:
  - {name: s1, uses: sleep, with: {seconds: 0}, resources: {cpu: CPU}}
  - {name: s2, uses: sleep, with: {seconds: 0}, resources: {cpu: CPU}}
  - {name: s3, uses: sleep, with: {seconds: 0}, resources: {cpu: CPU}}
  - {name: s4, uses: sleep, with: {seconds: 0}, resources: {cpu: CPU}}
)";

}  // namespace

int main(int argc, char** argv) {
  const int jobs = argc > 1 ? std::atoi(argv[1]) : 5000;
  // Demand per step: 0.01 cpu lets each 4-cpu agent run 400 at once (throughput); 1 cpu keeps 16
  // in flight (latency without queueing).
  const std::string cpu = argc > 2 ? argv[2] : "0.01";
  const std::string baton = argc > 3 ? argv[3] : BATON_BINARY;
  RegisterBuiltinSteps();
  testing::TempDir dir;
  const auto pipeline_file = dir / "noop.yaml";
  std::string text = kPipeline;
  for (size_t pos; (pos = text.find("CPU")) != std::string::npos;) text.replace(pos, 3, cpu);
  std::ofstream(pipeline_file) << text;
  const int steps = 4 * jobs;
  std::printf("cluster_bench: %d jobs x 4 no-op steps (cpu %s each), 4 agents, %u cores\n", jobs, cpu.c_str(),
              std::thread::hardware_concurrency());

  // Embedded runtime, same pipeline, 4 virtual nodes.
  double embedded_rate = 0;
  {
    ClusterSpec c;
    for (int i = 0; i < 4; ++i)
      c.nodes.push_back(NodeSpec{"n" + std::to_string(i), 4, 0, 0, {}, {}, dir / ("e" + std::to_string(i))});
    RunOptions o;
    o.inputs.assign(jobs, "");
    o.out = dir / "embedded";
    o.log_format = RunOptions::LogFormat::kNone;
    const std::unique_ptr<Runtime> rt_owner = Runtime::Create(LoadPipeline(pipeline_file).value(), c, o).value();
    Runtime& rt = *rt_owner;
    auto t0 = std::chrono::steady_clock::now();
    RunReport r = rt.Run();
    const double s = Seconds(t0);
    embedded_rate = steps / s;
    std::printf("embedded runtime: %.0f steps/s (%d ok in %.2fs)\n", embedded_rate, r.succeeded, s);
  }

  const int port = testing::FreeLoopbackPort();
  const std::string url = "redis://127.0.0.1:" + std::to_string(port);
  testing::ChildProcess redis(
      {"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"},
      dir / "redis.log");
  cluster::Redis db;
  for (int i = 0; i < 100 && !db.Connect(cluster::RedisUrl::Parse(url).value()); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  testing::ChildProcess head({baton, "head", "--redis", url, "--log-format", "none"}, dir / "head.log");
  std::vector<std::unique_ptr<testing::ChildProcess>> nodes;
  for (int i = 0; i < 4; ++i)
    nodes.push_back(std::make_unique<testing::ChildProcess>(
        std::vector<std::string>{baton, "node", "--redis", url, "--name", "n" + std::to_string(i), "--cpus", "4",
                                 "--gpus", "0", "--workdir", (dir / ("n" + std::to_string(i))).string(), "--address",
                                 "127.0.0.1", "--listen", "127.0.0.1", "--log-format", "none"},
        dir / "node.log"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const cluster::Keys keys("baton");
  const long long calls0 = TotalCalls(db);
  const long rss_before_run = RssKb(head.pid());
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> inputs(jobs, "");
  PipelineSpec spec = LoadPipeline(pipeline_file).value();
  auto ids = cluster::SubmitJobs(db, keys, pipeline_file, text, spec, inputs).value();
  while (true) {
    auto st = cluster::JobStates(db, keys, {ids.back()}).value();
    if (cluster::TerminalState(st[0])) {
      auto all = cluster::JobStates(db, keys, ids).value();
      if (std::all_of(all.begin(), all.end(), [](const std::string& s) { return cluster::TerminalState(s); })) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double s = Seconds(t0);
  const long long calls1 = TotalCalls(db);
  std::vector<double> latency;
  RunReport report = cluster::ClusterReport(db, keys, nullptr).value();
  for (size_t i = 0; i < ids.size(); ++i) {
    cluster::Reply list = db.Command({"LRANGE", keys.attempts(ids[i]), "0", "-1"});
    for (size_t k = 0; k < list.size(); ++k) {
      Json a = Json::parse(list.at(k).str());
      latency.push_back((a.value("start", 0.0) - a.value("placed", 0.0)) * 1000);
    }
  }
  std::printf("cluster mode:     %.0f steps/s (%d ok in %.2fs) = %.2fx the embedded runtime's rate above\n", steps / s,
              report.succeeded, s, steps / s / embedded_rate);
  std::printf("dispatch latency (placement -> start on node): p50 %.3f ms, p99 %.3f ms\n", Pct(latency, 0.5),
              Pct(latency, 0.99));
  std::printf("redis commands per step: %.2f (INFO commandstats, includes status polling)\n",
              double(calls1 - calls0 - 3) / steps);
  const long rss_after_run = RssKb(head.pid());
  std::printf("head memory per finished job: %.0f bytes (RSS %ld -> %ld KiB over %d jobs)\n",
              (rss_after_run - rss_before_run) * 1024.0 / jobs, rss_before_run, rss_after_run, jobs);

  // Head memory per 100k queued jobs: no nodes can take them (they need a resource nobody has).
  nodes.clear();  // killed and reaped
  const long rss0 = RssKb(head.pid());
  const int queued = 100000;
  std::string yaml = "name: queued\nsteps:\n  - {name: s, uses: sleep, resources: {nothing_has_this: 1}}\n";
  std::ofstream(dir / "q.yaml") << yaml;
  std::vector<std::string> qin(queued, "");
  cluster::SubmitJobs(db, keys, dir / "q.yaml", yaml, LoadPipeline(dir / "q.yaml").value(), qin).value();
  for (int i = 0; i < 600 && db.Command({"XLEN", keys.inbox()}).integer() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const long rss1 = RssKb(head.pid());
  std::printf("head memory: %.1f MiB per 100k queued jobs = %.0f bytes per queued job (RSS %ld -> %ld KiB)\n",
              (rss1 - rss0) / 1024.0, (rss1 - rss0) * 1024.0 / queued, rss0, rss1);
  return 0;  // head and redis are killed and reaped on the way out
}
