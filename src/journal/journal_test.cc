// The journal's framing (CRC, cut and corrupt tails), group commit, and replay of run records.
#include "journal/journal.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "journal/records.h"

namespace baton::journal {
namespace {

std::filesystem::path TempFile(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("baton-journal-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto p = dir / name;
  std::filesystem::remove(p);
  std::filesystem::remove(p.string() + ".dropped");
  return p;
}

std::vector<std::string> ReadAll(const std::filesystem::path& f, ReadStats* stats) {
  std::vector<std::string> out;
  Status st = Read(f, [&](std::string_view r) { out.emplace_back(r); }, stats);
  EXPECT_TRUE(st.ok()) << st.message();
  return out;
}

// Appends one record; it must be accepted.
void Put(Writer& w, std::string_view payload) {
  Status st = w.Append(payload);
  ASSERT_TRUE(st.ok()) << st.message();
}

void WriteRecords(const std::filesystem::path& f, int n) {
  auto w = Writer::Open(f);
  ASSERT_TRUE(w.ok()) << w.error();
  for (int i = 0; i < n; ++i) Put(**w, "record-" + std::to_string(i));
  ASSERT_TRUE((*w)->Flush().ok());
}

TEST(JournalCrc, KnownValue) {
  // CRC-32C of "123456789" is 0xE3069283 (the standard check value).
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32c("", 0), 0u);
}

TEST(JournalFraming, RoundTripAndAppendAcrossOpens) {
  const auto f = TempFile("roundtrip");
  WriteRecords(f, 100);
  {
    auto w = Writer::Open(f);
    ASSERT_TRUE(w.ok());
    Put(**w, std::string(100000, 'x'));  // larger than nothing special: one record
  }
  ReadStats stats;
  auto recs = ReadAll(f, &stats);
  ASSERT_EQ(recs.size(), 101u);
  EXPECT_EQ(recs[0], "record-0");
  EXPECT_EQ(recs[99], "record-99");
  EXPECT_EQ(recs[100].size(), 100000u);
  EXPECT_EQ(stats.dropped_records, 0u);
  EXPECT_EQ(stats.dropped_bytes, 0u);
  EXPECT_EQ(stats.good_bytes, std::filesystem::file_size(f));
}

TEST(JournalFraming, MissingFileIsNotFoundAndForeignFileIsRefused) {
  const auto f = TempFile("missing");
  ReadStats stats;
  EXPECT_EQ(Read(f, [](std::string_view) {}, &stats).code(), StatusCode::kNotFound);
  std::ofstream(f) << "hello, this is not a journal\n";
  Status st = Read(f, [](std::string_view) {}, &stats);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("not a Baton journal"), std::string::npos);
}

TEST(JournalFraming, CutMidRecordDropsOnlyTheCutRecord) {
  const auto f = TempFile("cut");
  WriteRecords(f, 10);
  const auto size = std::filesystem::file_size(f);
  std::filesystem::resize_file(f, size - 3);  // the last record ("record-9", 8 + 8 bytes) loses 3
  ReadStats stats;
  auto recs = ReadAll(f, &stats);
  ASSERT_EQ(recs.size(), 9u);
  EXPECT_EQ(recs.back(), "record-8");
  EXPECT_EQ(stats.dropped_records, 1u);
  EXPECT_EQ(stats.dropped_bytes, 13u);
  EXPECT_NE(stats.why.find("cut"), std::string::npos) << stats.why;

  // Appending after a cut: the tail is moved aside and new records follow the good ones.
  {
    auto w = Writer::Open(f, stats.good_bytes);
    ASSERT_TRUE(w.ok());
    Put(**w, "after");
  }
  EXPECT_EQ(std::filesystem::file_size(f.string() + ".dropped"), 13u);
  recs = ReadAll(f, &stats);
  ASSERT_EQ(recs.size(), 10u);
  EXPECT_EQ(recs.back(), "after");
  EXPECT_EQ(stats.dropped_records, 0u);
}

TEST(JournalFraming, FlippedByteDropsThatRecordAndEverythingAfter) {
  const auto f = TempFile("flip");
  WriteRecords(f, 10);
  // Record i starts at 8 + i * 16 (8-byte frame header + 8-byte payload "record-i").
  {
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(8 + 6 * 16 + 8 + 2);  // inside record 6's payload
    io.put('X');
  }
  ReadStats stats;
  auto recs = ReadAll(f, &stats);
  ASSERT_EQ(recs.size(), 6u);
  EXPECT_EQ(recs.back(), "record-5");
  EXPECT_EQ(stats.dropped_records, 4u);  // 6 (bad) and 7, 8, 9 after it
  EXPECT_EQ(stats.dropped_bytes, 4u * 16);
  EXPECT_NE(stats.why.find("checksum"), std::string::npos) << stats.why;
}

TEST(JournalFraming, FlippedLengthFieldIsCaught) {
  const auto f = TempFile("flip-length");
  WriteRecords(f, 4);
  {
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(8 + 2 * 16 + 3);  // high byte of record 2's length
    io.put('\x7f');
  }
  ReadStats stats;
  auto recs = ReadAll(f, &stats);
  EXPECT_EQ(recs.size(), 2u);
  EXPECT_GE(stats.dropped_records, 1u);
  EXPECT_EQ(stats.dropped_bytes, 2u * 16);
}

TEST(JournalWriter, RecordOverTheReadLimitIsRefusedAtWrite) {
  const auto f = TempFile("big");
  {
    auto w = Writer::Open(f);
    ASSERT_TRUE(w.ok()) << w.error();
    Put(**w, "before");
    const std::string big(kMaxRecordBytes + 1, 'x');
    Status st = (*w)->Append(big);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("over the limit of 67108864 bytes"), std::string::npos) << st.message();
    // A group with one record too large is refused whole.
    st = (*w)->Append({std::string_view("small"), std::string_view(big)});
    EXPECT_FALSE(st.ok());
    Put(**w, "after");  // the journal goes on
    ASSERT_TRUE((*w)->Flush().ok());
  }
  ReadStats stats;
  EXPECT_EQ(ReadAll(f, &stats), (std::vector<std::string>{"before", "after"}));
  EXPECT_EQ(stats.dropped_records, 0u);
  // The largest record allowed is read back.
  {
    auto w = Writer::Open(f);
    ASSERT_TRUE(w.ok());
    Put(**w, std::string(kMaxRecordBytes, 'y'));
  }
  const auto recs = ReadAll(f, &stats);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[2].size(), kMaxRecordBytes);
  EXPECT_EQ(stats.dropped_records, 0u);
}

