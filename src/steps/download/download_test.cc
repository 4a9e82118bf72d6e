// The download step against a real HTTP server on 127.0.0.1 that misbehaves on purpose.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "steps/download/download.h"
#include "support/http_fault_server.h"
#include "support/util.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using testing::HttpFaultServer;
using testing::ReadFile;
using testing::RunProgram;
using testing::TempDir;

constexpr size_t kSize = 256 * 1024;

// Random bytes: never sniffed as HTML, and any corruption shows in the hash.
std::string MakeMedia(const fs::path& path, size_t size, unsigned seed = 7) {
  std::mt19937 rng(seed);
  std::string data(size, '\0');
  for (char& c : data) c = static_cast<char>(rng() & 0xff);
  std::ofstream(path, std::ios::binary) << data;
  return data;
}

// SHA-256 by the coreutils tool, independent of the step's own hashing.
std::string Sha256sum(const fs::path& path, const TempDir& tmp) {
  const std::string log = (tmp / "sha.txt").string();
  fs::remove(log);
  EXPECT_EQ(RunProgram({"sha256sum", path.string()}, log), 0);
  return ReadFile(log).substr(0, 64);
}

struct Result {
  StepOutcome outcome;
  std::vector<std::string> logs;
  std::vector<Json> progress;
  std::string AllLogs() const {
    std::string s;
    for (const auto& l : logs) s += l + "\n";
    return s;
  }
};

class DownloadTest : public ::testing::Test {
 protected:
  DownloadTest() : server_(served_.path()) {
    source_ = MakeMedia(served_ / "clip.mp4", kSize);
    fs::create_directories(work_.path() / "job");
    workdir_ = work_.path() / "job";
  }

  // Runs the step as the engine would; `with` gets tiny backoffs unless it sets its own.
  Result Download(const std::string& input, Json with = Json::object(), CancelToken* cancel = nullptr) {
    if (!with.contains("backoff")) with["backoff"] = 0.001;
    if (!with.contains("max_backoff")) with["max_backoff"] = 30;
    StepRegistry& registry = StepRegistry::Global();
    RegisterDownloadStep(registry);
    auto step = registry.Create("download", with).value();
    Result run;
    std::mutex mu;
    Json results = Json::object();
    StepContext ctx;
    ctx.job = "job-0";
    ctx.step = "download";
    ctx.node = "local";
    ctx.input = input;
    ctx.results = &results;
    ctx.workdir = workdir_;
    ctx.cancel = cancel;
    ctx.log = [&](LogLevel, std::string_view line) {
      std::lock_guard lock(mu);
      run.logs.emplace_back(line);
    };
    ctx.progress = [&](const Json& p) {
      std::lock_guard lock(mu);
      run.progress.push_back(p);
    };
    run.outcome = step->Run(ctx);
    return run;
  }

  void ExpectIdentical(const Result& run, const std::string& file = "clip.mp4") {
    ASSERT_TRUE(run.outcome.ok()) << run.outcome.error;
    const Json& r = run.outcome.result;
    EXPECT_EQ(r["file"], file);
    EXPECT_EQ(fs::path(r["path"].get<std::string>()), fs::absolute(workdir_ / file));
    EXPECT_EQ(ReadFile(workdir_ / file), source_);
    EXPECT_EQ(r["bytes"], source_.size());
    EXPECT_EQ(r["sha256"], Sha256sum(served_ / "clip.mp4", work_));
    EXPECT_FALSE(fs::exists(workdir_ / (file + ".part")));
    EXPECT_FALSE(fs::exists(workdir_ / (file + ".part.meta")));
  }

