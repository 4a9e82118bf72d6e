// The `baton` binary as a user runs it: exit statuses, one-line errors, log shapes, Ctrl-C.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/util.h"

extern char** environ;

namespace baton {
namespace {

using testing::ReadFile;
using testing::TempDir;

struct Result {
  int status = -1;
  std::string out, err;
};

class CliTest : public ::testing::Test {
 protected:
  std::string Baton() const { return (testing::BinaryDir() / "src" / "cli" / "baton").string(); }

  pid_t Spawn(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {Baton()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, stdin_.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, (dir_ / "stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, (dir_ / "stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addchdir_np(&fa, dir_.path().c_str());
    pid_t pid = -1;
    EXPECT_EQ(posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    return pid;
  }
  Result Wait(pid_t pid) {
    Result r;
    int status = 0;
    waitpid(pid, &status, 0);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = ReadFile(dir_ / "stdout");
    r.err = ReadFile(dir_ / "stderr");
    return r;
  }
  Result Baton(const std::vector<std::string>& args) { return Wait(Spawn(args)); }
  void Write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }

  TempDir dir_;
  std::string stdin_ = "/dev/null";  // what the spawned baton reads as standard input
};

const char* kFastSeed = R"(name: seed-fast
steps:
  - {name: download, uses: sleep, with: {seconds: 0.02}, resources: {download_slot: 1}}
  - {name: analyze, uses: sleep, with: {seconds: 0.05}, resources: {gpu: 1}, placement: {same_node_as: download}}
  - {name: summarize, uses: sleep, with: {seconds: 0.01}, resources: {cpu: 1}}
  - {name: document, uses: sleep, with: {seconds: 0.01}, resources: {cpu: 1}, placement: {labels: {role: head}}}
)";

TEST_F(CliTest, BadFilesGiveOneLineAndExitTwo) {
  Write("bad.yaml", "steps:\n  - name: a\n    uses: sleep\n    retries: many\n");
  Result r = Baton({"run", "bad.yaml", "--jobs", "1"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "baton: error: bad.yaml:4: steps.a.retries: 'many' is not a whole number\n");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out"));

  r = Baton({"run", "missing.yaml", "--jobs", "1"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "baton: error: missing.yaml: cannot read pipeline file (no such file)\n");

  Write("seed.yaml", kFastSeed);
  Write("cpu-only.yaml", "nodes:\n  - {name: laptop, cpus: 4, resources: {download_slot: 1}, labels: {role: head}}\n");
  r = Baton({"run", "seed.yaml", "--cluster", "cpu-only.yaml", "--jobs", "2"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err,
            "baton: error: seed.yaml: step 'analyze' can run on no node: it asks gpu: 1 but the nodes offer gpu: "
            "laptop 0 (nodes from cpu-only.yaml)\n");

  r = Baton({"validate", "seed.yaml", "--cluster", "cpu-only.yaml"});
  EXPECT_EQ(r.status, 2);
  Write("one.yaml",
        "nodes:\n  - {name: head, cpus: 4, gpus: 1, resources: {download_slot: 1}, labels: {role: head}}\n");
  r = Baton({"validate", "seed.yaml", "--cluster", "one.yaml"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, "seed.yaml: ok (4 steps)\n");

  // A bad duration or size on the command line: one line naming the flag, before any connection
  // (the last line: an open-Redis warning may come first).
  r = Baton({"node", "--redis", "redis://127.0.0.1:9", "--heartbeat", "5x"});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(r.err.ends_with("baton: error: --heartbeat '5x' is not a duration (e.g. 30, 30s, 5m, 1h or 250ms)\n"))
      << r.err;
  r = Baton({"node", "--redis", "redis://127.0.0.1:9", "--memory", "lots"});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(r.err.ends_with("baton: error: --memory 'lots' is not a quantity (e.g. 16Gi, 512Mi, 2G or a number)\n"))
      << r.err;
  r = Baton({"head", "--redis", "redis://127.0.0.1:9", "--retain", "1e999"});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(r.err.ends_with("baton: error: --retain '1e999' is not a duration (e.g. 30, 30s, 5m, 1h or 250ms)\n"))
      << r.err;
}

TEST_F(CliTest, SeedRunPrintsTheSeedsLogShape) {
  Write("seed.yaml", kFastSeed);
  Write("one.yaml",
        "nodes:\n  - {name: head, cpus: 16, gpus: 1, resources: {download_slot: 1}, labels: {role: head}}\n");
  Result r = Baton({"run", "seed.yaml", "--cluster", "one.yaml", "--jobs", "4", "--trace", "trace.json"});
  ASSERT_EQ(r.status, 0) << r.err;
  const std::regex line(
      R"(^\((download|analyze|summarize|document) pid=\d+\) \[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] )"
      R"(\[job-\d\] \1 running on node head, GPUs: \[(0)?\]$)");
  int starts = 0;
  std::istringstream in(r.err);
  for (std::string l; std::getline(in, l);) {
    if (l.find("running on node") == std::string::npos) continue;
    ++starts;
    EXPECT_TRUE(std::regex_match(l, line)) << l;
    EXPECT_EQ(l.find("analyze running") != std::string::npos, l.find("GPUs: [0]") != std::string::npos) << l;
  }
  EXPECT_EQ(starts, 16);
  auto trace = nlohmann::json::parse(ReadFile(dir_ / "trace.json"));
  EXPECT_GT(trace["traceEvents"].size(), 16u);
  auto summary = nlohmann::json::parse(ReadFile(dir_ / "out" / "summary.json"));
  EXPECT_EQ(summary["succeeded"], 4);
  EXPECT_EQ(summary["schema"], 2);
  EXPECT_EQ(testing::SchemaErrors(summary, "summary"), "");
  for (const auto& j : testing::ReadJobs(dir_ / "out")) EXPECT_EQ(testing::SchemaErrors(j, "job"), "") << j.dump();
}

TEST_F(CliTest, JsonLogsAreOneObjectPerLine) {
  Write("seed.yaml", kFastSeed);
  Write("one.yaml",
        "nodes:\n  - {name: head, cpus: 16, gpus: 1, resources: {download_slot: 1}, labels: {role: head}}\n");
  Result r = Baton({"run", "seed.yaml", "--cluster", "one.yaml", "--jobs", "2", "--log-format", "json"});
  ASSERT_EQ(r.status, 0) << r.err;
  int started = 0;
  std::istringstream in(r.err);
  for (std::string l; std::getline(in, l);) {
    if (l.rfind("baton:", 0) == 0) continue;  // the run's own first and last lines
    auto j = nlohmann::json::parse(l);
    if (j["event"] == "attempt_started") {
      ++started;
      EXPECT_EQ(j["node"], "head");
      EXPECT_TRUE(j["gpus"].is_array());
      EXPECT_TRUE(j.contains("pid"));
    }
  }
  EXPECT_EQ(started, 8);
}

TEST_F(CliTest, InputsWithBlankAndDuplicateLinesRunTheRestAndSaySo) {
  Write("p.yaml", "steps:\n  - {name: a, uses: command, with: {argv: [test, -n, '{input}']}}\n");
  Write("in.txt", "one\n\ntwo\none\n");
  Result r = Baton({"run", "p.yaml", "--inputs", "in.txt", "--log-format", "none"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("baton: warning: in.txt:2: blank line skipped"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("baton: warning: in.txt:4: duplicate of line 1 skipped"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("2 succeeded"), std::string::npos) << r.err;
}

TEST_F(CliTest, InputsFromStandardInputTakeFoldersAndUseLocalFilesInPlace) {
  std::filesystem::create_directories(dir_ / "media dir" / "sub");
  Write("media dir/sub/季度 报告.mp4", "quarterly");
  Write("media dir/a.webm", "abc");
  Write("media dir/notes.txt", "not media");
  Write("p.yaml", "steps:\n  - {name: download, uses: download}\n");
  Write("stdin.txt", "media dir\n");
  stdin_ = (dir_ / "stdin.txt").string();
  Result r = Baton({"run", "p.yaml", "--inputs", "-", "--out", "out", "--log-format", "none"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("2 jobs on 1 node"), std::string::npos) << r.err;
  const auto jobs = testing::ReadJobs(dir_ / "out");
  ASSERT_EQ(jobs.size(), 2u);
  const auto& a = jobs[0]["results"]["download"];
  const auto& b = jobs[1]["results"]["download"];
  EXPECT_EQ(jobs[0]["input"], (dir_ / "media dir" / "a.webm").string());
  EXPECT_EQ(a["path"], (dir_ / "media dir" / "a.webm").string());  // used in place
  EXPECT_EQ(a["sha256"], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");  // sha256("abc")
  EXPECT_EQ(b["path"], (dir_ / "media dir" / "sub" / "季度 报告.mp4").string());
  EXPECT_EQ(b["bytes"], 9);
  // The jobs succeeded: their work folders (with the hard links) are gone, the user's files stay.
  for (const auto& node : std::filesystem::directory_iterator(dir_ / "out" / "nodes"))
    EXPECT_TRUE(std::filesystem::is_empty(node.path())) << node.path();
  EXPECT_EQ(ReadFile(dir_ / "media dir" / "sub" / "季度 报告.mp4"), "quarterly");
}

TEST_F(CliTest, AnInputPathThatDoesNotExistIsOneLineNamingFileAndLine) {
  Write("p.yaml", "steps:\n  - {name: download, uses: download}\n");
  Write("in.txt", "# talks\n/data/talk.mp4\n");
  Result r = Baton({"run", "p.yaml", "--inputs", "in.txt", "--log-format", "none"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "baton: error: in.txt:2: /data/talk.mp4: no such file or folder\n");
}

TEST_F(CliTest, CtrlCEndsRunningAttemptsWritesSummaryAndExits130) {
  Write("slow.yaml", "steps:\n  - {name: wait, uses: command, with: {argv: [sleep, '60']}, resources: {cpu: 1}}\n");
  Write("n.yaml", "nodes:\n  - {name: n, cpus: 2}\n");
  pid_t pid = Spawn({"run", "slow.yaml", "--cluster", "n.yaml", "--jobs", "5", "--trace", "t.json"});
  // Wait until both attempts run (their log folders exist), then interrupt.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline && !(std::filesystem::exists(dir_ / "out/nodes/n/job-0/logs") &&
                                                          std::filesystem::exists(dir_ / "out/nodes/n/job-1/logs")))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  kill(pid, SIGINT);
  const auto t0 = std::chrono::steady_clock::now();
  Result r = Wait(pid);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15));
  EXPECT_EQ(r.status, 130) << r.err;
  auto summary = nlohmann::json::parse(ReadFile(dir_ / "out" / "summary.json"));
  EXPECT_EQ(summary["interrupted"], true);
  EXPECT_EQ(summary["cancelled"], 5);
  EXPECT_EQ(testing::ReadJobs(dir_ / "out")[0]["attempts"][0]["status"], "cancelled");
  // The trace, written as attempts ended, is one valid JSON document: both cancelled attempts.
  const auto trace = nlohmann::json::parse(ReadFile(dir_ / "t.json"), nullptr, false);
  ASSERT_TRUE(trace.is_object()) << ReadFile(dir_ / "t.json");
  int cancelled = 0;
  for (const auto& e : trace["traceEvents"])
    cancelled += e.value("ph", "") == "X" && e["args"]["status"] == "cancelled";
  EXPECT_EQ(cancelled, 2);
}

TEST_F(CliTest, SimulateGivesTheSeedsMakespanAndWhereJobsWent) {
  const auto examples = testing::SourceDir() / "examples";
  Result r = Baton({"simulate", (examples / "seed-demo.yaml").string(), "--cluster",
                    (examples / "clusters" / "seed-node.yaml").string(), "--jobs", "4"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("makespan 137.00 s"), std::string::npos) << r.out;
  r = Baton({"simulate", (examples / "seed-cluster.yaml").string(), "--cluster",
             (examples / "clusters" / "three-nodes.yaml").string(), "--jobs", "12", "--trace", "sim.json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("makespan 107.00 s"), std::string::npos) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(worker-2 +6 jobs started)"))) << r.out;
  int bars = 0;
  const auto trace = nlohmann::json::parse(ReadFile(dir_ / "sim.json"));
  for (const auto& e : trace["traceEvents"]) bars += e["ph"] == "X";
  EXPECT_EQ(bars, 48);
  r = Baton({"simulate", (examples / "seed-demo.yaml").string(), "--jobs", "2", "--duration", "nope=3"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--duration nope: no step of that name"), std::string::npos) << r.err;
}

TEST_F(CliTest, SimulateOnTenThousandNodesPrintsASummaryThatFitsAScreen) {
  std::string nodes = "nodes:\n  - {name: head, cpus: 4, labels: {role: head}}\n";
  for (int i = 1; i < 10000; ++i)
    nodes += i <= 2000 ? "  - {name: g" + std::to_string(i) + ", cpus: 8, gpus: 2}\n"
                       : "  - {name: c" + std::to_string(i) + ", cpus: 8}\n";
  Write("big.yaml", nodes);
  Write("p.yaml", "name: big\nsteps:\n  - {name: scan, uses: sleep, with: {seconds: 2}, resources: {gpu: 1}}\n"
                  "  - {name: write, uses: sleep, with: {seconds: 1}, resources: {cpu: 1}}\n");
  Result r = Baton({"simulate", "p.yaml", "--cluster", "big.yaml", "--jobs", "20000", "--per-node-file", "nodes.tsv"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_LE(std::count(r.out.begin(), r.out.end(), '\n'), 24) << r.out;
  EXPECT_NE(r.out.find("big: 20000 jobs on 10000 nodes: makespan 11.00 s"), std::string::npos) << r.out;
  // 40,000 GPU-s over 4,000 GPUs: at least 10 s, and the last job's write step adds 1 s.
  EXPECT_NE(r.out.find("lower bound 10.00 s (gpu work 40000 gpu-s / 4000 gpus): 1.10x the bound"), std::string::npos)
      << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\n  gpus=2 cpus=8 +2000 +10/10/10 +91/91/91%\n)"))) << r.out;
  EXPECT_NE(r.out.find("GPUs: 4000 in all, busy 91% of the makespan; 0 never used (on 0 nodes)"), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("jobs started"), std::string::npos) << r.out;  // no line per node
  EXPECT_NE(r.out.find("per-node table: nodes.tsv"), std::string::npos) << r.out;
  const std::string table = ReadFile(dir_ / "nodes.tsv");
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 10001);
  EXPECT_NE(table.find("\ng1\t10\t2\t90.9\n"), std::string::npos) << table.substr(0, 200);
  r = Baton({"simulate", "p.yaml", "--cluster", "big.yaml", "--jobs", "20", "--per-node"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_GE(std::count(r.out.begin(), r.out.end(), '\n'), 10000);
}

}  // namespace
}  // namespace baton
