// `uses: worker` end to end through the embedded runtime: real Python worker processes (the
// stand-in model of examples/worker and the fault worker of tests/workers), real pipes, real
// signals. No test depends on speed: batches are checked by what the worker recorded.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "baton/runtime.h"
#include "support/child_process.h"
#include "support/util.h"

namespace baton {
namespace {

using testing::ReadFile;
using testing::SourceDir;
using testing::TempDir;

std::vector<Json> Lines(const std::filesystem::path& file) {
  std::vector<Json> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(Json::parse(line));
  return out;
}

class WorkerStepTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { RegisterBuiltinSteps(); }
  RunOptions Options(std::vector<std::string> inputs) {
    RunOptions o;
    o.inputs = std::move(inputs);
    o.out = dir_.path() / "out";
    o.log_format = RunOptions::LogFormat::kNone;
    o.cancel_grace = 5;
    return o;
  }
  static ClusterSpec Node(int gpus) {
    return ParseCluster("nodes:\n  - {name: n0, cpus: 4, gpus: " + std::to_string(gpus) + ", labels: {role: head}}\n",
                        "cluster.yaml")
        .value();
  }
  std::string Standin() const { return (SourceDir() / "examples/worker/standin.py").string(); }
  std::string Fault() const { return (SourceDir() / "tests/workers/fault_worker.py").string(); }
  std::filesystem::path Record() const { return dir_.path() / "record.jsonl"; }
  // A one-step pipeline: `worker_with` is the flow mapping inside `with:`.
  static PipelineSpec Pipeline(const std::string& argv, const std::string& extra, const std::string& step_extra = "") {
    const std::string yaml = "name: w\nsteps:\n  - name: model\n    uses: worker\n    with:\n      argv: " + argv +
                             "\n" + extra + "    resources: {gpu: 1}\n" + step_extra;
    auto p = ParsePipeline(yaml, "w.yaml");
    EXPECT_TRUE(p.ok()) << p.error();
    return p.value();
  }
  TempDir dir_;
};

std::vector<std::string> Inputs(int n, const std::string& prefix = "in-") {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(prefix + std::to_string(i));
  return v;
}

TEST_F(WorkerStepTest, OneLoadBatchesAcrossJobsEachJobItsOwnAnswer) {
  const std::string argv = "[python3, " + Standin() + ", --load, '0.3', --cost, '0', '0', --record, " +
                           Record().string() + "]";
  RunOptions options = Options(Inputs(12));
  options.trace = dir_.path() / "trace.json";
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(Pipeline(argv, "      batch: {max: 4, wait: 5s}\n"), Node(1), options).value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  ASSERT_EQ(r.succeeded, 12);
  for (const auto& j : r.jobs) {
    ASSERT_TRUE(j.results.contains("model")) << j.id;
    EXPECT_EQ(j.results["model"]["answer"], j.id + " saw " + j.input) << "the worker's output is the step's result";
  }
  std::set<int> pids;
  int items = 0;
  const auto batches = Lines(Record());
  for (const auto& b : batches) {
    pids.insert(b["pid"].get<int>());
    EXPECT_LE(b["size"].get<int>(), 4);
    items += b["size"].get<int>();
  }
  EXPECT_EQ(pids.size(), 1u) << "the model loaded once for 12 jobs";
  EXPECT_EQ(items, 12);
  // The scheduler hands the worker 4 items at a time (batch.max), and the worker waits for 4.
  EXPECT_EQ(batches.size(), 3u);
  for (const auto& b : batches) EXPECT_EQ(b["size"], 4);
  // The trace draws one bar per batch, naming the jobs the worker saw in it, on the worker's GPU.
  std::multiset<std::set<std::string>> seen, drawn;
  for (const auto& b : batches) seen.insert(b["jobs"].get<std::set<std::string>>());
  const Json trace = Json::parse(ReadFile(options.trace));
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] != "X") continue;
    EXPECT_EQ(e["name"], "model batch of 4");
    EXPECT_EQ(e["tid"], 1000) << "GPU 0's lane";
    EXPECT_TRUE(e["args"]["batch"].get<std::string>().starts_with("w"));
    drawn.insert(e["args"]["jobs"].get<std::set<std::string>>());
  }
  EXPECT_EQ(drawn, seen);
  // Its stderr and start are in the worker log of the node.
  EXPECT_TRUE(std::filesystem::exists(dir_.path() / "out/nodes/n0/workers/model.0.stderr"));
}

