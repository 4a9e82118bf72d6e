// The embedded runtime end to end: real threads, real subprocesses, real files.
#include "baton/runtime.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <thread>

#include "util/clock.h"
#include "support/child_process.h"
#include "support/util.h"

namespace baton {
namespace {

using testing::ReadFile;
using testing::TempDir;

class ThrowingStep : public Step {
 public:
  StepOutcome Run(StepContext&) const override { throw std::runtime_error("disk on fire"); }
};

// Ignores cancellation (a badly written step) until the test releases it: the runtime must not
// wait for it. `g_stubborn_running` says whether it is still inside Run.
std::atomic<bool> g_release_stubborn{false};
std::atomic<bool> g_stubborn_running{false};
class StubbornStep : public Step {
 public:
  StepOutcome Run(StepContext&) const override {
    g_stubborn_running = true;
    while (!g_release_stubborn) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    g_stubborn_running = false;
    return StepOutcome::Ok();
  }
};

class RuntimeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RegisterBuiltinSteps();
    StepRegistry::Global().Register("test_throw",
                                    StepFactoryOf([](const Json&) { return std::make_unique<ThrowingStep>(); }));
    StepRegistry::Global().Register("test_stubborn",
                                    StepFactoryOf([](const Json&) { return std::make_unique<StubbornStep>(); }));
  }
  RunOptions Options(size_t jobs) {
    RunOptions o;
    o.inputs.assign(jobs, "");
    o.out = dir_.path() / "out";
    o.log_format = RunOptions::LogFormat::kNone;
    return o;
  }
  ClusterSpec Cluster(const std::string& yaml) { return ParseCluster(yaml, "cluster.yaml").value(); }
  TempDir dir_;
};

const char* kSeed = R"(name: seed
steps:
  - name: download
    uses: sleep
    with: {seconds: 0.02}
    resources: {download_slot: 1}
  - name: analyze
    uses: sleep
    with: {seconds: 0.06}
    resources: {gpu: 1}
    placement: {same_node_as: download}
  - name: summarize
    uses: sleep
    with: {seconds: 0.01}
    resources: {cpu: 1}
  - name: document
    uses: sleep
    with: {seconds: 0.01}
    resources: {cpu: 1}
    placement: {labels: {role: head}}
)";

const char* kThreeNodes = R"(nodes:
  - {name: head, cpus: 4, gpus: 1, resources: {download_slot: 1}, labels: {role: head}}
  - {name: worker-1, cpus: 4, gpus: 1, resources: {download_slot: 1}}
  - {name: worker-2, cpus: 4, gpus: 2, resources: {download_slot: 2}}
)";

TEST_F(RuntimeTest, SeedAcrossThreeNodesKeepsLocalityOrderAndHeadOnlyDocument) {
  RunOptions o = Options(12);
  o.trace = dir_.path() / "trace.json";
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(ParsePipeline(kSeed, "seed.yaml").value(), Cluster(kThreeNodes), o).value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  ASSERT_EQ(r.succeeded, 12);
  EXPECT_EQ(r.ExitCode(), 0);
  for (const auto& j : r.jobs) {
    ASSERT_EQ(j.attempts.size(), 4u) << j.id;
    EXPECT_EQ(j.attempts[0].step, "download");
    EXPECT_EQ(j.attempts[1].node, j.attempts[0].node) << j.id << ": analyze left the download node";
    EXPECT_EQ(j.attempts[3].node, "head");
    EXPECT_EQ(j.attempts[1].gpus.size(), 1u);
    for (size_t k = 1; k < 4; ++k) EXPECT_GE(j.attempts[k].start, j.attempts[k - 1].end) << j.id;
    // Each node has its own work folder.
    EXPECT_TRUE(std::filesystem::is_directory(o.out / "nodes" / j.attempts[0].node));
  }
  // Trace: one complete event per attempt, with the agreed args; node names as process names.
  Json trace = Json::parse(ReadFile(o.trace));
  int complete = 0;
  std::set<std::string> process_names;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] == "X") {
      ++complete;
      for (const char* k : {"job", "step", "node", "attempt", "status", "gpus"})
        EXPECT_TRUE(e["args"].contains(k)) << k;
      EXPECT_EQ(e["args"]["status"], "ok");
    }
    if (e["ph"] == "M" && e["name"] == "process_name") process_names.insert(e["args"]["name"]);
  }
  EXPECT_EQ(complete, 48);
  EXPECT_EQ(process_names, (std::set<std::string>{"head", "worker-1", "worker-2"}));
  Json summary = Json::parse(ReadFile(o.out / "summary.json"));
  EXPECT_EQ(summary["succeeded"], 12);
  EXPECT_EQ(summary["jobs"], 12);
  EXPECT_EQ(summary["failed_jobs"].size(), 0u);
  EXPECT_EQ(testing::ReadJobs(o.out).size(), 12u);
}

