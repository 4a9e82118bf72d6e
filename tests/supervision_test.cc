// `baton` under a supervisor, with the real binary: SIGTERM ends `baton run` (with --dashboard
// too) after a clean stop, a second signal ends it at once, exit statuses are those docs/cli.md
// lists, `baton head`/`baton node` tell systemd when they are up and stopping (a NOTIFY_SOCKET
// datagram socket made here, as systemd makes one), and the unit files in docs/systemd/ pass
// `systemd-analyze verify`.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/child_process.h"
#include "support/util.h"

namespace baton {
namespace {

using testing::ChildProcess;
using testing::ReadFile;
using testing::WaitFor;

// A unix datagram socket standing in for systemd's notification socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::filesystem::path& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    bound_ = bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{30, 0};  // a deadline for a message that never comes, not a speed bound
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~NotifySocket() { close(fd_); }
  bool bound() const { return bound_; }
  // The next datagram, "" after the deadline.
  std::string Receive() {
    char buf[4096];
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  bool bound_ = false;
};

class SupervisionTest : public ::testing::Test {
 protected:
  void SetUp() override { baton_ = (testing::BinaryDir() / "src" / "cli" / "baton").string(); }
  void TearDown() override { unsetenv("NOTIFY_SOCKET"); }

  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  std::string Log(const std::string& name) const { return ReadFile(dir_ / name); }
  bool LogHas(const std::string& name, const std::string& text, double seconds = 60) const {
    return WaitFor([&] { return Log(name).find(text) != std::string::npos; }, seconds);
  }
  // `baton run` of `pipeline` over N empty inputs on one 2-CPU node, logs in run.log.
  std::unique_ptr<ChildProcess> Run(const std::string& pipeline, int jobs, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {baton_,
                                     "run",
                                     Write("p.yaml", pipeline),
                                     "--cluster",
                                     Write("n.yaml", "nodes:\n  - {name: n, cpus: 2}\n"),
                                     "--jobs",
                                     std::to_string(jobs),
                                     "--out",
                                     (dir_ / "out").string(),
                                     "--log-format",
                                     "none"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<ChildProcess>(argv, dir_ / "run.log");
  }
  nlohmann::json Summary() const {
    return nlohmann::json::parse(ReadFile(dir_ / "out" / "summary.json"), nullptr, false);
  }
  void StartRedis() {
    redis_port_ = testing::FreeLoopbackPort();
    redis_url_ = "redis://127.0.0.1:" + std::to_string(redis_port_);
    redis_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"redis-server", "--port", std::to_string(redis_port_), "--bind", "127.0.0.1", "--save",
                                 "", "--appendonly", "no", "--dir", dir_.path().string()},
        dir_ / "redis.log");
    ASSERT_TRUE(WaitFor([&] { return testing::RunProgram({baton_, "nodes", "--redis", redis_url_}) == 0; }, 10));
  }

  testing::TempDir dir_;
  std::string baton_;
  int redis_port_ = 0;
  std::string redis_url_;
  std::unique_ptr<ChildProcess> redis_;
};

const char* kSlow = "steps:\n  - {name: wait, uses: command, with: {argv: [sleep, '60']}, resources: {cpu: 1}}\n";

TEST_F(SupervisionTest, SigtermEndsRunWithDashboardAfterCleanStop) {
  auto run = Run(kSlow, 4, {"--dashboard", "127.0.0.1:0"});
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(dir_ / "out/nodes/n/job-1/logs"); }, 60)) << Log("run.log");
  ASSERT_TRUE(LogHas("run.log", "dashboard at http://127.0.0.1:"));
  kill(run->pid(), SIGTERM);
  // Ended by SIGTERM, as `kill`/`timeout`/systemd expect, after writing everything; a process
  // that kept serving the dashboard would still be running at the deadline.
  EXPECT_EQ(run->Wait(60), 143) << Log("run.log");
  EXPECT_TRUE(LogHas("run.log", "baton: SIGTERM received\n", 0)) << Log("run.log");
  EXPECT_EQ(Log("run.log").find("still serving"), std::string::npos) << Log("run.log");
  const auto summary = Summary();
  ASSERT_FALSE(summary.is_discarded()) << Log("run.log");
  EXPECT_EQ(summary["interrupted"], true);
  EXPECT_EQ(summary["cancelled"], 4);
}