  // Files in the job folder (to prove nothing else was written).
  std::vector<std::string> Listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(workdir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  TempDir served_;
  TempDir work_;
  HttpFaultServer server_;
  std::string source_;
  fs::path workdir_;
};

TEST_F(DownloadTest, PlainFileMatchesSourceAndReportsResult) {
  const std::string url = server_.url("/files/clip.mp4");
  Result run = Download(url);
  ExpectIdentical(run);
  const Json& r = run.outcome.result;
  EXPECT_EQ(r["content_type"], "video/mp4");
  EXPECT_EQ(r["url"], url);
  EXPECT_EQ(r["effective_url"], url);
  EXPECT_EQ(r["title"], "clip");
  EXPECT_EQ(r["resumed"], 0);
  EXPECT_EQ(r["retries"], 0);
  EXPECT_EQ(server_.requests("/files/clip.mp4"), 1);
  EXPECT_EQ(Listing(), std::vector<std::string>{"clip.mp4"});
  ASSERT_FALSE(run.progress.empty());
  EXPECT_TRUE(run.progress.front().contains("bytes") && run.progress.front().contains("total") &&
              run.progress.front().contains("rate"));
  // Start and end lines, the end one with size and a sha256 prefix.
  EXPECT_NE(run.AllLogs().find("downloading " + url), std::string::npos);
  EXPECT_NE(run.AllLogs().find("sha256 " + r["sha256"].get<std::string>().substr(0, 12)), std::string::npos)
      << run.AllLogs();
}

TEST_F(DownloadTest, UrlFromWithOverridesInput) {
  Result run = Download("ignored", {{"url", server_.url("/files/clip.mp4")}});
  ExpectIdentical(run);
}

TEST_F(DownloadTest, NotFoundIsOneRequestAndNotRetryable) {
  const std::string url = server_.url("/status/404");
  Result run = Download(url);
  ASSERT_FALSE(run.outcome.ok());
  EXPECT_FALSE(run.outcome.retryable);
  EXPECT_NE(run.outcome.error.find("HTTP 404 from " + url), std::string::npos) << run.outcome.error;
  EXPECT_EQ(server_.requests("/status/404"), 1);
  EXPECT_TRUE(Listing().empty());
}

TEST_F(DownloadTest, ServerErrorsAreRetriedUntilSuccess) {
  server_.set_flaky_failures(3);
  Result run = Download(server_.url("/flaky/clip.mp4"));
  ExpectIdentical(run);
  EXPECT_EQ(server_.requests("/flaky/clip.mp4"), 4);
  EXPECT_EQ(run.outcome.result["retries"], 3);
}

TEST_F(DownloadTest, ServerErrorsExhaustRetries) {
  server_.set_flaky_failures(10);
  Result run = Download(server_.url("/flaky/clip.mp4"), {{"retries", 2}});
  ASSERT_FALSE(run.outcome.ok());
  EXPECT_TRUE(run.outcome.retryable);
  EXPECT_NE(run.outcome.error.find("HTTP 500"), std::string::npos) << run.outcome.error;
  EXPECT_NE(run.outcome.error.find("gave up after 2 retries"), std::string::npos) << run.outcome.error;
  EXPECT_EQ(server_.requests("/flaky/clip.mp4"), 3);
  EXPECT_FALSE(fs::exists(workdir_ / "clip.mp4"));
}

TEST_F(DownloadTest, RetryAfterIsHonoured) {
  Result run = Download(server_.url("/retry-after/clip.mp4"));
  ExpectIdentical(run);
  EXPECT_EQ(server_.requests("/retry-after/clip.mp4"), 2);
  EXPECT_EQ(run.outcome.result["retries"], 1);
  // The wait came from the header (1 s), not from the 1 ms backoff.
  EXPECT_NE(run.AllLogs().find("in 1.000 s (Retry-After)"), std::string::npos) << run.AllLogs();
}

TEST_F(DownloadTest, RetryAfterIsCappedAtMaxBackoff) {
  server_.set_retry_after("3600");
  Result run = Download(server_.url("/retry-after/clip.mp4"), {{"max_backoff", 0.05}});
  ExpectIdentical(run);
  EXPECT_NE(run.AllLogs().find("in 0.050 s (Retry-After)"), std::string::npos) << run.AllLogs();
}

TEST_F(DownloadTest, CutTransferResumesWithRange) {
  Result run = Download(server_.url("/cut/clip.mp4"));
  ExpectIdentical(run);
  EXPECT_GE(run.outcome.result["resumed"], 1);
  const auto ranges = server_.ranges("/cut/clip.mp4");
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0], "");
  EXPECT_EQ(ranges[1], "bytes=" + std::to_string(kSize / 2) + "-");
}

TEST_F(DownloadTest, ServerIgnoringRangeRestartsCleanly) {
  Result run = Download(server_.url("/cut-norange/clip.mp4"));
  ExpectIdentical(run);
  EXPECT_EQ(run.outcome.result["resumed"], 0);
  const auto ranges = server_.ranges("/cut-norange/clip.mp4");
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[1], "bytes=" + std::to_string(kSize / 2) + "-");
}

TEST_F(DownloadTest, PartialFileFromEarlierAttemptIsResumed) {
  const std::string url = server_.url("/cut/clip.mp4");
  Result first = Download(url, {{"retries", 0}});
  ASSERT_FALSE(first.outcome.ok());
  EXPECT_TRUE(first.outcome.retryable);
  EXPECT_FALSE(fs::exists(workdir_ / "clip.mp4"));
  EXPECT_EQ(fs::file_size(workdir_ / "clip.mp4.part"), kSize / 2);

  Result second = Download(url, {{"retries", 0}});
  ExpectIdentical(second);
  EXPECT_EQ(second.outcome.result["resumed"], 1);
  EXPECT_NE(second.AllLogs().find("resuming clip.mp4.part"), std::string::npos) << second.AllLogs();
}

