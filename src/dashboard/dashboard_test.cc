// API tests: a real Runtime running sleep and command steps, a DashboardServer on a free loopback
// port, and httplib::Client asserting what the dashboard serves.
#include <condition_variable>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <httplib.h>

#include "baton/pipeline.h"
#include "baton/runtime.h"
#include "dashboard/runtime_source.h"
#include "dashboard/server.h"
#include "support/child_process.h"
#include "support/util.h"

namespace baton::dashboard {
namespace {

namespace fs = std::filesystem;
using baton::testing::TempDir;

// fetch: a command that fails for the input "bad"; crunch: a GPU sleep whose first attempt fails.
std::string PipelineYaml(double crunch_seconds, int crunch_failures) {
  return R"(name: dash-test
steps:
  - name: fetch
    uses: command
    with:
      argv: ["sh", "-c", "if [ \"$0\" = bad ]; then echo broken input >&2; exit 3; fi; echo fetched $0", "{input}"]
    resources: {cpu: 1}
  - name: crunch
    uses: sleep
    with: {seconds: )" + std::to_string(crunch_seconds) + ", fail_attempts: " + std::to_string(crunch_failures) + R"(}
    retries: 1
    backoff: 0.05
    resources: {gpu: 1}
)";
}

ClusterSpec TwoNodes() {
  return ParseCluster(R"(nodes:
  - {name: alpha, cpus: 2, gpus: 2, memory: 4Gi, labels: {role: head}}
  - {name: beta, cpus: 1, gpus: 0, resources: {download_slot: 1}}
)", "cluster.yaml").value();
}

class DashboardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { RegisterBuiltinSteps(); }
  void Start(const std::string& yaml, std::vector<std::string> inputs, const std::string& token = "") {
    RunOptions opts;
    opts.inputs = std::move(inputs);
    opts.out = dir_ / "out";
    opts.log_format = RunOptions::LogFormat::kNone;
    runtime_ = Runtime::Create(ParsePipeline(yaml, "pipeline.yaml").value(), TwoNodes(), opts).value();
    source_ = std::make_unique<RuntimeSource>(*runtime_);
    DashboardOptions dopts;
    dopts.address = "127.0.0.1:0";
    dopts.token = token;
    dopts.sample_ms = 50;
    dopts.max_streams = max_streams_;
    auto started = DashboardServer::Start(*source_, dopts);
    ASSERT_TRUE(started.server) << started.error;
    server_ = std::move(started.server);
  }
  void Run() {
    runner_ = std::thread([this] { report_ = runtime_->Run(); });
  }
  void Join() {
    if (runner_.joinable()) runner_.join();
  }
  void TearDown() override {
    if (runtime_) runtime_->RequestStop();
    Join();
    if (server_) server_->Stop();
  }
  httplib::Client Client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(30, 0);
    return c;
  }
  Json GetJson(const std::string& path, int want_status = 200) {
    auto c = Client();
    auto r = c.Get(path.c_str());
    EXPECT_TRUE(r) << path;
    if (!r) return nullptr;
    EXPECT_EQ(r->status, want_status) << path << ": " << r->body;
    return Json::parse(r->body);
  }
  // Polls until `pred` holds on /api/jobs/{id} (a condition, not a speed limit: 60 s cap).
  Json WaitJob(const std::string& id, const std::function<bool(const Json&)>& pred) {
    for (int i = 0; i < 1200; ++i) {
      Json j = GetJson("/api/jobs/" + id);
      if (pred(j)) return j;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "job " << id << " never reached the expected state";
    return nullptr;
  }

  TempDir dir_;
  std::unique_ptr<Runtime> runtime_;
  std::unique_ptr<RuntimeSource> source_;
  std::unique_ptr<DashboardServer> server_;
  std::thread runner_;
  RunReport report_;
  int max_streams_ = 8;
};

