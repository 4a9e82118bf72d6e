// Terminal and log output built from events: the seed-shaped log lines
//   (analyze pid=4242) [2026-11-25 10:00:01] [job-0] analyze running on node head, GPUs: [0]
// or one JSON object per line (--log-format json), and on a terminal a live progress line kept
// at the bottom (jobs done/failed/running per step, ETA). Thread-safe: log events arrive from
// worker threads.
#pragma once

#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "baton/events.h"
#include "baton/report.h"
#include "baton/status.h"

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

// The Chrome trace of a run written as its attempts end: the events of WriteChromeTrace (process
// and lane names, one "X" event per attempt) appended to the file, so a traced run holds per node
// its lanes' ends, not every attempt. Lanes are coloured greedily in the order attempts end. The
// file is one valid JSON document once Close() has run: at the end of a run, also one stopped by
// SIGINT/SIGTERM (the run ends through RequestStop). The attempts one resident worker served in one
// batch (AttemptReport::batch) are one event, drawn when that worker's next batch shows up or at
// Close: a traced run holds at most one open batch per worker. One thread (the driver's) calls it.
class TraceWriter {
 public:
  TraceWriter() = default;
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;
  ~TraceWriter();  // Close()
  // Truncates `file` and writes the nodes' names (pid 1, 2, ... in this order).
  Status Open(const std::filesystem::path& file, const std::vector<std::string>& node_names);
  bool is_open() const { return f_ != nullptr; }
  void Add(const std::string& job, const AttemptReport& a);
  // Ends the JSON document and closes the file; the first write error, if any.
  Status Close();

 private:
  struct Node {
    int pid = 0;
    std::vector<double> lane_end;  // CPU lanes: end of the last attempt drawn on each
    std::vector<int> named;        // tids already named
  };
  // A worker batch still being drawn: its attempts so far.
  struct Batch {
    std::string node, step, batch;
    double start = 0, end = 0;
    std::vector<int> gpus;
    Json jobs = Json::array(), attempts = Json::array(), statuses = Json::array();
  };
  void Append(const Json& event);
  void WriteOut();
  // One bar on `node`'s lanes from start to end (a GPU lane when `gpus` is not empty).
  void Bar(const std::string& node, double start, double end, const std::vector<int>& gpus, std::string name,
           const std::string& step, Json args);
  void DrawBatch(const Batch& b);
  std::map<std::string, Batch> open_batches_;  // by node, step and worker ("w3" of "w3.b17")
  std::FILE* f_ = nullptr;
  std::filesystem::path file_;
  std::map<std::string, Node> nodes_;
  std::string buf_;
  bool first_ = true;
  Status error_;
};

// WriteChromeTrace (the trace file) and ParseLogFormat (--log-format) are public: baton/report.h
// and baton/events.h; they are implemented in output.cc.

}  // namespace baton