TEST_F(RuntimeTest, StepNoNodeCanRunIsRefusedBeforeAnythingStarts) {
  auto rt = Runtime::Create(
      ParsePipeline(kSeed, "seed.yaml").value(),
      Cluster("nodes:\n  - {name: laptop, cpus: 2, resources: {download_slot: 1}, labels: {role: head}}\n"),
      Options(1));
  ASSERT_FALSE(rt.ok()) << "accepted";
  EXPECT_EQ(rt.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(rt.error(),
            "seed.yaml: step 'analyze' can run on no node: it asks gpu: 1 but the nodes offer gpu: laptop 0 "
            "(nodes from cluster.yaml)");
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "out"));
}

TEST_F(RuntimeTest, UnknownStepKindAndBadWithAreRefusedWithTheirLine) {
  const auto unknown = Runtime::Create(
      ParsePipeline("steps:\n  - name: a\n    uses: sleep\n  - name: b\n    uses: slep\n", "p.yaml").value(), {},
      Options(1));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().substr(0, 54), "p.yaml:4: steps.b.uses: unknown step kind 'slep' (know");
  const auto bad_with = Runtime::Create(
      ParsePipeline("steps:\n  - name: a\n    uses: sleep\n    with: {seconds: -2}\n", "p.yaml").value(), {},
      Options(1));
  ASSERT_FALSE(bad_with.ok());
  EXPECT_EQ(bad_with.error(), "p.yaml:2: steps.a.with.seconds: must be a non-negative number of seconds");
}

TEST_F(RuntimeTest, CommandStepRunsArgvWithoutAShell) {
  // An input full of shell syntax reaches the program as one plain argument.
  const std::string evil = "x; touch " + (dir_.path() / "pwned").string() + " $(id)";
  RunOptions o = Options(0);
  o.inputs = {evil};
  const std::string yaml = R"(steps:
  - name: echo
    uses: command
    with:
      argv: [sh, -c, 'printf "%s\n" "$1"; printf "%s\n" "$CUDA_VISIBLE_DEVICES" >&2; echo "{\"ok\": 1}"', sh, "{input}"]
    resources: {gpu: 1}
)";
  o.keep_work = true;  // the logs are read below
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(ParsePipeline(yaml, "p.yaml").value(), Cluster("nodes:\n  - {name: n, cpus: 2, gpus: 3}\n"), o)
          .value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  ASSERT_EQ(r.succeeded, 1) << r.jobs[0].error;
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "pwned"));
  const auto workdir = o.out / "nodes" / "n" / "job-0";
  EXPECT_EQ(ReadFile(workdir / "logs" / "echo.1.stdout"), evil + "\n{\"ok\": 1}\n");
  EXPECT_EQ(ReadFile(workdir / "logs" / "echo.1.stderr"), "0\n");  // the granted GPU
  EXPECT_EQ(r.jobs[0].results["echo"]["output"]["ok"], 1);
  EXPECT_EQ(r.jobs[0].results["echo"]["exit_code"], 0);
}

// {workdir}, {outdir} and $BATON_WORKDIR are absolute where the folders are relative (a node's
// `--workdir work`, `--out out`): a program that changes directory still finds them.
TEST_F(RuntimeTest, CommandFolderPlaceholdersAreAbsolute) {
  namespace fs = std::filesystem;
  auto step = StepRegistry::Global().Create(
      "command", Json{{"argv",
                       {"sh", "-c", R"(cd / && printf "%s\n%s\n%s\n" "$1" "$2" "$BATON_WORKDIR" > "$1/where")", "sh",
                        "{workdir}", "{outdir}"}}})
                  .value();
  const fs::path rel = fs::relative(dir_.path(), fs::current_path());
  ASSERT_TRUE(rel.is_relative()) << rel;
  CancelToken cancel;
  const Json results = Json::object();
  StepContext ctx;
  ctx.job = "job-0";
  ctx.step = "where";
  ctx.attempt = 1;
  ctx.results = &results;
  ctx.cancel = &cancel;
  ctx.workdir = rel / "work" / "job-0";
  ctx.outdir = rel / "out";
  const StepOutcome out = step->Run(ctx);
  ASSERT_TRUE(out.ok()) << out.error;
  const std::string abs_work = (dir_.path() / "work" / "job-0").lexically_normal().string();
  const std::string abs_out = (dir_.path() / "out").lexically_normal().string();
  EXPECT_EQ(ReadFile(dir_.path() / "work" / "job-0" / "where"), abs_work + "\n" + abs_out + "\n" + abs_work + "\n");
}

