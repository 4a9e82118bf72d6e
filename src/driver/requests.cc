#include "driver/requests.h"

namespace baton::driver {

void Requests::Cancel(std::string job_id) {
  MutexLock lock(&mu_);
  cancel_.push_back(std::move(job_id));
}

void Requests::Retry(std::string job_id) {
  MutexLock lock(&mu_);
  retry_.push_back(std::move(job_id));
}

Requests::Applied Requests::Apply(Driver& d, Transport& t, double now, double grace, const std::string& stop_why) {
  {
    MutexLock lock(&mu_);
    cancel_now_.swap(cancel_);
    retry_now_.swap(retry_);
  }
  for (const auto& id : cancel_now_)
    if (const int j = d.JobIndex(id); j >= 0) t.StopAll(d.Cancel(static_cast<uint32_t>(j), "cancelled", now, grace));
  cancel_now_.clear();
  for (const auto& id : retry_now_)
    if (const int j = d.JobIndex(id); j >= 0 && !stopped_) d.Retry(static_cast<uint32_t>(j), now);
  retry_now_.clear();
  Applied out;
  if (stop_requested() && !stopped_) {
    stopped_ = true;
    out.stopped_now = true;
    for (uint32_t j = 0; j < d.job_count(); ++j) t.StopAll(d.Cancel(j, stop_why, now, grace));
  }
  return out;
}

}  // namespace baton::driver
