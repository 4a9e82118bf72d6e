// WorkerPool: runs attempts on threads; the one pool of the embedded runtime and the node agent.
// Elastic: a new thread starts when every thread is busy, because attempts block (sleeps,
// subprocesses, network) and their number is bounded by the nodes' resources, not by cores. Idle
// threads are reused. With Spin::kWhenFew an idle thread spins briefly before sleeping while
// threads are few (the embedded runtime's many short attempts); Spin::kNever never spins (an agent
// shares its machine with other agents, the head and Redis). Thread-safe.
//
// If the pool is destroyed while tasks still run (a step that ignored cancellation), their
// threads are detached and finish on their own; the shared state outlives the pool.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "baton/thread_annotations.h"

namespace baton {

// A pause instruction for spin loops, on every architecture Baton builds for (x86, ARM Grace).
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield");
#else
  std::this_thread::yield();
#endif
}

class WorkerPool {
 public:
  enum class Spin { kWhenFew, kNever };
  explicit WorkerPool(Spin spin = Spin::kWhenFew);
  ~WorkerPool();
  void Submit(std::function<void()> task);
  size_t threads() const;

 private:
  struct State {
    Mutex mu;
    CondVar cv;
    std::deque<std::function<void()>> tasks GUARDED_BY(mu);
    size_t idle GUARDED_BY(mu) = 0;
    size_t busy GUARDED_BY(mu) = 0;
    bool shutdown GUARDED_BY(mu) = false;
    std::atomic<size_t> queued{0};  // tasks waiting; read without the lock while spinning
    std::atomic<size_t> threads{0};
    std::atomic<size_t> spinners{0};  // threads spinning for a task (at most one at a time)
    size_t cores = 1;   // set before any thread starts
    bool spin = true;   // set before any thread starts
  };
  static void Loop(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
  mutable Mutex threads_mu_;
  std::vector<std::thread> threads_ GUARDED_BY(threads_mu_);
};

}  // namespace baton
