// What operators do to a cluster (issue 9), with the real processes:
//  - an agent stopped on purpose (SIGTERM, as systemd, Ctrl-C or the end of a Slurm allocation
//    do, or `baton node drain`) drains: nothing new is placed on it, running attempts may finish
//    within --drain-timeout, the rest are handed back and re-queued elsewhere without counting
//    as failed tries. No job is cancelled;
//  - the head and an agent killed together, the agent back first: no job stays "running";
//  - every Redis client connection dropped, repeatedly: nothing is lost or run twice.
#include <signal.h>

#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "baton/pipeline.h"
#include "baton/step.h"
#include "cluster/client.h"
#include "cluster/head.h"
#include "cluster/leader.h"
#include "cluster/node.h"
#include "support/in_process_cluster.h"
#include "support/child_process.h"
#include "support/util.h"
#include "util/clock.h"

namespace baton {
namespace {

using Json = nlohmann::json;
using testing::WaitFor;

const char* kPipeline = R"(name: drain
steps:
  - name: download
    uses: sleep
    with: {seconds: 0.05}
  - name: analyze
    uses: sleep
    with: {seconds: ANALYZE}
    resources: {gpu: 1}
    placement: {same_node_as: download}
    retries: 0
  - name: summarize
    uses: sleep
    with: {seconds: 0.02}
)";

class OperationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    baton_ = (testing::BinaryDir() / "src/cli/baton").string();
    url_ = "redis://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
    prefix_ = "d" + std::to_string(getpid());
    redis_ = std::make_unique<testing::ChildProcess>(
        std::vector<std::string>{"redis-server", "--port", url_.substr(url_.rfind(':') + 1), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no"},
        dir_ / "redis.log");
    ASSERT_TRUE(WaitFor([&] { return Cli({"nodes"}) == 0; }, 10));
    head_ = StartHead();
  }
  std::unique_ptr<testing::ChildProcess> Start(const std::string& name, std::vector<std::string> argv) {
    return std::make_unique<testing::ChildProcess>(argv, dir_ / (name + ".log"));
  }
  std::unique_ptr<testing::ChildProcess> Agent(const std::string& name, const std::string& drain_timeout) {
    return Start(name, {baton_,
                        "node",
                        "--redis",
                        url_,
                        "--prefix",
                        prefix_,
                        "--name",
                        name,
                        "--gpus",
                        "1",
                        "--cpus",
                        "4",
                        "--workdir",
                        (dir_ / ("work-" + name)).string(),
                        "--address",
                        "127.0.0.1",
                        "--listen",
                        "127.0.0.1",
                        "--heartbeat",
                        "0.2s",
                        "--drain-timeout",
                        drain_timeout});
  }
  int Cli(std::vector<std::string> args, const std::string& out = "") {
    args.insert(args.begin(), baton_);
    args.insert(args.end(), {"--redis", url_, "--prefix", prefix_});
    return testing::RunProgram(args, out);
  }
  Json JsonOf(std::vector<std::string> args) {
    const auto file = dir_ / "out.json";
    std::filesystem::remove(file);
    if (Cli(std::move(args), file.string()) != 0) return Json();
    Json j = Json::parse(testing::ReadFile(file), nullptr, false);
    return j.is_discarded() ? Json() : j;
  }
  bool NodesAlive(size_t n) {
    size_t alive = 0;
    const Json nodes = JsonOf({"nodes", "--json"});
    for (const auto& x : nodes) alive += x.value("alive", false);
    return alive == n;
  }
  // The job whose analyze runs on `node` now, or "".
  std::string AnalyzingOn(const std::string& node) {
    const Json status = JsonOf({"status", "--json"});  // kept: a range over a temporary's member dangles
    for (const auto& j : status["jobs"])
      for (const auto& st : j["steps"])
        if (st.value("name", "") == "analyze" && st.value("state", "") == "running" && st.value("node", "") == node)
          return j.value("id", "");
    return "";
  }
  std::unique_ptr<testing::ChildProcess> Submit(double analyze, int jobs) {
    std::string text = kPipeline;
    text.replace(text.find("ANALYZE"), 7, std::to_string(analyze));
    std::ofstream(dir_ / "p.yaml") << text;
    return Start("submit", {baton_, "submit", (dir_ / "p.yaml").string(), "--jobs", std::to_string(jobs), "--redis",
                            url_, "--prefix", prefix_, "--wait"});
  }
  std::string Logs() {
    std::string s;
    for (const char* f : {"head.log", "a.log", "b.log", "submit.log"})
      s += std::string("--- ") + f + "\n" + testing::ReadFile(dir_ / f);
    return s;
  }
  std::unique_ptr<testing::ChildProcess> StartHead(std::vector<std::string> extra = {},
                                                   const std::string& heartbeat_timeout = "2s") {
    std::vector<std::string> argv = {baton_,   "head", "--redis", url_, "--prefix", prefix_, "--heartbeat-timeout",
                                     heartbeat_timeout};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return Start("head", argv);
  }
  std::string RedisCli(std::vector<std::string> args) {
    args.insert(args.begin(), {"redis-cli", "-p", url_.substr(url_.rfind(':') + 1)});
    const auto file = dir_ / "redis-cli.out";
    std::filesystem::remove(file);
    testing::RunProgram(args, file.string());
    std::string s = testing::ReadFile(file);
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
  testing::TempDir dir_;
  std::string baton_, url_, prefix_;
  std::unique_ptr<testing::ChildProcess> redis_, head_;
};

TEST_F(OperationsTest, SigtermLetsRunningAttemptsFinishAndCancelsNothing) {
  auto a = Agent("a", "30s");
  auto b = Agent("b", "30s");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(2); }, 15)) << Logs();
  auto submit = Submit(4, 4);
  std::string job;
  ASSERT_TRUE(WaitFor([&] { return !(job = AnalyzingOn("a")).empty(); }, 30)) << Logs();
  a->Signal(SIGTERM);
  EXPECT_EQ(a->Wait(30), 0) << Logs();  // drained, then left
  ASSERT_EQ(submit->Wait(60), 0) << Logs();
  // The analyze that was running on a finished there; nothing was cancelled or failed.
  const Json detail = JsonOf({"status", job, "--json"});
  bool finished_on_a = false;
  for (const auto& at : detail["attempts"])
    finished_on_a |= at.value("step", "") == "analyze" && at.value("node", "") == "a" && at.value("status", "") == "ok";
  EXPECT_TRUE(finished_on_a) << detail.dump();
  const Json all = JsonOf({"status", "--json"});
  for (const auto& j : all["jobs"]) {
    EXPECT_EQ(j.value("state", ""), "succeeded") << j.dump();
    const Json d = JsonOf({"status", j.value("id", ""), "--json"});
    for (const auto& at : d["attempts"]) {
      EXPECT_NE(at.value("status", ""), "cancelled") << d.dump();
      EXPECT_NE(at.value("status", ""), "failed") << d.dump();
    }
  }
  EXPECT_NE(testing::ReadFile(dir_ / "head.log").find("node a is draining"), std::string::npos) << Logs();
}

