#include "runtime/work_cleaner.h"

namespace baton {

WorkCleaner::WorkCleaner(std::vector<std::filesystem::path> node_workdirs)
    : dirs_(std::move(node_workdirs)), thread_([this] { Loop(); }) {}

WorkCleaner::~WorkCleaner() {
  {
    std::lock_guard lock(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void WorkCleaner::OnEvent(const Event& event) {
  if (event.type == Event::Type::kJobSucceeded && !event.job.empty()) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(event.job);
    }
    cv_.notify_all();
  } else if (event.type == Event::Type::kRunFinished) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return jobs_.empty() && !busy_; });
  }
}

void WorkCleaner::Loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return quit_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // quit_, and nothing left
    const std::string job = std::move(jobs_.front());
    jobs_.pop_front();
    busy_ = true;
    lock.unlock();
    for (const auto& d : dirs_) {
      std::error_code ec;
      std::filesystem::remove_all(d / job, ec);  // absent (the job never ran there): nothing to do
    }
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace baton
