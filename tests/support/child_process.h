// ChildProcess: a program started from an argv (no shell) with stdout and stderr appended to a
// log file, killed (SIGKILL) and reaped on destruction; SpawnIn/WaitExit: a program run in a folder
// with its standard error in a file, and how it ended. WaitFor: polls a condition with a
// deadline, so tests wait for "nodes joined" or "job done" without fixed sleeps.
// Used by the cluster tests and the cluster bench. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace baton::testing {

class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, const std::filesystem::path& log);
  ~ChildProcess() { Kill(9); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Sends `signal` and reaps the process.
  // Sends `signal` and reaps the process (waits for it to end).
  void Kill(int signal);
  // Sends `signal` only (a graceful stop: Wait() then reads how it ended).
  void Signal(int signal);
  // Exit status (128 + signal when killed), or -1 when still running after `seconds`.
  int Wait(double seconds);

 private:
  pid_t pid_ = -1;
};

// Starts `argv` (no shell) in folder `cwd` with standard input and output on /dev/null and
// standard error written to `stderr_file`; returns its pid (-1 when it could not start).
pid_t SpawnIn(const std::filesystem::path& cwd, const std::vector<std::string>& argv,
              const std::filesystem::path& stderr_file);
// Waits for `pid`: its exit status, or 128 + the signal that ended it.
int WaitExit(pid_t pid);

template <typename F>
bool WaitFor(F cond, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return cond();
}

}  // namespace baton::testing
