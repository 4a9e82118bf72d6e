// Resumable runs, as a user meets them: a real `baton run` killed with SIGKILL and run again, a
// journal cut or corrupted, a pipeline changed between runs, --rerun failed/all, new inputs. The
// journal (OUT/.baton/journal) is read back record by record to count what ran.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "journal/journal.h"
#include "journal/records.h"
#include "support/child_process.h"
#include "support/util.h"


namespace baton {
namespace {

using testing::ReadFile;
using testing::TempDir;

struct Result {
  int status = -1;
  std::string err;
};

// Every record of a journal, counted.
struct Counts {
  std::map<uint32_t, std::string> ids;                       // job number -> id
  std::map<uint32_t, int> ended;                             // job number -> job-ended records
  std::map<std::pair<uint32_t, uint16_t>, int> done;         // (job, step) -> step-done records
  std::map<std::pair<uint32_t, uint16_t>, int> ok_attempts;  // (job, step) -> ok attempts
  int attempts = 0, headers = 0, jobs_added = 0;
  journal::ReadStats read;
};

Counts Count(const std::filesystem::path& file) {
  Counts c;
  Status st = journal::Read(
      file,
      [&](std::string_view payload) {
        journal::Decoder d(payload);
        switch (static_cast<journal::Kind>(d.U8())) {
          case journal::Kind::kHeader: ++c.headers; break;
          case journal::Kind::kJobAdded: {
            const uint32_t n = d.U32();
            c.ids[n] = std::string(d.Str());
            ++c.jobs_added;
            break;
          }
          case journal::Kind::kAttempt: {
            const uint32_t j = d.U32();
            const uint16_t s = d.U16();
            d.U16();
            ++c.attempts;
            if (d.Str() == "ok") ++c.ok_attempts[{j, s}];
            break;
          }
          case journal::Kind::kStepDone: {
            const uint32_t j = d.U32();
            ++c.done[{j, d.U16()}];
            break;
          }
          case journal::Kind::kJobEnded: ++c.ended[d.U32()]; break;
          case journal::Kind::kSpent: break;  // LLM spending (budget_rerun_test.cc)
          case journal::Kind::kNote: break;   // a step's durable note (llm_batch_test.cc)
        }
      },
      &c.read);
  EXPECT_TRUE(st.ok()) << st.message();
  return c;
}

class ResumeTest : public ::testing::Test {
 protected:
  std::string Baton() const { return (testing::BinaryDir() / "src" / "cli" / "baton").string(); }
  pid_t Spawn(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {Baton()};
    argv.insert(argv.end(), args.begin(), args.end());
    const pid_t pid = testing::SpawnIn(dir_.path(), argv, dir_ / "stderr");
    EXPECT_GT(pid, 0);
    return pid;
  }
  Result Wait(pid_t pid) { return {testing::WaitExit(pid), ReadFile(dir_ / "stderr")}; }
  Result Baton(const std::vector<std::string>& args) { return Wait(Spawn(args)); }
  void Write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }
  std::filesystem::path Journal() const { return dir_ / "out" / ".baton" / "journal"; }
  nlohmann::json Summary() const { return nlohmann::json::parse(ReadFile(dir_ / "out" / "summary.json")); }
  nlohmann::json Jobs() const { return testing::ReadJobs(dir_ / "out"); }  // every job, in job order