TEST_F(WorkerStepTest, TwoGpusTwoWorkersEachWithItsOwnDevice) {
  const std::string argv = "[python3, " + Standin() + ", --load, '0.2', --cost, '0.05', '0', --record, " +
                           Record().string() + "]";
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(Pipeline(argv, "      batch: {max: 2, wait: 5s}\n"), Node(2), Options(Inputs(8))).value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  ASSERT_EQ(r.succeeded, 8);
  std::map<int, std::set<std::string>> gpus_of;
  for (const auto& b : Lines(Record())) gpus_of[b["pid"].get<int>()].insert(b["gpus"].get<std::string>());
  ASSERT_EQ(gpus_of.size(), 2u);
  std::set<std::string> devices;
  for (const auto& [pid, g] : gpus_of) {
    ASSERT_EQ(g.size(), 1u) << "a worker keeps its CUDA_VISIBLE_DEVICES for life";
    devices.insert(*g.begin());
  }
  EXPECT_EQ(devices, (std::set<std::string>{"0", "1"}));
}

TEST_F(WorkerStepTest, TheSameModelAsCommandAndAsWorkerGivesTheSameAnswers) {
  const std::string yaml = "name: both\nsteps:\n"
                           "  - name: as_command\n    uses: command\n    with:\n      argv: [python3, " +
                           Standin() +
                           ", --load, '0', --cost, '0', '0', --command, --job, '{job}', --input, '{input}']\n"
                           "  - name: as_worker\n    uses: worker\n    with:\n      argv: [python3, " +
                           Standin() + ", --load, '0', --cost, '0', '0']\n      batch: {max: 3, wait: 1s}\n";
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(ParsePipeline(yaml, "both.yaml").value(), Node(1), Options(Inputs(5))).value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  ASSERT_EQ(r.succeeded, 5);
  for (const auto& j : r.jobs) {
    EXPECT_EQ(j.results["as_command"]["output"]["answer"], j.id + " saw " + j.input);
    EXPECT_EQ(j.results["as_worker"]["answer"], j.results["as_command"]["output"]["answer"]) << j.id;
  }
}

TEST_F(WorkerStepTest, AnItemErrorFailsThatItemAloneAndTheWorkerStays) {
  const std::string argv = "[python3, " + Fault() + ", --record, " + Record().string() + "]";
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(Pipeline(argv, "      batch: {max: 4, wait: 5s}\n", "    retries: 2\n"), Node(1),
                      Options({"ok:a", "fail", "ok:b", "ok:c"}))
          .value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  EXPECT_EQ(r.succeeded, 3);
  ASSERT_EQ(r.failed, 1);
  for (const auto& j : r.jobs) {
    if (j.input != "fail") {
      EXPECT_EQ(j.results["model"]["echo"], j.input);
      continue;
    }
    EXPECT_EQ(j.status, "failed");
    EXPECT_EQ(j.attempts.size(), 1u) << "retryable: false is not retried";
    EXPECT_NE(j.error.find("bad input: fail"), std::string::npos) << j.error;
  }
  int loads = 0;
  for (const auto& l : Lines(Record())) loads += l.contains("load");
  EXPECT_EQ(loads, 1);
}

