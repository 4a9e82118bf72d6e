// EventHub: what the dashboard derives from a source's event stream, in bounded memory:
//   - the live stream for Server-Sent Events clients (one bounded queue per client; a client
//     that falls too far behind is dropped and reconnects, getting a fresh snapshot);
//   - the last log lines of each job (kLog events), and its latest progress data;
//   - the attempt bars of the Gantt timeline (the most recent `timeline_attempts`);
//   - a time series (one point per Sample(): jobs ended, attempts running, GPUs busy) for charts;
//   - attempt counts by step and status and a step duration histogram, for /metrics.
// It never calls the source: OnEvent may run while the source holds its own locks.
// Thread-safe: every method may be called from any thread.
#pragma once

#include <array>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "baton/step.h"  // Json
#include "baton/thread_annotations.h"

namespace baton::dashboard {

struct HubLimits {
  size_t log_lines_per_job = 200;
  size_t log_jobs = 2000;            // jobs whose log tail is kept (oldest dropped first)
  size_t timeline_attempts = 20000;  // attempt bars kept (oldest dropped first)
  size_t client_queue = 20000;       // messages queued per SSE client before it is dropped
  size_t series_points = 3600;
};

// Upper bounds (seconds) of the step duration histogram's buckets; +Inf is implied.
inline constexpr std::array<double, 14> kDurationBuckets = {0.1, 0.5, 1,   2,   5,    10,   30,
                                                            60,  120, 300, 600, 1800, 3600, 7200};

struct StepDurations {
  std::array<uint64_t, kDurationBuckets.size()> buckets{};  // non-cumulative counts
  uint64_t count = 0;
  double sum = 0;
};

struct HubMetrics {
  std::map<std::pair<std::string, std::string>, uint64_t> attempts;  // (step, status) -> count
  std::map<std::string, StepDurations> durations;                     // step -> histogram
  size_t clients = 0;
  uint64_t events = 0;
};

class EventHub {
 public:
  // One SSE connection's queue of serialized messages.
  class Client {
   public:
    // Waits up to `timeout_ms` for messages; appends them to `out`. False once the client is
    // closed (hub closed, or dropped for falling behind) and nothing is left.
    bool Wait(std::vector<std::string>* out, int timeout_ms);

   private:
    friend class EventHub;
    Mutex mu_;  // after the hub's mu_ when both are held (ACQUIRED_AFTER cannot name it here)
    CondVar cv_;
    std::deque<std::string> queue_ GUARDED_BY(mu_);
    bool closed_ GUARDED_BY(mu_) = false;
  };

  explicit EventHub(HubLimits limits = {});

  void OnEvent(const Json& event);
  // REQUIRES: called before the returned client's first Wait. The caller sends its own snapshot
  // first; events queued meanwhile may repeat what the snapshot shows (clients apply idempotently).
  std::shared_ptr<Client> Connect();
  void Disconnect(const std::shared_ptr<Client>& client);
  void Close();  // ends every client's stream; later Connects get closed clients

  Json LogTail(const std::string& job) const;   // [{"time","step","attempt","level","message"}]
  Json Progress(const std::string& job) const;  // latest progress data or null
  Json Timeline() const;  // [{"job","step","node","attempt","gpus","start","end"?,"status"}]
  Json Timeline(size_t last) const;  // the same, only the `last` most recent bars
  uint64_t EventCount() const;       // events seen so far (changes whenever anything happened)
  Json Series() const;    // [{"t","succeeded","failed","cancelled","running","gpu_busy","gpu_total"}]
  HubMetrics Metrics() const;

  // Appends a time-series point at the source's current time and sends it to clients as
  // {"type":"sample",...}. `gpu_total` comes from the nodes (the caller's snapshot). Returns
  // false (and records nothing) once the run finished and its last point is recorded.
  bool Sample(double gpu_total);
  // True after a node joined or left since the last call (the caller refreshes gpu_total).
  bool TakeNodesChanged();

 private:
  struct Bar {
    std::string job, step, node, status;
    int attempt = 0;
    std::vector<int> gpus;
    double start = 0, end = -1;
  };
  struct Running {
    uint64_t bar;  // serial of its Bar
    size_t gpus;
  };
  struct LogLine {
    double time;
    std::string step, level, message;
    int attempt;
  };
  void Broadcast(const std::string& message) REQUIRES(mu_);
  void SampleLocked() REQUIRES(mu_);
  double NowLocked() const REQUIRES(mu_);
  Json BarJson(const Bar& b) const;

  const HubLimits limits_;
  mutable Mutex mu_;
  // Everything below is guarded by mu_.
  std::vector<std::shared_ptr<Client>> clients_ GUARDED_BY(mu_);
  bool closed_ GUARDED_BY(mu_) = false;
  uint64_t events_ GUARDED_BY(mu_) = 0;
  std::unordered_map<std::string, std::deque<LogLine>> logs_ GUARDED_BY(mu_);
  std::deque<std::string> log_order_ GUARDED_BY(mu_);
  std::unordered_map<std::string, Json> progress_ GUARDED_BY(mu_);
  std::deque<Bar> bars_ GUARDED_BY(mu_);
  uint64_t first_bar_ GUARDED_BY(mu_) = 0;  // serial of bars_.front()
  std::unordered_map<std::string, Running> running_ GUARDED_BY(mu_);  // job -> its running attempt
  size_t gpus_busy_ GUARDED_BY(mu_) = 0;
  std::unordered_map<std::string, char> ended_ GUARDED_BY(mu_);  // job -> 's', 'f' or 'c'
  size_t succeeded_ GUARDED_BY(mu_) = 0;
  size_t failed_ GUARDED_BY(mu_) = 0;
  size_t cancelled_ GUARDED_BY(mu_) = 0;
  std::deque<Json> series_ GUARDED_BY(mu_);
  bool finished_ GUARDED_BY(mu_) = false;
  bool final_sampled_ GUARDED_BY(mu_) = false;
  bool nodes_changed_ GUARDED_BY(mu_) = false;
  bool have_clock_ GUARDED_BY(mu_) = false;
  double clock_offset_ GUARDED_BY(mu_) = 0;  // steady seconds minus source time, from the latest event
  double last_time_ GUARDED_BY(mu_) = 0;
  double gpu_total_ GUARDED_BY(mu_) = 0;  // from the latest Sample()
  HubMetrics metrics_ GUARDED_BY(mu_);
};

}  // namespace baton::dashboard
