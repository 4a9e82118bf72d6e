// Runs a child process from an argv (never a shell string), in its own process group, with its
// stdout and stderr sent to files, extra environment variables, and a cancellation token: on
// cancel the whole group gets SIGTERM, then SIGKILL after a grace period, so a step's
// grandchildren die with it. The child also dies with the thread that started it (the parent-death
// signal: a killed agent or runtime leaves no orphaned step), inherits no descriptor but 0, 1 and
// 2, and does not see the parent's secrets (IsSecretName) unless the step passes them by name.
// Thread-safe: each call is independent.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string_view>
#include <string>
#include <vector>

#include "baton/status.h"
#include "baton/step.h"
#include "util/secrets.h"

namespace baton {

struct ProcessSpec {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  // added to (or replacing in) the parent's environment
  std::set<std::string> pass_env;          // secret-looking variables of the parent passed anyway
  std::filesystem::path cwd;               // "" = inherit
  std::filesystem::path stdout_path;       // "" = /dev/null
  std::filesystem::path stderr_path;       // "" = /dev/null
  double grace_seconds = 2.0;              // between SIGTERM and SIGKILL on cancel
};

struct ProcessResult {
  bool started = false;
  std::string error;   // why it did not start ("command 'x' not found")
  int exit_code = -1;  // when it exited
  int signal = 0;      // when a signal ended it
  bool cancelled = false;
  pid_t pid = 0;
  bool ok() const { return started && !cancelled && signal == 0 && exit_code == 0; }
  std::string Describe() const;  // "exit status 3", "killed by signal 9", ...
};

// Blocks until the child ends (or is killed after cancel). `on_start` runs with the child's pid.
ProcessResult RunProcess(const ProcessSpec& spec, const CancelToken* cancel = nullptr,
                         const std::function<void(pid_t)>& on_start = {});

// A child started with pipes to its stdin, stdout and stderr (a resident worker, steps/worker),
// set up exactly as RunProcess's: own process group, parent-death signal (the child dies when the
// thread that started it ends: start it from a thread that lives as long as the child), no
// inherited descriptors, no secrets unless named. `spec`'s stdout/stderr paths are ignored.
// Destroying it kills the group and reaps the child. Move-only.
struct PipedChild {
  pid_t pid = 0;
  int pidfd = -1;  // readable when the child ended (-1 where pidfd_open is missing)
  int in = -1;     // write end of the child's stdin
  int out = -1;    // read end of its stdout
  int err = -1;    // read end of its stderr
  PipedChild() = default;
  PipedChild(PipedChild&& o) noexcept;
  PipedChild& operator=(PipedChild&&) = delete;
  PipedChild(const PipedChild&) = delete;
  ~PipedChild();
  void Kill();                  // SIGKILL to its whole group
  // Waits up to `timeout_ms` (-1: forever) for it to end; then kills what is left of its group,
  // closes the pipes and returns the wait status. -1 when it is still running.
  int Reap(int timeout_ms);
};
Result<PipedChild> StartPiped(const ProcessSpec& spec);
// "exit status 3", "killed by signal 9 (Killed)" from a wait status.
std::string DescribeWaitStatus(int status);

// Secrets (util/secrets.h: IsSecretName, IsSecretValue, registered names such as an llm step's
// api_key_env) are not handed to children unless `pass_env` names them.

// Last non-empty line of a text file (at most the file's last 4 KiB), shortened to 300 characters
// and "...": for error messages only, never for data.
std::string LastLine(const std::filesystem::path& file);

// The last non-empty line of a file, whole (trailing newlines, carriage returns and spaces
// dropped), when it is at most `limit` bytes: what a program meant as data (a command step's JSON
// output). A longer line sets `too_long`, with `line` holding its first 300 bytes and `size` its
// length; reading never holds more than `limit` + 64 KiB of the file in memory.
struct WholeLastLine {
  std::string line;
  bool too_long = false;
  size_t size = 0;
};
WholeLastLine ReadLastLine(const std::filesystem::path& file, size_t limit);

}  // namespace baton
