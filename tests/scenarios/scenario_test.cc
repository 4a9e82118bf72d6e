// One scenario table, two backends: the same pipelines, nodes and operator actions run on the
// embedded runtime (in this process) and on the cluster (a real redis-server, the real `baton
// head` and `baton node` processes), and each job must end the same way, attempt by attempt
// (step, attempt number, status). Both backends share the driver kit, so a difference here is a
// bug in a store or a transport.
#include <signal.h>

#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "baton/pipeline.h"
#include "baton/runtime.h"  // the same scenario table runs on the embedded runtime too
#include "support/child_process.h"
#include "support/util.h"

namespace baton {
namespace {

using testing::WaitFor;

struct NodeDef {
  std::string name;
  double cpus = 2, gpus = 0;
  std::map<std::string, double> resources;
  std::map<std::string, std::string> labels;
};

// kCancelWhileRunning: job-0 is cancelled while its attempt runs, job-1 while it waits for room.
enum class Action { kNone, kCancelWhileRunning, kKillNodeRunningJob0Analyze };

struct Scenario {
  std::string name;
  std::string pipeline;
  std::vector<NodeDef> nodes;
  int jobs = 1;
  Action action = Action::kNone;
  std::vector<std::string> states;                  // per job
  std::vector<std::vector<std::string>> attempts;   // per job: "step#attempt:status"
  bool embedded = true;                             // the embedded runtime has no node to lose
};

const char* kSeed = R"(name: seed
steps:
  - name: download
    uses: sleep
    with: {seconds: 0.05}
    resources: {download_slot: 1}
  - name: analyze
    uses: sleep
    with: {seconds: 0.1}
    resources: {gpu: 1}
    placement: {same_node_as: download}
  - name: summarize
    uses: sleep
    with: {seconds: 0.02}
    resources: {cpu: 1}
  - name: document
    uses: sleep
    with: {seconds: 0.02}
    resources: {cpu: 1}
    placement: {labels: {role: head}}
)";

std::vector<std::string> SeedOk() {
  return {"download#1:ok", "analyze#1:ok", "summarize#1:ok", "document#1:ok"};
}

std::vector<Scenario> Table() {
  const NodeDef head{"head", 4, 1, {{"download_slot", 1}}, {{"role", "head"}}};
  const NodeDef big{"worker", 2, 2, {{"download_slot", 1}}, {}};
  const NodeDef plain{"n1", 2, 0, {}, {}};
  return {
      {"SeedPipelineOnUnequalNodes",
       kSeed,
       {head, big},
       4,
       Action::kNone,
       {"succeeded", "succeeded", "succeeded", "succeeded"},
       {SeedOk(), SeedOk(), SeedOk(), SeedOk()}},
      {"RetriesWithBackoff",
       "steps:\n  - name: a\n    uses: sleep\n    with: {seconds: 0.01, fail_attempts: 2}\n    retries: 3\n    "
       "backoff: 50ms\n",
       {plain},
       2,
       Action::kNone,
       {"succeeded", "succeeded"},
       {{"a#1:failed", "a#2:failed", "a#3:ok"}, {"a#1:failed", "a#2:failed", "a#3:ok"}}},
      {"PermanentFailureStopsOnlyItsJob",
       "steps:\n  - name: a\n    uses: sleep\n    with: {fail: bad input}\n  - name: b\n    uses: sleep\n",
       {plain},
       1,
       Action::kNone,
       {"failed"},
       {{"a#1:failed"}}},
      {"TimeoutIsRetriedThenFails",
       "steps:\n  - name: a\n    uses: sleep\n    with: {seconds: 30}\n    timeout: 300ms\n    retries: 1\n    "
       "backoff: 10ms\n",
       {plain},
       1,
       Action::kNone,
       {"failed"},
       {{"a#1:timeout", "a#2:timeout"}}},
      {"CancelEndsTheJobAndItsAttempt",
       "steps:\n  - name: a\n    uses: sleep\n    with: {seconds: 30}\n    resources: {cpu: 2}\n  - name: b\n    uses: "
       "sleep\n",
       {plain},
       2,
       Action::kCancelWhileRunning,
       {"cancelled", "cancelled"},
       {{"a#1:cancelled"}, {}}},
      {"LostNodeReRunsTheDownloadThroughLineage",
       "steps:\n  - name: download\n    uses: sleep\n    with: {seconds: 0.05}\n  - name: analyze\n    uses: sleep\n"
       "    with: {seconds: 3}\n    resources: {gpu: 1}\n    placement: {same_node_as: download}\n",
       {{"a", 2, 1, {}, {}}},
       1,
       Action::kKillNodeRunningJob0Analyze,
       {"succeeded"},
       {{"download#1:ok", "analyze#1:lost", "download#1:ok", "analyze#1:ok"}},
       false},
  };
}

// gtest prints a parameter with this (the test name already says which row).
void PrintTo(const Scenario& s, std::ostream* os) { *os << s.name; }

struct Outcome {
  std::vector<std::string> states;
  std::vector<std::vector<std::string>> attempts;
};

std::string Line(const std::string& step, int attempt, const std::string& status) {
  return step + "#" + std::to_string(attempt) + ":" + status;
}

class ScenarioTest : public ::testing::TestWithParam<Scenario> {
 protected:
  static void SetUpTestSuite() { RegisterBuiltinSteps(); }

