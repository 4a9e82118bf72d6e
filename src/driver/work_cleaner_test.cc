// WorkCleaner as a node agent uses it: a folder waits while an attempt of its job runs here, and
// a job that starts again here (Keep) is no longer removed. Real folders, no sleeps: the test
// waits on what the cleaner has looked at.
#include "driver/work_cleaner.h"

#include <atomic>
#include <fstream>

#include <gtest/gtest.h>

#include "support/child_process.h"
#include "support/util.h"

namespace baton {
namespace {

namespace fs = std::filesystem;

void MakeWork(const fs::path& dir, const std::string& job) {
  fs::create_directories(dir / job / "logs");
  std::ofstream(dir / job / "frame.bin") << "x";
  std::ofstream(dir / job / "logs" / "cmd.1.stdout") << "said\n";
}

TEST(WorkCleaner, RemovesAfterMovingLogsAndWaitsForRunningAttempts) {
  testing::TempDir dir;
  const fs::path work = dir / "work", out = work / "out";
  MakeWork(work, "job-0");
  MakeWork(work, "job-1");
  std::atomic<bool> running{true};
  std::atomic<int> looked{0};
  WorkCleaner cleaner({work}, out, [&](const std::string& job) {
    if (job != "job-0") return false;
    ++looked;
    return running.load();
  });
  cleaner.Remove("job-0");
  cleaner.Remove("job-1");
  // job-0 is looked at again while its attempt runs, and kept.
  ASSERT_TRUE(testing::WaitFor([&] { return looked >= 2; }, 10));
  EXPECT_TRUE(fs::exists(work / "job-0" / "frame.bin"));
  running = false;
  cleaner.Drain();
  EXPECT_FALSE(fs::exists(work / "job-0"));
  EXPECT_FALSE(fs::exists(work / "job-1"));
  EXPECT_EQ(testing::ReadFile(out / "job-0" / "logs" / "cmd.1.stdout"), "said\n");
  EXPECT_EQ(testing::ReadFile(out / "job-1" / "logs" / "cmd.1.stdout"), "said\n");
}

TEST(WorkCleaner, KeepCancelsAQueuedRemovalAndOddIdsRemoveNothing) {
  testing::TempDir dir;
  const fs::path work = dir / "work", out = work / "out";
  MakeWork(work, "job-0");
  std::atomic<bool> running{true};
  std::atomic<int> looked{0};
  WorkCleaner cleaner({work}, out, [&](const std::string&) {
    ++looked;
    return running.load();
  });
  cleaner.Remove("job-0");
  ASSERT_TRUE(testing::WaitFor([&] { return looked >= 1; }, 10));
  cleaner.Keep("job-0");  // a new attempt of job-0 starts here: its folder is in use again
  running = false;
  fs::create_directories(out / "job-9");
  for (const char* odd : {"..", ".", "", "a/../..", "out"}) cleaner.Remove(odd);
  cleaner.Drain();
  EXPECT_TRUE(fs::exists(work / "job-0" / "frame.bin"));
  EXPECT_TRUE(fs::exists(out / "job-9"));  // the output folder inside the work folder stays
  EXPECT_TRUE(fs::exists(dir.path()));
}

}  // namespace
}  // namespace baton