// The JSON object on stdout's last line becomes the result's "output" whole, however long up to 1 MiB (not cut to
// the 300 characters error messages quote, which silently dropped it); a longer one fails the attempt, naming the
// limit. Only error messages shorten a line.
TEST_F(RuntimeTest, CommandOutputLineIsReadWholeUpToItsLimit) {
  int attempt = 0;
  const auto run = [&](size_t chars, const std::string& tail) {
    auto step = StepRegistry::Global().Create(
        "command", Json{{"argv",
                         {"sh", "-c",
                          R"(printf 'log line\n{"text": "'; head -c "$1" /dev/zero | tr '\0' a; printf '"}\n'; )" +
                              tail,
                          "sh", std::to_string(chars)}}})
                    .value();
    CancelToken cancel;
    const Json results = Json::object();
    StepContext ctx;
    ctx.job = "job-0";
    ctx.step = "say";
    ctx.attempt = ++attempt;
    ctx.results = &results;
    ctx.cancel = &cancel;
    ctx.workdir = dir_.path() / "work";
    ctx.outdir = dir_.path() / "out";
    return step->Run(ctx);
  };
  for (size_t chars : {size_t{400}, size_t{5000}, size_t{1000000}}) {
    const StepOutcome out = run(chars, "");
    ASSERT_TRUE(out.ok()) << chars << ": " << out.error;
    ASSERT_TRUE(out.result.contains("output")) << chars;
    EXPECT_EQ(out.result["output"]["text"].get<std::string>().size(), chars);
  }
  const StepOutcome big = run(2 * 1024 * 1024, "");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.error.find("longer than the 1 MiB limit"), std::string::npos) << big.error;
  EXPECT_LT(big.error.size(), 500u) << big.error;
  // An output nested deeper than 32 levels fails too (copying and printing a Json recurse).
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += R"({"a":)";
  deep += "1" + std::string(100000, '}');
  std::ofstream(dir_.path() / "deep.json") << deep << "\n";
  const StepOutcome nested = run(10, "cat " + (dir_.path() / "deep.json").string());
  ASSERT_FALSE(nested.ok());
  EXPECT_NE(nested.error.find("nests JSON deeper than 32 levels"), std::string::npos) << nested.error;
  // A long last line that is no JSON object is no output, and no error (as before).
  const StepOutcome plain = run(10, "head -c 2000000 /dev/zero | tr '\\0' b; echo");
  ASSERT_TRUE(plain.ok()) << plain.error;
  EXPECT_FALSE(plain.result.contains("output"));
  // An error message still quotes a shortened last line of stderr.
  const StepOutcome failed = run(10, "head -c 1000 /dev/zero | tr '\\0' c >&2; exit 4");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error, "sh: exit status 4 (stderr: " + std::string(300, 'c') + "...)");
}

TEST_F(RuntimeTest, FailingCommandIsRetriedThenReportedAndOtherJobsGoOn) {
  RunOptions o = Options(0);
  o.inputs = {"good-1", "bad", "good-2"};
  const std::string yaml = R"(steps:
  - name: check
    uses: command
    with:
      argv: [sh, -c, 'if [ "$1" = bad ]; then echo "cannot parse $1" >&2; exit 3; fi', sh, "{input}"]
    retries: 2
    backoff: 10ms
  - name: missing
    uses: command
    with: {argv: [no-such-program-baton, "{input}"]}
    retries: 3
)";
  const std::unique_ptr<Runtime> rt_owner = Runtime::Create(ParsePipeline(yaml, "p.yaml").value(), {}, o).value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  ASSERT_EQ(r.jobs.size(), 3u);
  EXPECT_EQ(r.failed, 3);
  EXPECT_EQ(r.ExitCode(), 1);
  const JobReport& bad = r.jobs[1];
  EXPECT_EQ(bad.attempts.size(), 3u);  // 1 + 2 retries
  EXPECT_EQ(bad.error, "check failed after 3 attempts: sh: exit status 3 (stderr: cannot parse bad)");
  // A program that does not exist is not retried: retrying cannot help.
  EXPECT_EQ(r.jobs[0].attempts.size(), 2u);
  EXPECT_EQ(r.jobs[0].error, "missing failed after 1 attempt: command 'no-such-program-baton' not found on PATH");
  Json summary = Json::parse(ReadFile(o.out / "summary.json"));
  ASSERT_EQ(summary["failed_jobs"].size(), 3u);  // every job failed; listed in job order
  EXPECT_EQ(summary["failed_jobs"][1]["error"], bad.error);
}

