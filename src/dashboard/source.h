// DashboardSource: what the dashboard needs from whatever runs jobs. The embedded runtime
// (RuntimeSource, runtime_source.h) implements it today; the Redis cluster head implements the same
// methods with the same JSON shapes, so `baton run --dashboard` and `baton head` serve one UI.
//
// JSON shapes (those of baton::Runtime::Snapshot/JobDetail, include/baton/runtime.h):
//   Snapshot():  {"pipeline", "time", "jobs": [Job], "nodes": [Node]}
//     Job:  {"id", "input", "state" (ready|backoff|running|succeeded|failed|cancelled), "step",
//            "attempts": N, "error"?, "steps": [{"name", "state" (done|pending|ready|backoff|running|
//            failed|cancelled), "wait"?, "node"?, "attempt"?}]}
//     Node: {"name", "alive", "total": {res: n}, "used": {res: n}, "labels": {k: v},
//            "gpus": [{"id", "busy"}]}
//   JobDetail(id): Job plus "attempts": [{"step","attempt","node","status","start","end"?,"gpus",
//            "error"?}] and "results"; null JSON when unknown.
//   Events (Subscribe): {"type" (baton::EventTypeName), "time" (seconds since the run/head
//            started), "job"?, "step"?, "node"?, "attempt"?, "gpus"?, "status"?, "message"?,
//            "pid"?, "data"?} — EventToJson() below makes one from a baton::Event.
//
// Thread-safety: every method may be called from any thread, concurrently. The subscriber
// function may be called on any thread, possibly while the source holds its own locks: it must
// not call back into the source (the dashboard only queues the event).
#pragma once

#include <filesystem>
#include <functional>
#include <mutex>
#include <vector>
#include <string>

#include "baton/runtime.h"

namespace baton::dashboard {

class DashboardSource {
 public:
  virtual ~DashboardSource() = default;

  virtual Json Snapshot() const = 0;
  virtual Json JobDetail(const std::string& job_id) const = 0;
  // false when the job is unknown or the action does not apply (already ended, not failed).
  virtual bool Cancel(const std::string& job_id) = 0;
  virtual bool Retry(const std::string& job_id) = 0;
  // Registers a function called with every event, in order per job. Call before the source
  // starts producing events (for the runtime: before Run) to see them all.
  virtual void Subscribe(std::function<void(const Json& event)> sink) = 0;

  // Where files live on this machine, "" when they are not here (a remote node's folder):
  // the job's output folder (report.html / report.md), and the job's work folder on a node
  // (command steps write logs/<step>.<attempt>.stdout|stderr there).
  virtual std::filesystem::path ReportDir(const std::string& job_id) const = 0;
  virtual std::filesystem::path JobWorkdir(const std::string& job_id, const std::string& node) const = 0;

  // For large runs, the shapes of baton::Runtime::Overview() and JobsPage() (counts by state and
  // by step, nodes; one page of jobs). The defaults derive them from Snapshot(), a JSON object
  // per job; a source that can count without one (the runtime) overrides them.
  virtual Json Overview() const;
  virtual Json JobsPage(const JobsQuery& query) const;
};

// The common JSON form of an event (empty fields left out).
Json EventToJson(const Event& event);

// An EventSink that hands each event, as JSON, to every subscriber: what a DashboardSource
// registers with the runtime or the cluster head. Thread-safe.
class EventFanout : public EventSink {
 public:
  void Add(std::function<void(const Json&)> f);
  void OnEvent(const Event& event) override;

 private:
  std::mutex mu_;
  std::vector<std::function<void(const Json&)>> subscribers_;
};

}  // namespace baton::dashboard
