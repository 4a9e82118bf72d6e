// WorkCleaner: removes a job's node work folders (OUT/nodes/<node>/<job>/) once the job
// succeeded, so that OUT/<job>/ holds the only copy of what the job delivered. The command
// steps' output (`logs/<step>.<attempt>.stdout|stderr`) is a record, not an intermediate: it is
// moved (renamed, not copied) to OUT/<job>/logs/ first. Failed and cancelled jobs keep their
// work folders, for debugging; RunOptions::keep_work (`--keep-work`) keeps all.
//
// An EventSink: OnEvent only queues (it runs on the driver thread); a background thread removes.
// On kRunFinished it waits until the queue is empty, so a run's folders are gone when Run
// returns. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "baton/runtime.h"

namespace baton {

class WorkCleaner : public EventSink {
 public:
  WorkCleaner(std::vector<std::filesystem::path> node_workdirs, std::filesystem::path out);
  ~WorkCleaner() override;
  void OnEvent(const Event& event) override;

 private:
  void Loop();

  const std::vector<std::filesystem::path> dirs_;
  const std::filesystem::path out_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> jobs_;  // guarded by mu_
  bool busy_ = false;             // guarded by mu_: the thread is removing one job's folders
  bool quit_ = false;             // guarded by mu_
  std::thread thread_;
};

}  // namespace baton