TEST_F(RuntimeTest, TimeoutKillsTheWholeProcessGroup) {
  RunOptions o = Options(1);
  const auto pidfile = dir_.path() / "grandchild.pid";
  const std::string yaml = R"(steps:
  - name: hang
    uses: command
    with:
      argv: [sh, -c, 'sleep 60 & echo $! > "$1"; sleep 60', sh, ")" + pidfile.string() + R"("]
    timeout: 300ms
)";
  const std::unique_ptr<Runtime> rt_owner = Runtime::Create(ParsePipeline(yaml, "p.yaml").value(), {}, o).value();
  Runtime& rt = *rt_owner;
  const auto t0 = std::chrono::steady_clock::now();
  const RunReport& r = rt.Run();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));  // generous: no hang
  ASSERT_EQ(r.failed, 1);
  EXPECT_EQ(r.jobs[0].attempts[0].status, "timeout");
  EXPECT_EQ(r.jobs[0].error, "hang failed after 1 attempt: timed out after 0.3s");
  // The background grandchild went with its step: gone (or a zombie waiting for init to reap it).
  const pid_t grandchild = static_cast<pid_t>(std::atol(ReadFile(pidfile).c_str()));
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(testing::WaitFor([&] {
    if (kill(grandchild, 0) != 0) return true;
    const std::string stat = ReadFile("/proc/" + std::to_string(grandchild) + "/stat");
    const size_t paren = stat.rfind(')');
    return paren != std::string::npos && stat.size() > paren + 2 && stat[paren + 2] == 'Z';
  }, 10)) << "the grandchild " << grandchild << " outlived its step";
}

TEST_F(RuntimeTest, StepThatThrowsBecomesAFailureValue) {
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(ParsePipeline("steps:\n  - name: a\n    uses: test_throw\n", "p.yaml").value(), {}, Options(2))
          .value();
  Runtime& rt = *rt_owner;
  const RunReport& r = rt.Run();
  EXPECT_EQ(r.failed, 2);
  EXPECT_EQ(r.jobs[0].error, "a failed after 1 attempt: step threw: disk on fire");
}

TEST_F(RuntimeTest, StopEndsRunningAttemptsAndWritesTheSummary) {
  RunOptions o = Options(6);
  o.trace = dir_.path() / "t.json";
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(
          ParsePipeline("steps:\n  - name: a\n    uses: sleep\n    with: {seconds: 30}\n    resources: {cpu: 1}\n",
                        "p.yaml")
              .value(),
          Cluster("nodes:\n  - {name: n, cpus: 2}\n"), o)
          .value();
  Runtime& rt = *rt_owner;
  std::thread stopper([&] {  // once both CPUs run an attempt
    testing::WaitFor([&] {
      int running = 0;
      const Json snapshot = rt.Snapshot();
      for (const auto& j : snapshot["jobs"]) running += j.value("state", "") == "running";
      return running == 2;
    }, 10);
    rt.RequestStop();
  });
  const auto t0 = std::chrono::steady_clock::now();
  const RunReport& r = rt.Run();
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_TRUE(r.interrupted);
  EXPECT_EQ(r.ExitCode(), 130);
  EXPECT_EQ(r.cancelled, 6);
  int cancelled_attempts = 0;
  for (const auto& j : r.jobs)
    for (const auto& a : j.attempts) cancelled_attempts += a.status == "cancelled";
  EXPECT_EQ(cancelled_attempts, 2);  // the two that were running
  EXPECT_TRUE(std::filesystem::exists(o.out / "summary.json"));
  EXPECT_TRUE(std::filesystem::exists(o.trace));
}

TEST_F(RuntimeTest, AStepThatIgnoresCancelIsAbandonedNotWaitedForever) {
  // The timeout and the grace run on a fake clock: the test moves time; no timer is waited for.
  // Static: the abandoned attempt's thread reads it once more after the test released it.
  static FakeClock clock;
  RunOptions o = Options(1);
  o.cancel_grace = 0.5;
  o.clock = &clock;
  g_release_stubborn = false;
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(
          ParsePipeline("steps:\n  - name: a\n    uses: test_stubborn\n    timeout: 100ms\n", "p.yaml").value(), {}, o)
          .value();
  Runtime& rt = *rt_owner;
  const RunReport* report = nullptr;
  std::atomic<bool> returned{false};
  std::thread run([&] {
    report = &rt.Run();
    returned = true;
  });
  ASSERT_TRUE(testing::WaitFor([] { return g_stubborn_running.load(); }, 10));
  // Fake time moves 0.1 s per look: past the 100 ms timeout (told to stop, and it ignores that),
  // then past the 0.5 s grace (abandoned), however quickly the driver thread sees each step.
  ASSERT_TRUE(testing::WaitFor([&] {
    clock.Advance(0.1);
    return returned.load();
  }, 10));
  EXPECT_TRUE(g_stubborn_running);  // the run ended while the step still ran: it was not waited for
  run.join();
  const RunReport& r = *report;
  EXPECT_NE(r.jobs[0].attempts[0].error.find("abandoned"), std::string::npos) << r.jobs[0].attempts[0].error;
  ASSERT_EQ(r.failed, 1);
  EXPECT_EQ(r.jobs[0].attempts[0].status, "timeout");
  g_release_stubborn = true;
}

