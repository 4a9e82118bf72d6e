// End-to-end tests of cluster mode: a real redis-server on a free loopback port, and the real
// `baton` binary as separate processes (a head, node agents), killed with SIGKILL where the
// failure semantics of docs/cluster.md are checked. Conditions are polled with deadlines.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "cluster/artifacts.h"
#include "support/child_process.h"
#include "support/util.h"

extern char** environ;

namespace baton::cluster {
namespace {

using Json = nlohmann::json;
using testing::TempDir;

using Proc = testing::ChildProcess;
using testing::WaitFor;

const char* kSeed = R"(name: seed-fast
prefetch: 1
steps:
  - name: download
    uses: sleep
    with: {seconds: 0.1}
    resources: {download_slot: 1}
  - name: analyze
    uses: sleep
    with: {seconds: ANALYZE}
    resources: {gpu: 1}
    placement: {same_node_as: download}
  - name: summarize
    uses: sleep
    with: {seconds: 0.05}
    resources: {cpu: 1}
  - name: document
    uses: sleep
    with: {seconds: 0.05}
    resources: {cpu: 1}
    placement: {labels: {role: head}}
)";

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // BATON_BINARY_DIR, else the build tree this test binary lives in (BUILD/src/cluster/...):
    // ctest does not pass more than the first ENVIRONMENT entry of baton_add_test today.
    std::filesystem::path build =
        std::getenv("BATON_BINARY_DIR")
            ? testing::BinaryDir()
            : std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path().parent_path();
    baton_ = (build / "src/cli/baton").string();
    ASSERT_TRUE(std::filesystem::exists(baton_)) << baton_;
    port_ = testing::FreeLoopbackPort();
    url_ = "redis://127.0.0.1:" + std::to_string(port_);
    prefix_ = "t" + std::to_string(getpid());
  }

  void StartRedis(bool aof = false, const std::string& password = "") {
    std::vector<std::string> argv = {
        "redis-server",      "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "", "--dir",
        dir_.path().string()};
    if (!password.empty()) argv.insert(argv.end(), {"--requirepass", password});
    if (aof) argv.insert(argv.end(), {"--appendonly", "yes", "--appendfsync", "always"});
    else argv.insert(argv.end(), {"--appendonly", "no"});
    redis_ = std::make_unique<Proc>(argv, dir_ / "redis.log");
    ASSERT_TRUE(WaitFor([&] { return Run({"nodes"}) == 0; }, 5)) << "redis did not start";
  }
  void StartHead(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {baton_, "head", "--redis", url_, "--prefix", prefix_, "--heartbeat-timeout", "1s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    head_ = std::make_unique<Proc>(argv, dir_ / "head.log");
  }
  void StartNode(const std::string& name, const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {baton_, "node", "--redis", url_, "--prefix", prefix_, "--name", name,
                                     "--workdir", (dir_ / ("work-" + name)).string(), "--address", "127.0.0.1",
                                     "--listen", "127.0.0.1", "--heartbeat", "0.2s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (std::find(extra.begin(), extra.end(), "--cpus") == extra.end()) argv.insert(argv.end(), {"--cpus", "2"});
    nodes_[name] = std::make_unique<Proc>(argv, dir_ / (name + ".log"));
  }
  bool NodesAlive(size_t n) {
    Json nodes = JsonOf({"nodes", "--json"});
    size_t alive = 0;
    for (const auto& x : nodes) alive += x.value("alive", false);
    return alive == n;
  }
  std::string WritePipeline(const std::string& yaml, double analyze = 0.2) {
    std::string text = yaml;
    if (auto pos = text.find("ANALYZE"); pos != std::string::npos) text.replace(pos, 7, std::to_string(analyze));
    const auto file = dir_ / "pipeline.yaml";
    std::ofstream(file) << text;
    return file.string();
  }
  std::unique_ptr<Proc> Submit(const std::string& pipeline, int jobs) {
    return std::make_unique<Proc>(std::vector<std::string>{baton_, "submit", pipeline, "--jobs", std::to_string(jobs),
                                                           "--redis", url_, "--prefix", prefix_, "--wait"},
                                  dir_ / "submit.log");
  }
  int Run(std::vector<std::string> args, const std::string& out = "") {
    std::vector<std::string> argv = {baton_};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--redis", url_, "--prefix", prefix_});
    return testing::RunProgram(argv, out);
  }
  Json JsonOf(std::vector<std::string> args) {
    const auto out = dir_ / "out.json";
    std::filesystem::remove(out);
    if (Run(args, out.string()) != 0) return Json();
    Json j = Json::parse(testing::ReadFile(out), nullptr, false);
    return j.is_discarded() ? Json() : j;
  }
  Json Job(const std::string& id) { return JsonOf({"status", id, "--json"}); }
  std::string Logs() {
    std::string s;
    for (const char* f : {"head.log", "submit.log"}) s += std::string("--- ") + f + "\n" + testing::ReadFile(dir_ / f);
    return s;
  }
  // Attempts of `step` with `status` in one job's detail.
  static std::vector<Json> Attempts(const Json& job, const std::string& step, const std::string& status) {
    std::vector<Json> out;
    for (const auto& a : job["attempts"])
      if (a.value("step", "") == step && a.value("status", "") == status) out.push_back(a);
    return out;
  }
  // Every job succeeded with exactly one ok attempt per step.
  void ExpectEachStepOnceOk(int jobs,
                            std::vector<std::string> steps = {"download", "analyze", "summarize", "document"}) {
    for (int i = 0; i < jobs; ++i) {
      Json j = Job("job-" + std::to_string(i));
      ASSERT_EQ(j.value("state", ""), "succeeded") << j.dump();
      for (const auto& s : steps)
        EXPECT_EQ(Attempts(j, s, "ok").size(), 1u) << "job-" << i << " " << s << ": " << j.dump();
    }
  }

  TempDir dir_;
  // Placements on a node's stream it has not yet answered (an agent deletes each one once its
  // result is in the head's inbox).
  long Unanswered(const std::string& node) {
    const auto file = dir_ / "xlen.txt";
    std::filesystem::remove(file);  // RunProgram appends
    testing::RunProgram({"redis-cli", "-p", std::to_string(port_), "XLEN", prefix_ + ":place:" + node}, file.string());
    return std::atol(testing::ReadFile(file).c_str());
  }
  std::string baton_, url_, prefix_;
  int port_ = 0;
  std::unique_ptr<Proc> redis_, head_;
  std::map<std::string, std::unique_ptr<Proc>> nodes_;
};

TEST_F(ClusterTest, SeedRulesHoldAcrossFourAgents) {
  StartRedis();
  StartHead();
  StartNode("a", {"--gpus", "1", "--resources", "download_slot=1", "--labels", "role=head"});
  StartNode("b", {"--gpus", "2", "--resources", "download_slot=2"});
  StartNode("c", {"--gpus", "1", "--resources", "download_slot=1,fast=1"});
  StartNode("d", {"--gpus", "0", "--resources", "download_slot=2"});  // no GPU: must never download
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(4); }, 10)) << Logs();
  auto submit = Submit(WritePipeline(kSeed, 0.2), 10);
  ASSERT_EQ(submit->Wait(60), 0) << Logs();
  int on_b = 0;
  for (int i = 0; i < 10; ++i) {
    Json j = Job("job-" + std::to_string(i));
    ASSERT_EQ(j.value("state", ""), "succeeded");
    const auto d = Attempts(j, "download", "ok"), a = Attempts(j, "analyze", "ok"), s = Attempts(j, "summarize", "ok"),
               doc = Attempts(j, "document", "ok");
    ASSERT_EQ(d.size(), 1u);
    ASSERT_EQ(a.size(), 1u);
    ASSERT_EQ(s.size(), 1u);
    ASSERT_EQ(doc.size(), 1u);
    // Order: each step starts after the previous one ended.
    EXPECT_GE(a[0]["start"].get<double>(), d[0]["end"].get<double>());
    EXPECT_GE(s[0]["start"].get<double>(), a[0]["end"].get<double>());
    EXPECT_GE(doc[0]["start"].get<double>(), s[0]["end"].get<double>());
    // Locality, head-only document, and no job started on the GPU-less node.
    EXPECT_EQ(a[0]["node"], d[0]["node"]);
    EXPECT_EQ(doc[0]["node"], "a");
    EXPECT_NE(d[0]["node"], "d");
    on_b += d[0]["node"] == "b";
    EXPECT_EQ(a[0]["gpus"].size(), 1u);
  }
  EXPECT_GT(on_b, 0);
  // The trace names real nodes.
  const auto trace = dir_ / "trace.json";
  ASSERT_EQ(Run({"status", "--trace", trace.string()}), 0);
  Json t = Json::parse(testing::ReadFile(trace));
  std::map<std::string, int> names;
  int complete = 0;
  for (const auto& e : t["traceEvents"]) {
    if (e.value("name", "") == "process_name") names[e["args"]["name"]]++;
    if (e.value("ph", "") == "X") ++complete;
  }
  EXPECT_EQ(complete, 40);
  EXPECT_TRUE(names.count("a") && names.count("b"));
  // Seed-shaped log lines with the real node name.
  EXPECT_NE(testing::ReadFile(dir_ / "head.log").find("document running on node a, GPUs: []"), std::string::npos);
}

