#include "steps/worker/resident.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

namespace baton::worker {
namespace {

constexpr size_t kMaxLine = 64 << 20;  // a line longer than this from a worker is a protocol error

void SetNonBlocking(int fd) {
  if (fd >= 0) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

std::string Shorten(const std::string& s, size_t n = 200) { return s.size() > n ? s.substr(0, n) + "..." : s; }

}  // namespace

Resident::Resident(ResidentConfig config) : config_(std::move(config)) {
  wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (!config_.log_file.empty()) log_ = std::fopen(config_.log_file.c_str(), "ae");
  thread_ = std::thread([this] { Loop(); });
}

Resident::~Resident() {
  Retire();
  if (thread_.joinable()) thread_.join();
  if (wake_ >= 0) close(wake_);
  if (log_) std::fclose(log_);
}

double Resident::Now() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool Resident::Run(const std::shared_ptr<Item>& item) {
  MutexLock lock(&mu_);
  if (exited_ || retiring_) return false;
  item->submitted = Now();
  pending_.push_back(item);
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_, &one, sizeof one);
  while (!item->done) answered_.Wait(&mu_);
  return true;
}

void Resident::Retire() {
  MutexLock lock(&mu_);
  retiring_ = true;
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_, &one, sizeof one);
}

bool Resident::Exited() const {
  MutexLock lock(&mu_);
  return exited_;
}

Json Resident::State() const {
  MutexLock lock(&mu_);
  static const char* kNames[] = {"starting", "ready", "busy", "stopped"};
  Json sizes = Json::object();
  for (int s : batch_sizes_) sizes[std::to_string(s)] = sizes.value(std::to_string(s), 0) + 1;
  return {{"worker", config_.id},
          {"step", config_.step},
          {"state", kNames[static_cast<int>(phase_)]},
          {"pid", pid_},
          {"items", items_},
          {"batches", batches_},
          {"restarts", restarts_},
          {"load_seconds", load_seconds_},
          {"gpus", config_.gpus},
          {"batch_sizes", sizes},
          {"queued", pending_.size()}};
}

void Resident::Log(LogLevel level, const std::string& message, const Item* item) {
  if (log_) {
    std::fprintf(log_, "%s\n", message.c_str());
    std::fflush(log_);
  }
  const Item* to = item;
  if (to == nullptr && !in_flight_.empty()) to = in_flight_.front().get();
  if (to == nullptr) {
    MutexLock lock(&mu_);
    if (!pending_.empty()) {
      // A pending item's context is valid while its Run waits, which it does until resolved, and
      // only this thread resolves it.
      const StepContext* ctx = pending_.front()->ctx;
      lock.Unlock();
      if (ctx && ctx->log) ctx->log(level, message);
      return;
    }
  }
  if (to && to->ctx && to->ctx->log) to->ctx->log(level, message);
}

void Resident::Resolve(const std::shared_ptr<Item>& item, StepOutcome outcome) {
  MutexLock lock(&mu_);
  if (item->done) return;
  item->outcome = std::move(outcome);
  item->outcome.batch = item->batch;
  item->done = true;
  answered_.SignalAll();
}

void Resident::DropCancelledPending() {
  std::vector<std::shared_ptr<Item>> cancelled;
  {
    MutexLock lock(&mu_);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if ((*it)->ctx->cancelled()) {
        cancelled.push_back(*it);
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& item : cancelled) Resolve(item, StepOutcome::Cancelled());
}

bool Resident::Send(const Json& message) {
  if (!child_ || child_->in < 0) return false;
  const std::string line = message.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
  size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = write(child_->in, line.data() + off, line.size() - off);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      // The worker is not reading: keep reading what it writes, so neither side blocks forever.
      pollfd p{child_->in, POLLOUT, 0};
      poll(&p, 1, 50);
      if (!Pump(0)) return false;
      continue;
    }
    if (errno == EPIPE) {  // consume the SIGPIPE this thread has blocked
      sigset_t pipe_set;
      sigemptyset(&pipe_set);
      sigaddset(&pipe_set, SIGPIPE);
      timespec zero{0, 0};
      sigtimedwait(&pipe_set, nullptr, &zero);
    }
    broken_ = true;
    broken_why_ = std::string("stdin closed (") + strerror(errno) + ")";
    return false;
  }
  return true;
}

