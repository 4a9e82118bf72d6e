#include "driver/worker_pool.h"

#include <algorithm>

namespace baton {

WorkerPool::WorkerPool(Spin spin) : state_(std::make_shared<State>()) {
  state_->cores = std::max(1u, std::thread::hardware_concurrency());
  state_->spin = spin == Spin::kWhenFew;
}

WorkerPool::~WorkerPool() {
  bool abandoned;
  {
    std::lock_guard lock(state_->mu);
    state_->shutdown = true;
    abandoned = state_->busy > 0;
  }
  state_->cv.notify_all();
  std::lock_guard lock(threads_mu_);
  for (auto& t : threads_) {
    if (abandoned) t.detach();
    else t.join();
  }
}

void WorkerPool::Loop(std::shared_ptr<State> s) {
  std::unique_lock lock(s->mu);
  while (true) {
    if (s->spin && s->tasks.empty() && !s->shutdown && s->threads <= 2 * s->cores) {
      // Spin briefly before sleeping: with many short attempts the next task usually arrives
      // within microseconds, and a futex sleep/wake pair costs more than the task. Only while
      // threads are few (at most 2 per core): past that, spinning steals from running attempts.
      lock.unlock();
      for (int i = 0; i < 2000 && s->queued.load(std::memory_order_relaxed) == 0; ++i) CpuRelax();
      lock.lock();
    }
    ++s->idle;
    s->cv.wait(lock, [&] { return s->shutdown || !s->tasks.empty(); });
    --s->idle;
    if (s->tasks.empty()) return;  // shutdown
    auto task = std::move(s->tasks.front());
    s->tasks.pop_front();
    s->queued.fetch_sub(1, std::memory_order_relaxed);
    ++s->busy;
    lock.unlock();
    task();
    task = nullptr;
    lock.lock();
    --s->busy;
  }
}

void WorkerPool::Submit(std::function<void()> task) {
  bool spawn;
  {
    std::lock_guard lock(state_->mu);
    state_->tasks.push_back(std::move(task));
    state_->queued.fetch_add(1, std::memory_order_relaxed);
    spawn = state_->idle < state_->tasks.size();
  }
  if (spawn) {
    std::lock_guard lock(threads_mu_);
    state_->threads.fetch_add(1, std::memory_order_relaxed);
    threads_.emplace_back(&WorkerPool::Loop, state_);
  }
  if (!spawn) state_->cv.notify_one();
}

size_t WorkerPool::threads() const {
  std::lock_guard lock(threads_mu_);
  return threads_.size();
}

}  // namespace baton