TEST_F(ClusterTest, NodeKilledMidRunLosesNothing) {
  StartRedis();
  StartHead();
  StartNode("a", {"--gpus", "1", "--resources", "download_slot=1", "--labels", "role=head"});
  StartNode("b", {"--gpus", "1", "--resources", "download_slot=1"});
  StartNode("c", {"--gpus", "1", "--resources", "download_slot=1"});
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(3); }, 10)) << Logs();
  auto submit = Submit(WritePipeline(kSeed, 0.3), 12);
  // Kill b while it runs an analyze (its input lives only on b: lineage re-runs the download).
  ASSERT_TRUE(WaitFor([&] {
    Json s = JsonOf({"status", "--json"});
    for (const auto& j : s["jobs"])
      for (const auto& st : j["steps"])
        if (st.value("node", "") == "b" && st.value("state", "") == "running" && st.value("name", "") == "analyze")
          return true;
    return false;
  }, 20)) << Logs();
  nodes_["b"]->Kill(SIGKILL);
  ASSERT_EQ(submit->Wait(60), 0) << Logs();
  // A download whose file was lost with b legitimately ran twice (lineage); the rest once.
  ExpectEachStepOnceOk(12, {"analyze", "summarize", "document"});
  int lost = 0, rerun_download = 0;
  for (int i = 0; i < 12; ++i) {
    Json j = Job("job-" + std::to_string(i));
    for (const auto& a : Attempts(j, "analyze", "lost")) {
      ++lost;
      EXPECT_EQ(a["node"], "b");
      EXPECT_NE(Attempts(j, "analyze", "ok")[0]["node"], "b");
      // Lineage: the download ran again, on the node that then analyzed.
      const auto downloads = Attempts(j, "download", "ok");
      ASSERT_EQ(downloads.size(), 2u) << j.dump();
      EXPECT_EQ(downloads[0]["node"], "b");
      EXPECT_EQ(downloads[1]["node"], Attempts(j, "analyze", "ok")[0]["node"]);
      ++rerun_download;
    }
  }
  EXPECT_GE(lost, 1);
  EXPECT_EQ(lost, rerun_download);
  EXPECT_NE(testing::ReadFile(dir_ / "head.log").find("node b lost"), std::string::npos);
}