TEST_F(OperationsTest, RemoteDrainHandsBackWhatOutlivesTheTimeoutWithoutCountingAFailure) {
  auto a = Agent("a", "0.3s");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 15)) << Logs();
  auto submit = Submit(6, 1);
  ASSERT_TRUE(WaitFor([&] { return AnalyzingOn("a") == "job-0"; }, 30)) << Logs();
  auto b = Agent("b", "30s");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(2); }, 15)) << Logs();
  EXPECT_EQ(Cli({"node", "drain", "a"}), 0);
  EXPECT_EQ(a->Wait(30), 0) << Logs();
  ASSERT_EQ(submit->Wait(60), 0) << Logs();  // retries: 0, yet it succeeded: the hand-back was no failure
  const Json d = JsonOf({"status", "job-0", "--json"});
  EXPECT_EQ(d.value("state", ""), "succeeded");
  std::vector<std::string> lines;
  for (const auto& at : d["attempts"])
    lines.push_back(at.value("step", "") + "@" + at.value("node", "") + ":" + at.value("status", ""));
  // The analyze on a was handed back; its download's file left with a, so lineage re-ran it on b.
  EXPECT_EQ(lines, (std::vector<std::string>{"download@a:ok", "analyze@a:lost", "download@b:ok", "analyze@b:ok",
                                             "summarize@b:ok"}))
      << d.dump();
  EXPECT_NE(d["attempts"][1].value("error", "").find("handed back by node a (draining)"), std::string::npos)
      << d.dump();
  EXPECT_EQ(Cli({"node", "drain", "nobody"}), 1);
}

TEST_F(OperationsTest, HeadAndAgentKilledTogetherAgentBackFirstLeavesNoJobRunning) {
  auto a = Agent("a", "30s");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 15)) << Logs();
  auto submit = Submit(4, 2);
  std::string job;
  ASSERT_TRUE(WaitFor([&] { return !(job = AnalyzingOn("a")).empty(); }, 30)) << Logs();
  head_->Kill(SIGKILL);
  a->Kill(SIGKILL);
  a = Agent("a", "30s");  // a new incarnation: it knows nothing of the attempt it ran
  ASSERT_TRUE(WaitFor([&] { return testing::ReadFile(dir_ / "a.log").find("registered") != std::string::npos; }, 15));
  head_ = StartHead();
  ASSERT_EQ(submit->Wait(90), 0) << Logs();
  const Json d = JsonOf({"status", job, "--json"});
  EXPECT_EQ(d.value("state", ""), "succeeded");
  bool lost = false;
  for (const auto& at : d["attempts"])
    lost |= at.value("status", "") == "lost" &&
            at.value("error", "").find("agent a restarted or left while the head was down") != std::string::npos;
  EXPECT_TRUE(lost) << d.dump();
}

