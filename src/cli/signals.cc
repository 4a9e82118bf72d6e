#include "cli/signals.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace baton::cli {
namespace {

std::atomic<int> g_first{0};
int g_pipe[2] = {-1, -1};

// Async-signal-safe only: an atomic, write(2), sigaction(2), raise(3).
void OnSignal(int sig) {
  int none = 0;
  if (g_first.compare_exchange_strong(none, sig)) {
    const unsigned char byte = static_cast<unsigned char>(sig);
    [[maybe_unused]] ssize_t n = write(g_pipe[1], &byte, 1);
    return;
  }
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  raise(sig);  // delivered when this handler returns: the process ends by the signal
}

void SetHandler(void (*handler)(int)) {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace

struct StopSignals::Impl {
  std::function<void(int)> on_stop;
  std::thread watcher;
  std::mutex mu;
  std::condition_variable cv;
  bool handled = false;  // GUARDED_BY(mu)
};

StopSignals::StopSignals(std::function<void(int)> on_stop) : impl_(new Impl) {
  impl_->on_stop = std::move(on_stop);
  g_first = 0;
  if (pipe2(g_pipe, O_CLOEXEC) != 0) {
    std::perror("baton: pipe");
    std::abort();
  }
  impl_->watcher = std::thread([this] {
    unsigned char byte = 0;
    ssize_t n;
    while ((n = read(g_pipe[0], &byte, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1 || byte == 0) return;  // closed, or woken by the destructor
    if (impl_->on_stop) impl_->on_stop(byte);
    std::lock_guard lock(impl_->mu);
    impl_->handled = true;
    impl_->cv.notify_all();
  });
  SetHandler(OnSignal);
}

StopSignals::~StopSignals() {
  SetHandler(SIG_DFL);
  if (g_first.load() == 0) {
    const unsigned char zero = 0;
    [[maybe_unused]] ssize_t n = write(g_pipe[1], &zero, 1);
  }
  impl_->watcher.join();
  close(g_pipe[0]);
  close(g_pipe[1]);
  g_pipe[0] = g_pipe[1] = -1;
  delete impl_;
}

int StopSignals::received() const { return g_first.load(); }

int StopSignals::Wait() {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait(lock, [this] { return impl_->handled; });
  return g_first.load();
}

void ExitBy(int signal) {
  std::fflush(nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(signal, &dfl, nullptr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signal);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  raise(signal);
  std::_Exit(128 + signal);  // only if the signal was somehow ignored
}

}  // namespace baton::cli
