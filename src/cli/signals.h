// StopSignals: how the long-running `baton` commands (run, head, node, submit --wait) end on
// SIGINT and SIGTERM, as shells and supervisors expect (docs/cli.md, "Signals and exit status"):
//   - the first SIGINT or SIGTERM calls `on_stop(signal)` on a watcher thread, never inside the
//     signal handler, so it may lock, log and notify systemd; the command then stops cleanly;
//   - a second one ends the process at once, killed by that signal (the shell sees 128+N);
//   - ExitBy(signal) ends a command that was stopped by a signal the same way after its clean
//     stop: shells see 130/143 and stop their loops (the "wait and cooperative exit"
//     convention), systemd records a clean stop of a service it sent SIGTERM.
//
// One StopSignals at a time per process (signal dispositions are process-wide). Construct it
// on the command's thread before the work starts; destroying it restores the default actions.
#pragma once

#include <functional>

namespace baton::cli {

class StopSignals {
 public:
  explicit StopSignals(std::function<void(int signal)> on_stop);
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The first SIGINT/SIGTERM received, 0 while none was.
  int received() const;
  // Blocks until the first signal has been handled (on_stop returned); returns it.
  int Wait();

 private:
  struct Impl;
  Impl* impl_;
};

// Flushes stdio and ends the process killed by `signal` (default action). Does not return.
[[noreturn]] void ExitBy(int signal);

}  // namespace baton::cli