TEST_F(OperationsTest, DroppedRedisConnectionsLoseNothing) {
  auto a = Agent("a", "30s");
  auto b = Agent("b", "30s");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(2); }, 15)) << Logs();
  auto submit = Submit(0.4, 8);
  const std::string port = url_.substr(url_.rfind(':') + 1);
  for (int i = 0; i < 4; ++i) {  // every client of Redis loses its connection, four times
    // Spaced by progress, not time: one more attempt recorded since the last kill.
    const std::string before = RedisCli({"XLEN", prefix_ + ":inbox"}) + JsonOf({"status", "--json"}).dump();
    WaitFor([&] { return RedisCli({"XLEN", prefix_ + ":inbox"}) + JsonOf({"status", "--json"}).dump() != before; }, 30);
    testing::RunProgram({"redis-cli", "-p", port, "CLIENT", "KILL", "TYPE", "normal"});
  }
  ASSERT_EQ(submit->Wait(90), 0) << Logs();
  const Json all = JsonOf({"status", "--json"});
  ASSERT_EQ(all["jobs"].size(), 8u);
  for (const auto& j : all["jobs"]) {
    EXPECT_EQ(j.value("state", ""), "succeeded") << j.dump();
    const Json d = JsonOf({"status", j.value("id", ""), "--json"});
    int summarized = 0;
    for (const auto& at : d["attempts"]) {
      EXPECT_NE(at.value("status", ""), "failed") << d.dump();
      EXPECT_NE(at.value("status", ""), "cancelled") << d.dump();
      summarized += at.value("step", "") == "summarize";
    }
    EXPECT_EQ(summarized, 1) << d.dump();  // the last step ran exactly once
  }
}

// The head's writes are fenced by its lease: once another head holds it, a write of the old one
// changes nothing (what a head that stalled past its lease does when it wakes).
TEST_F(OperationsTest, AHeadThatLostItsLeaseWritesNothing) {
  head_->Kill(SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"EXISTS", prefix_ + ":head"}) == "0"; }, 10));
  cluster::Redis db;
  ASSERT_TRUE(db.Connect(cluster::RedisUrl::Parse(url_).value()));
  const std::string key = prefix_ + ":head";
  cluster::LeaderLock old_head(key, 1, Clock::Real()), new_head(key, 1, Clock::Real());
  ASSERT_TRUE(old_head.Acquire(db));
  EXPECT_FALSE(new_head.Acquire(db)) << "one lease at a time";
  auto batch = [](std::vector<std::vector<std::string>> cmds) {
    cluster::CommandBatch b;
    for (const auto& c : cmds) b.Add(c);
    return b;
  };
  cluster::Reply ok =
      old_head.WriteFenced(db, batch({{"SET", prefix_ + ":x", "1"}, {"XADD", prefix_ + ":s", "*", "m", "a"}}));
  ASSERT_FALSE(ok.is_error()) << ok.str();
  ASSERT_EQ(ok.size(), 2u);
  EXPECT_EQ(ok.at(0).size(), 1u) << "the XADD's id comes back";
  // The old head stalls past its lease; the standby takes it.
  ASSERT_TRUE(WaitFor([&] { return new_head.Acquire(db); }, 10));
  cluster::Reply fenced = old_head.WriteFenced(db, batch({{"SET", prefix_ + ":x", "2"}, {"DEL", prefix_ + ":s"}}));
  EXPECT_TRUE(fenced.is_error());
  EXPECT_EQ(fenced.str().rfind("FENCED", 0), 0u) << fenced.str();
  EXPECT_EQ(RedisCli({"GET", prefix_ + ":x"}), "1") << "nothing of the fenced write happened";
  EXPECT_EQ(RedisCli({"XLEN", prefix_ + ":s"}), "1");
  EXPECT_FALSE(new_head.WriteFenced(db, batch({{"SET", prefix_ + ":x", "3"}})).is_error());
  EXPECT_EQ(RedisCli({"GET", prefix_ + ":x"}), "3");
  // The token names the holder for an operator: HOST:PID:RANDOM.
  EXPECT_NE(RedisCli({"GET", key}).find(":" + std::to_string(getpid()) + ":"), std::string::npos);
}

// A finished job's detail leaves the head's memory once it is in Redis; the head's dashboard reads
// it back from there, whole.
TEST_F(OperationsTest, TheHeadServesAFinishedJobsDetailFromRedis) {
  head_->Kill(SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"EXISTS", prefix_ + ":head"}) == "0"; }, 10));
  head_ = StartHead({"--dashboard", "127.0.0.1:0"});
  std::string url;
  ASSERT_TRUE(WaitFor([&] {
    const std::string log = testing::ReadFile(dir_ / "head.log");
    const size_t at = log.find("dashboard at http://127.0.0.1:");
    if (at == std::string::npos) return false;
    const size_t host = at + std::string("dashboard at http://").size();
    url = log.substr(host, log.find('/', host) - host);  // 127.0.0.1:PORT
    return true;
  }, 15)) << Logs();
  auto a = Agent("a", "30s");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 15)) << Logs();
  ASSERT_EQ(Submit(0.05, 1)->Wait(60), 0) << Logs();
  const size_t colon = url.rfind(':');
  httplib::Client http(url.substr(0, colon), std::atoi(url.c_str() + colon + 1));
  auto r = http.Get("/api/jobs/job-0");
  ASSERT_TRUE(r) << url;
  ASSERT_EQ(r->status, 200) << r->body;
  const Json d = Json::parse(r->body);
  EXPECT_EQ(d.value("state", ""), "succeeded") << d.dump();
  EXPECT_EQ(d["attempts"].size(), 3u) << d.dump();
  EXPECT_EQ(testing::SchemaErrors(d, "job_detail"), "") << d.dump();
}