TEST_F(ClusterTest, HeadKilledAndRestartedResumesWithoutRerunningSteps) {
  StartRedis();
  StartHead();
  StartNode("a", {"--gpus", "1", "--resources", "download_slot=1", "--labels", "role=head"});
  StartNode("b", {"--gpus", "2", "--resources", "download_slot=2"});
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(2); }, 10)) << Logs();
  auto submit = Submit(WritePipeline(kSeed, 0.2), 12);
  ASSERT_TRUE(WaitFor([&] {
    Json s = JsonOf({"status", "--json"});
    int done = 0;
    for (const auto& j : s["jobs"]) done += j.value("state", "") == "succeeded";
    return done >= 2;
  }, 20)) << Logs();
  // Attempts finish while no head runs: their results wait in the inbox for the next head.
  head_->Kill(SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return Unanswered("a") + Unanswered("b") == 0; }, 20)) << Logs();
  StartHead();
  ASSERT_EQ(submit->Wait(60), 0) << Logs();
  ExpectEachStepOnceOk(12);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(Job("job-" + std::to_string(i))["attempts"].size(), 4u) << "job-" << i;
}

TEST_F(ClusterTest, RedisRestartedWithAofLosesNothing) {
  StartRedis(/*aof=*/true);
  StartHead();
  StartNode("a", {"--gpus", "1", "--resources", "download_slot=1", "--labels", "role=head"});
  StartNode("b", {"--gpus", "1", "--resources", "download_slot=1"});
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(2); }, 10)) << Logs();
  auto submit = Submit(WritePipeline(kSeed, 0.2), 8);
  ASSERT_TRUE(WaitFor([&] {
    Json s = JsonOf({"status", "--json"});
    int done = 0;
    for (const auto& j : s["jobs"]) done += j.value("state", "") == "succeeded";
    return done >= 1;
  }, 20)) << Logs();
  redis_->Kill(SIGTERM);  // a clean shutdown: the AOF is complete
  StartRedis(/*aof=*/true);
  ASSERT_EQ(submit->Wait(60), 0) << Logs();
  for (int i = 0; i < 8; ++i) {
    Json j = Job("job-" + std::to_string(i));
    ASSERT_EQ(j.value("state", ""), "succeeded");
    EXPECT_EQ(Attempts(j, "document", "ok").size(), 1u) << j.dump();
  }
}