  TempDir dir_;
};

const char* kNode = "nodes:\n  - {name: n, cpus: 4}\n";

std::string ThreeSteps(double b_seconds) {
  return "name: three\nsteps:\n"
         "  - {name: a, uses: sleep, with: {seconds: 0.01}, resources: {cpu: 1}}\n"
         "  - {name: b, uses: sleep, with: {seconds: " + std::to_string(b_seconds) + "}, resources: {cpu: 1}}\n"
         "  - {name: c, uses: sleep, with: {seconds: 0.01}, resources: {cpu: 1}}\n";
}

TEST_F(ResumeTest, KilledRunResumesWithEveryJobEndingOnceAndNoFinishedStepRerun) {
  Write("p.yaml", ThreeSteps(0.02));
  Write("n.yaml", kNode);
  constexpr int kJobs = 300;  // 4 at a time, ~40 ms a job: ~3 s in all
  pid_t pid = Spawn({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", std::to_string(kJobs), "--log-format", "none"});
  // Kill it (SIGKILL: no chance to flush anything) once some jobs, not all, have ended.
  const bool midway = testing::WaitFor(
      [&] {
        auto past = journal::Replay(Journal());
        if (!past.ok()) return false;
        size_t ended = 0;
        for (const auto& j : past->jobs) ended += j->end != journal::End::kLive;
        return ended >= 10;
      },
      30);
  ASSERT_TRUE(midway);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  Result first = Wait(pid);
  ASSERT_EQ(first.status, 128 + SIGKILL);
  ASSERT_FALSE(std::filesystem::exists(dir_ / "out" / "summary.json"));
  const Counts before = Count(Journal());
  ASSERT_LT(before.ended.size(), size_t{kJobs}) << "the run ended before the kill";
  ASSERT_GE(before.ended.size(), 10u);

  Result second = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", std::to_string(kJobs), "--log-format",
                         "none", "--trace", "t2.json"});
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_NE(second.err.find("resuming from"), std::string::npos) << second.err;
  EXPECT_NE(second.err.find(std::to_string(before.ended.size()) + " jobs already succeeded (skipped)"),
            std::string::npos)
      << second.err;

  const Counts after = Count(Journal());
  EXPECT_EQ(after.headers, 2);
  EXPECT_EQ(after.jobs_added, kJobs);  // ids were kept, not added again
  ASSERT_EQ(after.ended.size(), size_t{kJobs});
  for (const auto& [job, n] : after.ended) EXPECT_EQ(n, 1) << "job " << after.ids.at(job) << " ended " << n << " times";
  ASSERT_EQ(after.done.size(), size_t{kJobs} * 3);
  for (const auto& [key, n] : after.done)
    EXPECT_EQ(n, 1) << "job " << key.first << " step " << key.second << " done " << n << " times";
  // An ok attempt is journaled with its result, so attempts counted ok match the steps done.
  for (const auto& [key, n] : after.ok_attempts) EXPECT_EQ(n, 1) << "job " << key.first << " step " << key.second;

  // The second run's trace holds only what it ran: the steps the first run had not finished.
  const auto trace = nlohmann::json::parse(ReadFile(dir_ / "t2.json"));
  int ran = 0;
  for (const auto& e : trace["traceEvents"])
    if (e.value("ph", "") == "X") ++ran;
  EXPECT_EQ(ran, static_cast<int>(after.done.size() - before.done.size()));

  auto summary = Summary();
  EXPECT_EQ(summary["succeeded"], kJobs);
  EXPECT_EQ(summary["jobs"], kJobs);
  const auto jobs = Jobs();  // skipped jobs too: jobs.jsonl has every job of the run
  ASSERT_EQ(jobs.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(jobs[0]["id"], "job-0");
  EXPECT_EQ(jobs[kJobs - 1]["id"], "job-" + std::to_string(kJobs - 1));

  // A third run has nothing left to do.
  Result third =
      Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", std::to_string(kJobs), "--log-format", "none"});
  EXPECT_EQ(third.status, 0) << third.err;
  EXPECT_NE(third.err.find(std::to_string(kJobs) + " jobs already succeeded (skipped), 0 continue"), std::string::npos)
      << third.err;
  EXPECT_EQ(Count(Journal()).attempts, after.attempts);
}

TEST_F(ResumeTest, JournalCutMidRecordDropsOneRecordAndTheRunGoesOn) {
  Write("p.yaml", ThreeSteps(0.01));
  Write("n.yaml", kNode);
  ASSERT_EQ(Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "8", "--log-format", "none"}).status, 0);
  const auto size = std::filesystem::file_size(Journal());
  std::filesystem::resize_file(Journal(), size - 5);  // the last record (a job's end) loses 5 bytes
  Result r = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "8", "--log-format", "none"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("record cut at byte"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dropped 1 record ("), std::string::npos) << r.err;
  // The job whose end was lost had all its steps: it is not run again, its end is written now.
  EXPECT_NE(r.err.find("8 jobs already succeeded (skipped)"), std::string::npos) << r.err;
  const Counts c = Count(Journal());
  EXPECT_EQ(c.read.dropped_records, 0u);
  for (const auto& [job, n] : c.ended) EXPECT_EQ(n, 1);
  EXPECT_EQ(c.ended.size(), 8u);
  EXPECT_TRUE(std::filesystem::exists(Journal().string() + ".dropped"));
}

TEST_F(ResumeTest, FlippedByteDropsTheRestAndThoseStepsRunAgain) {
  Write("p.yaml", ThreeSteps(0.01));
  Write("n.yaml", kNode);
  ASSERT_EQ(Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "8", "--log-format", "none"}).status, 0);
  const Counts full = Count(Journal());
  const auto size = std::filesystem::file_size(Journal());
  {
    std::fstream io(Journal(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(size / 2));
    const char c = static_cast<char>(io.get());
    io.seekp(static_cast<std::streamoff>(size / 2));
    io.put(static_cast<char>(c ^ 0x40));
  }
  journal::ReadStats damaged;
  ASSERT_TRUE(journal::Read(Journal(), [](std::string_view) {}, &damaged).ok());
  ASSERT_GT(damaged.dropped_records, 1u);
  Result r = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "8", "--log-format", "none"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("dropped " + std::to_string(damaged.dropped_records) + " records (" +
                       std::to_string(damaged.dropped_bytes) + " bytes)"),
            std::string::npos) << r.err;
  auto summary = Summary();
  EXPECT_EQ(summary["succeeded"], 8);
  const Counts c = Count(Journal());
  EXPECT_EQ(c.ended.size(), 8u);
  EXPECT_EQ(c.done.size(), full.done.size());
  for (const auto& [key, n] : c.done) EXPECT_EQ(n, 1);
}