TEST_F(OperationsTest, FinishedJobsLeaveRedisAfterRetentionExportedFirstAndPipelinesAreStoredOnce) {
  head_->Kill(SIGKILL);
  const auto exported = dir_ / "finished.jsonl";
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"EXISTS", prefix_ + ":head"}) == "0"; }, 10));
  head_ = StartHead({"--retain", "1s", "--export", exported.string()});
  auto a = Agent("a", "30s");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 15)) << Logs();
  ASSERT_EQ(Submit(0.05, 2)->Wait(60), 0) << Logs();
  ASSERT_EQ(Submit(0.05, 1)->Wait(60), 0) << Logs();  // the same pipeline text again
  EXPECT_EQ(RedisCli({"LLEN", prefix_ + ":pipelines"}), "1") << "an identical pipeline is stored once";
  EXPECT_EQ(RedisCli({"HLEN", prefix_ + ":pipeline:by-digest"}), "1");
  // A second after they ended, the three jobs leave Redis, exported first.
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"LLEN", prefix_ + ":jobs"}) == "0"; }, 30)) << Logs();
  for (const char* id : {"job-0", "job-1", "job-2"}) {
    EXPECT_EQ(RedisCli({"EXISTS", prefix_ + ":job:" + id}), "0") << id;
    EXPECT_EQ(RedisCli({"EXISTS", prefix_ + ":attempts:" + id}), "0") << id;
  }
  std::ifstream in(exported);
  std::vector<Json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(Json::parse(line, nullptr, false));
  ASSERT_EQ(lines.size(), 3u) << testing::ReadFile(exported);
  std::set<std::string> ids;
  for (const auto& j : lines) {
    EXPECT_EQ(j.value("state", ""), "succeeded") << j.dump();
    EXPECT_EQ(j["attempts"].size(), 3u) << j.dump();
    EXPECT_EQ(testing::SchemaErrors(j, "job_detail"), "") << j.dump();
    ids.insert(j.value("id", ""));
  }
  EXPECT_EQ(ids, (std::set<std::string>{"job-0", "job-1", "job-2"}));
}

// Redis out of memory (maxmemory, policy noeviction) refuses HSET, RPUSH and XADD but not XACK or
// XDEL. A turn that applied an agent's result while Redis was full must not be committed half: the
// result stays in the inbox, and once Redis has room the job's hash and attempt list say what
// happened, each attempt once.
TEST_F(OperationsTest, TurnRefusedByRedisOutOfMemoryIsRetriedNotLost) {
  head_->Kill(SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"EXISTS", prefix_ + ":head"}) == "0"; }, 10));
  head_ = StartHead({}, "20s");  // a lease that outlives the SIGSTOP below
  auto a = Agent("a", "30s");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 15)) << Logs();
  auto submit = Submit(0.5, 2);
  ASSERT_TRUE(WaitFor([&] { return !AnalyzingOn("a").empty(); }, 30)) << Logs();
  // The head stops while the agent reports the analyze's result; Redis is full when it reads it.
  head_->Signal(SIGSTOP);
  const std::string inbox = prefix_ + ":inbox";
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"XLEN", inbox}) != "0"; }, 30)) << Logs();
  ASSERT_EQ(RedisCli({"CONFIG", "SET", "maxmemory", "1"}), "OK");
  head_->Signal(SIGCONT);
  ASSERT_TRUE(WaitFor([&] { return testing::ReadFile(dir_ / "head.log").find("redis refused a write") !=
                                   std::string::npos; }, 30)) << Logs();
  EXPECT_NE(RedisCli({"XLEN", inbox}), "0") << "the result was acknowledged by a turn Redis refused";
  ASSERT_EQ(RedisCli({"CONFIG", "SET", "maxmemory", "0"}), "OK");
  ASSERT_EQ(submit->Wait(60), 0) << Logs();
  const Json all = JsonOf({"status", "--json"});
  ASSERT_EQ(all["jobs"].size(), 2u);
  for (const auto& j : all["jobs"]) {
    EXPECT_EQ(j.value("state", ""), "succeeded") << j.dump();
    const Json d = JsonOf({"status", j.value("id", ""), "--json"});
    std::vector<std::string> lines;
    for (const auto& at : d["attempts"]) lines.push_back(at.value("step", "") + ":" + at.value("status", ""));
    EXPECT_EQ(lines, (std::vector<std::string>{"download:ok", "analyze:ok", "summarize:ok"})) << d.dump() << Logs();
  }
  EXPECT_NE(testing::ReadFile(dir_ / "head.log").find("reloading and retrying"), std::string::npos) << Logs();
}

