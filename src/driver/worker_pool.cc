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
    MutexLock lock(&state_->mu);
    state_->shutdown = true;
    abandoned = state_->busy > 0;
  }
  state_->cv.SignalAll();
  MutexLock lock(&threads_mu_);
  for (auto& t : threads_) {
    if (abandoned) t.detach();
    else t.join();
  }
}

void WorkerPool::Loop(std::shared_ptr<State> s) {
  MutexLock lock(&s->mu);
  while (true) {
    if (s->spin && s->tasks.empty() && !s->shutdown && s->threads <= 2 * s->cores) {
      // Spin briefly before sleeping: with many short attempts the next task usually arrives
      // within microseconds, and a futex sleep/wake pair costs more than the task. One spinner at
      // a time, and only while threads are few (at most 2 per core): more would take the CPUs
      // from running attempts and from the driver. A spinner counts as idle for Submit.
      if (s->spinners.fetch_add(1, std::memory_order_relaxed) == 0) {
        lock.Unlock();
        for (int i = 0; i < 2000 && s->queued.load(std::memory_order_relaxed) == 0; ++i) CpuRelax();
        lock.Lock();
      }
      s->spinners.fetch_sub(1, std::memory_order_relaxed);
    }
    ++s->idle;
    while (!s->shutdown && s->tasks.empty()) s->cv.Wait(&s->mu);
    --s->idle;
    if (s->tasks.empty()) return;  // shutdown
    auto task = std::move(s->tasks.front());
    s->tasks.pop_front();
    s->queued.fetch_sub(1, std::memory_order_relaxed);
    ++s->busy;
    lock.Unlock();
    task();
    task = nullptr;
    lock.Lock();
    --s->busy;
  }
}

void WorkerPool::Submit(std::function<void()> task) {
  bool spawn;
  {
    MutexLock lock(&state_->mu);
    state_->tasks.push_back(std::move(task));
    state_->queued.fetch_add(1, std::memory_order_relaxed);
    spawn = state_->idle + state_->spinners.load(std::memory_order_relaxed) < state_->tasks.size();
  }
  if (spawn) {
    MutexLock lock(&threads_mu_);
    state_->threads.fetch_add(1, std::memory_order_relaxed);
    threads_.emplace_back(&WorkerPool::Loop, state_);
  }
  if (!spawn) state_->cv.Signal();
}

size_t WorkerPool::threads() const {
  MutexLock lock(&threads_mu_);
  return threads_.size();
}

}  // namespace baton