TEST_F(ResumeTest, ChangedStepRerunsFromItAndSaysSo) {
  Write("p.yaml", ThreeSteps(0.01));
  Write("n.yaml", kNode);
  ASSERT_EQ(Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "6", "--log-format", "none"}).status, 0);
  Write("p.yaml", ThreeSteps(0.02));  // b's `with` changes
  Result r =
      Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "6", "--log-format", "none", "--trace", "t.json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("pipeline changed since the last run: step 'b' changed (uses/with); 6 jobs re-run from it"),
            std::string::npos) << r.err;
  const Counts c = Count(Journal());
  for (uint32_t j = 0; j < 6; ++j) {
    EXPECT_EQ((c.done.at({j, 0})), 1) << "a is unchanged: not re-run";
    EXPECT_EQ((c.done.at({j, 1})), 2);
    EXPECT_EQ((c.done.at({j, 2})), 2) << "c follows b";
    EXPECT_EQ(c.ended.at(j), 2);
  }
  // The same pipeline again: nothing to do.
  r = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "6", "--log-format", "none"});
  EXPECT_EQ(r.err.find("pipeline changed"), std::string::npos) << r.err;
  EXPECT_EQ(Count(Journal()).attempts, c.attempts);
}

TEST_F(ResumeTest, FailedJobsStayFailedUntilRerunFailedAndRerunAllStartsOver) {
  // Step `check` fails while a file named like the input exists.
  Write("p.yaml",
        "name: check\nsteps:\n"
        "  - {name: a, uses: sleep, with: {seconds: 0.01}, resources: {cpu: 1}}\n"
        "  - {name: check, uses: command, with: {argv: [test, '!', -e, '{input}.broken']}, resources: {cpu: 1}}\n");
  Write("n.yaml", kNode);
  const std::string in = (dir_ / "x").string();
  Write("in.txt", in + "1\n" + in + "2\n" + in + "3\n");
  for (const char* f : {"x1", "x2", "x3"}) Write(f, "");  // inputs that are paths must exist
  Write("x2.broken", "");
  Result r = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--inputs", "in.txt", "--log-format", "none"});
  ASSERT_EQ(r.status, 1) << r.err;
  const int attempts = Count(Journal()).attempts;

  // Fixed, but a plain resume keeps the failure (and runs nothing).
  std::filesystem::remove(dir_ / "x2.broken");
  r = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--inputs", "in.txt", "--log-format", "none"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("1 failed or cancelled job kept as they were (--rerun failed retries them)"), std::string::npos)
      << r.err;
  EXPECT_EQ(Count(Journal()).attempts, attempts);
  EXPECT_EQ(Jobs()[1]["state"], "failed");
  ASSERT_EQ(Summary()["failed_jobs"].size(), 1u);
  EXPECT_EQ(Summary()["failed_jobs"][0]["id"], "job-1");

  // --rerun failed: only job-1 runs, from its failed step.
  r = Baton(
      {"run", "p.yaml", "--cluster", "n.yaml", "--inputs", "in.txt", "--log-format", "none", "--rerun", "failed"});
  ASSERT_EQ(r.status, 0) << r.err;
  Counts c = Count(Journal());
  EXPECT_EQ(c.attempts, attempts + 1);
  EXPECT_EQ((c.done.at({1, 1})), 1);
  EXPECT_EQ((c.done.at({1, 0})), 1);
  EXPECT_EQ(Summary()["succeeded"], 3);

  // --rerun all: the journal is moved aside and every step runs again.
  r = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--inputs", "in.txt", "--log-format", "none", "--rerun", "all"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("--rerun all: every job starts over"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::exists(Journal().string() + ".1"));
  c = Count(Journal());
  EXPECT_EQ(c.attempts, 6);
  EXPECT_EQ(c.jobs_added, 3);
}