TEST_F(ClusterTest, ArtifactMadeByACommandIsFetchedWithChecksum) {
  StartRedis();
  StartHead();
  // --keep-work: the maker's copy is compared below, after the jobs succeeded.
  StartNode("maker", {"--gpus", "0", "--labels", "role=maker", "--keep-work"});
  StartNode("taker", {"--gpus", "0", "--labels", "role=taker"});
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(2); }, 10)) << Logs();
  const std::string yaml = R"(name: artifacts
steps:
  - name: make
    uses: command
    with: {argv: [sh, -c, "mkdir -p out && head -c 200000 /dev/urandom > out/blob.bin"]}
    placement: {labels: {role: maker}}
  - name: use
    uses: fetch
    with: {from: make, path: out/blob.bin}
    placement: {labels: {role: taker}}
)";
  auto submit = Submit(WritePipeline(yaml), 2);
  ASSERT_EQ(submit->Wait(30), 0) << Logs();
  for (int i = 0; i < 2; ++i) {
    const std::string id = "job-" + std::to_string(i);
    Json j = Job(id);
    const Json& r = j["results"]["use"];
    const auto original = dir_ / "work-maker" / id / "out/blob.bin";
    ASSERT_TRUE(std::filesystem::exists(original));
    EXPECT_EQ(r.value("sha256", ""), Sha256File(original));
    EXPECT_EQ(r.value("bytes", 0), 200000);
    EXPECT_EQ(r.value("path", "").find((dir_ / "work-taker").string()), 0u) << r.dump();
  }
  // Paths that leave the job folder are refused before any request.
  EXPECT_FALSE(SafeRelative("../x"));
  EXPECT_FALSE(SafeRelative("/etc/passwd"));
  EXPECT_FALSE(SafeRelative("a/../../b"));
  EXPECT_TRUE(SafeRelative("keyframes/scene-001.jpg"));
  const Status refused = FetchArtifact("127.0.0.1:1", "x", "job-0", "../../etc/passwd", dir_ / "x", 100);
  EXPECT_EQ(refused.message(), "artifact path '../../etc/passwd' is not a clean relative path");
}

}  // namespace
}  // namespace baton::cluster