// A Redis that evicts keys when full would lose the cluster's state without an error: the head says so.
TEST_F(OperationsTest, TheHeadWarnsWhenRedisEvicts) {
  EXPECT_EQ(testing::ReadFile(dir_ / "head.log").find("maxmemory-policy"), std::string::npos);
  head_->Kill(SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"EXISTS", prefix_ + ":head"}) == "0"; }, 10));
  ASSERT_EQ(RedisCli({"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"}), "OK");
  head_ = StartHead();
  EXPECT_TRUE(WaitFor([&] { return testing::ReadFile(dir_ / "head.log").find(
                                       "WARNING: Redis's maxmemory-policy is allkeys-lru") != std::string::npos; },
                      15)) << Logs();
}

// An input that kills whatever runs it (here a step that SIGKILLs its agent, as a media file that
// crashes a decoder inside the agent would) is not placed on every agent in turn forever: agents
// restarted as systemd's Restart=always does, the step fails at its third node loss, naming why.
TEST_F(OperationsTest, AnInputThatKillsItsAgentFailsAfterThreeNodeLosses) {
  std::ofstream(dir_ / "poison.yaml") << R"(name: poison
steps:
  - name: crash
    uses: command
    with: {argv: [sh, -c, "kill -KILL $PPID; sleep 5"]}
    backoff: 0.1s
)";
  std::map<std::string, std::unique_ptr<testing::ChildProcess>> agents;
  int restarts = 0;
  auto supervise = [&] {  // Restart=always
    for (auto& [name, agent] : agents)
      if (!agent || agent->Wait(0) != -1) {
        restarts += agent != nullptr;
        agent = Agent(name, "30s");
      }
  };
  agents["a"];
  agents["b"];
  supervise();
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(2); }, 15)) << Logs();
  auto submit = Start("submit", {baton_, "submit", (dir_ / "poison.yaml").string(), "--jobs", "1", "--redis", url_,
                                 "--prefix", prefix_, "--wait"});
  int status = -1;
  ASSERT_TRUE(WaitFor([&] {
    supervise();
    return (status = submit->Wait(0.1)) != -1 || restarts > 10;
  }, 90)) << Logs();
  ASSERT_EQ(status, 1) << "restarts: " << restarts << "\n" << Logs();
  EXPECT_EQ(restarts, 3);
  const Json d = JsonOf({"status", "job-0", "--json"});
  EXPECT_EQ(d.value("state", ""), "failed") << d.dump();
  EXPECT_NE(d.value("error", "").find("crash failed: node lost 3 times while running this"), std::string::npos)
      << d.dump();
  ASSERT_EQ(d["attempts"].size(), 3u) << d.dump();
  for (const auto& at : d["attempts"]) EXPECT_EQ(at.value("status", ""), "lost") << d.dump();
}

// systemd's default KillMode=control-group, and Slurm signalling a whole step, send the agent's
// SIGTERM to its step's children too, perhaps before the agent sees its own: the child killed so
// is a hand-back of the drain, not a failed try (retries: 0, yet the job succeeds elsewhere).
TEST_F(OperationsTest, AChildKilledWithItsDrainingAgentIsHandedBackNotFailed) {
  std::ofstream(dir_ / "group.yaml") << R"(name: group
steps:
  - name: work
    uses: command
    with: {argv: [sh, -c, "echo $$ > {workdir}/child-{node}.pid; test {node} = b || exec sleep 30"]}
    retries: 0
)";
  auto a = Agent("a", "30s");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 15)) << Logs();
  auto submit = Start("submit", {baton_, "submit", (dir_ / "group.yaml").string(), "--jobs", "1", "--redis", url_,
                                 "--prefix", prefix_, "--wait"});
  std::filesystem::path pid_file;
  ASSERT_TRUE(WaitFor([&] {
    if (!std::filesystem::exists(dir_ / "work-a")) return false;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir_ / "work-a"))
      if (e.path().filename() == "child-a.pid" && std::filesystem::file_size(e.path()) > 0) pid_file = e.path();
    return !pid_file.empty();
  }, 30)) << Logs();
  auto b = Agent("b", "30s");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(2); }, 15)) << Logs();
  // What the supervisor does: the child's group first (the worst order), then the agent.
  const pid_t child = std::atoi(testing::ReadFile(pid_file).c_str());
  ASSERT_GT(child, 1);
  ASSERT_EQ(kill(-child, SIGTERM), 0);
  a->Signal(SIGTERM);
  EXPECT_EQ(a->Wait(30), 0) << Logs();
  ASSERT_EQ(submit->Wait(60), 0) << Logs();
  const Json d = JsonOf({"status", "job-0", "--json"});
  EXPECT_EQ(d.value("state", ""), "succeeded") << d.dump();
  std::vector<std::string> lines;
  for (const auto& at : d["attempts"]) lines.push_back(at.value("node", "") + ":" + at.value("status", ""));
  EXPECT_EQ(lines, (std::vector<std::string>{"a:lost", "b:ok"})) << d.dump();
  EXPECT_NE(d["attempts"][0].value("error", "").find("handed back by node a (draining)"), std::string::npos)
      << d.dump();
}

