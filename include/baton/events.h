// Events: every state change of a run (a job submitted, an attempt started or finished, a retry,
// a job's end, a node joining or lost, a step's progress or log line), delivered to EventSinks.
// Every backend (the embedded Runtime, the cluster head, `baton simulate`) emits the same events;
// logs, the progress line, the trace, the summary and the dashboard are all built from them.
// LogFormat is how the log sinks write them (the --log-format flag of every command).
#pragma once

#include <string>
#include <vector>

#include "baton/step.h"

namespace baton {

struct Event {
  enum class Type {
    kJobSubmitted,
    kAttemptStarted,
    kAttemptFinished,  // status: ok, failed, timeout, cancelled, lost
    kRetryScheduled,
    kJobSucceeded,
    kJobFailed,
    kJobCancelled,
    kNodeJoined,
    kNodeLost,
    kProgress,         // data from the step (bytes, rate, ...)
    kLog,              // message from the step
    kRunFinished,
  };
  explicit Event(Type t = Type::kLog) : type(t) {}
  Type type;
  double time = 0;     // seconds since the run started
  std::string job, step, node;
  int attempt = 0;
  std::vector<int> gpus;
  std::string status;  // attempt status or log level
  std::string message; // error or log text
  int pid = 0;
  Json data;
};
const char* EventTypeName(Event::Type t);

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Called on the driver thread (kLog and kProgress: on the attempt's worker thread). Keep it short.
  virtual void OnEvent(const Event& event) = 0;
};

// How log events are written: the seed-shaped text lines, one JSON object per line, or nothing.
enum class LogFormat { kText, kJson, kNone };
// "text", "json" or "none" (the --log-format flag of every command); anything else is kText.
LogFormat ParseLogFormat(const std::string& name);

}  // namespace baton
