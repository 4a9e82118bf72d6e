#include "runtime/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

extern char** environ;

namespace baton {
namespace {

int PidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  return -1;
#endif
}

// Waits for `pid` up to `timeout_ms` (-1 = forever). Returns true when it ended (status filled).
bool WaitFor(pid_t pid, int pidfd, int timeout_ms, int* status) {
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int rc = poll(&p, 1, timeout_ms);
    if (rc == 0) return false;
    return waitpid(pid, status, 0) == pid;
  }
  // No pidfd: poll waitpid.
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 1 << 30 : timeout_ms);
  while (true) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

std::string ProcessResult::Describe() const {
  if (!started) return error;
  if (cancelled) return "cancelled";
  if (signal != 0) return std::string("killed by signal ") + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return "exit status " + std::to_string(exit_code);
}

ProcessResult RunProcess(const ProcessSpec& spec, const CancelToken* cancel, const std::function<void(pid_t)>& on_start) {
  ProcessResult r;
  if (spec.argv.empty() || spec.argv[0].empty()) {
    r.error = "empty command";
    return r;
  }
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    if (!spec.env.count(key)) env_strings.push_back(std::move(kv));
  }
  for (const auto& [k, v] : spec.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  const std::string out = spec.stdout_path.empty() ? "/dev/null" : spec.stdout_path.string();
  const std::string err = spec.stderr_path.empty() ? "/dev/null" : spec.stderr_path.string();
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (!spec.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, spec.cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  // Children start with default signal dispositions, whatever the parent installed.
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    if (rc == ENOENT)
      r.error = "command '" + spec.argv[0] + "' not found" + (spec.argv[0].find('/') == std::string::npos ? " on PATH" : "");
    else if (rc == EACCES)
      r.error = "command '" + spec.argv[0] + "' is not executable";
    else
      r.error = "cannot start '" + spec.argv[0] + "': " + strerror(rc);
    return r;
  }
  r.started = true;
  r.pid = pid;
  if (on_start) on_start(pid);
  const int pidfd = PidfdOpen(pid);
  int status = 0;
  bool ended = false;
  while (!ended) {
    ended = WaitFor(pid, pidfd, cancel ? 20 : -1, &status);
    if (!ended && cancel != nullptr && cancel->cancelled()) {
      r.cancelled = true;
      kill(-pid, SIGTERM);
      ended = WaitFor(pid, pidfd, static_cast<int>(spec.grace_seconds * 1000), &status);
      if (!ended) {
        kill(-pid, SIGKILL);
        ended = WaitFor(pid, pidfd, -1, &status);
      }
    }
  }
  // Whatever the child left behind in its group goes too.
  kill(-pid, SIGKILL);
  if (pidfd >= 0) close(pidfd);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

std::string LastLine(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff start = size > 4096 ? size - 4096 : 0;
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r' || tail.back() == ' ')) tail.pop_back();
  const size_t nl = tail.find_last_of('\n');
  std::string line = nl == std::string::npos ? tail : tail.substr(nl + 1);
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  return line;
}

}  // namespace baton