// A real write error (the file-size limit, as a full disk would): the owner is told at once,
// Flush and every later Append fail with it; nothing is written after it.
TEST(JournalWriter, WriteErrorIsReportedAndStopsTheJournal) {
  const auto f = TempFile("full");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit {4096, 4096};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(10);
    auto w = Writer::Open(f);
    if (!w.ok()) _exit(11);
    std::atomic<int> told{0};
    std::string what;
    (*w)->OnError([&](const Status& st) {
      what = st.message();
      told.fetch_add(1);
    });
    for (int i = 0; i < 100; ++i) {
      if (!(*w)->Append(std::string(100, 'r')).ok()) break;
    }
    const Status flushed = (*w)->Flush();
    if (flushed.ok()) _exit(12);
    if (flushed.message().find("journal write failed") == std::string::npos) _exit(13);
    if (told.load() != 1 || what != flushed.message()) _exit(14);
    if ((*w)->Append("late").ok()) _exit(15);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // What did reach the file reads back as whole records, the cut one dropped.
  ReadStats stats;
  const auto recs = ReadAll(f, &stats);
  EXPECT_LE(stats.good_bytes, 4096u);
  EXPECT_GT(recs.size(), 0u);
  for (const auto& r : recs) EXPECT_EQ(r, std::string(100, 'r'));
}