TEST_F(ResumeTest, NewInputsBecomeNewJobsAndIdsStayPut) {
  Write("p.yaml", ThreeSteps(0.01));
  Write("n.yaml", kNode);
  Write("in.txt", "alpha\nbeta\ngamma\n");
  ASSERT_EQ(Baton({"run", "p.yaml", "--cluster", "n.yaml", "--inputs", "in.txt", "--log-format", "none"}).status, 0);
  // Two lines added, one at the top: the old inputs keep their ids, the new ones get new ids.
  Write("in.txt", "zeta\nalpha\nbeta\ngamma\ndelta\n");
  Result r = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--inputs", "in.txt", "--log-format", "none"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(
      r.err.find("3 jobs already succeeded (skipped), 0 continue where they stopped, 0 failed or cancelled jobs kept"
                 " as they were (--rerun failed retries them), 1 new; later inputs are new jobs, admitted as the run"
                 " goes"),
      std::string::npos)
      << r.err;
  std::map<std::string, std::string> id_of;
  for (const auto& j : Jobs()) id_of[j["input"].get<std::string>()] = j["id"].get<std::string>();
  EXPECT_EQ(id_of["alpha"], "job-0");
  EXPECT_EQ(id_of["beta"], "job-1");
  EXPECT_EQ(id_of["gamma"], "job-2");
  EXPECT_EQ(id_of["zeta"], "job-3");
  EXPECT_EQ(id_of["delta"], "job-4");
  const Counts c = Count(Journal());
  EXPECT_EQ(c.jobs_added, 5);
  EXPECT_EQ(c.done.size(), 15u);
  for (const auto& [key, n] : c.done) EXPECT_EQ(n, 1);
}