  Outcome RunEmbedded(const Scenario& s) {
    ClusterSpec cluster;
    for (const auto& n : s.nodes) cluster.nodes.push_back({n.name, n.cpus, n.gpus, 0, n.resources, n.labels, {}});
    RunOptions o;
    o.inputs.assign(s.jobs, "");
    o.out = dir_.path() / "embedded";
    o.log_format = RunOptions::LogFormat::kNone;
    const std::unique_ptr<Runtime> rt_owner =
        Runtime::Create(ParsePipeline(s.pipeline, "p.yaml").value(), cluster, o).value();
    Runtime& rt = *rt_owner;
    std::thread operator_thread;
    if (s.action == Action::kCancelWhileRunning) {
      operator_thread = std::thread([&] {
        WaitFor([&] { return rt.Snapshot()["jobs"][0]["state"] == "running"; }, 20);
        rt.CancelJob("job-1");  // first, so that it cannot take job-0's room
        rt.CancelJob("job-0");
      });
    }
    const RunReport& r = rt.Run();
    if (operator_thread.joinable()) operator_thread.join();
    // The published shapes (docs/schema): the summary, the snapshot and a job's detail.
    EXPECT_EQ(testing::SchemaErrors(Json::parse(testing::ReadFile(o.out / "summary.json")), "summary"), "");
    EXPECT_EQ(testing::SchemaErrors(rt.Snapshot(), "snapshot"), "");
    EXPECT_EQ(testing::SchemaErrors(rt.JobDetail("job-0"), "job_detail"), "");
    Outcome out;
    for (const auto& j : r.jobs) {
      out.states.push_back(j.status);
      std::vector<std::string> lines;
      for (const auto& a : j.attempts) lines.push_back(Line(a.step, a.attempt, a.status));
      out.attempts.push_back(lines);
    }
    return out;
  }

