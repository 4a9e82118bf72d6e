// Transport: what carries the driver's decisions to where attempts run. The one thing besides a
// store (JobStore, driver.h) in which backends differ:
//
//   backend                      Start(placement)                     Stop(attempt)
//   embedded runtime             a task on the WorkerPool             its CancelToken
//   cluster head                 a PlaceAttempt on the node's stream  a StopAttempt on it
//   tests (FakeTransport below)  recorded                             recorded
//
// Outcomes come back the backend's own way (a completion queue; the head's inbox, which also
// carries requests and heartbeats) and go to Driver::Finish / Driver::AttemptWaiting; every
// backend's loop then runs Driver::Turn (driver.h), which calls the transport.
//
// Called on the driver thread only.
#pragma once

#include <string>
#include <vector>

#include "core/scheduler.h"

namespace baton::driver {

// A placement's worker as executors see it (StepContext::worker, the protocol): -1 for none.
inline int ExecutorWorkerId(uint32_t worker) { return worker == core::kNoWorker ? -1 : static_cast<int>(worker); }

class Transport {
 public:
  virtual ~Transport() = default;
  // Carries a placement the driver recorded as the job's in-flight attempt to its executor.
  virtual void Start(const core::Placement& placement, double now) = 0;
  // Asks a running attempt to stop (timeout, cancel, drain). Its outcome still comes back.
  virtual void Stop(const core::AttemptRef& attempt) = 0;
  // The core retired resident worker `worker` (idle, or its node drains): its process should
  // exit (a `shutdown`), its grant is already free. Backends whose nodes retire their own idle
  // workers on the same timer (the cluster's agents) may ignore it.
  virtual void StopWorker(const core::WorkerRef& worker) { (void)worker; }
  // Asks step `step` of pipeline `pipeline` whether park id `id` is done (Step::CheckPark), off the
  // driver thread; the answer goes to Driver::ParkChecked. False when this backend cannot (the
  // driver then fails the attempts parked on it).
  virtual bool CheckPark(uint32_t pipeline, uint16_t step, const std::string& id) {
    (void)pipeline;
    (void)step;
    (void)id;
    return false;
  }
  // Every attempt of `attempts` (what Driver::Cancel returns).
  void StopAll(const std::vector<core::AttemptRef>& attempts) {
    for (const auto& a : attempts) Stop(a);
  }
};

// A transport that only records: driver tests run the whole lifecycle through Driver::Turn with
// it and a FakeClock, completing attempts by hand (no threads, no sleeps).
class FakeTransport : public Transport {
 public:
  void Start(const core::Placement& p, double) override { started.push_back(p); }
  void Stop(const core::AttemptRef& a) override { stopped.push_back(a); }
  void StopWorker(const core::WorkerRef& w) override { workers_stopped.push_back(w); }
  bool CheckPark(uint32_t pipeline, uint16_t step, const std::string& id) override {
    checks.push_back({pipeline, step, id});
    return true;
  }
  struct Check {
    uint32_t pipeline;
    uint16_t step;
    std::string id;
  };
  std::vector<Check> checks;
  std::vector<core::Placement> started;
  std::vector<core::AttemptRef> stopped;
  std::vector<core::WorkerRef> workers_stopped;
};

}  // namespace baton::driver
