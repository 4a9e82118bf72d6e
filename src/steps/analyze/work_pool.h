// WorkPool: a fixed set of worker threads running queued tasks, used by the analyze step to
// spread speech recognition (per utterance) and OCR (per keyframe) over the cores while the
// calling thread decodes the video.
//
// Each task receives its worker's index (0..workers-1) so it can use engines owned by that worker
// (PocketSphinx and Tesseract objects are single-threaded). Thread-safe: Submit from any thread.
// The destructor waits for queued tasks to finish.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace baton::analyze {

class WorkPool {
 public:
  using Task = std::function<void(int worker)>;

  explicit WorkPool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i] { Loop(i); });
  }
  ~WorkPool() { Join(); }
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  int workers() const { return int(threads_.size()); }

  // `urgent` tasks run before the queued ones (OCR of a fresh keyframe should not wait behind
  // every utterance, or keyframes pile up in memory).
  void Submit(Task task, bool urgent = false) {
    {
      std::lock_guard lock(mu_);
      if (urgent) {
        queue_.push_front(std::move(task));
      } else {
        queue_.push_back(std::move(task));
      }
    }
    cv_.notify_one();
  }

  // Runs everything queued, then stops the workers. Idempotent.
  void Join() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void Loop(int index) {
    while (true) {
      Task task;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return closing_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task(index);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;  // GUARDED_BY(mu_)
  bool closing_ = false;    // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

}  // namespace baton::analyze