void Resident::ProtocolError(const std::string& why) {
  if (broken_) return;
  broken_ = true;
  broken_why_ = "protocol error: " + why;
}

void Resident::HandleLine(const std::string& line) {
  if (line.empty()) return;
  Json m = Json::parse(line, nullptr, false);
  if (m.is_discarded() || !m.is_object() || !m.contains("type") || !m["type"].is_string())
    return ProtocolError("not a protocol message: " + Shorten(line));
  const std::string type = m["type"];
  if (type == "ready") {
    ready_seen_ = true;
    return;
  }
  auto find = [&](const Json& id) -> std::shared_ptr<Item> {
    if (!id.is_string()) return nullptr;
    for (const auto& it : in_flight_)
      if (it->id == id.get<std::string>()) return it;
    return nullptr;
  };
  if (type == "result") {
    if (!m.contains("id") || !m.contains("ok") || !m["ok"].is_boolean())
      return ProtocolError("a result needs \"id\" and a boolean \"ok\": " + Shorten(line));
    std::shared_ptr<Item> item = find(m["id"]);
    if (!item) {
      Log(LogLevel::kWarn, "worker " + std::to_string(config_.id) + ": result for an item it does not hold: " +
                               Shorten(m["id"].dump()), nullptr);
      return;
    }
    in_flight_.erase(std::find(in_flight_.begin(), in_flight_.end(), item));
    {
      MutexLock lock(&mu_);
      ++items_;
    }
    if (item->ctx->cancelled()) return Resolve(item, StepOutcome::Cancelled());
    if (m["ok"].get<bool>()) {
      Json output = m.contains("output") ? std::move(m["output"]) : Json::object();
      if (!output.is_object())
        return Resolve(item, StepOutcome::Failure("the worker's output for this item is not a JSON object", false));
      return Resolve(item, StepOutcome::Ok(std::move(output)));
    }
    const std::string error = m.contains("error") && m["error"].is_string() ? m["error"].get<std::string>()
                                                                              : "the worker reported a failure";
    const bool retryable = !m.contains("retryable") || !m["retryable"].is_boolean() || m["retryable"].get<bool>();
    return Resolve(item, StepOutcome::Failure(error, retryable));
  }
  if (type == "log") {
    const std::string level = m.value("level", "info");
    const LogLevel l = level == "error" ? LogLevel::kError
                       : level == "warn" || level == "warning" ? LogLevel::kWarn
                       : level == "debug" ? LogLevel::kDebug
                                          : LogLevel::kInfo;
    const std::string text = m.contains("message") && m["message"].is_string() ? m["message"].get<std::string>()
                                                                                : m.value("message", Json()).dump();
    std::shared_ptr<Item> item = m.contains("id") ? find(m["id"]) : nullptr;
    Log(l, item ? text : "worker " + std::to_string(config_.id) + ": " + text, item.get());
    return;
  }
  if (type == "progress") {
    std::shared_ptr<Item> item = m.contains("id") ? find(m["id"]) : nullptr;
    if (item && item->ctx->progress && m.contains("fraction") && m["fraction"].is_number())
      item->ctx->progress(Json{{"fraction", m["fraction"]}});
    return;
  }
  ProtocolError("unknown message type '" + Shorten(type, 40) + "': " + Shorten(line));
}