TEST_F(DashboardTest, JobsListStepChainsFiltersAndPages) {
  Start(PipelineYaml(0.05, 1), {"a", "b", "c", "bad"});
  Run();
  Join();
  Json all = GetJson("/api/jobs");
  EXPECT_EQ(all["pipeline"], "dash-test");
  EXPECT_EQ(all["total"], 4);
  ASSERT_EQ(all["jobs"].size(), 4u);
  for (const auto& j : all["jobs"]) {
    ASSERT_EQ(j["steps"].size(), 2u) << j.dump();
    EXPECT_EQ(j["steps"][0]["name"], "fetch");
    EXPECT_EQ(j["steps"][1]["name"], "crunch");
  }
  EXPECT_EQ(all["jobs"][0]["state"], "succeeded");
  EXPECT_EQ(all["jobs"][0]["steps"][1]["state"], "done");
  EXPECT_EQ(all["jobs"][0]["steps"][1]["node"], "alpha");  // the only node with a GPU
  EXPECT_EQ(all["jobs"][3]["state"], "failed");
  EXPECT_EQ(all["jobs"][3]["steps"][0]["state"], "failed");
  EXPECT_EQ(all["jobs"][3]["steps"][1]["state"], "pending");
  EXPECT_EQ(all["counts"]["succeeded"], 3);
  EXPECT_EQ(all["counts"]["failed"], 1);

  Json failed = GetJson("/api/jobs?state=failed");
  ASSERT_EQ(failed["jobs"].size(), 1u);
  EXPECT_EQ(failed["jobs"][0]["id"], "job-3");
  Json page = GetJson("/api/jobs?state=succeeded,running&offset=1&limit=1");
  EXPECT_EQ(page["total"], 3);
  ASSERT_EQ(page["jobs"].size(), 1u);
  EXPECT_EQ(page["jobs"][0]["id"], "job-1");
  EXPECT_EQ(GetJson("/api/jobs?q=bad")["total"], 1);
  EXPECT_EQ(GetJson("/api/jobs?offset=10")["jobs"].size(), 0u);
  EXPECT_EQ(GetJson("/api/jobs?limit=2")["next_offset"], 2);
  EXPECT_FALSE(GetJson("/api/jobs?offset=2&limit=2").contains("next_offset"));
  EXPECT_EQ(GetJson("/api/jobs?limit=ten", 400)["error"], "limit=ten: not a non-negative integer");
  EXPECT_NE(GetJson("/api/jobs?state=done", 400)["error"].get<std::string>().find("state=done: unknown state"),
            std::string::npos);
}

TEST_F(DashboardTest, JobDetailHasAttemptsLogTailsAndReport) {
  Start(PipelineYaml(0.05, 1), {"a", "bad"});
  Run();
  Join();
  Json j = GetJson("/api/jobs/job-0");
  ASSERT_EQ(j["attempts"].size(), 3u) << j.dump();
  EXPECT_EQ(j["attempts"][0]["step"], "fetch");
  EXPECT_EQ(j["attempts"][0]["status"], "ok");
  EXPECT_EQ(j["attempts"][0]["stdout_tail"], "fetched a\n");
  EXPECT_EQ(j["attempts"][1]["step"], "crunch");
  EXPECT_EQ(j["attempts"][1]["attempt"], 1);
  EXPECT_EQ(j["attempts"][1]["status"], "failed");
  EXPECT_EQ(j["attempts"][1]["error"], "simulated failure of attempt 1");
  EXPECT_EQ(j["attempts"][2]["attempt"], 2);
  EXPECT_EQ(j["attempts"][2]["status"], "ok");
  EXPECT_EQ(j["attempts"][2]["gpus"].size(), 1u);
  EXPECT_TRUE(j["report"].empty());

  Json bad = GetJson("/api/jobs/job-1");
  ASSERT_EQ(bad["attempts"].size(), 1u);
  EXPECT_EQ(bad["attempts"][0]["status"], "failed");
  EXPECT_EQ(bad["attempts"][0]["stderr_tail"], "broken input\n");
  EXPECT_EQ(GetJson("/api/jobs/job-9", 404)["error"], "job job-9: unknown");

  // Reports: served from OUT/<job>/, nothing outside it.
  const fs::path job_dir = dir_ / "out" / "job-0";
  fs::create_directories(job_dir / "keyframes");
  std::ofstream(job_dir / "report.html") << "<h1>Report of a</h1>";
  std::ofstream(job_dir / "keyframes" / "scene-001.jpg") << "JPEG";
  std::ofstream(dir_ / "out" / "secret.txt") << "secret";
  fs::create_symlink(dir_ / "out" / "secret.txt", job_dir / "escape.txt");
  EXPECT_EQ(GetJson("/api/jobs/job-0")["report"]["html"], "/report/job-0/report.html");
  auto c = Client();
  auto r = c.Get("/report/job-0/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "<h1>Report of a</h1>");
  EXPECT_NE(r->get_header_value("Content-Security-Policy").find("sandbox"), std::string::npos);
  r = c.Get("/report/job-0/keyframes/scene-001.jpg");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "image/jpeg");
  for (const char* path : {"/report/job-0/../secret.txt", "/report/job-0/%2e%2e/secret.txt", "/report/job-0/escape.txt",
                           "/report/job-0/keyframes/../../secret.txt"}) {
    r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 400) << path;
    EXPECT_EQ(r->body.find("secret"), std::string::npos) << path;
  }
  r = c.Get("/report/job-1/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, "no report for job job-1 yet\n");
  r = c.Get("/report/..%2f/secret.txt");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
}