TEST_F(WorkerStepTest, APoisonPillFailsAloneAfterItsRetriesAndTheModelIsNotReloadedForever) {
  const std::string argv = "[python3, " + Fault() + ", --record, " + Record().string() + "]";
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(Pipeline(argv, "      batch: {max: 6, wait: 5s}\n", "    retries: 1\n    backoff: 0.1s\n"),
                      Node(1), Options({"ok:a", "ok:b", "poison", "ok:c", "ok:d", "ok:e"}))
          .value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  EXPECT_EQ(r.succeeded, 5);
  ASSERT_EQ(r.failed, 1);
  for (const auto& j : r.jobs) {
    if (j.input != "poison") {
      EXPECT_EQ(j.status, "succeeded") << j.id << ": " << j.error;
      EXPECT_EQ(j.attempts.size(), 1u) << j.id << ": re-queued after the death without counting a try";
      continue;
    }
    EXPECT_EQ(j.attempts.size(), 2u) << "its own tries: the first and one retry";
    EXPECT_NE(j.error.find("killed by signal 9"), std::string::npos) << j.error;
    EXPECT_NE(j.error.find("while running this item alone"), std::string::npos) << j.error;
  }
  int loads = 0;
  for (const auto& l : Lines(Record())) loads += l.contains("load");
  // The first load died with the batch; the second served the suspects alone until the poison's
  // first try killed it; the third served the rest and died with the poison's retry (nothing was
  // left to load a fourth for).
  EXPECT_EQ(loads, 3);
}

TEST_F(WorkerStepTest, AProtocolErrorRestartsTheWorkerAndItsItemsAreRequeued) {
  const std::string argv = "[python3, " + Fault() + ", --record, " + Record().string() + "]";
  const std::unique_ptr<Runtime> rt_owner = Runtime::Create(Pipeline(argv, "      batch: {max: 3, wait: 5s}\n"),
                                                            Node(1), Options({"ok:a", "junk-once", "ok:b"}))
                                                .value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  EXPECT_EQ(r.succeeded, 3);
  for (const auto& j : r.jobs) EXPECT_EQ(j.attempts.size(), 1u) << j.id;
  int loads = 0;
  for (const auto& l : Lines(Record())) loads += l.contains("load");
  EXPECT_EQ(loads, 2);
  const std::string log = ReadFile(dir_.path() / "out/nodes/n0/workers/model.0.stderr");
  EXPECT_NE(log.find("protocol error: not a protocol message: this is not a protocol line"), std::string::npos) << log;
}

TEST_F(WorkerStepTest, AWorkerHangingPastTheTimeoutIsKilledTheOthersGoOn) {
  const std::string argv = "[python3, " + Fault() + ", --record, " + Record().string() + "]";
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(
          Pipeline(argv, "      batch: {max: 3, wait: 5s}\n      cancel_grace: 0.3s\n", "    timeout: 1s\n"), Node(1),
          Options({"ok:a", "hang", "ok:b"}))
          .value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  EXPECT_EQ(r.succeeded, 2);
  ASSERT_EQ(r.failed, 1);
  for (const auto& j : r.jobs)
    if (j.input == "hang") {
      EXPECT_NE(j.error.find("gave no answer within the step's timeout of 1s; killed while running this item alone"),
                std::string::npos)
          << j.error;
      EXPECT_EQ(j.attempts.size(), 1u) << "re-queued once without a try, then timed out alone";
    } else {
      EXPECT_EQ(j.attempts.size(), 1u) << j.id;
    }
}