bool Resident::Pump(int timeout_ms) {
  pollfd fds[4];
  int n = 0;
  fds[n++] = {wake_, POLLIN, 0};
  const int out_at = child_ ? n : -1;
  if (child_) {
    fds[n++] = {child_->out, POLLIN, 0};
    fds[n++] = {child_->err, POLLIN, 0};
  }
  int rc;
  while ((rc = poll(fds, static_cast<nfds_t>(n), timeout_ms)) < 0 && errno == EINTR) {
  }
  if (rc > 0 && (fds[0].revents & POLLIN)) {
    uint64_t v;
    [[maybe_unused]] ssize_t r = read(wake_, &v, sizeof v);
  }
  if (!child_) return true;
  bool ended = false;
  char buf[65536];
  // stdout: protocol lines.
  if (out_at >= 0 && (fds[out_at].revents & (POLLIN | POLLHUP | POLLERR))) {
    while (true) {
      const ssize_t r = read(child_->out, buf, sizeof buf);
      if (r > 0) {
        out_buf_.append(buf, static_cast<size_t>(r));
        continue;
      }
      if (r == 0) ended = true;
      break;  // EAGAIN or EOF
    }
    size_t start = 0, nl;
    while ((nl = out_buf_.find('\n', start)) != std::string::npos && !broken_) {
      HandleLine(out_buf_.substr(start, nl - start));
      start = nl + 1;
    }
    out_buf_.erase(0, start);
    if (out_buf_.size() > kMaxLine) ProtocolError("a line longer than 64 MiB");
  }
  // stderr: the worker's log.
  if (out_at >= 0 && (fds[out_at + 1].revents & (POLLIN | POLLHUP | POLLERR))) {
    while (true) {
      const ssize_t r = read(child_->err, buf, sizeof buf);
      if (r <= 0) break;
      err_buf_.append(buf, static_cast<size_t>(r));
    }
    size_t start = 0, nl;
    while ((nl = err_buf_.find('\n', start)) != std::string::npos) {
      std::string line = err_buf_.substr(start, nl - start);
      start = nl + 1;
      if (line.empty()) continue;
      last_err_ = Shorten(line, 300);
      Log(LogLevel::kInfo, "worker " + std::to_string(config_.id) + ": " + line, nullptr);
    }
    err_buf_.erase(0, start);
    if (err_buf_.size() > 65536) err_buf_.clear();
  }
  if (ended && !broken_) {
    broken_ = true;
    const int status = child_->Reap(2000);
    broken_why_ = status < 0 ? "closed its stdout" : DescribeWaitStatus(status);
  }
  return !broken_;
}

bool Resident::StartProcess() {
  {
    MutexLock lock(&mu_);
    phase_ = Phase::kStarting;
  }
  broken_ = false;
  ready_seen_ = false;
  out_buf_.clear();
  err_buf_.clear();
  last_err_.clear();
  const double t0 = Now();
  auto started = StartPiped(config_.process);
  auto fail_pending = [&](const std::string& error, bool retryable) {
    std::deque<std::shared_ptr<Item>> items;
    {
      MutexLock lock(&mu_);
      items.swap(pending_);
    }
    for (const auto& item : items) Resolve(item, StepOutcome::Failure(error, retryable));
  };
  if (!started.ok()) {
    fail_pending("worker did not start: " + started.error(), false);
    return false;
  }
  child_ = std::make_unique<PipedChild>(std::move(*started));
  SetNonBlocking(child_->in);
  SetNonBlocking(child_->out);
  SetNonBlocking(child_->err);
  {
    MutexLock lock(&mu_);
    pid_ = child_->pid;
  }
  Log(LogLevel::kInfo, "worker " + std::to_string(config_.id) + " started: " + config_.process.argv[0] + " (pid " +
                           std::to_string(child_->pid) + ", GPUs [" + [&] {
                             std::string g;
                             for (int d : config_.gpus) g += (g.empty() ? "" : ",") + std::to_string(d);
                             return g;
                           }() + "])",
      nullptr);
  const double deadline = t0 + config_.options.startup_timeout;
  while (!ready_seen_ && !broken_ && Now() < deadline) {
    DropCancelledPending();
    Pump(50);
  }
  if (!ready_seen_) {
    std::string why =
        broken_ ? broken_why_ : "no \"ready\" within " + std::to_string(config_.options.startup_timeout) + "s";
    KillChild(true);
    fail_pending("worker did not become ready: " + why + (last_err_.empty() ? "" : " (stderr: " + last_err_ + ")"),
                 true);
    return false;
  }
  served_since_start_ = 0;
  MutexLock lock(&mu_);
  load_seconds_ = Now() - t0;
  phase_ = Phase::kReady;
  return true;
}