TEST_F(SupervisionTest, ExitStatusesAreTheDocumentedOnes) {
  // 143: stopped by SIGTERM (without a dashboard too).
  auto run = Run(kSlow, 2);
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(dir_ / "out/nodes/n/job-1/logs"); }, 60)) << Log("run.log");
  kill(run->pid(), SIGTERM);
  EXPECT_EQ(run->Wait(60), 143) << Log("run.log");
  EXPECT_EQ(Summary()["interrupted"], true);
  // 1: a job failed, the others ran.
  std::filesystem::remove_all(dir_ / "out");
  Write("fails.yaml", "steps:\n  - {name: a, uses: command, with: {argv: [test, '{input}', '!=', bad]}}\n");
  run = std::make_unique<ChildProcess>(
      std::vector<std::string>{baton_, "run", (dir_ / "fails.yaml").string(), "--inputs",
                               Write("in.txt", "good\nbad\n"), "--out", (dir_ / "out").string()},
      dir_ / "run1.log");
  EXPECT_EQ(run->Wait(60), 1) << Log("run1.log");
  EXPECT_EQ(Summary()["failed"], 1);
  EXPECT_EQ(Summary()["succeeded"], 1);
  // 0: all succeeded; with --dashboard the finished run is served until SIGTERM, then the
  // status is the run's.
  std::filesystem::remove_all(dir_ / "out");
  run = Run("steps:\n  - {name: a, uses: command, with: {argv: ['true']}}\n", 2, {"--dashboard", "127.0.0.1:0"});
  ASSERT_TRUE(LogHas("run.log", "dashboard still serving the finished run")) << Log("run.log");
  kill(run->pid(), SIGTERM);
  EXPECT_EQ(run->Wait(60), 0) << Log("run.log");
  // 2: bad command line (an unknown flag, a missing argument), as for bad files.
  EXPECT_EQ(testing::RunProgram({baton_, "run", (dir_ / "p.yaml").string(), "--jobs", "1", "--no-such-flag"}), 2);
  EXPECT_EQ(testing::RunProgram({baton_, "run"}), 2);
  EXPECT_EQ(testing::RunProgram({baton_, "--version"}), 0);
}

TEST_F(SupervisionTest, SecondSignalEndsAtOnceWithoutTheCleanStop) {
  // The attempt's shell ignores SIGTERM, so the clean stop has to wait for the SIGKILL that
  // follows 2 s later; a second Ctrl-C must not wait for it.
  const std::string pid_file = (dir_ / "child.pid").string();
  auto run = Run("steps:\n  - {name: stubborn, uses: command, with: {argv: [sh, -c, 'trap \"\" TERM; echo $$ > " +
                     pid_file + "; while :; do sleep 0.1; done']}}\n",
                 1);
  ASSERT_TRUE(WaitFor([&] { return !ReadFile(pid_file).empty(); }, 60)) << Log("run.log");
  kill(run->pid(), SIGINT);
  ASSERT_TRUE(LogHas("run.log", "baton: SIGINT received\n")) << Log("run.log");
  kill(run->pid(), SIGINT);
  EXPECT_EQ(run->Wait(60), 130) << Log("run.log");
  // It ended before the clean stop finished: no summary yet (the attempt was still being ended).
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out" / "summary.json")) << Log("run.log");
  const pid_t child = std::atoi(ReadFile(pid_file).c_str());
  if (child > 0) kill(-child, SIGKILL);  // its own process group, left behind by the exit at once
}

