// WorkCleaner: removes a job's node work folders (`<node workdir>/<job>/`) off the caller's
// thread, so that the job's output folder (`out/<job>/`) holds the only copy of what it
// delivered. The command steps' output (`logs/<step>.<attempt>.stdout|stderr`) is a record, not
// an intermediate: it is moved (renamed, not copied) to `out/<job>/logs/` first.
//
// Used by both backends:
//  - the embedded runtime adds it as an EventSink: a job that succeeded (kJobSucceeded) has its
//    folders under OUT/nodes/ removed; on kRunFinished OnEvent waits until the queue is empty, so
//    a run's folders are gone when Run returns. Failed and cancelled jobs keep theirs, for
//    debugging; RunOptions::keep_work (`--keep-work`) does not add the cleaner at all;
//  - a cluster node agent calls Remove(job) when the head says the job ended (protocol.h
//    RemoveWork), with `busy(job)` telling whether an attempt of that job still runs on the
//    agent: such a folder waits (checked again every 0.2 s), and Keep(job), called before a new
//    attempt of the job starts there, takes it off the queue (or waits for a removal under way).
//
// OnEvent and Remove only queue; one background thread removes. The destructor finishes what is
// queued, except folders still waiting for a running attempt. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "baton/events.h"

namespace baton {

class WorkCleaner : public EventSink {
 public:
  using BusyFn = std::function<bool(const std::string& job)>;
  WorkCleaner(std::vector<std::filesystem::path> node_workdirs, std::filesystem::path out, BusyFn busy = {});
  ~WorkCleaner() override;
  void OnEvent(const Event& event) override;

  // Queues the removal of `job`'s work folders.
  void Remove(const std::string& job);
  // A new attempt of `job` is about to start here: its removal is dropped from the queue, and a
  // removal already under way is waited for (so the attempt finds a fresh folder, not half of one).
  void Keep(const std::string& job);
  // Waits until nothing is queued, deferred or being removed.
  void Drain();

 private:
  void Loop();
  void RemoveNow(const std::string& job) const;

  const std::vector<std::filesystem::path> dirs_;
  const std::filesystem::path out_;
  const BusyFn busy_fn_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> jobs_;      // guarded by mu_
  std::vector<std::string> waiting_;  // guarded by mu_: busy when last looked at; looked at again soon
  std::string current_;               // guarded by mu_: the job whose folders are being removed ("" none)
  bool quit_ = false;                 // guarded by mu_
  std::thread thread_;
};

}  // namespace baton