std::vector<std::shared_ptr<Item>> Resident::TakeBatch() {
  while (true) {
    DropCancelledPending();
    double wait_left = 0;
    {
      MutexLock lock(&mu_);
      if (pending_.empty()) return {};
      if (pending_.front()->solo) {
        std::vector<std::shared_ptr<Item>> one{pending_.front()};
        pending_.pop_front();
        return one;
      }
      size_t batchable = 0;
      for (const auto& it : pending_) batchable += it->solo ? 0 : 1;
      wait_left = pending_.front()->submitted + config_.options.batch_wait - Now();
      if (batchable >= static_cast<size_t>(config_.options.batch_max) || wait_left <= 0 || retiring_) {
        std::vector<std::shared_ptr<Item>> batch;
        const size_t most = static_cast<size_t>(config_.options.batch_max);
        for (auto it = pending_.begin(); it != pending_.end() && batch.size() < most;) {
          if ((*it)->solo) {
            ++it;
            continue;
          }
          batch.push_back(*it);
          it = pending_.erase(it);
        }
        return batch;
      }
    }
    if (!Pump(std::clamp(static_cast<int>(wait_left * 1000) + 1, 1, 50))) return {};
  }
}

void Resident::KillChild(bool restart) {
  if (child_) {
    child_->Kill();
    child_->Reap(-1);
    child_.reset();
  }
  MutexLock lock(&mu_);
  pid_ = 0;
  if (!restart) return;
  ++restarts_;
  phase_ = Phase::kStarting;
}

void Resident::Died(const std::string& why, const Item* culprit) {
  KillChild(true);
  Log(LogLevel::kWarn,
      "worker " + std::to_string(config_.id) + " " + why +
          (last_err_.empty() ? "" : " (stderr: " + last_err_ + ")") + "; restarting it for the items it held",
      nullptr);
  const bool alone = in_flight_.size() == 1;
  std::vector<std::shared_ptr<Item>> requeue;
  for (const auto& item : in_flight_) {
    if (item.get() == culprit) {
      Resolve(item, StepOutcome::Cancelled());
    } else if (culprit == nullptr && (alone || item->suspect > 0)) {
      if (config_.poisoned) config_.poisoned(item->job);
      Resolve(item, StepOutcome::Failure("worker " + why + " while running this item alone", true));
    } else {
      if (culprit == nullptr) ++item->suspect;
      item->solo = item->suspect > 0;
      item->cancel_sent = false;
      requeue.push_back(item);
    }
  }
  in_flight_.clear();
  MutexLock lock(&mu_);
  for (auto it = requeue.rbegin(); it != requeue.rend(); ++it) pending_.push_front(*it);
}