TEST_F(WorkerStepTest, CancellingAJobWhoseWorkerIgnoresCancelRestartsTheWorkerTheOthersGoOn) {
  const std::string argv = "[python3, " + Fault() + ", --record, " + Record().string() + "]";
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(Pipeline(argv, "      batch: {max: 3, wait: 1s}\n      cancel_grace: 0.3s\n"), Node(1),
                      Options({"ok:a", "hang", "ok:b"}))
          .value();
  Runtime& rt = *rt_owner;
  std::thread canceller([&] {  // once the batch holding the hanging item runs in the worker
    EXPECT_TRUE(testing::WaitFor([&] { return Lines(Record()).size() >= 2; }, 30));
    // The node view shows the worker, its batch and its host state.
    const Json snap = rt.Snapshot();
    ASSERT_TRUE(snap["nodes"][0].contains("workers")) << snap["nodes"].dump();
    const Json w = snap["nodes"][0]["workers"][0];
    EXPECT_EQ(w["items"], 3);
    EXPECT_EQ(w["state"], "busy");
    EXPECT_EQ(w["step"], "model");
    EXPECT_TRUE(rt.CancelJob("job-1"));
  });
  const RunReport& r = rt.Run();
  canceller.join();
  EXPECT_EQ(r.jobs[0].status, "succeeded") << r.jobs[0].error;
  EXPECT_EQ(r.jobs[1].status, "cancelled");
  EXPECT_EQ(r.jobs[2].status, "succeeded") << r.jobs[2].error;
  int loads = 0;
  for (const auto& l : Lines(Record())) loads += l.contains("load");
  EXPECT_EQ(loads, 2) << "killed after the cancel grace and started again for the others";
}

TEST_F(WorkerStepTest, AnIdleWorkerExitsAndGivesItsGpuBack) {
  // The second step needs the one GPU the worker holds: it runs only once the worker retired.
  const std::string yaml = "name: idle\nsteps:\n  - name: model\n    uses: worker\n    with:\n      argv: [python3, " +
                           Fault() + ", --record, " + Record().string() +
                           "]\n      idle_timeout: 0.3s\n    resources: {gpu: 1}\n"
                           "  - name: after\n    uses: sleep\n    with: {seconds: 0}\n    resources: {gpu: 1}\n";
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(ParsePipeline(yaml, "idle.yaml").value(), Node(1), Options({"ok:a"})).value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  ASSERT_EQ(r.succeeded, 1) << r.jobs[0].error;
  const auto lines = Lines(Record());
  ASSERT_FALSE(lines.empty());
  const int pid = lines.front()["load"].get<int>();
  EXPECT_GE(r.jobs[0].attempts[1].start - r.jobs[0].attempts[0].end, 0.3) << "the GPU was the worker's until idle";
  // The worker was told to shut down and is gone (kill(pid, 0) fails once it is reaped).
  for (int i = 0; i < 200 && kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_NE(kill(pid, 0), 0);
}

TEST_F(WorkerStepTest, AWorkerThatCannotStartFailsItsItemsWithItsStderr) {
  const std::string argv = "[python3, " + Fault() + ", --die-at-start]";
  const std::unique_ptr<Runtime> rt_owner = Runtime::Create(Pipeline(argv, ""), Node(1), Options({"ok:a"})).value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  ASSERT_EQ(r.failed, 1);
  EXPECT_NE(r.jobs[0].error.find("worker did not become ready: exit status 3"), std::string::npos) << r.jobs[0].error;
  EXPECT_NE(r.jobs[0].error.find("cannot load the model: weights missing"), std::string::npos) << r.jobs[0].error;
}

TEST_F(WorkerStepTest, BadParametersAreRefusedWithTheirKey) {
  auto p = ParsePipeline("steps:\n  - name: m\n    uses: worker\n    with:\n      argv: [x]\n      batch: {max: 0}\n",
                         "p.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error(), "p.yaml:5: steps.m.with.batch.max: must be an integer from 1 to 4096");
  p = ParsePipeline("steps:\n  - name: m\n    uses: worker\n    with:\n      argv: [x]\n      batch: {wait: soon}\n",
                    "p.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error(), "p.yaml:5: steps.m.with.batch.wait: 'soon' is not a duration (e.g. 200ms, 10s, 5m)");
  auto steps = Runtime::Create(
      ParsePipeline("steps:\n  - name: m\n    uses: worker\n    with:\n      argv: ['{input}']\n", "p.yaml").value(),
      Node(1), Options({"a"}));
  ASSERT_FALSE(steps.ok());
  EXPECT_NE(steps.error().find("unknown placeholder {input}"), std::string::npos) << steps.error();
}

}  // namespace
}  // namespace baton