TEST_F(SupervisionTest, HeadAndNodeNotifySystemdWhenReadyAndStopping) {
  StartRedis();
  NotifySocket head_socket(dir_ / "head.sock"), node_socket(dir_ / "node.sock");
  ASSERT_TRUE(head_socket.bound() && node_socket.bound());
  setenv("NOTIFY_SOCKET", (dir_ / "head.sock").c_str(), 1);
  ChildProcess head({baton_, "head", "--redis", redis_url_, "--prefix", "sd"}, dir_ / "head.log");
  std::string msg = head_socket.Receive();
  EXPECT_NE(msg.find("READY=1"), std::string::npos) << msg << Log("head.log");
  EXPECT_NE(msg.find("STATUS=scheduling (prefix sd)"), std::string::npos) << msg;
  // Ready means up: the lock is held and the state loaded (its log says so before).
  const std::string log = Log("head.log");
  EXPECT_LT(log.find("pipelines loaded"), log.find("baton head: ready\n")) << log;

  setenv("NOTIFY_SOCKET", (dir_ / "node.sock").c_str(), 1);
  ChildProcess node({baton_, "node", "--redis", redis_url_, "--prefix", "sd", "--name", "n1", "--cpus", "1", "--gpus",
                     "0", "--workdir", (dir_ / "work").string(), "--address", "127.0.0.1", "--listen", "127.0.0.1"},
                    dir_ / "node.log");
  msg = node_socket.Receive();
  EXPECT_NE(msg.find("READY=1"), std::string::npos) << msg << Log("node.log");
  // Registered when ready: the cluster lists it.
  // Registered when ready: the cluster lists it as soon as the head has read the registration.
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        return testing::RunProgram({baton_, "nodes", "--redis", redis_url_, "--prefix", "sd", "--json"},
                                   (dir_ / "nodes.json").string()) == 0 &&
               ReadFile(dir_ / "nodes.json").find("\"n1\"") != std::string::npos;
      },
      10))
      << ReadFile(dir_ / "nodes.json");
  EXPECT_TRUE(LogHas("node.log", "baton node: ready\n", 0));

  kill(node.pid(), SIGTERM);
  EXPECT_NE(node_socket.Receive().find("STOPPING=1"), std::string::npos);
  EXPECT_EQ(node.Wait(60), 0) << Log("node.log");
  EXPECT_TRUE(LogHas("node.log", "baton node: stopping (SIGTERM)", 0)) << Log("node.log");
  kill(head.pid(), SIGTERM);
  EXPECT_NE(head_socket.Receive().find("STOPPING=1"), std::string::npos);
  EXPECT_EQ(head.Wait(60), 0) << Log("head.log");
}

TEST_F(SupervisionTest, UnitFilesPassSystemdAnalyzeVerify) {
  if (testing::RunProgram({"systemd-analyze", "--version"}) != 0)
    GTEST_SKIP() << "systemd-analyze not installed (package systemd)";
  // The units name /usr/local/bin/baton; verify checks that ExecStart exists, so point it at the build.
  int units = 0;
  for (const auto& e : std::filesystem::directory_iterator(testing::SourceDir() / "docs" / "systemd")) {
    if (e.path().extension() != ".service") continue;
    ++units;
    const std::string text = std::regex_replace(ReadFile(e.path()), std::regex("/usr/local/bin/baton"), baton_);
    const std::string unit = Write(e.path().filename().string(), text);
    const auto out = dir_ / (e.path().filename().string() + ".verify");
    EXPECT_EQ(testing::RunProgram({"systemd-analyze", "verify", unit}, out.string()), 0) << ReadFile(out);
    EXPECT_EQ(ReadFile(out), "") << e.path();  // unknown keys and bad values are warnings only
  }
  EXPECT_EQ(units, 2);
}

