#include "driver/work_cleaner.h"

#include <algorithm>
#include <chrono>

namespace baton {

WorkCleaner::WorkCleaner(std::vector<std::filesystem::path> node_workdirs, std::filesystem::path out, BusyFn busy)
    : dirs_(std::move(node_workdirs)), out_(std::move(out)), busy_fn_(std::move(busy)), thread_([this] { Loop(); }) {}

WorkCleaner::~WorkCleaner() {
  {
    std::lock_guard lock(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void WorkCleaner::OnEvent(const Event& event) {
  if (event.type == Event::Type::kJobSucceeded && !event.job.empty()) Remove(event.job);
  else if (event.type == Event::Type::kRunFinished) Drain();
}

void WorkCleaner::Remove(const std::string& job) {
  if (job.empty()) return;
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(job);
  }
  cv_.notify_all();
}

void WorkCleaner::Keep(const std::string& job) {
  std::unique_lock lock(mu_);
  // First past a look at it under way (which may defer it again), then off both queues.
  cv_.wait(lock, [&] { return current_ != job; });
  jobs_.erase(std::remove(jobs_.begin(), jobs_.end(), job), jobs_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), job), waiting_.end());
}

void WorkCleaner::Drain() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return jobs_.empty() && waiting_.empty() && current_.empty(); });
}

void WorkCleaner::Loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (jobs_.empty() && !quit_) {
      if (waiting_.empty()) cv_.wait(lock);
      else cv_.wait_for(lock, std::chrono::milliseconds(200));
      // Deferred jobs are looked at again after a pause (or when more work arrives).
      for (auto& w : waiting_) jobs_.push_back(std::move(w));
      waiting_.clear();
    }
    if (jobs_.empty()) {
      if (quit_) return;  // what waits for a running attempt stays on disk
      continue;
    }
    std::string job = std::move(jobs_.front());
    jobs_.pop_front();
    current_ = job;
    lock.unlock();
    // Checked with `current_` set: Keep(job) for an attempt about to start waits for this.
    const bool busy = busy_fn_ && busy_fn_(job);
    if (!busy) RemoveNow(job);
    lock.lock();
    current_.clear();
    if (busy && std::find(waiting_.begin(), waiting_.end(), job) == waiting_.end()) waiting_.push_back(std::move(job));
    cv_.notify_all();
  }
}

void WorkCleaner::RemoveNow(const std::string& job) const {
  namespace fs = std::filesystem;
  // One folder name, never a path: an id like ".." or "a/b" names no job folder.
  if (job.empty() || job == "." || job == ".." || job.find('/') != std::string::npos) return;
  for (const auto& d : dirs_) {
    std::error_code ec;
    const fs::path work = d / job;
    // The output folder may live in the work folder (a node agent's WORKDIR/out): never removed.
    const fs::path out = out_.lexically_normal();
    if (work.lexically_normal() == out) continue;
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
}

}  // namespace baton
