// Terminal and log output built from events: the seed-shaped log lines
//   (analyze pid=4242) [2026-11-25 10:00:01] [job-0] analyze running on node head, GPUs: [0]
// or one JSON object per line (--log-format json), and on a terminal a live progress line kept
// at the bottom (jobs done/failed/running per step, ETA). Thread-safe: log events arrive from
// worker threads.
#pragma once

#include <cstdio>
#include <mutex>
#include <string>

#include "baton/events.h"
#include "baton/report.h"

namespace baton {

class LogSink : public EventSink {
 public:
  LogSink(FILE* stream, LogFormat format, bool progress_line);
  void OnEvent(const Event& e) override;
  // Replaces the progress line (terminal only). Empty: clears it.
  void SetProgress(const std::string& line);
  // A plain line (warnings, the final summary), printed above the progress line.
  void Line(const std::string& text);

 private:
  void WriteLocked(const std::string& text);
  FILE* stream_;
  LogFormat format_;
  bool progress_line_;
  std::mutex mu_;
  std::string progress_;
  int pid_;
};

// "2026-11-25 10:00:01" in local time, for wall-clock seconds `unix_seconds`.
std::string FormatLocalTime(double unix_seconds);

// WriteChromeTrace (the trace file) and ParseLogFormat (--log-format) are public: baton/report.h
// and baton/events.h; they are implemented in output.cc.

}  // namespace baton