void Resident::RunBatch(std::vector<std::shared_ptr<Item>> batch) {
  {
    MutexLock lock(&mu_);
    phase_ = Phase::kBusy;
    ++batches_;
    batch_sizes_.push_back(static_cast<int>(batch.size()));
    if (batch_sizes_.size() > 4096) batch_sizes_.erase(batch_sizes_.begin(), batch_sizes_.begin() + 2048);
    const std::string label = "w" + std::to_string(config_.id) + ".b" + std::to_string(++batch_id_);
    for (const auto& it : batch) it->batch = label;  // read by Resolve, under mu_
  }
  Json items = Json::array();
  for (const auto& it : batch) items.push_back(it->request);
  in_flight_ = std::move(batch);
  const size_t sent = in_flight_.size();
  if (!Send({{"type", "batch"}, {"batch", batch_id_}, {"items", std::move(items)}})) {
    Died(broken_why_.empty() ? "could not be written to" : broken_why_, nullptr);
    return;
  }
  const double deadline = config_.options.item_timeout > 0 ? Now() + config_.options.item_timeout : 1e300;
  while (!in_flight_.empty()) {
    if (Now() > deadline) {
      // Alone, the item is the cause and fails (a try counted); in a batch the culprit is not
      // known: every item still held is re-queued to go alone (Died).
      Died(fmt::format("gave no answer within the step's timeout of {}s; killed", config_.options.item_timeout),
           nullptr);
      return;
    }
    // A copy: sending may read the worker's answers, which take items out of in_flight_.
    const std::vector<std::shared_ptr<Item>> held = in_flight_;
    for (const auto& item : held) {
      if (item->done || !item->ctx->cancelled()) continue;
      if (!item->cancel_sent) {
        item->cancel_sent = true;
        item->cancel_at = Now();
        if (!Send({{"type", "cancel"}, {"id", item->id}})) break;
      } else if (Now() - item->cancel_at > config_.options.cancel_grace) {
        const std::shared_ptr<Item> culprit = item;
        Died("did not answer the cancel of " + item->id + " within " + std::to_string(config_.options.cancel_grace) +
                 "s; killed",
             culprit.get());
        return;
      }
    }
    if (!Pump(20) || broken_) {
      Died(broken_why_, nullptr);
      return;
    }
  }
  served_since_start_ += static_cast<int64_t>(sent);
  MutexLock lock(&mu_);
  phase_ = Phase::kReady;
}

void Resident::Shutdown(double grace) {
  if (!child_) return;
  Send({{"type", "shutdown"}});
  if (child_->in >= 0) {
    close(child_->in);
    child_->in = -1;
  }
  const double deadline = Now() + grace;
  while (Now() < deadline && !broken_) Pump(50);  // reads its last lines; ends when it exits
  KillChild(false);
}

void Resident::Loop() {
  // A write to a worker that died raises SIGPIPE in this thread: blocked here, write says EPIPE.
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);
  const double grace = std::max(1.0, std::min(config_.options.cancel_grace, 10.0));
  // The scheduler retires an idle worker after idle_timeout (in a cluster, the head's
  // retire_worker message); this side waits a little longer, a backstop for a head that is gone.
  const double idle_after = config_.options.idle_timeout + 2;
  double idle_since = Now();
  while (true) {
    DropCancelledPending();
    bool empty;
    {
      MutexLock lock(&mu_);
      empty = pending_.empty();
      if (empty && (retiring_ || Now() >= idle_since + idle_after)) {
        exited_ = true;  // Run refuses from now on: nothing can be queued after this
        const bool retired = retiring_;
        lock.Unlock();
        if (child_)
          Log(LogLevel::kInfo, fmt::format("worker {} {}; shutting down", config_.id,
                                           retired ? "retired by the scheduler" : "idle past its own backstop timer"),
              nullptr);
        break;
      }
    }
    if (empty) {
      broken_ = false;
      if (!Pump(200) && child_) {
        // It ended while idle: restart on the next item.
        Died(broken_why_, nullptr);
      }
      continue;
    }
    if (!child_ && !StartProcess()) {
      idle_since = Now();
      continue;
    }
    std::vector<std::shared_ptr<Item>> batch = TakeBatch();
    if (broken_ && child_) {
      Died(broken_why_, nullptr);
      continue;
    }
    if (batch.empty()) continue;
    RunBatch(std::move(batch));
    idle_since = Now();
    if (config_.options.max_items > 0 && served_since_start_ >= config_.options.max_items && child_) {
      Log(LogLevel::kInfo, "worker " + std::to_string(config_.id) + " recycled after " +
                               std::to_string(served_since_start_) + " items (max_items)", nullptr);
      Shutdown(grace);
    }
  }
  Shutdown(grace);
  MutexLock lock(&mu_);
  phase_ = Phase::kStopped;
}

}  // namespace baton::worker