namespace baton::cluster {
namespace {

TEST_F(ClusterTest, HeadServesTheDashboardWithRealNodeNames) {
  StartRedis();
  const int port = testing::FreeLoopbackPort();
  StartHead({"--dashboard", "127.0.0.1:" + std::to_string(port)});
  StartNode("a", {"--gpus", "1", "--resources", "download_slot=1", "--labels", "role=head"});
  StartNode("b", {"--gpus", "1", "--resources", "download_slot=1"});
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(2); }, 10)) << Logs();
  auto submit = Submit(WritePipeline(kSeed, 0.1), 4);
  ASSERT_EQ(submit->Wait(60), 0) << Logs();
  httplib::Client http("127.0.0.1", port);
  Json jobs;
  ASSERT_TRUE(WaitFor([&] {
    auto r = http.Get("/api/jobs?state=succeeded");
    if (!r || r->status != 200) return false;
    jobs = Json::parse(r->body, nullptr, false);
    return jobs.is_object() && jobs["jobs"].size() == 4;
  }, 10)) << Logs();
  for (const auto& j : jobs["jobs"]) {
    ASSERT_EQ(j["steps"].size(), 4u);
    EXPECT_EQ(j["steps"][1]["node"], j["steps"][0]["node"]);  // analyze beside download
    EXPECT_EQ(j["steps"][3]["node"], "a");                     // document on the head-labelled node
  }
  auto nodes = http.Get("/api/nodes");
  ASSERT_TRUE(nodes && nodes->status == 200);
  EXPECT_NE(nodes->body.find("\"a\""), std::string::npos);
  EXPECT_NE(nodes->body.find("\"b\""), std::string::npos);
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics && metrics->status == 200);
  EXPECT_NE(metrics->body.find("baton_jobs{state=\"succeeded\"} 4"), std::string::npos) << metrics->body.substr(0, 400);
}

}  // namespace
}  // namespace baton::cluster

#include "support/http_fault_server.h"
#include "support/media.h"