// A command step's process dies with the `baton run` that started it, even by `kill -9` (parent
// death signal), sees none of Baton's secrets unless it names them, and inherits no descriptor
// but 0, 1 and 2.
TEST(CommandChildren, DieWithTheirParentGetNoSecretsAndNoDescriptors) {
  testing::TempDir dir;
  const std::string baton = (testing::BinaryDir() / "src" / "cli" / "baton").string();
  const auto pidfile = dir / "child.pid";
  const auto envfile = dir / "env.txt";
  std::ofstream(dir / "p.yaml") << "steps:\n  - name: hold\n    uses: command\n    with:\n      argv: [sh, -c, 'env > "
                                   "\"$1\"; echo $$ > \"$2.tmp\"; mv \"$2.tmp\" \"$2\"; exec sleep 60', sh, '"
                                << envfile.string() << "', '" << pidfile.string() << "']\n      pass_env: [HF_TOKEN]\n";
  setenv("BATON_REDIS_PASSWORD", "redis-secret", 1);
  setenv("OPENAI_API_KEY", "sk-secret", 1);
  setenv("HF_TOKEN", "hf-passed", 1);
  auto run = std::make_unique<ChildProcess>(
      std::vector<std::string>{baton, "run", (dir / "p.yaml").string(), "--jobs", "1", "--out", (dir / "out").string(),
                               "--log-format", "none"},
      dir / "run.log");
  unsetenv("BATON_REDIS_PASSWORD");
  unsetenv("OPENAI_API_KEY");
  unsetenv("HF_TOKEN");
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(pidfile); }, 60)) << ReadFile(dir / "run.log");
  const pid_t child = static_cast<pid_t>(std::atol(ReadFile(pidfile).c_str()));
  ASSERT_GT(child, 0);
  EXPECT_EQ(kill(child, 0), 0) << "the step's process runs";
  // Its descriptors (the shell exec'd sleep, same pid): 0, 1 and 2 only.
  ASSERT_TRUE(WaitFor(
      [&] { return std::filesystem::read_symlink("/proc/" + std::to_string(child) + "/exe").filename() == "sleep"; },
      30));
  std::set<std::string> fds;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(child) + "/fd"))
    fds.insert(e.path().filename());
  EXPECT_EQ(fds, (std::set<std::string>{"0", "1", "2"}));
  run->Kill(SIGKILL);
  // Reaped by init once the parent-death signal killed it: gone (a zombie of init does not last).
  EXPECT_TRUE(WaitFor([&] { return kill(child, 0) != 0; }, 30)) << "the step outlived its parent";

  const std::string env = ReadFile(envfile);
  EXPECT_EQ(env.find("redis-secret"), std::string::npos) << env;
  EXPECT_EQ(env.find("sk-secret"), std::string::npos) << env;
  EXPECT_NE(env.find("HF_TOKEN=hf-passed"), std::string::npos) << "named in pass_env: passed";
  EXPECT_NE(env.find("BATON_JOB=job-0"), std::string::npos) << env;
}

// Secrets that do not look like secrets by name: a Redis URL with its password (BATON_REDIS) and
// the variable an llm step reads its key from, whatever its name (MY_LLM_KEY). A command step
// gets them only when it names them in pass_env.
TEST(CommandChildren, GetNoRedisPasswordNorTheLlmKeyUnlessNamed) {
  testing::TempDir dir;
  const std::string baton = (testing::BinaryDir() / "src" / "cli" / "baton").string();
  std::ofstream(dir / "p.yaml")
      << "steps:\n"
         "  - {name: plain, uses: command, with: {argv: [sh, -c, 'env > \"$1\"', sh, '"
      << (dir / "plain.txt").string()
      << "']}}\n"
         "  - {name: named, uses: command, retries: 0, with: {argv: [sh, -c, 'env > \"$1\"; exit 3', sh, '"
      << (dir / "named.txt").string()
      << "'], pass_env: [BATON_REDIS, MY_LLM_KEY]}}\n"
         "  - {name: summarize, uses: llm, with: {provider: openai, base_url: 'http://127.0.0.1:9', "
         "api_key_env: MY_LLM_KEY}}\n";
  setenv("BATON_REDIS", "redis://:redis-url-secret@127.0.0.1:6379/0", 1);
  setenv("MY_LLM_KEY", "sk-my-llm-secret", 1);
  setenv("DATABASE_URL", "postgres://app:db-url-secret@db.example/app", 1);
  setenv("PLAIN_SETTING", "visible", 1);
  const int status = testing::RunProgram({baton, "run", (dir / "p.yaml").string(), "--jobs", "1", "--out",
                                          (dir / "out").string(), "--log-format", "none"},
                                         (dir / "run.log").string());
  unsetenv("BATON_REDIS");
  unsetenv("MY_LLM_KEY");
  unsetenv("DATABASE_URL");
  unsetenv("PLAIN_SETTING");
  EXPECT_EQ(status, 1) << ReadFile(dir / "run.log");  // the named step exits 3: the job fails there

  const std::string plain = ReadFile(dir / "plain.txt");
  EXPECT_EQ(plain.find("redis-url-secret"), std::string::npos) << plain;
  EXPECT_EQ(plain.find("sk-my-llm-secret"), std::string::npos) << plain;
  EXPECT_EQ(plain.find("db-url-secret"), std::string::npos) << plain;
  EXPECT_NE(plain.find("PLAIN_SETTING=visible"), std::string::npos) << plain;
  const std::string named = ReadFile(dir / "named.txt");
  EXPECT_NE(named.find("BATON_REDIS=redis://:redis-url-secret@127.0.0.1:6379/0"), std::string::npos) << named;
  EXPECT_NE(named.find("MY_LLM_KEY=sk-my-llm-secret"), std::string::npos) << named;
  EXPECT_EQ(named.find("db-url-secret"), std::string::npos) << named;
}