// A report file (a command's log can be gigabytes) is streamed, never read whole into memory:
// serving a 512 MiB file raises this process's peak memory by far less than its size. Ranges
// are served too.
TEST_F(DashboardTest, ReportFilesAreStreamed) {
  Start(PipelineYaml(0.01, 0), {"a"});
  Run();
  Join();
  const fs::path job_dir = dir_ / "out" / "job-0";
  fs::create_directories(job_dir / "logs");
  constexpr uintmax_t kBig = uintmax_t{512} << 20;
  {
    std::ofstream(job_dir / "logs" / "big.log") << "first line\n";
    fs::resize_file(job_dir / "logs" / "big.log", kBig);  // sparse: no disk, and zeros after the line
  }
  struct rusage before {};
  getrusage(RUSAGE_SELF, &before);
  auto c = Client();
  uintmax_t received = 0;
  std::string head;
  auto r = c.Get("/report/job-0/logs/big.log", [&](const char* data, size_t n) {
    if (head.size() < 11) head.append(data, std::min<size_t>(n, 11 - head.size()));
    received += n;
    return true;
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(received, kBig);
  EXPECT_EQ(head, "first line\n");
  struct rusage after {};
  getrusage(RUSAGE_SELF, &after);
  const long grown_kib = after.ru_maxrss - before.ru_maxrss;  // KiB on Linux
  EXPECT_LT(grown_kib, 64 * 1024) << "peak memory grew by " << grown_kib << " KiB serving a 512 MiB file";

  httplib::Headers range = {{"Range", "bytes=6-9"}};
  r = c.Get("/report/job-0/logs/big.log", range);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 206);
  EXPECT_EQ(r->body, "line");
}

TEST_F(DashboardTest, NodesShowResourcesGpusAndLabels) {
  Start(PipelineYaml(0.05, 0), {"a"});
  Json before = GetJson("/api/nodes");
  ASSERT_EQ(before["nodes"].size(), 2u);
  const Json& alpha = before["nodes"][0];
  EXPECT_EQ(alpha["name"], "alpha");
  EXPECT_EQ(alpha["total"]["cpu"], 2.0);
  EXPECT_EQ(alpha["total"]["gpu"], 2.0);
  EXPECT_EQ(alpha["used"]["cpu"], 0.0);
  ASSERT_EQ(alpha["gpus"].size(), 2u);
  EXPECT_EQ(alpha["gpus"][1]["id"], 1);
  EXPECT_EQ(alpha["labels"]["role"], "head");
  EXPECT_EQ(before["nodes"][1]["total"]["download_slot"], 1.0);
  Run();
  Join();
  EXPECT_EQ(GetJson("/api/nodes")["nodes"][0]["used"]["gpu"], 0.0);
}

TEST_F(DashboardTest, MetricsCountJobsAttemptsAndDurations) {
  Start(PipelineYaml(0.05, 1), {"a", "b", "c", "bad"});
  Run();
  Join();
  auto c = Client();
  auto r = c.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& m = r->body;
  for (const char* line : {"# TYPE baton_jobs gauge\n",
                           "baton_jobs{state=\"succeeded\"} 3\n",
                           "baton_jobs{state=\"failed\"} 1\n",
                           "baton_jobs{state=\"running\"} 0\n",
                           "# TYPE baton_attempts_total counter\n",
                           "baton_attempts_total{step=\"fetch\",status=\"ok\"} 3\n",
                           "baton_attempts_total{step=\"fetch\",status=\"failed\"} 1\n",
                           "baton_attempts_total{step=\"crunch\",status=\"failed\"} 3\n",
                           "baton_attempts_total{step=\"crunch\",status=\"ok\"} 3\n",
                           "# TYPE baton_step_duration_seconds histogram\n",
                           "baton_step_duration_seconds_count{step=\"crunch\"} 6\n",
                           "baton_step_duration_seconds_bucket{step=\"crunch\",le=\"+Inf\"} 6\n",
                           "baton_step_duration_seconds_count{step=\"fetch\"} 4\n",
                           "baton_node_resource_capacity{node=\"alpha\",resource=\"gpu\"} 2\n",
                           "baton_node_resource_used{node=\"alpha\",resource=\"cpu\"} 0\n",
                           "baton_node_memory_capacity_bytes{node=\"alpha\"} 4294967296\n",
                           "baton_node_memory_used_bytes{node=\"alpha\"} 0\n",
                           "baton_node_resource_utilization_ratio{node=\"beta\",resource=\"download_slot\"} 0\n",
                           "baton_node_gpu_busy{node=\"alpha\",gpu=\"1\"} 0\n",
                           "baton_node_up{node=\"beta\"} 1\n"}) {
    EXPECT_NE(m.find(line), std::string::npos) << "missing: " << line << "in\n" << m;
  }
  // The histogram is cumulative: every crunch attempt (0.05 s sleeps) is under the 1 s bucket... or not
  // (slow machine): only the invariant bucket(le=1) <= count is checked, not the speed.
  const std::string key = "baton_step_duration_seconds_bucket{step=\"crunch\",le=\"7200\"} 6\n";
  EXPECT_NE(m.find(key), std::string::npos);
}

// Reads Server-Sent Events until `stop` says so; each message's data parsed as JSON.
std::vector<Json> ReadEvents(int port, const std::function<bool(const Json&)>& stop, std::function<void()> on_first) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  std::vector<Json> out;
  std::string buf;
  c.Get("/api/events", [&](const char* data, size_t n) {
    buf.append(data, n);
    size_t end;
    while ((end = buf.find("\n\n")) != std::string::npos) {
      const std::string block = buf.substr(0, end);
      buf.erase(0, end + 2);
      size_t pos = block.find("data: ");
      if (pos == std::string::npos) continue;  // a ping
      out.push_back(Json::parse(block.substr(pos + 6)));
      if (out.size() == 1 && on_first) on_first();
      if (stop(out.back())) return false;
    }
    return true;
  });
  return out;
}