// A resume skips a succeeded job without restoring it (a 10M-job journal replays in little memory):
// its line stays in jobs.jsonl, which the resume appends to. A torn last line (a kill mid-write)
// is cut first; a job whose line never reached the disk (its index entry missing) is restored
// from the journal and written again. Inputs past the earlier jobs' are read as the run goes.
TEST_F(ResumeTest, SkippedJobsKeepTheirLinesATornTailIsCutAndLaterInputsStream) {
  Write("p.yaml", ThreeSteps(0.001));
  Write("n.yaml", kNode);
  std::string inputs;
  for (int i = 0; i < 40; ++i) inputs += "in" + std::to_string(i) + "\n";
  Write("in.txt", inputs);
  const std::vector<std::string> run = {"run", "p.yaml", "--cluster", "n.yaml", "--inputs", "in.txt", "--log-format",
                                        "none"};
  ASSERT_EQ(Baton(run).status, 0);
  const auto out = dir_ / "out";
  const auto first_jobs = Jobs();

  // As a kill leaves them: the index's last 5 entries (jobs 35..39) not written, a torn line.
  std::filesystem::resize_file(out / ".baton" / "jobs.index", 35 * 12);
  std::ofstream(out / "jobs.jsonl", std::ios::app) << "{\"id\": \"job-0\", \"state\": \"fail";
  for (int i = 40; i < 60; ++i) inputs += "in" + std::to_string(i) + "\n";
  Write("in.txt", inputs);

  const int attempts_before = Count(Journal()).attempts;
  Result again = Baton(run);
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.err.find("40 jobs already succeeded (skipped), 0 continue where they stopped, 0 failed or "
                           "cancelled jobs kept as they were (--rerun failed retries them), 0 new; later inputs"),
            std::string::npos)
      << again.err;
  const Counts after = Count(Journal());
  EXPECT_EQ(after.attempts, attempts_before + 20 * 3);  // the 20 new jobs' steps, nothing else
  EXPECT_EQ(after.jobs_added, 60);
  const std::string text = ReadFile(out / "jobs.jsonl");
  EXPECT_EQ(text.find("\"fail"), std::string::npos) << "the torn line is cut";
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 40 + 5 + 20);  // 35..39 written again
  const auto jobs = Jobs();
  ASSERT_EQ(jobs.size(), 60u);
  for (int i = 0; i < 60; ++i) {
    EXPECT_EQ(jobs[i]["id"], "job-" + std::to_string(i));
    EXPECT_EQ(jobs[i]["input"], "in" + std::to_string(i));
    EXPECT_EQ(jobs[i]["state"], "succeeded");
    EXPECT_EQ(jobs[i]["results"].size(), 3u) << jobs[i].dump();
    if (i < 35) EXPECT_EQ(jobs[i], first_jobs[i]);  // the earlier run's line, attempts and all
  }
  EXPECT_EQ(Summary()["succeeded"], 60);

  // The next resume finds every line indexed: nothing runs, nothing is written again.
  Result third = Baton(run);
  ASSERT_EQ(third.status, 0) << third.err;
  EXPECT_NE(third.err.find("60 jobs already succeeded (skipped)"), std::string::npos) << third.err;
  EXPECT_EQ(Count(Journal()).attempts, after.attempts);
  EXPECT_EQ(ReadFile(out / "jobs.jsonl"), text);
  EXPECT_EQ(Jobs(), jobs);
}

TEST_F(ResumeTest, CtrlCThenRunAgainContinuesTheInterruptedJobs) {
  Write("p.yaml",
        "name: slow\nsteps:\n"
        "  - {name: a, uses: sleep, with: {seconds: 0.01}, resources: {cpu: 1}}\n"
        "  - {name: b, uses: sleep, with: {seconds: 0.5}, resources: {cpu: 1}}\n");
  Write("n.yaml", "nodes:\n  - {name: n, cpus: 2}\n");
  pid_t pid = Spawn({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "6", "--log-format", "none"});
  // Interrupt once two jobs have finished step a and are in b.
  ASSERT_TRUE(
      testing::WaitFor([&] { return std::filesystem::exists(Journal()) && Count(Journal()).done.size() >= 2; }, 30));
  kill(pid, SIGINT);
  Result first = Wait(pid);
  ASSERT_EQ(first.status, 130) << first.err;
  const Counts before = Count(Journal());
  EXPECT_LT(before.ended.size(), 6u) << "interrupted jobs are not journaled as ended";
  Result second = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "6", "--log-format", "none"});
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(Summary()["succeeded"], 6);
  const Counts after = Count(Journal());
  EXPECT_EQ(after.ended.size(), 6u);
  for (const auto& [key, n] : after.done) EXPECT_EQ(n, 1) << "job " << key.first << " step " << key.second;
  for (const auto& [job, n] : after.ended) EXPECT_EQ(n, 1);
}