TEST(JournalGroupCommit, ManyRecordsShareFewSyncs) {
  const auto f = TempFile("group");
  auto w = Writer::Open(f);
  ASSERT_TRUE(w.ok());
  constexpr int kThreads = 4, kEach = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) Put(**w, std::to_string(t) + ":" + std::to_string(i));
    });
  for (auto& t : threads) t.join();
  ASSERT_TRUE((*w)->Flush().ok());
  const WriterStats s = (*w)->stats();
  EXPECT_EQ(s.records, uint64_t{kThreads} * kEach);
  // Group commit: far fewer fsyncs than records (one per record would be 80,000).
  EXPECT_LT(s.syncs * 20, s.records) << s.syncs << " syncs";
  EXPECT_GE(s.syncs, 1u);
  w->reset();
  ReadStats stats;
  auto recs = ReadAll(f, &stats);
  ASSERT_EQ(recs.size(), size_t{kThreads} * kEach);
  // Each thread's records keep their order.
  std::vector<int> next(kThreads, 0);
  for (const auto& r : recs) {
    const int t = r[0] - '0';
    ASSERT_EQ(r.substr(2), std::to_string(next[t])) << r;
    ++next[t];
  }
}

PipelineSpec Pipeline(const std::vector<std::pair<std::string, std::string>>& steps) {
  PipelineSpec p;
  for (const auto& [name, uses] : steps) {
    StepSpec s;
    s.name = name;
    s.uses = uses;
    p.steps.push_back(s);
  }
  return p;
}

TEST(JournalReplay, RebuildsJobsAndSeesPipelineChanges) {
  const auto f = TempFile("replay");
  const auto v1 = Fingerprint(Pipeline({{"a", "sleep"}, {"b", "sleep"}, {"c", "sleep"}}));
  {
    auto w = Writer::Open(f);
    ASSERT_TRUE(w.ok());
    Encoder e;
    EncodeHeader("0.1.0", v1, "p", &e), Put(**w, e.data());
    for (uint32_t j = 0; j < 3; ++j)
      EncodeJobAdded(j, "job-" + std::to_string(j), "in" + std::to_string(j), &e), Put(**w, e.data());
    for (uint16_t s = 0; s < 3; ++s) {  // job 0: all three steps, ended
      EncodeAttempt(0, s, 1, "ok", "", "n", 0, 1, &e), Put(**w, e.data());
      EncodeStepDone(0, s, "n", 1, 1, "{\"k\":1}", "", &e), Put(**w, e.data());
    }
    EncodeJobEnded(0, End::kSucceeded, "", &e), Put(**w, e.data());
    EncodeStepDone(1, 0, "n", 1, 1, "null", "", &e), Put(**w, e.data());  // job 1: step a only
    EncodeAttempt(2, 0, 1, "failed", "boom", "n", 0, 1, &e), Put(**w, e.data());
    EncodeJobEnded(2, End::kFailed, "a failed after 1 attempt: boom", &e), Put(**w, e.data());
  }
  auto past = Replay(f);
  ASSERT_TRUE(past.ok()) << past.error();
  ASSERT_EQ(past->jobs.size(), 3u);
  EXPECT_EQ(past->jobs[0]->end, End::kSucceeded);
  EXPECT_EQ(past->jobs[0]->NextStep(), 3);
  EXPECT_EQ(past->jobs[0]->steps[1].result, "{\"k\":1}");
  EXPECT_EQ(past->jobs[1]->end, End::kLive);
  EXPECT_EQ(past->jobs[1]->NextStep(), 1);
  EXPECT_EQ(past->jobs[2]->end, End::kFailed);
  EXPECT_EQ(past->jobs[2]->id, "job-2");
  EXPECT_EQ(past->attempts, 4u);

  // Step b changes: job 0 loses b and c and is live again; job 1 keeps a; job 2 failed before b.
  auto v2 = Fingerprint(Pipeline({{"a", "sleep"}, {"b", "command"}, {"c", "sleep"}}));
  Change c = past->Rebase(v2);
  EXPECT_EQ(c.step, 1);
  EXPECT_EQ(c.description, "step 'b' changed (uses/with)");
  EXPECT_EQ(c.jobs_affected, 1u);
  EXPECT_EQ(past->jobs[0]->end, End::kLive);
  EXPECT_EQ(past->jobs[0]->NextStep(), 1);
  EXPECT_TRUE(past->jobs[0]->steps[0].done);
  EXPECT_EQ(past->jobs[2]->end, End::kFailed);

  // The same change written as a header and replayed gives the same state.
  {
    auto w = Writer::Open(f);
    Encoder e;
    EncodeHeader("0.1.0", v2, "p", &e), Put(**w, e.data());
  }
  auto again = Replay(f);
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->changes.size(), 1u);
  EXPECT_EQ(again->jobs[0]->NextStep(), 1);
  EXPECT_EQ(again->jobs[0]->end, End::kLive);
  EXPECT_EQ(Compare(v2, v2).step, -1);
  EXPECT_EQ(Compare(v1, Fingerprint(Pipeline({{"a", "sleep"}, {"b", "sleep"}, {"c", "sleep"}, {"d", "sleep"}}))).step,
            3);
}