TEST_F(DownloadTest, SlowDripTimesOutWithoutFinalFile) {
  server_.set_drip_rate(200);
  Result run = Download(server_.url("/drip/clip.mp4"),
                     {{"low_speed_limit", 1024}, {"low_speed_time", 1}, {"retries", 0}});
  ASSERT_FALSE(run.outcome.ok());
  EXPECT_TRUE(run.outcome.retryable);
  EXPECT_NE(run.outcome.error.find("timed out"), std::string::npos) << run.outcome.error;
  EXPECT_FALSE(fs::exists(workdir_ / "clip.mp4"));
}

TEST_F(DownloadTest, CancelStopsADrip) {
  server_.set_drip_rate(100);
  CancelToken cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    cancel.cancel();
  });
  Result run = Download(server_.url("/drip/clip.mp4"), {{"low_speed_limit", 0}}, &cancel);
  canceller.join();
  EXPECT_EQ(run.outcome.kind, StepOutcome::Kind::kCancelled);
  EXPECT_FALSE(fs::exists(workdir_ / "clip.mp4"));
}

TEST_F(DownloadTest, ConcurrentRunsShareOneStepObject) {
  // One step object, several jobs at once: each gets its own handle, file and hash.
  auto step = MakeDownloadStep(ParseDownloadOptions({{"backoff", 0.001}}));
  server_.set_flaky_failures(1);
  std::vector<StepOutcome> outcomes(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      StepContext ctx;
      ctx.input = server_.url(i % 2 ? "/cut/clip.mp4" : "/flaky/clip.mp4");
      ctx.workdir = workdir_ / std::to_string(i);
      fs::create_directories(ctx.workdir);
      outcomes[i] = step->Run(ctx);
    });
  }
  for (auto& t : threads) t.join();
  const std::string sha = Sha256sum(served_ / "clip.mp4", work_);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(outcomes[i].ok()) << i << ": " << outcomes[i].error;
    EXPECT_EQ(outcomes[i].result["sha256"], sha);
    EXPECT_EQ(ReadFile(workdir_ / std::to_string(i) / "clip.mp4"), source_);
  }
}

