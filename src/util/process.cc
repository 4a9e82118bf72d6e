#include "util/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>
#include <utility>

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

namespace {

// Where the child's 0, 1 and 2 come from: the spec's files (RunProcess) or descriptors the caller
// made (StartPiped's pipe ends, dup2'ed in the child).
struct ChildIo {
  const int* fds = nullptr;  // three descriptors, or null: /dev/null, stdout_path, stderr_path
};

// The child's environment: the parent's, less what `spec.env` sets and the secrets not named in
// `spec.pass_env`, plus `spec.env`.
std::vector<std::string> ChildEnvironment(const ProcessSpec& spec) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    if (spec.env.count(key)) continue;
    if (WithheldFromChildren(kv, spec.pass_env)) continue;  // secrets: never handed down unless named
    env_strings.push_back(std::move(kv));
  }
  for (const auto& [k, v] : spec.env) env_strings.push_back(k + "=" + v);
  return env_strings;
}

// The paths execve tries for `program`: execvpe's search, done before fork (PATH lookup allocates).
std::vector<std::string> ExecCandidates(const std::string& program) {
  std::vector<std::string> candidates;
  if (program.find('/') != std::string::npos) {
    candidates.push_back(program);
  } else {
    const char* path = getenv("PATH");
    std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
    while (!dirs.empty()) {
      const size_t colon = dirs.find(':');
      std::string dir(dirs.substr(0, colon));
      candidates.push_back((dir.empty() ? "." : dir) + "/" + program);
      dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    }
  }
  return candidates;
}

// Everything the child needs, prepared before fork: between fork and exec it calls only
// async-signal-safe functions (the parent has other threads).
struct ChildPlan {
  std::vector<char*> argv, envp;
  std::string out, err, cwd;
  std::vector<std::string> candidates;
  const int* fds = nullptr;  // ChildIo::fds
  int report = -1;           // the report pipe's write end
  pid_t parent = 0;
};

// In the forked child: its own process group, death with its parent, default signals, 0/1/2,
// the working directory, no other descriptor, then exec. On failure writes errno to the report
// pipe and exits 127.
[[noreturn]] void ExecChild(const ChildPlan& plan) {
  auto fail = [&](int e) {
    [[maybe_unused]] ssize_t n = write(plan.report, &e, sizeof e);
    _exit(127);
  };
  setpgid(0, 0);
  // Dies with the agent or runtime that started it (SIGKILL when the parent thread ends).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != plan.parent) _exit(127);
  sigset_t none;
  sigemptyset(&none);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);  // dispositions the parent installed
  sigprocmask(SIG_SETMASK, &none, nullptr);
  const int* fds = plan.fds;
  const int in = fds ? fds[0] : open("/dev/null", O_RDONLY);
  const int o = fds ? fds[1] : open(plan.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int e = fds ? fds[2] : open(plan.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (in < 0 || o < 0 || e < 0) fail(errno);
  if (dup2(in, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) fail(errno);
  if (!plan.cwd.empty() && chdir(plan.cwd.c_str()) != 0) fail(errno);
  // No descriptor of the parent leaks into the step (sockets, files, other children's pipes),
  // whether or not it was opened close-on-exec. The report pipe closes itself on exec.
  const int keep = plan.report;
  if (keep > 3) close_range(3, static_cast<unsigned>(keep) - 1, 0);
  close_range(static_cast<unsigned>(keep) + 1, ~0U, 0);
  int first = ENOENT;
  for (const auto& c : plan.candidates) {
    execve(c.c_str(), plan.argv.data(), plan.envp.data());
    if (errno != ENOENT && first == ENOENT) first = errno;
  }
  fail(first);
  _exit(127);  // not reached: fail exits
}

// Why `program` did not start, from the errno its child reported.
std::string ExecError(const std::string& program, int rc) {
  if (rc == ENOENT)
    return "command '" + program + "' not found" + (program.find('/') == std::string::npos ? " on PATH" : "");
  if (rc == EACCES) return "command '" + program + "' is not executable";
  return "cannot start '" + program + "': " + strerror(rc);
}

// Forks and execs `spec` (the part RunProcess and StartPiped share). Returns the pid, or why the
// command could not start. Flow: the plan (argv, environment, files, exec candidates) -> the
// report pipe -> fork: the child runs ExecChild; the parent reads the report (closed by a
// successful exec; an errno when exec failed: ExecError).
Result<pid_t> Spawn(const ProcessSpec& spec, const ChildIo& io) {
  if (spec.argv.empty() || spec.argv[0].empty()) return Status::Invalid("empty command");
  ChildPlan plan;
  for (const auto& a : spec.argv) plan.argv.push_back(const_cast<char*>(a.c_str()));
  plan.argv.push_back(nullptr);
  std::vector<std::string> env_strings = ChildEnvironment(spec);
  for (auto& s : env_strings) plan.envp.push_back(s.data());
  plan.envp.push_back(nullptr);
  plan.out = spec.stdout_path.empty() ? "/dev/null" : spec.stdout_path.string();
  plan.err = spec.stderr_path.empty() ? "/dev/null" : spec.stderr_path.string();
  plan.cwd = spec.cwd.string();
  plan.candidates = ExecCandidates(spec.argv[0]);
  int report[2];  // the child writes errno here when exec fails; closed on a successful exec
  if (pipe2(report, O_CLOEXEC) != 0) {
    return Status::Invalid(std::string("cannot start '") + spec.argv[0] + "': " + strerror(errno));
  }
  plan.fds = io.fds;
  plan.report = report[1];
  plan.parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) ExecChild(plan);
  close(report[1]);
  if (pid < 0) {
    close(report[0]);
    return Status::Invalid(std::string("cannot start '") + spec.argv[0] + "': " + strerror(errno));
  }
  int rc = 0;
  ssize_t got;
  while ((got = read(report[0], &rc, sizeof rc)) < 0 && errno == EINTR) {
  }
  close(report[0]);
  if (got == sizeof rc) {
    int st = 0;
    waitpid(pid, &st, 0);
    return Status::Invalid(ExecError(spec.argv[0], rc));
  }
  return pid;
}

}  // namespace