namespace baton::cluster {
namespace {

// The canonical job across two agents: real downloads, real analysis, and the head-only
// document step embedding keyframes that were made on the other node.
TEST_F(ClusterTest, VideoReportAcrossNodesEmbedsKeyframesFromTheOtherNode) {
  TempDir served;
  std::filesystem::copy_file(testing::Mp4Clip(), served / "talk.mp4");
  testing::HttpFaultServer http(served.path());
  StartRedis();
  StartHead();
  // One CPU each: analyze (cpu 1) admits one job per node, so the two jobs land on both nodes.
  StartNode("a", {"--gpus", "0", "--cpus", "1", "--labels", "role=head"});
  StartNode("b", {"--gpus", "0", "--cpus", "1"});
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(2); }, 10)) << Logs();
  std::ofstream(dir_ / "urls.txt") << http.url("/files/talk.mp4") << "\n" << http.url("/files/talk.mp4?copy=2") << "\n";
  Proc submit({baton_, "submit", (testing::SourceDir() / "examples" / "video-report.yaml").string(), "--inputs",
               (dir_ / "urls.txt").string(), "--redis", url_, "--prefix", prefix_, "--wait"},
              dir_ / "submit.log");
  ASSERT_EQ(submit.Wait(120), 0) << Logs();
  std::set<std::string> analyzed_on;
  for (int i = 0; i < 2; ++i) {
    const std::string id = "job-" + std::to_string(i);
    Json j = Job(id);
    const auto d = Attempts(j, "download", "ok"), a = Attempts(j, "analyze", "ok"), doc = Attempts(j, "document", "ok");
    ASSERT_EQ(doc.size(), 1u) << j.dump();
    EXPECT_EQ(a[0]["node"], d[0]["node"]);
    EXPECT_EQ(doc[0]["node"], "a");
    analyzed_on.insert(a[0]["node"].get<std::string>());
    const std::string html = testing::ReadFile(dir_ / "work-a" / "out" / id / "report.html");
    const std::string md = testing::ReadFile(dir_ / "work-a" / "out" / id / "report.md");
    EXPECT_NE(md.find("Quarterly Results"), std::string::npos) << id;
    // One embedded keyframe per chapter (two slides), wherever the analysis ran.
    size_t images = 0;
    for (size_t p = html.find("data:image/jpeg;base64,"); p != std::string::npos;
         p = html.find("data:image/jpeg;base64,", p + 1))
      ++images;
    EXPECT_EQ(images, 2u) << id;
  }
  EXPECT_EQ(analyzed_on, (std::set<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace baton::cluster

namespace baton::cluster {
namespace {

TEST_F(ClusterTest, RedisPasswordWorksAndNeverReachesALog) {
  const std::string password = "s3cret-Redis-pw";
  std::ofstream(dir_ / "redis.pass") << password << "\n";
  // From a file (or the environment): never the command line, where `ps` shows it.
  setenv("BATON_REDIS_PASSWORD_FILE", (dir_ / "redis.pass").c_str(), 1);
  StartRedis(false, password);
  StartHead();
  StartNode("a", {"--gpus", "1", "--resources", "download_slot=1", "--labels", "role=head"});
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 10)) << Logs();
  auto submit = Submit(WritePipeline(kSeed, 0.05), 2);
  ASSERT_EQ(submit->Wait(60), 0) << Logs();
  ExpectEachStepOnceOk(2);
  for (const char* f : {"head.log", "submit.log", "a.log"}) {
    const std::string log = testing::ReadFile(dir_ / f);
    EXPECT_EQ(log.find(password), std::string::npos) << f << ": " << log;
  }
  EXPECT_NE(testing::ReadFile(dir_ / "head.log").find(":***@127.0.0.1"), std::string::npos);
  // A wrong password is a clear error, not a hang, and does not echo what was given.
  std::ofstream(dir_ / "wrong.pass") << "wrong-password\n";
  setenv("BATON_REDIS_PASSWORD_FILE", (dir_ / "wrong.pass").c_str(), 1);
  const auto out = dir_ / "wrong.log";
  EXPECT_NE(Run({"status"}, out.string()), 0);
  const std::string said = testing::ReadFile(out);
  EXPECT_EQ(said.find("wrong-password"), std::string::npos) << said;
  EXPECT_NE(said.find("redis"), std::string::npos) << said;
  unsetenv("BATON_REDIS_PASSWORD_FILE");
  // A password on the command line is refused, without echoing it.
  const std::string on_line = "redis://:visible-in-ps@127.0.0.1:" + std::to_string(port_);
  const auto refused = dir_ / "refused.log";
  EXPECT_EQ(testing::RunProgram({baton_, "status", "--redis", on_line}, refused.string()), 2);
  EXPECT_EQ(testing::ReadFile(refused).find("visible-in-ps"), std::string::npos);
  EXPECT_NE(testing::ReadFile(refused).find("a password in the URL is visible to every local user in `ps`"),
            std::string::npos)
      << testing::ReadFile(refused);
  // A malformed URL is named, not echoed.
  EXPECT_EQ(testing::RunProgram({baton_, "status", "--redis", "http://user:pw-typo@host"}, refused.string()), 2);
  EXPECT_EQ(testing::ReadFile(refused).find("pw-typo"), std::string::npos) << testing::ReadFile(refused);
}

// Redis on a Unix socket only (no TCP port), as scripts/slurm/baton.sbatch runs it on one node:
// head, agent and submit reach it by unix:///PATH with the password from a file; a relative path or
// a password in such a URL is refused, naming what is wrong.
TEST_F(ClusterTest, AUnixSocketRedisRunsTheClusterAndBadSocketUrlsAreRefused) {
  const std::string sock = (dir_ / "redis.sock").string();
  std::ofstream(dir_ / "redis.pass") << "socket-pw\n";
  std::ofstream(dir_ / "redis.conf") << "port 0\nunixsocket " << sock << "\nunixsocketperm 700\nrequirepass socket-pw\n"
                                     << "save \"\"\nappendonly no\ndir " << dir_.path().string() << "\n";
  setenv("BATON_REDIS_PASSWORD_FILE", (dir_ / "redis.pass").c_str(), 1);
  url_ = "unix://" + sock;
  redis_ = std::make_unique<Proc>(std::vector<std::string>{"redis-server", (dir_ / "redis.conf").string()},
                                  dir_ / "redis.log");
  ASSERT_TRUE(WaitFor([&] { return Run({"nodes"}) == 0; }, 5)) << testing::ReadFile(dir_ / "redis.log");
  StartHead();
  StartNode("a", {"--gpus", "1", "--resources", "download_slot=1", "--labels", "role=head"});
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 10)) << Logs();
  ASSERT_EQ(Submit(WritePipeline(kSeed, 0.05), 2)->Wait(60), 0) << Logs();
  ExpectEachStepOnceOk(2);
  EXPECT_NE(testing::ReadFile(dir_ / "head.log").find("unix://" + sock), std::string::npos) << Logs();
  unsetenv("BATON_REDIS_PASSWORD_FILE");
  const auto out = dir_ / "refused.log";
  EXPECT_EQ(testing::RunProgram({baton_, "status", "--redis", "unix://redis.sock"}, out.string()), 2);
  EXPECT_NE(testing::ReadFile(out).find("expected unix:///ABSOLUTE/PATH"), std::string::npos) << testing::ReadFile(out);
  EXPECT_EQ(testing::RunProgram({baton_, "status", "--redis", "unix://:pw-in-url@" + sock}, out.string()), 2);
  EXPECT_EQ(testing::ReadFile(out).find("pw-in-url"), std::string::npos) << testing::ReadFile(out);
}