// 100,000 jobs (not run): every reply and the first live message stay small, and the pages
// walk the whole list with next_offset.
TEST_F(DashboardTest, HundredThousandJobsArePagedAndTheFirstMessageIsBounded) {
  Start(PipelineYaml(0.05, 1), std::vector<std::string>(100000, ""));
  auto c = Client();
  auto first = c.Get("/api/jobs");
  ASSERT_TRUE(first) << "no reply";
  EXPECT_LT(first->body.size(), 64u * 1024) << first->body.size();
  Json page = Json::parse(first->body);
  EXPECT_EQ(page["total"], 100000);
  EXPECT_EQ(page["counts"]["ready"], 100000);
  ASSERT_EQ(page["jobs"].size(), 100u);
  EXPECT_EQ(page["next_offset"], 100);
  Json last = GetJson("/api/jobs?offset=99000&limit=1000");
  ASSERT_EQ(last["jobs"].size(), 1000u);
  EXPECT_EQ(last["jobs"][999]["id"], "job-99999");
  EXPECT_FALSE(last.contains("next_offset"));
  EXPECT_EQ(GetJson("/api/jobs?limit=5000")["jobs"].size(), 1000u);  // limit is capped
  EXPECT_EQ(GetJson("/api/jobs?q=job-4242")["jobs"][0]["id"], "job-4242");
  std::vector<Json> events = ReadEvents(server_->port(), [](const Json&) { return true; }, nullptr);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_LT(events[0].dump().size(), 64u * 1024);
  EXPECT_EQ(events[0]["total"], 100000);
  EXPECT_EQ(events[0]["counts"]["ready"], 100000);
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_LT(metrics->body.size(), 16u * 1024);
  EXPECT_NE(metrics->body.find("baton_jobs{state=\"ready\"} 100000\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("baton_step_jobs{step=\"fetch\",state=\"ready\"} 100000\n"), std::string::npos);
}

TEST_F(DashboardTest, LiveEventsStartWithSnapshotAndFollowTheRun) {
  Start(PipelineYaml(0.05, 1), {"a", "b", "bad"});
  std::vector<Json> events = ReadEvents(
      server_->port(), [](const Json& e) { return e["type"] == "run_finished"; }, [this] { Run(); });
  Join();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0]["type"], "snapshot");
  EXPECT_FALSE(events[0].contains("jobs"));  // counts only: the table pages through /api/jobs
  EXPECT_EQ(events[0]["total"], 3);
  EXPECT_EQ(events[0]["counts"]["ready"], 3);
  EXPECT_EQ(events[0]["nodes"].size(), 2u);
  std::map<std::string, int> by_type;
  for (const auto& e : events) ++by_type[e["type"].get<std::string>()];
  size_t attempts = 0;
  for (const auto& j : report_.jobs) attempts += j.attempts.size();
  EXPECT_EQ(attempts, 7u);  // 3 fetch, 2 x 2 crunch
  EXPECT_EQ(by_type["attempt_started"], 7);
  EXPECT_EQ(by_type["attempt_finished"], 7);
  EXPECT_EQ(by_type["job_succeeded"], 2);
  EXPECT_EQ(by_type["job_failed"], 1);
  EXPECT_EQ(by_type["run_finished"], 1);
  // A late client gets the whole story in its snapshot: the attempts of the timeline.
  std::vector<Json> late = ReadEvents(server_->port(), [](const Json&) { return true; }, nullptr);
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0]["type"], "snapshot");
  ASSERT_EQ(late[0]["attempts"].size(), 7u);
  for (const auto& a : late[0]["attempts"]) EXPECT_TRUE(a.contains("end")) << a.dump();
  EXPECT_EQ(late[0]["counts"]["failed"], 1);
  EXPECT_EQ(late[0]["counts"]["succeeded"], 2);
  // Charts: samples went out (every 50 ms here) and the last one counts every ended job.
  Json series = GetJson("/api/series")["points"];
  for (int i = 0; i < 200 && (series.empty() || series.back()["succeeded"] != 2); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    series = GetJson("/api/series")["points"];
  }
  ASSERT_FALSE(series.empty());
  EXPECT_EQ(series.back()["succeeded"], 2);
  EXPECT_EQ(series.back()["failed"], 1);
  EXPECT_EQ(series.back()["gpu_total"], 2.0);
  EXPECT_EQ(series.back()["gpu_busy"], 0);
}