Result<PipedChild> StartPiped(const ProcessSpec& spec) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) return Status::Unavailable(std::string("pipe: ") + strerror(errno));
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return Status::Unavailable(std::string("pipe: ") + strerror(errno));
  }
  if (pipe2(err, O_CLOEXEC) != 0) {
    for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
    return Status::Unavailable(std::string("pipe: ") + strerror(errno));
  }
  const int child_fds[3] = {in[0], out[1], err[1]};
  const Result<pid_t> spawned = Spawn(spec, ChildIo{child_fds});
  for (int fd : child_fds) close(fd);
  if (!spawned.ok()) {
    for (int fd : {in[1], out[0], err[0]}) close(fd);
    return spawned.status();
  }
  const pid_t pid = *spawned;
  PipedChild c;
  c.pid = pid;
  c.pidfd = PidfdOpen(pid);
  c.in = in[1];
  c.out = out[0];
  c.err = err[0];
  return c;
}

void PipedChild::Kill() {
  if (pid > 0) kill(-pid, SIGKILL);
}

int PipedChild::Reap(int timeout_ms) {
  if (pid <= 0) return 0;
  int status = 0;
  if (!WaitFor(pid, pidfd, timeout_ms, &status)) return -1;
  kill(-pid, SIGKILL);  // whatever it left in its group goes too
  for (int* fd : {&in, &out, &err, &pidfd})
    if (*fd >= 0) {
      close(*fd);
      *fd = -1;
    }
  pid = 0;
  return status;
}

PipedChild::~PipedChild() {
  if (pid > 0) {
    Kill();
    Reap(-1);
  }
  for (int fd : {in, out, err, pidfd})
    if (fd >= 0) close(fd);
}

PipedChild::PipedChild(PipedChild&& o) noexcept
    : pid(std::exchange(o.pid, 0)), pidfd(std::exchange(o.pidfd, -1)), in(std::exchange(o.in, -1)),
      out(std::exchange(o.out, -1)), err(std::exchange(o.err, -1)) {}

std::string DescribeWaitStatus(int status) {
  if (WIFSIGNALED(status))
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) +
           ")";
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  return "ended";
}

ProcessResult RunProcess(const ProcessSpec& spec, const CancelToken* cancel,
                         const std::function<void(pid_t)>& on_start) {
  ProcessResult r;
  const Result<pid_t> spawned = Spawn(spec, ChildIo{});
  if (!spawned.ok()) {
    r.error = spawned.error();
    return r;
  }
  const pid_t pid = *spawned;
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

WholeLastLine ReadLastLine(const std::filesystem::path& file, size_t limit) {
  WholeLastLine out;
  std::ifstream in(file, std::ios::binary);
  if (!in) return out;
  in.seekg(0, std::ios::end);
  std::streamoff pos = in.tellg();
  if (pos <= 0) return out;
  constexpr std::streamoff kChunk = 64 * 1024;
  const auto blank = [](char c) { return c == '\n' || c == '\r' || c == ' '; };
  std::string tail;           // the file from `pos` to the end of the last line
  bool end_found = false;     // trailing blanks dropped and a byte of the line seen
  std::streamoff line_end = 0;
  while (pos > 0) {
    const std::streamoff n = std::min(kChunk, pos);
    pos -= n;
    std::string chunk(static_cast<size_t>(n), '\0');
    in.seekg(pos);
    in.read(chunk.data(), n);
    if (!end_found) {
      tail.insert(0, chunk);
      while (!tail.empty() && blank(tail.back())) tail.pop_back();
      if (tail.empty()) continue;
      end_found = true;
      line_end = pos + static_cast<std::streamoff>(tail.size());
    } else if (!out.too_long) {
      tail.insert(0, chunk);
    }
    const size_t nl = out.too_long ? chunk.find_last_of('\n') : tail.find_last_of('\n');
    if (nl != std::string::npos) {
      if (!out.too_long) {
        tail.erase(0, nl + 1);
        if (tail.size() <= limit) {
          out.size = tail.size();
          out.line = std::move(tail);
          return out;
        }
        out.too_long = true;
        out.size = tail.size();
        out.line = tail.substr(0, 300);
        return out;
      }
      const std::streamoff start = pos + static_cast<std::streamoff>(nl) + 1;
      out.size = static_cast<size_t>(line_end - start);
      out.line.assign(std::min<size_t>(300, out.size), '\0');
      in.clear();
      in.seekg(start);
      in.read(out.line.data(), static_cast<std::streamsize>(out.line.size()));
      return out;
    }
    if (!out.too_long && tail.size() > limit) {
      out.too_long = true;  // from here only the line's start is looked for
      tail.clear();
    }
  }
  // The line starts the file.
  if (!out.too_long) {
    out.size = tail.size();
    out.line = std::move(tail);
    return out;
  }
  out.size = static_cast<size_t>(line_end);
  out.line.assign(std::min<size_t>(300, out.size), '\0');
  in.clear();
  in.seekg(0);
  in.read(out.line.data(), static_cast<std::streamsize>(out.line.size()));
  return out;
}

}  // namespace baton