// An abandoned (or partitioned) attempt and its retry run at once on one job folder: the first
// stalls half way; the second must neither resume into nor truncate the first's file, and the
// first's late writes must not land in the file the second delivered.
TEST_F(DownloadTest, TwoAttemptsAtOnceNeverShareAPartFile) {
  const std::string url = server_.url("/stall/clip.mp4");
  Result first;
  std::thread abandoned([&] { first = Download(url); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::error_code ec;
  while (!(server_.stalled() && fs::file_size(workdir_ / "clip.mp4.part", ec) >= kSize / 2)) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the first attempt never got half the file";
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::string old_sha = Sha256sum(served_ / "clip.mp4", work_);
  // The resource changes meanwhile (a new file under the name; the stalled response keeps the old).
  const std::string old_source = source_;
  source_ = MakeMedia(served_ / "clip.mp4.new", kSize + 4096, 8);
  fs::rename(served_ / "clip.mp4.new", served_ / "clip.mp4");
  const std::string new_sha = Sha256sum(served_ / "clip.mp4", work_);

  Result retry = Download(url);
  ASSERT_TRUE(retry.outcome.ok()) << retry.outcome.error;
  EXPECT_EQ(retry.outcome.result["sha256"], new_sha);
  EXPECT_EQ(retry.outcome.result["resumed"], 0);
  EXPECT_EQ(ReadFile(workdir_ / "clip.mp4"), source_);
  EXPECT_NE(retry.AllLogs().find("clip.mp4.part is in use by another attempt"), std::string::npos)
      << retry.AllLogs();

  server_.ReleaseStall();
  abandoned.join();
  // The first finished last: the file is its version, whole, never a mix of the two.
  ASSERT_TRUE(first.outcome.ok()) << first.outcome.error;
  EXPECT_EQ(first.outcome.result["sha256"], old_sha);
  EXPECT_EQ(ReadFile(workdir_ / "clip.mp4"), old_source);
  EXPECT_EQ(Listing(), std::vector<std::string>{"clip.mp4"});
}

TEST_F(DownloadTest, RedirectIsFollowed) {
  Result run = Download(server_.url("/redirect/clip.mp4"));
  ExpectIdentical(run);
  EXPECT_EQ(run.outcome.result["effective_url"], server_.url("/files/clip.mp4"));
}

TEST_F(DownloadTest, RedirectLoopFailsNamingRedirects) {
  Result run = Download(server_.url("/loop"), {{"max_redirects", 3}});
  ASSERT_FALSE(run.outcome.ok());
  EXPECT_FALSE(run.outcome.retryable);
  EXPECT_NE(run.outcome.error.find("too many redirects"), std::string::npos) << run.outcome.error;
  EXPECT_EQ(server_.requests("/loop"), 4);
  EXPECT_TRUE(Listing().empty());
}

TEST_F(DownloadTest, HtmlPageIsNotMedia) {
  Result run = Download(server_.url("/html"));
  ASSERT_FALSE(run.outcome.ok());
  EXPECT_FALSE(run.outcome.retryable);
  EXPECT_NE(run.outcome.error.find("server sent an HTML page, not media (Content-Type text/html)"),
            std::string::npos)
      << run.outcome.error;
  EXPECT_TRUE(Listing().empty());
}

TEST_F(DownloadTest, HtmlBodyLabelledVideoIsNotMedia) {
  Result run = Download(server_.url("/html-as-video"));
  ASSERT_FALSE(run.outcome.ok());
  EXPECT_FALSE(run.outcome.retryable);
  EXPECT_NE(run.outcome.error.find("server sent an HTML page, not media (Content-Type video/mp4"),
            std::string::npos)
      << run.outcome.error;
  EXPECT_TRUE(Listing().empty());
}

TEST_F(DownloadTest, AcceptAnyKeepsHtml) {
  Result run = Download(server_.url("/html"), {{"accept_any", true}});
  ASSERT_TRUE(run.outcome.ok()) << run.outcome.error;
  EXPECT_EQ(run.outcome.result["content_type"], "text/html");
  EXPECT_NE(ReadFile(run.outcome.result["path"].get<std::string>()).find("<!DOCTYPE html>"), std::string::npos);
}

TEST_F(DownloadTest, DeclaredSizeOverDefaultLimitIsRefusedEarly) {
  Result run = Download(server_.url("/big"));  // 16 GiB declared; default limit 8 GiB
  ASSERT_FALSE(run.outcome.ok());
  EXPECT_FALSE(run.outcome.retryable);
  EXPECT_NE(run.outcome.error.find("exceeds with.max_bytes 8589934592"), std::string::npos) << run.outcome.error;
  EXPECT_EQ(server_.requests("/big"), 1);
  EXPECT_TRUE(Listing().empty());
}

TEST_F(DownloadTest, UndeclaredSizeStopsWhenExceeded) {
  Result run = Download(server_.url("/nolength/clip.mp4"), {{"max_bytes", 100000}});
  ASSERT_FALSE(run.outcome.ok());
  EXPECT_FALSE(run.outcome.retryable);
  EXPECT_NE(run.outcome.error.find("body exceeds with.max_bytes 100000"), std::string::npos) << run.outcome.error;
  EXPECT_TRUE(Listing().empty());
  // Under the limit the same route works (chunked, no Content-Length).
  ExpectIdentical(Download(server_.url("/nolength/clip.mp4")));
}

TEST_F(DownloadTest, TraversalLookingUrlsGiveSafeNamesInsideTheFolder) {
  const std::pair<std::string, std::string> cases[] = {
      {"/any/..%2F..%2Fetc%2Fpasswd", "etc_passwd"},
      {"/any/%00evil", "evil"},
      {"/any/" + std::string(300, 'n') + ".mp4", std::string(116, 'n') + ".mp4"},
  };
  for (const auto& [path, expected] : cases) {
    Result run = Download(server_.url(path));
    ASSERT_TRUE(run.outcome.ok()) << path << ": " << run.outcome.error;
    EXPECT_EQ(run.outcome.result["file"], expected);
    const fs::path written(run.outcome.result["path"].get<std::string>());
    EXPECT_EQ(written.parent_path(), fs::absolute(workdir_));
    EXPECT_EQ(ReadFile(written), std::string(1000, 'v'));
  }
  EXPECT_EQ(Listing().size(), 3u);
  EXPECT_FALSE(fs::exists(work_.path() / "etc"));
}

TEST_F(DownloadTest, FileUrlWorks) {
  Result run = Download("file://" + (served_.path() / "clip.mp4").string());
  ExpectIdentical(run);
  EXPECT_EQ(run.outcome.result["content_type"], "video/mp4");
}

TEST_F(DownloadTest, MissingLocalFileIsNotRetryable) {
  Result run = Download("file://" + (served_.path() / "absent.mp4").string());
  ASSERT_FALSE(run.outcome.ok());
  EXPECT_FALSE(run.outcome.retryable);
  EXPECT_NE(run.outcome.error.find("absent.mp4"), std::string::npos) << run.outcome.error;
}

TEST_F(DownloadTest, ConnectionRefusedIsRetriedThenRetryable) {
  const std::string url = "http://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort()) + "/x.mp4";
  Result run = Download(url, {{"retries", 1}});
  ASSERT_FALSE(run.outcome.ok());
  EXPECT_TRUE(run.outcome.retryable);
  EXPECT_NE(run.outcome.error.find("gave up after 1 retries"), std::string::npos) << run.outcome.error;
}

TEST_F(DownloadTest, BadInputsFailClearly) {
  Result empty = Download("  ");
  EXPECT_FALSE(empty.outcome.retryable);
  EXPECT_NE(empty.outcome.error.find("no URL"), std::string::npos);
  Result ftp = Download("ftp://example.org/a.mp4");
  EXPECT_FALSE(ftp.outcome.retryable);
  EXPECT_NE(ftp.outcome.error.find("unsupported URL 'ftp://example.org/a.mp4'"), std::string::npos);
}

TEST_F(DownloadTest, LocalPathIsUsedInPlaceWithItsSha256) {
  fs::create_directories(served_ / "季度 报告");
  const fs::path local = served_ / "季度 报告" / "第 1 课.mp4";
  MakeMedia(local, kSize, 11);
  Result run = Download(local.string());
  ASSERT_TRUE(run.outcome.ok()) << run.outcome.error;
  const Json& r = run.outcome.result;
  EXPECT_EQ(r["path"], local.string());  // the file itself, not a copy
  EXPECT_EQ(r["file"], "第 1 课.mp4");
  EXPECT_EQ(r["bytes"], kSize);
  EXPECT_EQ(r["sha256"], Sha256sum(local, work_));
  EXPECT_EQ(r["content_type"], "video/mp4");
  EXPECT_EQ(r["in_place"], true);
  EXPECT_EQ(r["title"], "第 1 课");
  // The work folder holds at most a hard link to the same bytes (for other nodes), never a copy.
  for (const auto& name : Listing()) {
    EXPECT_EQ(name, "第 1 课.mp4");
    EXPECT_TRUE(fs::equivalent(workdir_ / name, local));
  }
  EXPECT_NE(run.AllLogs().find("in place"), std::string::npos) << run.AllLogs();
}

TEST_F(DownloadTest, UnreadableLocalPathFailsInOneLineNamingTheNode) {
  Result missing = Download((served_ / "absent.mp4").string());
  ASSERT_FALSE(missing.outcome.ok());
  EXPECT_FALSE(missing.outcome.retryable);
  EXPECT_EQ(missing.outcome.error, "download: local file " + (served_ / "absent.mp4").string() +
                                       " cannot be read on node 'local': No such file or directory (a path is read on "
                                       "the node that runs the job; use an http(s) URL for remote nodes)");
  Result folder = Download(served_.path().string());
  ASSERT_FALSE(folder.outcome.ok());
  EXPECT_NE(folder.outcome.error.find("not a regular file"), std::string::npos) << folder.outcome.error;
  EXPECT_EQ(folder.outcome.error.find('\n'), std::string::npos);
}

TEST(DownloadConfig, RefusesBadParameters) {
  auto message = [](const Json& with) {
    try {
      ParseDownloadOptions(with);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message({{"retries", -1}}).rfind("with.retries: must be an integer >= 0", 0), 0u);
  EXPECT_EQ(message({{"backoff", "fast"}}).rfind("with.backoff: must be a number", 0), 0u);
  EXPECT_EQ(message({{"max_byte", 10}}).rfind("with.max_byte: unknown parameter", 0), 0u);
  EXPECT_EQ(message({{"accept_any", 1}}), "with.accept_any: must be true or false");
  EXPECT_EQ(message(Json::array()), "with: must be a mapping of download parameters");
  const DownloadOptions d = ParseDownloadOptions(Json());
  EXPECT_EQ(d.max_redirects, 5);
  EXPECT_EQ(d.retries, 4);
  EXPECT_EQ(d.max_bytes, int64_t{8} << 30);
  EXPECT_EQ(message({{"retries", 0}, {"low_speed_limit", 0}}), "accepted");
}

}  // namespace
}  // namespace baton