  Outcome RunCluster(const Scenario& s) {
    const std::string baton = (testing::BinaryDir() / "src/cli/baton").string();
    const std::string url = "redis://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
    const std::string prefix = "s" + std::to_string(getpid());
    const std::string port = url.substr(url.rfind(':') + 1);
    testing::ChildProcess redis(
        {"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"},
        dir_ / "redis.log");
    auto cli = [&](std::vector<std::string> args, const std::string& out = "") {
      args.insert(args.begin(), baton);
      args.insert(args.end(), {"--redis", url, "--prefix", prefix});
      return testing::RunProgram(args, out);
    };
    EXPECT_TRUE(WaitFor([&] { return cli({"nodes"}) == 0; }, 10)) << "redis did not start";
    testing::ChildProcess head({baton, "head", "--redis", url, "--prefix", prefix, "--heartbeat-timeout", "1s"},
                               dir_ / "head.log");
    std::map<std::string, std::unique_ptr<testing::ChildProcess>> agents;
    auto start_agent = [&](const NodeDef& n) {
      std::vector<std::string> argv = {baton, "node", "--redis", url, "--prefix", prefix, "--name", n.name,
                                       "--workdir", (dir_ / ("work-" + n.name)).string(), "--address", "127.0.0.1",
                                       "--listen", "127.0.0.1", "--heartbeat", "0.2s", "--cpus", std::to_string(n.cpus),
                                       "--gpus", std::to_string(static_cast<int>(n.gpus))};
      std::string resources, labels;
      for (const auto& [k, v] : n.resources) resources += (resources.empty() ? "" : ",") + k + "=" + std::to_string(v);
      for (const auto& [k, v] : n.labels) labels += (labels.empty() ? "" : ",") + k + "=" + v;
      if (!resources.empty()) argv.insert(argv.end(), {"--resources", resources});
      if (!labels.empty()) argv.insert(argv.end(), {"--labels", labels});
      agents[n.name] = std::make_unique<testing::ChildProcess>(argv, dir_ / (n.name + ".log"));
    };
    for (const auto& n : s.nodes) start_agent(n);
    auto json_of = [&](std::vector<std::string> args) {
      const auto file = dir_ / "out.json";
      std::filesystem::remove(file);
      if (cli(std::move(args), file.string()) != 0) return Json();
      Json j = Json::parse(testing::ReadFile(file), nullptr, false);
      return j.is_discarded() ? Json() : j;
    };
    EXPECT_TRUE(WaitFor([&] {
      size_t alive = 0;
      for (const auto& n : json_of({"nodes", "--json"})) alive += n.value("alive", false);
      return alive == s.nodes.size();
    }, 15)) << testing::ReadFile(dir_ / "head.log");
    const auto pipeline = dir_ / "pipeline.yaml";
    std::ofstream(pipeline) << s.pipeline;
    testing::ChildProcess submit({baton, "submit", pipeline.string(), "--jobs", std::to_string(s.jobs), "--redis", url,
                                  "--prefix", prefix, "--wait"},
                                 dir_ / "submit.log");
    auto job0 = [&] {
      Json j = json_of({"status", "job-0", "--json"});
      return j.is_object() ? j : Json::object();
    };
    if (s.action == Action::kCancelWhileRunning) {
      EXPECT_TRUE(WaitFor([&] { return job0().value("state", "") == "running"; }, 20));
      EXPECT_EQ(cli({"cancel", "job-1"}), 0);  // first, so that it cannot take job-0's room
      EXPECT_EQ(cli({"cancel", "job-0"}), 0);
    } else if (s.action == Action::kKillNodeRunningJob0Analyze) {
      EXPECT_TRUE(
          WaitFor([&] { return job0().value("step", "") == "analyze" && job0().value("state", "") == "running"; }, 20));
      start_agent({"b", 2, 1, {}, {}});  // somewhere to go
      EXPECT_TRUE(WaitFor([&] { return json_of({"nodes", "--json"}).size() == 2; }, 15));
      agents["a"]->Kill(SIGKILL);
    }
    EXPECT_GE(submit.Wait(90), 0) << testing::ReadFile(dir_ / "head.log");
    EXPECT_EQ(testing::SchemaErrors(json_of({"status", "--json"}), "snapshot"), "");
    EXPECT_EQ(testing::SchemaErrors(json_of({"status", "job-0", "--json"}), "job_detail"), "");
    Outcome out;
    for (int i = 0; i < s.jobs; ++i) {
      const Json j = json_of({"status", "job-" + std::to_string(i), "--json"});
      out.states.push_back(j.value("state", ""));
      std::vector<std::string> lines;
      for (const auto& a : j["attempts"])
        lines.push_back(Line(a.value("step", ""), a.value("attempt", 0), a.value("status", "")));
      out.attempts.push_back(lines);
    }
    return out;
  }

  void Expect(const Scenario& s, const Outcome& o, const std::string& backend) {
    EXPECT_EQ(o.states, s.states) << backend;
    EXPECT_EQ(o.attempts, s.attempts) << backend;
  }
  testing::TempDir dir_;
};

TEST_P(ScenarioTest, EmbeddedAndClusterEndEveryJobTheSameWay) {
  const Scenario& s = GetParam();
  if (s.embedded) Expect(s, RunEmbedded(s), "embedded runtime");
  Expect(s, RunCluster(s), "cluster");
}

INSTANTIATE_TEST_SUITE_P(Backends, ScenarioTest, ::testing::ValuesIn(Table()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace baton