// A header whose step count is larger than its record could hold (or than a pipeline may have)
// is refused with one line naming the count, before anything is allocated for it.
// A settling replay drops a succeeded job (what a large resume does), keeps the others whole, and
// says when a later record or pipeline change needed the dropped job after all.
TEST(JournalReplay, SettledJobsLeaveAndARecordForOneIsNoticed) {
  const auto f = TempFile("settle");
  const auto v1 = Fingerprint(Pipeline({{"a", "sleep"}, {"b", "sleep"}}));
  Encoder e;
  {
    auto w = Writer::Open(f);
    ASSERT_TRUE(w.ok());
    EncodeHeader("0.1.0", v1, "p", &e), Put(**w, e.data());
    for (uint32_t j = 0; j < 3; ++j)
      EncodeJobAdded(j, "job-" + std::to_string(j), "in" + std::to_string(j), &e), Put(**w, e.data());
    for (uint32_t j = 0; j < 2; ++j) {  // jobs 0 and 1 succeed; job 2 does step a only
      for (uint16_t s = 0; s < 2; ++s) EncodeStepDone(j, s, "n", 1, 1, "{\"k\":1}", "", &e), Put(**w, e.data());
      EncodeJobEnded(j, End::kSucceeded, "", &e), Put(**w, e.data());
    }
    EncodeStepDone(2, 0, "n", 1, 1, "null", "", &e), Put(**w, e.data());
  }
  std::vector<uint32_t> asked;
  ReplayOptions settle_even;  // settles job 0 only: job 1's line is missing, say
  settle_even.settle = [&](uint32_t n, const PastJob& j) {
    asked.push_back(n);
    EXPECT_EQ(j.steps[1].result, "{\"k\":1}");
    return n == 0;
  };
  auto past = Replay(f, settle_even);
  ASSERT_TRUE(past.ok()) << past.error();
  EXPECT_EQ(asked, (std::vector<uint32_t>{0, 1}));
  ASSERT_EQ(past->jobs.size(), 3u);
  EXPECT_EQ(past->jobs[0], nullptr);
  ASSERT_NE(past->jobs[1], nullptr);
  EXPECT_EQ(past->jobs[1]->end, End::kSucceeded);
  EXPECT_EQ(past->jobs[2]->NextStep(), 1);
  EXPECT_EQ(past->settled, 1u);
  EXPECT_FALSE(past->settled_needed);
  ASSERT_EQ(past->input_hash.size(), 3u);
  EXPECT_EQ(past->input_hash[0], InputHash("in0"));
  EXPECT_NE(past->input_hash[0], past->input_hash[1]);

  // A pipeline change that would revive it: the settled job was needed.
  Change c = past->Rebase(Fingerprint(Pipeline({{"a", "sleep"}, {"b", "command"}})));
  EXPECT_EQ(c.step, 1);
  EXPECT_TRUE(past->settled_needed);

  // A record for a settled job (its retry, say) is noticed the same way.
  {
    auto w = Writer::Open(f);
    EncodeAttempt(0, 0, 2, "failed", "again", "n", 0, 1, &e), Put(**w, e.data());
  }
  past = Replay(f, settle_even);
  ASSERT_TRUE(past.ok()) << past.error();
  EXPECT_TRUE(past->settled_needed);
}