// Retention reads ended jobs by end time: a thousand and one older jobs that never end (queued
// behind one that sleeps) do not keep a finished job in Redis past --retain.
TEST_F(OperationsTest, RetentionRemovesAFinishedJobBehindThousandsThatNeverEnd) {
  head_->Kill(SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"EXISTS", prefix_ + ":head"}) == "0"; }, 10));
  head_ = StartHead({"--retain", "1s"});
  auto a = Start("a", {baton_, "node", "--redis", url_, "--prefix", prefix_, "--name", "a", "--cpus", "4",
                       "--resources", "slot=1", "--workdir", (dir_ / "work-a").string(), "--address", "127.0.0.1",
                       "--listen", "127.0.0.1", "--heartbeat", "0.2s"});
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 15)) << Logs();
  std::ofstream(dir_ / "long.yaml") << "name: long\nsteps:\n  - name: wait\n    uses: sleep\n"
                                       "    with: {seconds: 1000}\n    resources: {slot: 1}\n";
  std::ofstream(dir_ / "short.yaml") << "name: short\nsteps:\n  - name: quick\n    uses: sleep\n"
                                        "    with: {seconds: 0.01}\n";
  ASSERT_EQ(Cli({"submit", (dir_ / "long.yaml").string(), "--jobs", "1001"}), 0) << Logs();
  ASSERT_EQ(Cli({"submit", (dir_ / "short.yaml").string(), "--jobs", "1", "--wait"}), 0) << Logs();
  EXPECT_EQ(RedisCli({"LLEN", prefix_ + ":jobs"}), "1002");
  EXPECT_TRUE(WaitFor([&] { return RedisCli({"EXISTS", prefix_ + ":job:job-1001"}) == "0"; }, 30))
      << RedisCli({"HGETALL", prefix_ + ":job:job-1001"});
  EXPECT_EQ(RedisCli({"LLEN", prefix_ + ":jobs"}), "1001");
  EXPECT_EQ(RedisCli({"ZCARD", prefix_ + ":ended"}), "0");
}

// A step that ignores cancel (blocked in a call that never looks at it) until the test lets it go.
std::atomic<bool> g_let_stubborn_go{false};
class StubbornStep : public Step {
 public:
  StepOutcome Run(StepContext&) const override {
    while (!g_let_stubborn_go) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return StepOutcome::Ok();
  }
  bool NeedsWorkdir() const override { return false; }
};

// The head gives up on an attempt whose agent does not stop it within --cancel-grace, as the
// embedded runtime does: a cancelled job whose step ignores cancel ends cancelled, it does not
// stay "running" until its agent restarts. (Head and agent in this process: the step is one.)
TEST_F(OperationsTest, TheHeadAbandonsAStepThatIgnoresCancel) {
  head_->Kill(SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"EXISTS", prefix_ + ":head"}) == "0"; }, 10));
  StepRegistry::Global().Register("stubborn",
                                  StepFactoryOf([](const Json&) { return std::make_unique<StubbornStep>(); }));
  g_let_stubborn_go = false;
  const cluster::RedisUrl url = cluster::RedisUrl::Parse(url_).value();
  cluster::HeadOptions ho;
  ho.redis = url;
  ho.prefix = prefix_;
  ho.heartbeat_timeout = 2;
  ho.cancel_grace = 0.5;
  ho.log_format = LogFormat::kNone;
  cluster::Head head(ho);
  std::thread head_thread([&] { head.Run(); });
  cluster::NodeOptions no = testing::TestAgentOptions(url, prefix_, dir_.path(), 2);
  no.drain_timeout = 0.2;
  cluster::NodeAgent agent(no);
  std::thread agent_thread([&] { agent.Run(); });
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 15));
  const std::string yaml = "name: stubborn\nsteps:\n  - name: hold\n    uses: stubborn\n";
  auto spec = ParsePipeline(yaml, "stubborn.yaml");
  ASSERT_TRUE(spec.ok()) << spec.error();
  cluster::Redis db;
  ASSERT_TRUE(db.Connect(url));
  const cluster::Keys keys(prefix_);
  const auto ids = cluster::SubmitJobs(db, keys, "stubborn.yaml", yaml, *spec, {""}).value();
  ASSERT_EQ(ids.size(), 1u);
  ASSERT_TRUE(WaitFor([&] { return cluster::JobStates(db, keys, ids).value()[0] == "running"; }, 15));
  ASSERT_TRUE(cluster::RequestCancel(db, keys, ids[0]).value());
  const bool ended = WaitFor([&] { return cluster::JobStates(db, keys, ids).value()[0] == "cancelled"; }, 15);
  const Json d = JsonOf({"status", ids[0], "--json"});
  g_let_stubborn_go = true;
  agent.RequestStop();
  agent_thread.join();
  head.RequestStop();
  head_thread.join();
  ASSERT_TRUE(ended) << d.dump();
  ASSERT_EQ(d["attempts"].size(), 1u) << d.dump();
  EXPECT_EQ(d.value("state", ""), "cancelled") << d.dump();
  // As in the embedded runtime: the attempt given up on is recorded failed, the job cancelled.
  EXPECT_EQ(d["attempts"][0].value("status", ""), "failed") << d.dump();
  EXPECT_NE(d["attempts"][0].value("error", "").find("did not stop when told to; abandoned"), std::string::npos)
      << d.dump();
}