// Two agents with one --name: the second is refused while the first beats (before the name lease, each start reset
// the other's placement stream and incarnation, and attempts were lost over and over); an agent restarted after the
// holder died takes the name over, at once when the dead holder ran on this machine, else when its lease expires.
TEST_F(ClusterTest, ANameIsHeldByOneLiveAgentAndTakenOverWhenItDies) {
  StartRedis();
  StartHead();
  StartNode("a", {"--gpus", "0", "--labels", "role=head"});
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 10)) << Logs();
  const auto registration = [&] {
    const auto file = dir_ / "reg.json";
    std::filesystem::remove(file);  // RunProgram appends
    testing::RunProgram({"redis-cli", "-p", std::to_string(port_), "HGET", prefix_ + ":nodes", "a"}, file.string());
    Json j = Json::parse(testing::ReadFile(file), nullptr, false);
    return j.is_object() ? j : Json::object();
  };
  const Json first = registration();
  ASSERT_EQ(first.value("pid", 0), nodes_["a"]->pid()) << first.dump();
  const std::string host = first.value("host", "");
  ASSERT_FALSE(host.empty()) << first.dump();
  const auto agent = [&](const std::string& log) {
    return std::make_unique<Proc>(
        std::vector<std::string>{baton_, "node", "--redis", url_, "--prefix", prefix_, "--name", "a", "--workdir",
                                 (dir_ / "work-a2").string(), "--address", "127.0.0.1", "--listen", "127.0.0.1",
                                 "--heartbeat", "0.2s", "--cpus", "2", "--gpus", "0", "--labels", "role=head"},
        dir_ / log);
  };
  // A second agent under the live one's name: refused with one line, and the first keeps its name and stream.
  auto second = agent("a2.log");
  ASSERT_EQ(second->Wait(30), 2) << testing::ReadFile(dir_ / "a2.log");
  const std::string refused = "baton node: node a is already registered by a live agent (pid " +
                              std::to_string(nodes_["a"]->pid()) + " on " + host + "); stop it or use --name\n";
  EXPECT_NE(testing::ReadFile(dir_ / "a2.log").find(refused), std::string::npos) << testing::ReadFile(dir_ / "a2.log");
  EXPECT_EQ(registration().value("incarnation", ""), first.value("incarnation", ""));
  auto submit = Submit(WritePipeline("name: one\nsteps:\n  - {name: s, uses: sleep, with: {seconds: 0.01}, "
                                     "resources: {cpu: 1}}\n"), 2);
  ASSERT_EQ(submit->Wait(60), 0) << Logs();
  // The holder killed: an agent started on this machine takes the name over at once (its process is gone).
  nodes_["a"]->Kill(SIGKILL);
  auto third = agent("a3.log");
  ASSERT_TRUE(WaitFor([&] { return registration().value("pid", 0) == third->pid(); }, 20))
      << testing::ReadFile(dir_ / "a3.log");
  EXPECT_NE(testing::ReadFile(dir_ / "a3.log").find("took over the name from an agent that died"), std::string::npos);
  // Killed again, its registration made to look like another machine's: the name is free once its lease expires.
  third->Kill(SIGKILL);
  Json elsewhere = registration();
  elsewhere["host"] = "another-machine.example";
  testing::RunProgram({"redis-cli", "-p", std::to_string(port_), "HSET", prefix_ + ":nodes", "a", elsewhere.dump()});
  auto fourth = agent("a4.log");
  ASSERT_TRUE(WaitFor([&] { return registration().value("pid", 0) == fourth->pid(); }, 20))
      << testing::ReadFile(dir_ / "a4.log");
  EXPECT_NE(testing::ReadFile(dir_ / "a4.log").find("waiting up to"), std::string::npos)
      << testing::ReadFile(dir_ / "a4.log");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 20)) << Logs();
}

