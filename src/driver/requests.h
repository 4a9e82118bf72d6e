// Requests: what other threads (the dashboard, `baton cancel`, a signal handler) ask of a
// backend's loop, queued until the driver thread applies them. Every backend's loop is
//
//   requests.Apply(driver, transport, now, ...)   // cancels, retries, a stop
//   for (outcome arriving) driver.Finish(...)
//   driver.Turn(transport, now, {...})
//
// so cancel, retry and stop behave the same in the embedded runtime and the cluster head (and
// any state a later round adds, such as parked attempts, is woken in one place).
//
// Thread-safety: Cancel, Retry, Stop and stop_requested may be called from any thread; Apply on
// the driver thread only.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "baton/thread_annotations.h"
#include "driver/driver.h"
#include "driver/transport.h"

namespace baton::driver {

class Requests {
 public:
  void Cancel(std::string job_id) EXCLUDES(mu_);
  void Retry(std::string job_id) EXCLUDES(mu_);
  // Stops the whole run: every live job is cancelled with `why` (its in-flight attempt stopped).
  void Stop() { stop_.store(true, std::memory_order_release); }
  bool stop_requested() const { return stop_.load(std::memory_order_acquire); }

  struct Applied {
    bool stopped_now = false;  // the stop was applied in this call (a backend may say so)
  };
  // Applies what is queued: cancels (their attempts stopped through `transport`, given `grace`
  // to stop), retries (none once stopped), and the stop, once, cancelling every live job with
  // `stop_why`. Unknown job ids are skipped.
  Applied Apply(Driver& driver, Transport& transport, double now, double grace, const std::string& stop_why)
      EXCLUDES(mu_);
  bool stopped() const { return stopped_; }

 private:
  Mutex mu_;
  std::vector<std::string> cancel_ GUARDED_BY(mu_), retry_ GUARDED_BY(mu_);
  std::vector<std::string> cancel_now_, retry_now_;  // the driver thread's copies
  std::atomic<bool> stop_{false};
  bool stopped_ = false;  // driver thread
};

}  // namespace baton::driver