// A head in this process on virtual time (HeadOptions::clock), for what it does after days:
// retention, forgetting pipelines and dead agents. Its lease (the heartbeat timeout, real
// milliseconds in Redis) outlasts the test; agents are lost only when the test moves the clock
// past the heartbeat timeout.
class VirtualHead {
 public:
  VirtualHead(const std::string& url, const std::string& prefix, const std::filesystem::path& log, double retain,
              double forget_nodes) {
    log_ = std::fopen(log.c_str(), "a");
    cluster::HeadOptions ho;
    ho.redis = cluster::RedisUrl::Parse(url).value();
    ho.prefix = prefix;
    ho.heartbeat_timeout = 1000;
    ho.retain = retain;
    ho.forget_nodes = forget_nodes;
    ho.log_stream = log_;
    ho.clock = &clock;
    head_ = std::make_unique<cluster::Head>(ho);
    thread_ = std::thread([this] { head_->Run(); });
  }
  ~VirtualHead() {
    head_->RequestStop();
    thread_.join();
    std::fclose(log_);
  }
  FakeClock clock;
  // Returns once the head has committed two more turns: one begun after whatever the test just
  // did (moved the clock) has run its sweep and written (no real time assumed to be enough).
  void Turns() {
    const uint64_t before = head_->GetCounters().turns;
    ASSERT_TRUE(testing::WaitFor([&] { return head_->GetCounters().turns >= before + 2; }, 15));
  }
  // Moves the clock in 10 s steps, 10 ms apart: a live agent (heartbeat 0.2 s) is seen beating
  // within every heartbeat timeout (1,000 s here, 1 s of real time), a killed one is lost.
  void Advance(double seconds) {
    for (double done = 0; done < seconds; done += 10) {
      clock.Advance(std::min(10.0, seconds - done));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

 private:
  FILE* log_;
  std::unique_ptr<cluster::Head> head_;
  std::thread thread_;
};

// Issue 20 item 18: a pipeline no job in Redis refers to any more (its jobs removed by retention)
// leaves Redis with its index entries; one a retained job still refers to stays; the first one
// submitted again is stored again and runs.
TEST_F(OperationsTest, PipelinesNoJobRefersToLeaveRedisReferencedOnesStay) {
  head_->Kill(SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"EXISTS", prefix_ + ":head"}) == "0"; }, 10));
  VirtualHead head(url_, prefix_, dir_ / "head.log", /*retain=*/200, /*forget_nodes=*/0);
  auto a = Agent("a", "30s");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 15)) << Logs();
  std::ofstream(dir_ / "old.yaml") << "name: old\nsteps:\n  - name: quick\n    uses: sleep\n"
                                      "    with: {seconds: 0.01}\n";
  std::ofstream(dir_ / "new.yaml") << "name: new\nsteps:\n  - name: quick\n    uses: sleep\n"
                                      "    with: {seconds: 0.02}\n";
  ASSERT_EQ(Cli({"submit", (dir_ / "old.yaml").string(), "--jobs", "2", "--wait"}), 0) << Logs();  // pipeline 1
  head.clock.Advance(150);
  ASSERT_EQ(Cli({"submit", (dir_ / "new.yaml").string(), "--jobs", "1", "--wait"}), 0) << Logs();  // pipeline 2
  EXPECT_EQ(RedisCli({"LRANGE", prefix_ + ":pipelines", "0", "-1"}), "1\n2");
  // 210 s after the old jobs ended (retention 200 s, a sweep every 50 s): they leave; the new one
  // (60 s) stays.
  head.clock.Advance(60);
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"LLEN", prefix_ + ":jobs"}) == "1"; }, 15)) << Logs();
  EXPECT_EQ(RedisCli({"EXISTS", prefix_ + ":job:job-2"}), "1");
  // A submission of the old pipeline stored but not yet read by the head (its MULTI sets `used`
  // to its last job): the pipeline is referred to, and stays.
  ASSERT_EQ(RedisCli({"HSET", prefix_ + ":job:job-99", "pipeline", "1", "state", "ready"}), "2");
  ASSERT_EQ(RedisCli({"HSET", prefix_ + ":pipeline:1", "used", "job-99"}), "0");
  head.clock.Advance(55);
  head.Turns();  // a sweep past the retention has run
  EXPECT_EQ(RedisCli({"EXISTS", prefix_ + ":pipeline:1"}), "1") << Logs();
  // That job gone, the next sweep: the old pipeline, no longer referred to, goes; the new one stays.
  ASSERT_EQ(RedisCli({"DEL", prefix_ + ":job:job-99"}), "1");
  head.clock.Advance(55);
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"EXISTS", prefix_ + ":pipeline:1"}) == "0"; }, 15)) << Logs();
  EXPECT_EQ(RedisCli({"LRANGE", prefix_ + ":pipelines", "0", "-1"}), "2");
  EXPECT_EQ(RedisCli({"HVALS", prefix_ + ":pipeline:by-digest"}), "2");
  EXPECT_EQ(RedisCli({"EXISTS", prefix_ + ":pipeline:2"}), "1");
  EXPECT_EQ(RedisCli({"EXISTS", prefix_ + ":job:job-2"}), "1") << "the new job ended 170 s ago: kept";
  EXPECT_NE(testing::ReadFile(dir_ / "head.log").find("pipeline 1 (old) removed from redis"), std::string::npos)
      << Logs();
  // Submitted again, the old pipeline is stored again (a new id) and its job runs.
  ASSERT_EQ(Cli({"submit", (dir_ / "old.yaml").string(), "--jobs", "1", "--wait"}), 0) << Logs();
  EXPECT_EQ(RedisCli({"LRANGE", prefix_ + ":pipelines", "0", "-1"}), "2\n3");
  EXPECT_EQ(RedisCli({"HGET", prefix_ + ":job:job-3", "pipeline"}), "3");
  EXPECT_EQ(RedisCli({"HGET", prefix_ + ":job:job-3", "state"}), "succeeded");
}

