// /metrics checked by Prometheus' own linter, `promtool check metrics` (Debian's `prometheus`),
// on the output of the real `baton` binary: the embedded runtime (`baton run --dashboard`) and
// the cluster head (`baton head --dashboard` with a real redis-server and a node agent), at every
// point of a run: before anything ran, while attempts run and after a failure, and at the end.
// Steps wait on gate files the test creates, so each point is reached by construction, not by
// timing. Skipped, saying so, when promtool is not installed.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fstream>
#include <regex>

#include <gtest/gtest.h>
#include <httplib.h>

#include "support/child_process.h"
#include "support/util.h"

extern char** environ;

namespace baton {
namespace {

using testing::ChildProcess;
using testing::ReadFile;
using testing::WaitFor;

struct Check {
  int status = -1;
  std::string output;
};

// `promtool check metrics < file`; its findings (stdout and stderr) in `output`.
Check Promtool(const std::filesystem::path& metrics, const std::filesystem::path& log) {
  std::vector<std::string> argv = {"promtool", "check", "metrics"};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, metrics.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  Check c;
  if (posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ) == 0) {
    int st = 0;
    waitpid(pid, &st, 0);
    c.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  posix_spawn_file_actions_destroy(&fa);
  c.output = ReadFile(log);
  return c;
}

bool HavePromtool() { return testing::RunProgram({"promtool", "--version"}) == 0; }

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HavePromtool()) GTEST_SKIP() << "promtool not installed (Debian package prometheus): /metrics not linted";
    baton_ = (testing::BinaryDir() / "src" / "cli" / "baton").string();
  }

  std::string Gate(const std::string& name) const { return (dir_ / name).string(); }
  void Open(const std::string& name) { std::ofstream(dir_ / name) << "open\n"; }

  // Fetches /metrics, lints it, and returns it; records a failure naming `when` on any finding.
  std::string Lint(int port, const std::string& when) {
    httplib::Client http("127.0.0.1", port);
    auto r = http.Get("/metrics");
    if (!r || r->status != 200) {
      ADD_FAILURE() << when << ": no /metrics";
      return "";
    }
    const auto file = dir_ / ("metrics-" + std::to_string(++scrapes_) + ".txt");
    std::ofstream(file) << r->body;
    const Check c = Promtool(file, dir_ / "promtool.log");
    EXPECT_EQ(c.status, 0) << when << ":\n" << c.output << "\n" << r->body;
    EXPECT_EQ(c.output, "") << when << ":\n" << r->body;
    return r->body;
  }
  // Polls /metrics until it holds `line`.
  bool MetricsHave(int port, const std::string& line, double seconds = 60) {
    httplib::Client http("127.0.0.1", port);
    return WaitFor([&] {
      auto r = http.Get("/metrics");
      return r && r->status == 200 && r->body.find(line) != std::string::npos;
    }, seconds);
  }

  testing::TempDir dir_;
  std::string baton_;
  int scrapes_ = 0;
};

// A step that waits for the gate file, then exits with `code`.
std::string GatedStep(const std::string& name, const std::string& gate, int code, const std::string& extra = "") {
  return "  - {name: " + name + ", uses: command, with: {argv: [sh, -c, 'while [ ! -e " + gate +
         " ]; do sleep 0.05; done; exit " + std::to_string(code) + "']}" + extra + "}\n";
}