// The journal cannot be written (the file-size limit, as a full disk would refuse it): the run
// stops at once saying why, with its own exit status, instead of going on unjournaled; run again
// without the limit, it resumes from what the journal holds.
TEST_F(ResumeTest, JournalWriteErrorStopsTheRunLoudlyAndItResumes) {
  Write("p.yaml", ThreeSteps(0.05));
  Write("n.yaml", kNode);
  std::string inputs;
  constexpr int kJobs = 100;
  for (int i = 0; i < kJobs; ++i) inputs += std::to_string(i) + std::string(1000, 'x') + "\n";
  Write("in.txt", inputs);  // ~100 KB of job-added records, over the 32 KiB limit below
  // dash: `ulimit -f` counts 512-byte blocks; SIGXFSZ ignored, so write() fails with EFBIG.
  const pid_t pid = testing::SpawnIn(dir_.path(),
                                     {"/bin/sh", "-c", "trap '' XFSZ; ulimit -f 64 && exec \"$0\" \"$@\"", Baton(),
                                      "run", "p.yaml", "--cluster", "n.yaml", "--inputs", "in.txt", "--log-format",
                                      "none"},
                                     dir_ / "stderr");
  Result first = Wait(pid);
  EXPECT_EQ(first.status, 3) << first.err;
  EXPECT_NE(first.err.find("baton: error: the journal failed: journal write failed: File too large"),
            std::string::npos)
      << first.err;
  const Counts before = Count(Journal());
  EXPECT_LE(std::filesystem::file_size(Journal()), 64u * 512);
  EXPECT_LT(before.ended.size(), size_t{kJobs}) << "the run went on without its journal";

  Result second = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--inputs", "in.txt", "--log-format", "none"});
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_NE(second.err.find("resuming from"), std::string::npos) << second.err;
  EXPECT_EQ(Summary()["succeeded"], kJobs);
  EXPECT_FALSE(Summary().contains("error"));
  const Counts after = Count(Journal());
  EXPECT_EQ(after.ended.size(), size_t{kJobs});
  for (const auto& [job, n] : after.ended) EXPECT_EQ(n, 1);
}

// A journal whose header declares more steps than it can hold: the run refuses it in one line
// naming the file and what is wrong (no std::bad_alloc out of Runtime::Create), exit status 2.
TEST_F(ResumeTest, JournalHeaderWithHugeStepCountIsRefusedClearly) {
  Write("p.yaml", ThreeSteps(0.01));
  Write("n.yaml", kNode);
  std::filesystem::create_directories(Journal().parent_path());
  {
    journal::Encoder e;
    e.U8(static_cast<uint8_t>(journal::Kind::kHeader)).Str("0.1.0").U32(0xFFFFFFF0u).Str("three");
    std::string bytes(journal::kMagic);
    journal::Frame(e.data(), &bytes);
    std::ofstream(Journal(), std::ios::binary) << bytes;
  }
  Result r = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "2", "--log-format", "none"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("journal: record 1 does not decode (kind 1): its header declares 4294967280 steps"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("(move it aside or use --rerun all)"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("bad_alloc"), std::string::npos) << r.err;
}

// Locality: a job resumed at a step bound to an earlier step's node runs there while that node
// still holds the job's folder; when the folder is gone, lineage re-runs the producing step.
TEST_F(ResumeTest, ResumedBoundStepRunsWhereItsFilesAreOrRerunsTheirProducer) {
  Write("p.yaml",
        "name: bound\nsteps:\n"
        "  - {name: make, uses: command, with: {argv: [touch, made]}, resources: {cpu: 1}}\n"
        "  - {name: use, uses: command, with: {argv: [test, -e, made, -a, '!', -e, '{input}.broken']},"
        " resources: {cpu: 1}, placement: {same_node_as: make}}\n");
  Write("n.yaml", "nodes:\n  - {name: n1, cpus: 1}\n  - {name: n2, cpus: 1}\n");
  const std::string in = (dir_ / "x").string();
  Write("in.txt", in + "1\n" + in + "2\n");
  for (const char* f : {"x1", "x2"}) Write(f, "");  // inputs that are paths must exist
  Write("x1.broken", "");
  Write("x2.broken", "");
  Result r = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--inputs", "in.txt", "--log-format", "none"});
  ASSERT_EQ(r.status, 1) << r.err;
  auto jobs = Jobs();
  std::map<std::string, std::string> made_on;
  for (const auto& j : jobs)
    made_on[j["id"].get<std::string>()] = j["attempts"][0]["node"].get<std::string>();
  // job-0 keeps its folder; job-1's folder is lost.
  std::filesystem::remove_all(dir_ / "out" / "nodes" / made_on["job-1"] / "job-1");
  std::filesystem::remove(dir_ / "x1.broken");
  std::filesystem::remove(dir_ / "x2.broken");
  r = Baton(
      {"run", "p.yaml", "--cluster", "n.yaml", "--inputs", "in.txt", "--log-format", "none", "--rerun", "failed"});
  ASSERT_EQ(r.status, 0) << r.err;
  jobs = Jobs();
  const auto& job0 = jobs[0]["attempts"];
  ASSERT_EQ(job0.size(), 1u);  // only `use` ran, where `make` had run
  EXPECT_EQ(job0[0]["step"], "use");
  EXPECT_EQ(job0[0]["node"], made_on["job-0"]);
  const auto& job1 = jobs[1]["attempts"];
  ASSERT_EQ(job1.size(), 2u);  // `make` again (its files were gone), then `use` beside it
  EXPECT_EQ(job1[0]["step"], "make");
  EXPECT_EQ(job1[1]["step"], "use");
  EXPECT_EQ(job1[1]["node"], job1[0]["node"]);
  const Counts c = Count(Journal());
  EXPECT_EQ((c.done.at({0, 0})), 1);
  EXPECT_EQ((c.done.at({1, 0})), 2);
}

TEST_F(ResumeTest, TwoRunsCannotShareAnOutputFolder) {
  Write("p.yaml", "name: slow\nsteps:\n  - {name: a, uses: sleep, with: {seconds: 30}, resources: {cpu: 1}}\n");
  Write("n.yaml", kNode);
  pid_t pid = Spawn({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "2", "--log-format", "none"});
  ASSERT_TRUE(testing::WaitFor([&] { return std::filesystem::exists(Journal()); }, 30));
  Result second = Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "2", "--log-format", "none"});
  EXPECT_EQ(second.status, 2);
  EXPECT_NE(second.err.find("another baton run (pid " + std::to_string(pid) + ") is using this output folder"),
            std::string::npos) << second.err;
  kill(pid, SIGKILL);
  Wait(pid);
}