TEST_F(ClusterTest, AnAgentWarnsLoudlyOfARedisWithoutPasswordOffLoopback) {
  // 0.0.0.0 is not a loopback address by name (Linux connects it to this machine, so nothing
  // leaves it): the agent warns, then keeps trying to connect to the closed port.
  const std::string open_url = "redis://0.0.0.0:" + std::to_string(testing::FreeLoopbackPort());
  testing::ChildProcess agent({baton_, "node", "--redis", open_url, "--name", "w", "--workdir",
                               (dir_ / "w").string()},
                              dir_ / "w.log");
  EXPECT_TRUE(WaitFor(
      [&] {
        return testing::ReadFile(dir_ / "w.log")
                   .find("WARNING: Redis at " + open_url + " has no password and is not on loopback") !=
               std::string::npos;
      },
      30))
      << testing::ReadFile(dir_ / "w.log");
  testing::ChildProcess local({baton_, "nodes", "--redis", url_}, dir_ / "local.log");
  local.Wait(30);
  EXPECT_EQ(testing::ReadFile(dir_ / "local.log").find("WARNING"), std::string::npos);
}

// On loopback, every local user reaches a Redis without a password (and through it every agent).
TEST_F(ClusterTest, AnAgentWarnsOfALoopbackRedisWithoutPassword) {
  const std::string url = "redis://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  testing::ChildProcess agent({baton_, "node", "--redis", url, "--name", "w", "--workdir", (dir_ / "w").string()},
                              dir_ / "w.log");
  EXPECT_TRUE(WaitFor(
      [&] {
        return testing::ReadFile(dir_ / "w.log")
                   .find("WARNING: Redis at " + url + " has no password: any user of this machine can reach it") !=
               std::string::npos;
      },
      30))
      << testing::ReadFile(dir_ / "w.log");
}

}  // namespace
}  // namespace baton::cluster