TEST(JournalReplay, HugeStepCountInAHeaderIsAClearError) {
  const auto f = TempFile("huge-steps");
  {
    auto w = Writer::Open(f);
    ASSERT_TRUE(w.ok());
    Encoder e;
    e.U8(static_cast<uint8_t>(Kind::kHeader)).Str("0.1.0").U32(0xFFFFFFFFu).Str("x");
    Put(**w, e.data());
  }
  auto past = Replay(f);
  ASSERT_FALSE(past.ok());
  EXPECT_NE(past.error().find("record 1 does not decode (kind 1): its header declares 4294967295 steps (at most 1024"),
            std::string::npos)
      << past.error();
  // The most a header may declare still replays.
  std::vector<StepPrint> many(kMaxSteps);
  for (uint32_t i = 0; i < kMaxSteps; ++i) many[i] = {"s" + std::to_string(i), i};
  {
    auto w = Writer::Open(f, 0);
    ASSERT_TRUE(w.ok());
    Encoder e;
    EncodeHeader("0.1.0", many, "p", &e);
    Put(**w, e.data());
  }
  past = Replay(f);
  ASSERT_TRUE(past.ok()) << past.error();
  EXPECT_EQ(past->steps.size(), size_t{kMaxSteps});
}

TEST(JournalFingerprint, WithChangesTheFingerprint) {
  PipelineSpec p = Pipeline({{"a", "sleep"}});
  const auto before = Fingerprint(p);
  p.steps[0].with = {{"seconds", 1}};
  EXPECT_NE(Fingerprint(p)[0].fingerprint, before[0].fingerprint);
  PipelineSpec q = p;
  q.steps[0].resources["cpu"] = 2;  // resources are not part of what a step computes
  q.steps[0].retries = 3;
  EXPECT_EQ(Fingerprint(q)[0].fingerprint, Fingerprint(p)[0].fingerprint);
  PipelineSpec r = p;
  r.budget_usd = 100;  // the budget caps spending; it changes no step's result
  r.rates["tok"] = {10, 10};
  EXPECT_EQ(Fingerprint(r)[0].fingerprint, Fingerprint(p)[0].fingerprint);
}

TEST(JournalReplay, SpentRecordsAddUpAcrossPipelineChanges) {
  const auto f = TempFile("spent");
  {
    auto w = Writer::Open(f);
    ASSERT_TRUE(w.ok());
    Encoder e;
    EncodeHeader("0.1.0", Fingerprint(Pipeline({{"a", "llm"}})), "p", &e), Put(**w, e.data());
    EncodeJobAdded(0, "job-0", "", &e), Put(**w, e.data());
    EncodeSpent(0.25, &e), Put(**w, e.data());
    EncodeSpent(0.5, &e), Put(**w, e.data());
    // The step changes: its results go, what its requests cost stays spent.
    EncodeHeader("0.1.0", Fingerprint(Pipeline({{"a", "sleep"}})), "p", &e), Put(**w, e.data());
    EncodeSpent(0.125, &e), Put(**w, e.data());
  }
  auto past = Replay(f);
  ASSERT_TRUE(past.ok()) << past.error();
  EXPECT_DOUBLE_EQ(past->spent_usd, 0.875);
  EXPECT_EQ(past->changes.size(), 1u);
}

}  // namespace
}  // namespace baton::journal