// The lock on OUT does not depend on the journal: a --no-journal run holds it too (a second run would truncate
// its jobs.jsonl, remove its work folders and overwrite its reports), and a --no-journal run respects it.
TEST_F(ResumeTest, NoJournalRunsLockTheOutputFolderToo) {
  Write("p.yaml", "name: slow\nsteps:\n  - {name: a, uses: sleep, with: {seconds: 60}, resources: {cpu: 1}}\n");
  Write("n.yaml", kNode);
  const std::vector<std::string> args = {"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "2", "--log-format", "none"};
  std::vector<std::string> first = {Baton()};
  first.insert(first.end(), args.begin(), args.end());
  first.push_back("--no-journal");
  const pid_t pid = testing::SpawnIn(dir_.path(), first, dir_ / "first.stderr");
  ASSERT_GT(pid, 0);
  // The run has its runtime (and so its lock) once it says where its output goes.
  const auto said = [&] { return ReadFile(dir_ / "first.stderr").find("output in out") != std::string::npos; };
  ASSERT_TRUE(testing::WaitFor(said, 60)) << ReadFile(dir_ / "first.stderr");
  const std::string held = "out: another baton run (pid " + std::to_string(pid) + ") is using this output folder";
  for (bool journal : {false, true}) {
    std::vector<std::string> second = args;
    if (!journal) second.push_back("--no-journal");
    Result r = Baton(second);
    EXPECT_EQ(r.status, 2) << journal << r.err;
    EXPECT_NE(r.err.find(held), std::string::npos) << journal << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  }
  // The first run is untouched: still running, its lines file not truncated away.
  EXPECT_TRUE(std::filesystem::exists(dir_ / "out" / "jobs.jsonl"));
  EXPECT_EQ(waitpid(pid, nullptr, WNOHANG), 0) << "the first run is still running";
  kill(pid, SIGKILL);
  Wait(pid);
  // Once it is gone, the folder is free again.
  Write("p.yaml", ThreeSteps(0.01));
  const Result third =
      Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "1", "--log-format", "none", "--no-journal"});
  EXPECT_EQ(third.status, 0) << third.err;
}

TEST_F(ResumeTest, NoJournalFlagRunsEverythingAgain) {
  Write("p.yaml", ThreeSteps(0.01));
  Write("n.yaml", kNode);
  ASSERT_EQ(
      Baton({"run", "p.yaml", "--cluster", "n.yaml", "--jobs", "3", "--log-format", "none", "--no-journal"}).status, 0);
  EXPECT_FALSE(std::filesystem::exists(Journal()));
}

}  // namespace
}  // namespace baton
