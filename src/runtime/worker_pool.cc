#include "runtime/worker_pool.h"

namespace baton {

WorkerPool::WorkerPool() : state_(std::make_shared<State>()) {}

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
    ++s->idle;
    s->cv.wait(lock, [&] { return s->shutdown || !s->tasks.empty(); });
    --s->idle;
    if (s->tasks.empty()) return;  // shutdown
    auto task = std::move(s->tasks.front());
    s->tasks.pop_front();
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
    spawn = state_->idle < state_->tasks.size();
  }
  if (spawn) {
    std::lock_guard lock(threads_mu_);
    threads_.emplace_back(&WorkerPool::Loop, state_);
  }
  state_->cv.notify_one();
}

size_t WorkerPool::threads() const {
  std::lock_guard lock(threads_mu_);
  return threads_.size();
}

}  // namespace baton