TEST_F(MetricsTest, EmbeddedRuntimePassesPromtoolAtEveryPoint) {
  // Three jobs on two nodes with memory and a custom resource; job inputs pick the outcome.
  std::ofstream(dir_ / "p.yaml") << "name: lint\nsteps:\n"
                                 << GatedStep("fetch", Gate("gate-fetch"), 0, ", resources: {cpu: 1, memory: 1Gi}")
                                 << "  - {name: check, uses: command, with: {argv: [test, '{input}', '!=', bad]}, "
                                    "resources: {download_slot: 1}}\n";
  std::ofstream(dir_ / "c.yaml") << "nodes:\n  - {name: alpha, cpus: 2, gpus: 1, memory: 8Gi, labels: {role: head}}\n"
                                    "  - {name: beta, cpus: 1, memory: 2Gi, resources: {download_slot: 1}}\n";
  std::ofstream(dir_ / "in.txt") << "ok\nbad\nok2\n";
  const int port = testing::FreeLoopbackPort();
  ChildProcess run({baton_, "run", (dir_ / "p.yaml").string(), "--cluster", (dir_ / "c.yaml").string(), "--inputs",
                    (dir_ / "in.txt").string(), "--out", (dir_ / "out").string(), "--log-format", "none", "--dashboard",
                    "127.0.0.1:" + std::to_string(port)},
                   dir_ / "run.log");
  ASSERT_TRUE(MetricsHave(port, "baton_jobs{")) << ReadFile(dir_ / "run.log");
  // 1. Attempts running, nothing finished: empty histogram and counter families.
  ASSERT_TRUE(MetricsHave(port, "baton_step_jobs{step=\"fetch\",state=\"running\"} 3")) << ReadFile(dir_ / "run.log");
  std::string m = Lint(port, "while the first step runs");
  EXPECT_NE(m.find("baton_node_memory_used_bytes{node=\"alpha\"} 2147483648\n"), std::string::npos) << m;
  EXPECT_NE(m.find("baton_node_memory_capacity_bytes{node=\"beta\"} 2147483648\n"), std::string::npos) << m;
  EXPECT_EQ(m.find("baton_attempts_total{"), std::string::npos) << m;
  // 2. The first step done, one job ("bad") failed at the second.
  Open("gate-fetch");
  ASSERT_TRUE(MetricsHave(port, "baton_jobs{state=\"failed\"} 1")) << ReadFile(dir_ / "run.log");
  m = Lint(port, "after a failure");
  EXPECT_NE(m.find("baton_attempts_total{step=\"check\",status=\"failed\"} 1\n"), std::string::npos) << m;
  // 3. The run over, the dashboard serving the finished run.
  ASSERT_TRUE(
      WaitFor([&] { return ReadFile(dir_ / "run.log").find("dashboard still serving") != std::string::npos; }, 60));
  m = Lint(port, "after the run");
  EXPECT_NE(m.find("baton_jobs{state=\"succeeded\"} 2\n"), std::string::npos) << m;
  EXPECT_NE(m.find("baton_attempts_total{step=\"check\",status=\"failed\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("baton_step_duration_seconds_count{step=\"fetch\"} 3\n"), std::string::npos) << m;
  EXPECT_NE(m.find("baton_node_resource_capacity{node=\"beta\",resource=\"download_slot\"} 1\n"), std::string::npos)
      << m;
  EXPECT_TRUE(std::regex_search(
      m, std::regex(R"(baton_node_resource_utilization_ratio\{node="alpha",resource="memory"\} 0\n)")))
      << m;
  for (const char* gone : {"baton_node_resource_total", "baton_node_resource_utilization{"})
    EXPECT_EQ(m.find(gone), std::string::npos) << gone;
  run.Kill(SIGTERM);
}

TEST_F(MetricsTest, ClusterHeadPassesPromtoolAtEveryPoint) {
  const int redis_port = testing::FreeLoopbackPort(), port = testing::FreeLoopbackPort();
  const std::string url = "redis://127.0.0.1:" + std::to_string(redis_port), prefix = "lint";
  ChildProcess redis({"redis-server", "--port", std::to_string(redis_port), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--dir", dir_.path().string()},
                     dir_ / "redis.log");
  ASSERT_TRUE(WaitFor(
      [&] {
        return testing::RunProgram({baton_, "nodes", "--redis", url, "--prefix", prefix}) == 0;
      },
      10));
  ChildProcess head({baton_, "head", "--redis", url, "--prefix", prefix, "--heartbeat-timeout", "2s", "--dashboard",
                     "127.0.0.1:" + std::to_string(port)},
                    dir_ / "head.log");
  // 1. A head with no node, no pipeline and no job yet.
  ASSERT_TRUE(WaitFor([&] { return ReadFile(dir_ / "head.log").find("baton head: ready") != std::string::npos; }, 30))
      << ReadFile(dir_ / "head.log");
  std::string m = Lint(port, "before any node or job");
  EXPECT_NE(m.find("baton_jobs{state=\"ready\"} 0\n"), std::string::npos) << m;

  ChildProcess node({baton_, "node", "--redis", url, "--prefix", prefix, "--name", "n1", "--cpus", "2", "--gpus", "1",
                     "--memory", "4Gi", "--workdir", (dir_ / "work").string(), "--address", "127.0.0.1", "--listen",
                     "127.0.0.1", "--heartbeat", "0.2s"},
                    dir_ / "node.log");
  std::ofstream(dir_ / "p.yaml") << "name: lint\nsteps:\n"
                                 << GatedStep("fetch", Gate("gate-fetch"), 0, ", resources: {cpu: 1, memory: 1Gi}")
                                 << GatedStep("check", Gate("gate-check"), 1, ", resources: {gpu: 1}");
  ASSERT_EQ(testing::RunProgram(
                {baton_, "submit", (dir_ / "p.yaml").string(), "--jobs", "2", "--redis", url, "--prefix", prefix}),
            0);
  // 2. Both jobs running their first step on the node.
  ASSERT_TRUE(MetricsHave(port, "baton_step_jobs{step=\"fetch\",state=\"running\"} 2")) << ReadFile(dir_ / "head.log");
  m = Lint(port, "while attempts run");
  EXPECT_NE(m.find("baton_node_memory_used_bytes{node=\"n1\"} 2147483648\n"), std::string::npos) << m;
  EXPECT_NE(m.find("baton_node_resource_capacity{node=\"n1\",resource=\"gpu\"} 1\n"), std::string::npos) << m;
  // 3. One job at its GPU step, the other queued behind it.
  Open("gate-fetch");
  ASSERT_TRUE(MetricsHave(port, "baton_step_jobs{step=\"check\",state=\"running\"} 1")) << ReadFile(dir_ / "head.log");
  m = Lint(port, "with a GPU busy and a job waiting");
  EXPECT_NE(m.find("baton_node_gpu_busy{node=\"n1\",gpu=\"0\"} 1\n"), std::string::npos) << m;
  // 4. Both failed (the check step exits 1, no retries): counters and histograms filled in.
  Open("gate-check");
  ASSERT_TRUE(MetricsHave(port, "baton_jobs{state=\"failed\"} 2")) << ReadFile(dir_ / "head.log");
  m = Lint(port, "after the jobs ended");
  EXPECT_NE(m.find("baton_attempts_total{step=\"check\",status=\"failed\"} 2\n"), std::string::npos) << m;
  EXPECT_NE(m.find("baton_step_duration_seconds_count{step=\"fetch\"} 2\n"), std::string::npos) << m;
  node.Kill(SIGTERM);
  head.Kill(SIGTERM);
}

}  // namespace
}  // namespace baton
