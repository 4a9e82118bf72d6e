#include "runtime/work_cleaner.h"

namespace baton {

WorkCleaner::WorkCleaner(std::vector<std::filesystem::path> node_workdirs, std::filesystem::path out)
    : dirs_(std::move(node_workdirs)), out_(std::move(out)), thread_([this] { Loop(); }) {}

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
      namespace fs = std::filesystem;
      std::error_code ec;
      const fs::path work = d / job;
      if (!fs::exists(work, ec)) continue;  // the job never ran there
      if (fs::is_directory(work / "logs", ec)) {
        fs::create_directories(out_ / job / "logs", ec);
        for (fs::directory_iterator it(work / "logs", ec), end; !ec && it != end; it.increment(ec)) {
          std::error_code moved;
          fs::rename(it->path(), out_ / job / "logs" / it->path().filename(), moved);
          if (moved) fs::copy_file(it->path(), out_ / job / "logs" / it->path().filename(),
                                   fs::copy_options::overwrite_existing, moved);  // another file system
        }
      }
      fs::remove_all(work, ec);
    }
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace baton