// Issue 20 item 18: an agent killed (no clean exit) leaves its registration, heartbeat counter and
// placement stream in Redis; the head removes them once it has been dead for --forget-nodes, not
// before, and leaves the live agent's alone. The agent started again later registers afresh and
// runs a job.
TEST_F(OperationsTest, AKilledAgentsKeysLeaveRedisAfterForgetNodesAndItComesBackAfresh) {
  head_->Kill(SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"EXISTS", prefix_ + ":head"}) == "0"; }, 10));
  VirtualHead head(url_, prefix_, dir_ / "head.log", /*retain=*/0, /*forget_nodes=*/5000);
  auto a = Agent("a", "30s");
  auto b = Agent("b", "30s");
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(2); }, 15)) << Logs();
  auto keys_of = [&](const std::string& node) {
    return RedisCli({"HEXISTS", prefix_ + ":nodes", node}) + RedisCli({"HEXISTS", prefix_ + ":hb", node}) +
           RedisCli({"EXISTS", prefix_ + ":place:" + node});
  };
  ASSERT_EQ(keys_of("a"), "111");
  a->Kill(SIGKILL);
  a->Wait(10);
  ASSERT_TRUE(WaitFor([&] { return RedisCli({"EXISTS", prefix_ + ":lease:a"}) == "0"; }, 15));  // 5 heartbeats
  // Past the heartbeat timeout (twice: the head may first see a's last beat only now): a is lost.
  head.Advance(2100);
  ASSERT_TRUE(WaitFor([&] { return NodesAlive(1); }, 15)) << Logs();
  head.Advance(3000);  // dead for at most about 4,100 s of the 5,000: kept
  head.Turns();        // a sweep at that time has run
  EXPECT_EQ(keys_of("a"), "111") << "removed before --forget-nodes";
  head.Advance(3000);  // dead for at least about 7,000 s: removed
  ASSERT_TRUE(WaitFor([&] { return keys_of("a") == "000"; }, 15)) << keys_of("a") << Logs();
  EXPECT_EQ(keys_of("b"), "111") << "the live agent's keys";
  EXPECT_NE(testing::ReadFile(dir_ / "head.log").find("node a dead for longer than 5000s: its keys removed"),
            std::string::npos)
      << Logs();
  // Back: a registers afresh and runs the job (b has left).
  b->Signal(SIGTERM);
  ASSERT_EQ(b->Wait(30), 0) << Logs();
  a = Agent("a", "30s");
  ASSERT_TRUE(WaitFor([&] { return keys_of("a") == "111"; }, 15)) << Logs();
  ASSERT_EQ(Submit(0.05, 1)->Wait(60), 0) << Logs();
  const Json d = JsonOf({"status", "job-0", "--json"});
  EXPECT_EQ(d.value("state", ""), "succeeded") << d.dump();
  for (const auto& at : d["attempts"]) EXPECT_EQ(at.value("node", ""), "a") << d.dump();
}

}  // namespace
}  // namespace baton
