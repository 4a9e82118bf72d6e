// Resident: one worker process of a `uses: worker` step and the thread that owns it. The thread
// starts the process (argv like `command`'s, in its own process group, dying with this thread),
// waits for {"type": "ready"}, then forms batches of the attempts handed to it (Submit) and
// speaks protocol v1 (docs/steps/worker.md) on the process's stdin/stdout; stderr lines become
// the worker's log lines. Only the owner thread touches the process.
//
// Faults, as the step's users expect of Ray actors and Xenna stages:
//   - one item's {"ok": false} fails (or retries) that item alone;
//   - a worker that dies or breaks the protocol is restarted; the items it held are re-queued
//     (no try counted) the first time and then sent alone, so an item that kills its worker fails
//     alone ("worker died while running this item") and the others go on;
//   - a cancelled item (cancel, timeout) is sent {"type": "cancel"}; a worker that does not answer
//     within cancel_grace is killed (its group) and restarted, the other items re-queued;
//   - a worker idle for idle_timeout, retired by the scheduler, recycled after max_items, or at
//     the end of the run, gets {"type": "shutdown"} and is killed if still there after the grace.
//
// Thread-safety: Submit, Retire, State and Exited may be called from any thread.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "baton/pipeline.h"
#include "baton/step.h"
#include "baton/thread_annotations.h"
#include "util/process.h"

namespace baton::worker {

// One attempt handed to a worker. Lives on the shared heap: Run() waits until `done`.
struct Item {
  std::string id;                  // "JOB:STEP:ATTEMPT", the protocol's item id
  std::string job;
  Json request;                    // the protocol's item object
  const StepContext* ctx = nullptr;  // valid while Run waits, i.e. until done
  double submitted = 0;
  int suspect = 0;                 // times it was in a batch whose worker died
  bool solo = false;               // sent alone (a suspect, or its job killed a worker before)
  std::string batch;               // the last batch it was sent in ("w3.b17": StepOutcome::batch)
  bool cancel_sent = false;
  double cancel_at = 0;
  bool done = false;               // guarded by the resident's mutex
  StepOutcome outcome;
};

struct ResidentConfig {
  int id = 0;                      // the scheduler's worker id
  std::string step;                // step name (log lines, file names)
  ProcessSpec process;             // argv, env (CUDA_VISIBLE_DEVICES included), cwd
  WorkerOptions options;
  std::filesystem::path log_file;  // the worker's stderr, appended ("" none)
  std::vector<int> gpus;           // its grant (CUDA_VISIBLE_DEVICES is in process.env)
  // Told when an item killed its worker while alone in its batch: later attempts of that job are
  // sent alone from the start (WorkerStep keeps the set across restarts).
  std::function<void(const std::string& job)> poisoned;
};

class Resident {
 public:
  explicit Resident(ResidentConfig config);
  ~Resident();  // retires and joins
  Resident(const Resident&) = delete;
  Resident& operator=(const Resident&) = delete;

  // Hands an attempt to the worker and blocks until it is answered (or cancelled). Returns false,
  // without taking it, when this resident has exited (idle, retired): start a new one.
  bool Run(const std::shared_ptr<Item>& item);
  // Asks the worker to finish what it holds and exit; returns at once.
  void Retire();
  bool Exited() const;
  const std::vector<int>& gpus() const { return config_.gpus; }
  Json State() const;

 private:
  enum class Phase { kStarting, kReady, kBusy, kStopped };
  void Loop();
  bool StartProcess();                       // false: items failed, process gone
  bool WaitReady(double deadline);
  void RunBatch(std::vector<std::shared_ptr<Item>> batch);
  void Shutdown(double grace);
  // Kills the process's group and reaps it; `restart` counts a restart (it died or was killed).
  void KillChild(bool restart);
  // Reads what the process wrote for up to `timeout_ms`: handles complete stdout lines, logs
  // stderr lines. False when the process ended (or broke the protocol and was killed).
  bool Pump(int timeout_ms);
  void HandleLine(const std::string& line);
  void ProtocolError(const std::string& why);
  void Died(const std::string& why, const Item* culprit);
  bool Send(const Json& message);
  void Resolve(const std::shared_ptr<Item>& item, StepOutcome outcome);
  void Log(LogLevel level, const std::string& message, const Item* item);
  void DropCancelledPending();
  std::vector<std::shared_ptr<Item>> TakeBatch();
  double Now() const;

  const ResidentConfig config_;
  mutable Mutex mu_;
  CondVar answered_;  // an item became done
  std::deque<std::shared_ptr<Item>> pending_ GUARDED_BY(mu_);
  bool retiring_ GUARDED_BY(mu_) = false;
  bool exited_ GUARDED_BY(mu_) = false;
  Phase phase_ GUARDED_BY(mu_) = Phase::kStarting;
  int pid_ GUARDED_BY(mu_) = 0;
  int64_t items_ GUARDED_BY(mu_) = 0;
  int64_t batches_ GUARDED_BY(mu_) = 0;
  int restarts_ GUARDED_BY(mu_) = 0;
  double load_seconds_ GUARDED_BY(mu_) = 0;
  std::vector<int> batch_sizes_ GUARDED_BY(mu_);  // served batches' sizes (for histograms)
  int wake_ = -1;  // eventfd: Submit and Retire wake the owner

  // Owner thread only.
  std::unique_ptr<PipedChild> child_;
  std::string out_buf_, err_buf_, last_err_;
  std::vector<std::shared_ptr<Item>> in_flight_;
  bool broken_ = false;  // protocol error or death seen
  std::string broken_why_;
  bool ready_seen_ = false;
  int64_t served_since_start_ = 0;
  int64_t batch_id_ = 0;
  FILE* log_ = nullptr;
  std::thread thread_;
};

}  // namespace baton::worker