TEST(DashboardSecurity, OffLoopbackNeedsAToken) {
  RegisterBuiltinSteps();
  RunOptions opts;
  opts.inputs = {"a"};
  opts.log_format = RunOptions::LogFormat::kNone;
  TempDir dir;
  opts.out = dir / "out";
  const std::unique_ptr<Runtime> runtime_owner =
      Runtime::Create(ParsePipeline(PipelineYaml(0.05, 0), "p.yaml").value(), TwoNodes(), opts).value();
  Runtime& runtime = *runtime_owner;
  RuntimeSource source(runtime);
  DashboardOptions o;
  o.address = "0.0.0.0:0";
  auto s = DashboardServer::Start(source, o);
  EXPECT_FALSE(s.server);
  EXPECT_EQ(s.error,
            "dashboard address 0.0.0.0:0: not a loopback address, so a token is required "
            "(--token-file or BATON_TOKEN)");
  o.token = "short";
  s = DashboardServer::Start(source, o);
  EXPECT_FALSE(s.server);
  EXPECT_EQ(s.error, "dashboard token: too short (at least 8 characters)");
  o.token = "a-long-enough-token";
  s = DashboardServer::Start(source, o);
  ASSERT_TRUE(s.server) << s.error;
  EXPECT_GT(s.server->port(), 0);
  EXPECT_EQ(s.server->url().find("a-long-enough-token"), std::string::npos);
}

TEST(DashboardSecurity, ParsesAddresses) {
  Address a = ParseAddress("").value();
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 8265);
  EXPECT_TRUE(a.loopback);
  a = ParseAddress("9000").value();
  EXPECT_EQ(a.port, 9000);
  EXPECT_TRUE(a.loopback);
  EXPECT_FALSE(ParseAddress("0.0.0.0:0").value().loopback);
  a = ParseAddress("[::1]:8080").value();
  EXPECT_EQ(a.host, "::1");
  EXPECT_TRUE(a.loopback);
  EXPECT_TRUE(ParseAddress("localhost:1").value().loopback);
  EXPECT_EQ(ParseAddress("127.0.0.1:http").error(),
            "dashboard address 127.0.0.1:http: port 'http' is not a number from 0 to 65535");
  EXPECT_FALSE(ParseAddress("127.0.0.1:70000").ok());
}

