// Node work folders in a cluster (issue 10, "one copy of each delivered file"), with the real
// processes: redis-server, `baton head`, two `baton node` agents. Every job runs its first step
// on node a and its second on node b (labels), each writing files into its work folder
// (WORKDIR/JOB/). When a job succeeds, the head tells both nodes to remove that folder; a failed
// job's folders stay (debugging) until retention forgets the job; `--keep-work` on a node, or on
// the head, keeps them. The command steps' logs are moved to WORKDIR/out/JOB/logs/ first.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/child_process.h"
#include "support/util.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using testing::WaitFor;

// job-2's second step fails (no retries): a failed job.
const char* kPipeline = R"(name: cleanup
steps:
  - name: frames
    uses: command
    with: {argv: [sh, -c, "mkdir -p frames && echo data > frames/1.bin && echo {job} > {workdir}/seen"]}
    placement: {labels: {role: a}}
    retries: 0
  - name: transcript
    uses: command
    with: {argv: [sh, -c, "echo words > transcript.txt && test {job} != job-2"]}
    placement: {labels: {role: b}}
    retries: 0
)";

// A first step that runs until it is cancelled.
const char* kSlow = R"(name: slow
steps:
  - name: frames
    uses: command
    with: {argv: [sh, -c, "echo data > frame.bin && exec sleep 60"]}
    placement: {labels: {role: a}}
    retries: 0
)";

class WorkCleanupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    baton_ = (testing::BinaryDir() / "src/cli/baton").string();
    url_ = "redis://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
    prefix_ = "w" + std::to_string(getpid());
    redis_ = Start("redis", {"redis-server", "--port", url_.substr(url_.rfind(':') + 1), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"});
    std::ofstream(dir_ / "p.yaml") << kPipeline;
    std::ofstream(dir_ / "slow.yaml") << kSlow;
  }
  std::unique_ptr<testing::ChildProcess> Start(const std::string& name, std::vector<std::string> argv) {
    return std::make_unique<testing::ChildProcess>(argv, dir_ / (name + ".log"));
  }
  // Redis answering, the head and both agents up (`head_args`, `a_args` added to their command lines).
  void StartCluster(std::vector<std::string> head_args = {}, std::vector<std::string> a_args = {}) {
    ASSERT_TRUE(WaitFor([&] { return Cli({"nodes"}) == 0; }, 10));
    std::vector<std::string> head = {baton_, "head", "--redis", url_, "--prefix", prefix_, "--heartbeat-timeout", "2s"};
    head.insert(head.end(), head_args.begin(), head_args.end());
    head_ = Start("head", head);
    a_ = Agent("a", a_args);
    b_ = Agent("b", {});
    ASSERT_TRUE(WaitFor([&] { return NodesAlive(2); }, 15)) << testing::ReadFile(dir_ / "nodes.json") << Logs();
  }
  std::unique_ptr<testing::ChildProcess> Agent(const std::string& name, const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {baton_,        "node",
                                     "--redis",     url_,
                                     "--prefix",    prefix_,
                                     "--name",      name,
                                     "--cpus",      "2",
                                     "--gpus",      "0",
                                     "--labels",    "role=" + name,
                                     "--workdir",   Work(name).string(),
                                     "--address",   "127.0.0.1",
                                     "--listen",    "127.0.0.1",
                                     "--heartbeat", "0.2s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return Start(name, argv);
  }
  bool NodesAlive(size_t n) {
    const auto file = dir_ / "nodes.json";
    fs::remove(file);  // RunProgram appends
    if (Cli({"nodes", "--json"}, file.string()) != 0) return false;
    const auto nodes = nlohmann::json::parse(testing::ReadFile(file), nullptr, false);
    size_t alive = 0;
    if (nodes.is_array())
      for (const auto& x : nodes) alive += x.value("alive", false);
    return alive == n;
  }
  fs::path Work(const std::string& node) const { return dir_.path() / ("work-" + node); }
  int Cli(std::vector<std::string> args, const std::string& out = "") {
    args.insert(args.begin(), baton_);
    args.insert(args.end(), {"--redis", url_, "--prefix", prefix_});
    return testing::RunProgram(args, out);
  }
  // Submits `jobs` jobs of the pipeline and waits for them: 1 when job-2 is among them (it fails).
  int SubmitAndWait(int jobs) {
    return Start("submit", {baton_, "submit", (dir_ / "p.yaml").string(), "--jobs", std::to_string(jobs), "--redis",
                            url_, "--prefix", prefix_, "--wait"})
        ->Wait(60);
  }
  bool Gone(const std::string& node, const std::string& job) const { return !fs::exists(Work(node) / job); }
  std::string Logs() {
    std::string s;
    for (const char* f : {"head.log", "a.log", "b.log", "submit.log"})
      s += std::string("--- ") + f + "\n" + testing::ReadFile(dir_ / f);
    return s;
  }
  testing::TempDir dir_;
  std::string baton_, url_, prefix_;
  std::unique_ptr<testing::ChildProcess> redis_, head_, a_, b_;
};

TEST_F(WorkCleanupTest, SucceededJobsLeaveNoWorkFolderOnAnyNodeFailedOnesStay) {
  StartCluster();
  ASSERT_EQ(SubmitAndWait(4), 1) << Logs();  // job-2 failed
  for (const char* job : {"job-0", "job-1", "job-3"}) {
    EXPECT_TRUE(WaitFor([&] { return Gone("a", job) && Gone("b", job); }, 20)) << job << "\n" << Logs();
    // The folders existed: the command steps' logs were moved out of them, on both nodes.
    EXPECT_TRUE(fs::is_regular_file(Work("a") / "out" / job / "logs" / "frames.1.stdout")) << job;
    EXPECT_TRUE(fs::is_regular_file(Work("b") / "out" / job / "logs" / "transcript.1.stdout")) << job;
  }
  // The failed job keeps its intermediates on both nodes, for debugging.
  EXPECT_EQ(testing::ReadFile(Work("a") / "job-2" / "frames" / "1.bin"), "data\n");
  EXPECT_EQ(testing::ReadFile(Work("a") / "job-2" / "seen"), "job-2\n");  // {workdir} is absolute
  EXPECT_EQ(testing::ReadFile(Work("b") / "job-2" / "transcript.txt"), "words\n");
  EXPECT_TRUE(fs::exists(Work("b") / "job-2" / "logs" / "transcript.1.stderr"));
}

TEST_F(WorkCleanupTest, NodeKeepWorkKeepsThatNodesFoldersOnly) {
  StartCluster({}, {"--keep-work"});
  ASSERT_EQ(SubmitAndWait(4), 1) << Logs();
  // b removes its folders; a, with --keep-work, was told the same and keeps every one.
  for (const char* job : {"job-0", "job-1", "job-3"})
    ASSERT_TRUE(WaitFor([&] { return Gone("b", job); }, 20)) << job << "\n" << Logs();
  for (const char* job : {"job-0", "job-1", "job-2", "job-3"}) {
    EXPECT_EQ(testing::ReadFile(Work("a") / job / "frames" / "1.bin"), "data\n") << job;
    EXPECT_TRUE(fs::exists(Work("a") / job / "logs" / "frames.1.stdout")) << job;
  }
}

TEST_F(WorkCleanupTest, HeadKeepWorkTellsNoNode) {
  StartCluster({"--keep-work"});
  ASSERT_EQ(SubmitAndWait(2), 0) << Logs();
  // Another job after them (job-2, which fails): both agents read their placement streams past
  // the first jobs' ends.
  ASSERT_EQ(SubmitAndWait(1), 1) << Logs();
  for (const char* job : {"job-0", "job-1", "job-2"}) {
    EXPECT_TRUE(fs::is_regular_file(Work("a") / job / "frames" / "1.bin")) << job;
    EXPECT_TRUE(fs::is_regular_file(Work("b") / job / "transcript.txt")) << job;
  }
}

TEST_F(WorkCleanupTest, FailedJobsFoldersGoWhenRetentionForgetsThem) {
  StartCluster({"--retain", "1s"});
  ASSERT_EQ(SubmitAndWait(3), 1) << Logs();
  EXPECT_TRUE(WaitFor([&] { return Cli({"status", "job-2"}) != 0; }, 30)) << "retention forgets job-2\n" << Logs();
  for (const char* job : {"job-0", "job-1", "job-2"})
    EXPECT_TRUE(WaitFor([&] { return Gone("a", job) && Gone("b", job); }, 20)) << job << "\n" << Logs();
}

TEST_F(WorkCleanupTest, CancelledJobsFolderGoesOnceItsAttemptStopped) {
  StartCluster();
  ASSERT_EQ(Start("submit", {baton_, "submit", (dir_ / "slow.yaml").string(), "--jobs", "1", "--redis", url_,
                             "--prefix", prefix_})
                ->Wait(30),
            0)
      << Logs();
  ASSERT_TRUE(WaitFor([&] { return fs::exists(Work("a") / "job-0" / "frame.bin"); }, 20)) << Logs();
  ASSERT_EQ(Cli({"cancel", "job-0"}), 0) << Logs();
  EXPECT_TRUE(WaitFor([&] { return Gone("a", "job-0"); }, 20)) << Logs();
  EXPECT_TRUE(fs::is_regular_file(Work("a") / "out" / "job-0" / "logs" / "frames.1.stdout")) << Logs();
}

}  // namespace
}  // namespace baton