// The dashboard token from a file (never on the command line, where /proc/PID/cmdline shows it);
// --token still works but warns; both at once is an error.
TEST_F(SupervisionTest, DashboardTokenComesFromAFile) {
  const std::string token = "file-token-0123456789";
  Write("token.txt", token + "\n");
  auto run = Run(kSlow, 1, {"--dashboard", "127.0.0.1:0", "--token-file", (dir_ / "token.txt").string()});
  ASSERT_TRUE(LogHas("run.log", "dashboard at http://127.0.0.1:")) << Log("run.log");
  const std::string log = Log("run.log");
  const size_t at = log.find("http://127.0.0.1:");
  std::string url = log.substr(at, log.find_first_of(" \n", at) - at);
  if (url.back() != '/') url += '/';
  auto auth = [&](const std::string& bearer) {
    const auto out = dir_ / "auth.json";
    std::filesystem::remove(out);
    testing::RunProgram({"curl", "-s", "-o", out.string(), "-H", "Authorization: Bearer " + bearer, url + "api/auth"});
    return nlohmann::json::parse(ReadFile(out), nullptr, false);
  };
  EXPECT_EQ(auth(token)["authorised"], true) << url;
  EXPECT_EQ(auth("wrong-token-0123456789")["authorised"], false);
  EXPECT_EQ(auth(token)["token_required"], true);
  const std::string cmdline = ReadFile("/proc/" + std::to_string(run->pid()) + "/cmdline");
  EXPECT_EQ(cmdline.find(token), std::string::npos);
  EXPECT_EQ(log.find("warning: --token"), std::string::npos) << log;
  kill(run->pid(), SIGTERM);
  EXPECT_EQ(run->Wait(60), 143) << Log("run.log");

  // Both flags: refused before anything runs.
  std::filesystem::remove_all(dir_ / "out");
  run = Run(kSlow, 1, {"--dashboard", "127.0.0.1:0", "--token-file", (dir_ / "token.txt").string(), "--token", token});
  EXPECT_EQ(run->Wait(60), 2) << Log("run.log");
  EXPECT_TRUE(LogHas("run.log", "--token and --token-file: give one, not both", 0)) << Log("run.log");
  // An empty file: refused, naming it.
  Write("empty.txt", "\n");
  run = Run(kSlow, 1, {"--dashboard", "127.0.0.1:0", "--token-file", (dir_ / "empty.txt").string()});
  EXPECT_EQ(run->Wait(60), 2) << Log("run.log");
  EXPECT_TRUE(LogHas("run.log", "empty.txt: the first line is empty", 0)) << Log("run.log");
}

}  // namespace
}  // namespace baton