TEST(DashboardSecurity, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("secret-token", "secret-token"));
  EXPECT_FALSE(ConstantTimeEquals("secret-token", "secret-tokeN"));
  EXPECT_FALSE(ConstantTimeEquals("secret-token", "secret-token2"));
  EXPECT_FALSE(ConstantTimeEquals("secret-token", ""));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST_F(DashboardTest, TokenGuardsCancelAndRetryButNotReading) {
  const std::string token = "correct-horse-battery";
  Start(PipelineYaml(60, 0), {"a", "bad"}, token);
  Run();
  WaitJob("job-0", [](const Json& j) { return j["state"] == "running" && j["step"] == "crunch"; });
  WaitJob("job-1", [](const Json& j) { return j["state"] == "failed"; });
  auto c = Client();
  // Reading needs no token.
  EXPECT_EQ(GetJson("/api/jobs")["total"], 2);
  Json auth = GetJson("/api/auth");
  EXPECT_EQ(auth["token_required"], true);
  EXPECT_EQ(auth["authorised"], false);

  auto r = c.Post("/api/jobs/job-0/cancel");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  r = c.Post("/api/jobs/job-0/cancel", {{"Authorization", "Bearer correct-horse-batterY"}}, "", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  r = c.Post("/api/jobs/job-1/retry", {{"Cookie", "token=wrong-wrong-wrong"}}, "", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(GetJson("/api/jobs/job-0")["state"], "running");

  // Retry the failed job with the token (Bearer): it runs its failed step again.
  r = c.Post("/api/jobs/job-1/retry", {{"Authorization", "Bearer " + token}}, "", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  Json again = WaitJob("job-1", [](const Json& j) { return j["state"] == "failed" && j["attempts"].size() == 2; });
  EXPECT_EQ(again["attempts"][1]["step"], "fetch");

  // The cookie set by /?token= authorises too.
  r = c.Get("/?token=" + token);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 303);
  EXPECT_EQ(r->get_header_value("Location"), "/");
  const std::string cookie = r->get_header_value("Set-Cookie");
  EXPECT_EQ(cookie, "token=" + token + "; Path=/; HttpOnly; SameSite=Strict");
  EXPECT_EQ(GetJson("/api/auth")["authorised"], false);
  // The page's token box posts it (never in a URL) and gets the same cookie.
  auto posted = c.Post("/api/auth", "wrong-wrong-wrong", "text/plain");
  ASSERT_TRUE(posted);
  EXPECT_EQ(posted->status, 403);
  EXPECT_EQ(posted->get_header_value("Set-Cookie"), "");
  posted = c.Post("/api/auth", token, "text/plain");
  ASSERT_TRUE(posted);
  EXPECT_EQ(posted->status, 200);
  EXPECT_EQ(posted->get_header_value("Set-Cookie"), cookie);
  EXPECT_EQ(testing::ReadFile(testing::SourceDir() / "src/dashboard/assets/app.js").find("?token="), std::string::npos)
      << "the UI never puts the token in a URL";
  auto authed = c.Get("/api/auth", {{"Cookie", "token=" + token}});
  ASSERT_TRUE(authed);
  EXPECT_EQ(Json::parse(authed->body)["authorised"], true);
  r = c.Post("/api/jobs/job-0/cancel", {{"Cookie", "other=1; token=" + token}}, "", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  Join();
  EXPECT_EQ(report_.jobs[0].status, "cancelled");
  r = c.Post("/api/jobs/job-0/cancel", {{"Authorization", "Bearer " + token}}, "", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409);
  r = c.Post("/api/jobs/nope/cancel", {{"Authorization", "Bearer " + token}}, "", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
}

TEST_F(DashboardTest, RefusesForeignHostsAndCrossOriginActions) {
  Start(PipelineYaml(60, 0), {"a"});
  Run();
  auto c = Client();
  auto r = c.Get("/api/jobs", {{"Host", "evil.example:8265"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);  // DNS rebinding
  r = c.Post("/api/jobs/job-0/cancel", {{"Origin", "http://evil.example"}}, "", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(Json::parse(r->body)["error"], "cross-origin action refused");
  // Same origin, no token set on loopback: allowed.
  const std::string origin = "http://127.0.0.1:" + std::to_string(server_->port());
  r = c.Post("/api/jobs/job-0/cancel", {{"Origin", origin}}, "", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  Join();
  EXPECT_EQ(report_.jobs[0].status, "cancelled");
}

TEST_F(DashboardTest, NoOpenRedirectAndABoundOnLiveStreams) {
  max_streams_ = 2;
  Start(PipelineYaml(60, 0), {"a"}, "correct-horse-battery");
  Run();
  auto c = Client();
  // The token landing page always redirects to "/": "/%09/evil.example/" decodes to "/\t/evil.example/",
  // which browsers read as "//evil.example/"; any path kept from the request could be such a trick.
  for (const char* path : {"//evil.example/x?token=t", "/\\evil.example?token=t", "/%09/evil.example/?token=x",
                           "/%0A/evil.example/?token=x", "/%5C%5Cevil.example/?token=x", "/app.js?token=t"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 303) << path;
    EXPECT_EQ(r->get_header_value("Location"), "/") << path;
  }
  // Two live streams at most: a third is refused at once, and the API still answers.
  auto status_of_stream = [&](httplib::Client& cl) {
    int status = 0;
    cl.Get("/api/events", [&](const httplib::Response& r) {
      status = r.status;
      return false;  // the status is all this wants
    }, [](const char*, size_t) { return false; });
    return status;
  };
  std::atomic<bool> release{false};
  std::atomic<int> opened{0};
  std::vector<std::unique_ptr<httplib::Client>> clients;
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i) {
    clients.push_back(std::make_unique<httplib::Client>("127.0.0.1", server_->port()));
    httplib::Client* cl = clients.back().get();
    readers.emplace_back([cl, &opened, &release] {
      bool counted = false;
      cl->Get("/api/events", [&](const char*, size_t) {
        if (!counted) ++opened;
        counted = true;
        return !release.load();
      });
    });
  }
  ASSERT_TRUE(testing::WaitFor([&] { return opened >= 2; }, 30));
  EXPECT_EQ(status_of_stream(c), 503);
  EXPECT_EQ(GetJson("/api/jobs")["jobs"].size(), 1u) << "the API still answers";
  release = true;
  for (auto& cl : clients) cl->stop();
  for (auto& t : readers) t.join();
  // Closed: room again (the stream's releaser gave its place back).
  EXPECT_TRUE(testing::WaitFor([&] { return status_of_stream(c) == 200; }, 30));
}

TEST(DashboardSecurity, HostHeaderCheckedOnEveryBind) {
  Address loop{"127.0.0.1", 8265, true}, lan{"0.0.0.0", 8265, false}, named{"10.1.2.3", 8265, false};
  EXPECT_TRUE(HostAllowedFor("127.0.0.1:8265", loop, {}));
  EXPECT_TRUE(HostAllowedFor("localhost:8265", loop, {}));
  EXPECT_FALSE(HostAllowedFor("evil.example:8265", loop, {}));
  // Off loopback too: a rebound name is refused; IP literals, the bound address, this machine's
  // names and listed names are not.
  EXPECT_FALSE(HostAllowedFor("evil.example:8265", lan, {"gpu-head"}));
  EXPECT_TRUE(HostAllowedFor("gpu-head:8265", lan, {"gpu-head"}));
  EXPECT_TRUE(HostAllowedFor("10.1.2.3:8265", named, {}));
  EXPECT_TRUE(HostAllowedFor("192.168.0.7:8265", lan, {}));
  EXPECT_TRUE(HostAllowedFor("[fe80::1]:8265", lan, {}));
  EXPECT_FALSE(HostAllowedFor("", lan, {}));
}

TEST_F(DashboardTest, ServesTheAppFromTheBinary) {
  Start(PipelineYaml(0.05, 0), {"a"});
  auto c = Client();
  auto r = c.Get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(r->body.find("<title>Baton"), std::string::npos);
  EXPECT_NE(r->get_header_value("Content-Security-Policy").find("default-src 'self'"), std::string::npos);
  r = c.Get("/app.js");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  r = c.Get("/nothing.js");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
}

}  // namespace
}  // namespace baton::dashboard