TEST_F(RuntimeTest, CancelJobStopsOnlyThatJob) {
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(
          ParsePipeline("steps:\n  - name: a\n    uses: sleep\n    with: {seconds: 0.5}\n", "p.yaml").value(), {},
          Options(3))
          .value();
  Runtime& rt = *rt_owner;
  std::thread canceller([&] {  // once job-1 runs: its attempt is stopped, not merely never started
    EXPECT_TRUE(testing::WaitFor([&] {
      const Json snapshot = rt.Snapshot();
      return snapshot["jobs"].size() == 3 && snapshot["jobs"][1].value("state", "") == "running";
    }, 10));
    EXPECT_TRUE(rt.CancelJob("job-1"));
    EXPECT_FALSE(rt.CancelJob("job-99"));
  });
  const RunReport& r = rt.Run();
  canceller.join();
  EXPECT_EQ(r.jobs[0].status, "succeeded");
  EXPECT_EQ(r.jobs[1].status, "cancelled");
  EXPECT_EQ(r.jobs[2].status, "succeeded");
  EXPECT_FALSE(r.interrupted);
}

TEST_F(RuntimeTest, SnapshotShowsStepChainsAndWaitReasons) {
  const std::unique_ptr<Runtime> rt_owner = Runtime::Create(
      ParsePipeline(kSeed, "seed.yaml").value(),
      Cluster("nodes:\n  - {name: head, cpus: 4, gpus: 1, resources: {download_slot: 1}, labels: {role: head}}\n"),
      Options(3)).value();
  Runtime& rt = *rt_owner;
  Json before = rt.Snapshot();
  ASSERT_EQ(before["jobs"].size(), 3u);
  EXPECT_EQ(before["jobs"][0]["steps"].size(), 4u);
  EXPECT_EQ(before["nodes"][0]["name"], "head");
  EXPECT_EQ(before["nodes"][0]["total"]["gpu"], 1);
  rt.Run();
  Json after = rt.JobDetail("job-2");
  EXPECT_EQ(after["state"], "succeeded");
  EXPECT_EQ(after["attempts"].size(), 4u);
  EXPECT_EQ(after["steps"][1]["node"], "head");
}

// A succeeded job's work folder goes when it ends; a failed job's stays (debugging); --keep-work
// keeps both. What a job delivers lives in OUT/<job>/ only.
TEST_F(RuntimeTest, SucceededJobsWorkFoldersAreRemovedUnlessKeepWork) {
  const std::string yaml = R"(steps:
  - name: make
    uses: command
    with: {argv: [sh, -c, 'echo tmp > part.bin; echo done; test "$1" != bad', sh, "{input}"]}
)";
  for (const bool keep : {false, true}) {
    RunOptions o = Options(0);
    o.inputs = {"good", "bad"};
    o.keep_work = keep;
    o.out = dir_.path() / (keep ? "kept" : "out");
    const std::unique_ptr<Runtime> rt_owner =
        Runtime::Create(ParsePipeline(yaml, "p.yaml").value(), Cluster("nodes:\n  - {name: n, cpus: 2}\n"), o).value();
    Runtime& rt = *rt_owner;
    const RunReport& r = rt.Run();
    ASSERT_EQ(r.succeeded, 1);
    ASSERT_EQ(r.failed, 1);
    EXPECT_EQ(std::filesystem::exists(o.out / "nodes" / "n" / "job-0"), keep) << keep;
    // The command's output is a record: moved to OUT/<job>/logs/ with the folder's removal.
    EXPECT_EQ(std::filesystem::exists(o.out / "job-0" / "logs" / "make.1.stdout"), !keep) << keep;
    EXPECT_TRUE(std::filesystem::exists(o.out / "nodes" / "n" / "job-1" / "part.bin")) << keep;
    EXPECT_TRUE(std::filesystem::is_directory(o.out / "nodes" / "n"));
  }
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

// Waits for its cancel token only (a well-behaved long step).
class BlockUntilCancelledStep : public Step {
 public:
  StepOutcome Run(StepContext& ctx) const override {
    while (ctx.cancel != nullptr && ctx.cancel->sleep_for(3600)) {
    }
    return StepOutcome::Cancelled();
  }
  bool NeedsWorkdir() const override { return false; }
};

// Timeouts and retry backoff on a fake clock: the test moves time; nothing waits for a timer.
TEST(RuntimeFakeClock, TimeoutsAndBackoffFollowTheInjectedClock) {
  StepRegistry::Global().Register(
      "test_block", StepFactoryOf([](const Json&) { return std::make_unique<BlockUntilCancelledStep>(); }));
  testing::TempDir dir;
  FakeClock clock;
  RunOptions o;
  o.inputs = {""};
  o.out = dir.path() / "out";
  o.log_format = RunOptions::LogFormat::kNone;
  o.clock = &clock;
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(
          ParsePipeline("steps:\n  - name: a\n    uses: test_block\n    timeout: 30m\n    retries: 1\n    backoff: "
                        "2h\n    max_backoff: 2h\n",
                        "p.yaml")
              .value(),
          {}, o)
          .value();
  Runtime& rt = *rt_owner;
  auto wait_for = [&](const std::string& state, int attempt) {
    for (int i = 0; i < 20000; ++i) {
      const Json s = rt.Snapshot();
      const Json& step = s["jobs"][0]["steps"][0];
      if (s["jobs"][0]["state"] == state && step.value("attempt", 0) == attempt) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  };
  const RunReport* report = nullptr;
  std::thread run([&] { report = &rt.Run(); });
  ASSERT_TRUE(wait_for("running", 1));
  clock.Advance(29 * 60);
  clock.Settle();  // the driver has looked at the new time
  EXPECT_EQ(rt.Snapshot()["jobs"][0]["state"], "running");  // not yet
  clock.Advance(61);                                        // past 30 minutes: timed out
  ASSERT_TRUE(wait_for("backoff", 1));
  clock.Advance(3600);
  clock.Settle();
  EXPECT_EQ(rt.Snapshot()["jobs"][0]["state"], "backoff");  // 2 h backoff: 1 h is not enough
  clock.Advance(3601);
  ASSERT_TRUE(wait_for("running", 2));
  clock.Advance(1801);
  run.join();
  ASSERT_NE(report, nullptr);
  ASSERT_EQ(report->jobs[0].attempts.size(), 2u);
  EXPECT_EQ(report->jobs[0].attempts[0].status, "timeout");
  EXPECT_EQ(report->jobs[0].attempts[0].error, "timed out after 1800s");
  EXPECT_EQ(report->jobs[0].attempts[1].status, "timeout");
  EXPECT_EQ(report->jobs[0].status, "failed");
  EXPECT_GE(report->seconds, 1800 + 7200 + 1800);  // virtual seconds
}

// keep_finished = false (what `baton run` does): finished jobs' detail leaves memory once it is
// in OUT/jobs.jsonl; the report and summary.json keep counts and the failed jobs; JobDetail still
// shows all of it.
TEST_F(RuntimeTest, FinishedJobsLeaveMemoryButNotTheSummary) {
  RunOptions o = Options(6);
  o.keep_finished = false;
  o.trace = dir_.path() / "released.trace.json";
  const std::unique_ptr<Runtime> rt_owner =
      Runtime::Create(ParsePipeline("name: two\nsteps:\n  - {name: a, uses: sleep, resources: {cpu: 1}}\n"
                                    "  - {name: b, uses: sleep, resources: {cpu: 1}}\n",
                                    "p.yaml")
                          .value(),
                      Cluster("nodes:\n  - {name: n, cpus: 2}\n"), o)
          .value();
  Runtime& rt = *rt_owner;
  const RunReport& report = rt.Run();
  ASSERT_EQ(report.succeeded, 6);
  EXPECT_TRUE(report.jobs.empty());  // only failed jobs are reported
  // jobs.jsonl: one line per job, in the order they ended.
  std::ifstream lines(o.out / "jobs.jsonl");
  std::string line;
  std::map<std::string, Json> by_id;
  while (std::getline(lines, line)) {
    Json j = Json::parse(line);
    EXPECT_EQ(testing::SchemaErrors(j, "job"), "") << line;
    by_id[j["id"]] = j;
  }
  ASSERT_EQ(by_id.size(), 6u);
  EXPECT_EQ(by_id["job-3"]["attempts"].size(), 2u);
  // summary.json: counts, no failed job, and where every job is.
  Json summary = Json::parse(ReadFile(o.out / "summary.json"));
  EXPECT_EQ(testing::SchemaErrors(summary, "summary"), "");
  EXPECT_EQ(summary["schema"], 2);
  EXPECT_EQ(summary["jobs"], 6);
  EXPECT_EQ(summary["succeeded"], 6);
  EXPECT_EQ(summary["jobs_file"], "jobs.jsonl");
  EXPECT_EQ(summary["failed_jobs"], Json::array());
  const Json jobs = testing::ReadJobs(o.out);
  ASSERT_EQ(jobs.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(jobs[i], by_id["job-" + std::to_string(i)]);
  // The trace, drawn as attempts ended, has every attempt although none is kept.
  Json trace = Json::parse(ReadFile(o.trace));
  std::map<std::string, int> drawn;
  for (const auto& e : trace["traceEvents"])
    if (e["ph"] == "X") ++drawn[e["args"]["job"].get<std::string>()];
  ASSERT_EQ(drawn.size(), 6u);
  for (const auto& [job, n] : drawn) EXPECT_EQ(n, 2) << job;
  // The dashboard's job detail reads the released attempts back.
  Json detail = rt.JobDetail("job-3");
  ASSERT_EQ(detail["attempts"].size(), 2u);
  EXPECT_EQ(detail["attempts"][1]["step"], "b");
}

// Streaming admission (RunOptions::next_input, what `baton run` does): inputs are read as the
// window has room, an ended job's place goes to the next one, and every job still ends in
// jobs.jsonl; a failed job keeps its place and is in the summary; pages, filtered or not, read the
// jobs that left memory from jobs.jsonl. A second run in the folder resumes from the journal.
TEST_F(RuntimeTest, StreamedJobsTakeThePlacesOfEndedOnes) {
  const auto pipeline = ParsePipeline(
      "name: s\nsteps:\n  - {name: a, uses: command, retries: 0, with: {argv: [test, '{input}', '!=', in-7]},"
      " resources: {cpu: 1}}\n", "p.yaml").value();
  auto stream = [](int* read) {
    return [read](std::string* in) {
      if (*read == 50) return false;
      *in = "in-" + std::to_string((*read)++);
      return true;
    };
  };
  RunOptions o = Options(0);
  o.keep_finished = false;
  o.journal = true;
  o.admit_window = 4;
  int read = 0;
  o.next_input = stream(&read);
  {
    const std::unique_ptr<Runtime> rt_owner =
        Runtime::Create(pipeline, Cluster("nodes:\n  - {name: n, cpus: 2}\n"), o).value();
    Runtime& rt = *rt_owner;
    const RunReport& report = rt.Run();
    EXPECT_EQ(read, 50);
    EXPECT_EQ(report.succeeded, 49);
    EXPECT_EQ(report.failed, 1);
    ASSERT_EQ(report.jobs.size(), 1u);  // the failed one
    EXPECT_EQ(report.jobs[0].id, "job-7");
    // Places: the window and the failed job's, not one per job.
    EXPECT_LE(rt.Snapshot()["jobs"].size(), 5u);
    EXPECT_EQ(rt.Overview()["total"], 50);
    EXPECT_EQ(rt.Overview()["counts"]["succeeded"], 49);
    // Jobs that left memory are read back from jobs.jsonl by their number.
    const Json detail = rt.JobDetail("job-3");
    ASSERT_TRUE(detail.is_object());
    EXPECT_EQ(detail["state"], "succeeded");
    EXPECT_EQ(detail["attempts"].size(), 1u);
    JobsQuery q;
    q.offset = 5;
    q.limit = 10;
    const Json page = rt.JobsPage(q);
    EXPECT_EQ(page["total"], 50);
    ASSERT_EQ(page["jobs"].size(), 10u);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(page["jobs"][i]["id"], "job-" + std::to_string(5 + i));
    EXPECT_EQ(page["jobs"][2]["state"], "failed");  // job-7, still in memory
    EXPECT_TRUE(rt.JobDetail("job-50").is_null());
    // Filtered pages cover the jobs that left memory too (their lines, by number).
    auto ids = [](const Json& p) {
      std::vector<std::string> out;
      for (const auto& j : p["jobs"]) out.push_back(j["id"].get<std::string>());
      return out;
    };
    JobsQuery ok;
    ok.states = {"succeeded"};
    ok.offset = 6;
    ok.limit = 3;
    const Json succeeded = rt.JobsPage(ok);
    EXPECT_EQ(succeeded["total"], 49);  // from the counts
    EXPECT_EQ(ids(succeeded), (std::vector<std::string>{"job-6", "job-8", "job-9"}));
    EXPECT_EQ(succeeded["jobs"][0]["attempts"].size(), 1u);
    JobsQuery failed;
    failed.states = {"failed"};
    EXPECT_EQ(ids(rt.JobsPage(failed)), std::vector<std::string>{"job-7"});
    JobsQuery text;
    text.text = "in-4";
    text.limit = 4;
    const Json by_text = rt.JobsPage(text);
    EXPECT_EQ(by_text["total"], 11);  // in-4, in-40 .. in-49: every line read
    EXPECT_EQ(ids(by_text), (std::vector<std::string>{"job-4", "job-40", "job-41", "job-42"}));
    text.states = {"failed", "cancelled"};
    EXPECT_EQ(rt.JobsPage(text)["total"], 0);
  }
  const Json jobs = testing::ReadJobs(o.out);
  ASSERT_EQ(jobs.size(), 50u);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(jobs[i]["id"], "job-" + std::to_string(i));
    EXPECT_EQ(jobs[i]["input"], "in-" + std::to_string(i));
    EXPECT_EQ(jobs[i]["state"], i == 7 ? "failed" : "succeeded");
  }
  Json summary = Json::parse(ReadFile(o.out / "summary.json"));
  EXPECT_EQ(testing::SchemaErrors(summary, "summary"), "");
  EXPECT_EQ(summary["jobs"], 50);
  ASSERT_EQ(summary["failed_jobs"].size(), 1u);
  EXPECT_EQ(summary["failed_jobs"][0]["id"], "job-7");
  // Again in the same folder: nothing runs; the failed job stays failed.
  read = 0;
  const std::unique_ptr<Runtime> again_owner =
      Runtime::Create(pipeline, Cluster("nodes:\n  - {name: n, cpus: 2}\n"), o).value();
  Runtime& again = *again_owner;
  const RunReport& second = again.Run();
  EXPECT_EQ(read, 50);
  EXPECT_EQ(second.succeeded, 49);
  EXPECT_EQ(second.failed, 1);
  EXPECT_EQ(testing::ReadJobs(o.out).size(), 50u);
}

// summary.json streamed (WriteJson, large runs) and built (ToJson) from the one field list
// (driver/job_fields.h) say the same thing, field for field, optional ones included.
TEST(RunReportJson, StreamedAndBuiltFormsAreTheSame) {
  RunReport r;
  r.seconds = 2.5;
  r.succeeded = 1;
  r.failed = 1;
  JobReport ok{"job-0", "a \"quoted\"\tinput", "succeeded", "", {}, Json::object()};
  ok.attempts.push_back({"download", "n1", "ok", "", 1, 0.25, 1.5, {}, 0, ""});
  ok.attempts.push_back({"analyze", "n2", "ok", "", 1, 1.75, 2.0, {0, 1}, 1.5, "w0.b3"});
  ok.results = {{"analyze", {{"scenes", 3}}},
                {"summarize",
                 {{"usage", {{"requests", 1}, {"prompt_tokens", 10}, {"completion_tokens", 5}, {"cost_usd", 0.5}}}}}};
  JobReport bad{"job-1", "b", "failed", "analyze: boom\nline two", {}, Json::object()};
  bad.attempts.push_back({"analyze", "n1", "failed", "boom", 2, 0.5, 0.75, {}, 0, ""});
  r.jobs = {ok, bad};
  std::string streamed;
  r.WriteJson(&streamed);
  const Json parsed = Json::parse(streamed);
  const Json built = r.ToJson();
  ASSERT_EQ(parsed["jobs"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const Json& s = parsed["jobs"][i];
    const Json& b = built["jobs"][i];
    EXPECT_EQ(s.size(), b.size()) << s.dump() << "\n" << b.dump();
    for (const auto& [key, value] : b.items()) {
      ASSERT_TRUE(s.contains(key)) << key;
      if (key != "attempts") {
        EXPECT_EQ(s[key], value) << key;
      }
    }
    ASSERT_EQ(s["attempts"].size(), b["attempts"].size());
    for (size_t k = 0; k < b["attempts"].size(); ++k)
      for (const auto& [key, value] : b["attempts"][k].items()) {
        ASSERT_TRUE(s["attempts"][k].contains(key)) << key;
        if (value.is_number_float()) {
          EXPECT_NEAR(s["attempts"][k][key].get<double>(), value.get<double>(), 1e-6);
        } else {
          EXPECT_EQ(s["attempts"][k][key], value) << key;
        }
      }
  }
  EXPECT_EQ(parsed["jobs"][0]["attempts"][1]["batch"], "w0.b3");
  EXPECT_DOUBLE_EQ(parsed["jobs"][0]["attempts"][1]["placed"].get<double>(), 1.5);
  EXPECT_FALSE(parsed["jobs"][0]["attempts"][0].contains("placed"));
  EXPECT_EQ(parsed["jobs"][1]["error"], "analyze: boom\nline two");
  EXPECT_EQ(parsed["jobs"][0].value("llm", Json()).value("requests", 0), 1);
  EXPECT_FALSE(parsed["jobs"][1].contains("llm"));
}

// What the CLI and the simulator know of a step kind comes from its registered traits.
TEST(StepTraits, TheRegistryAnswersForAKindWithoutMakingAStep) {
  StepRegistry& reg = StepRegistry::Global();
  if (!reg.Has("sleep")) RegisterBuiltinSteps(reg);
  const StepTraits sleep = reg.Traits("sleep");
  ASSERT_TRUE(sleep.known_seconds);
  EXPECT_DOUBLE_EQ(sleep.known_seconds(Json{{"seconds", 2.5}}), 2.5);
  EXPECT_LT(sleep.known_seconds(Json::object()), 0);
  EXPECT_LT(sleep.known_seconds(Json{{"seconds", "soon"}}), 0);
  EXPECT_FALSE(sleep.one_openmp_thread);
  EXPECT_FALSE(reg.Traits("command").known_seconds);
  EXPECT_FALSE(reg.Traits("command").one_openmp_thread);
  EXPECT_FALSE(reg.Traits("no such kind").one_openmp_thread);
  if (reg.Has("analyze")) {
    EXPECT_TRUE(reg.Traits("analyze").one_openmp_thread);
  }
}

}  // namespace
}  // namespace baton
