#include "dashboard/event_hub.h"

#include <algorithm>
#include <chrono>

namespace baton::dashboard {
namespace {

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string Str(const Json& e, const char* key) {
  auto it = e.find(key);
  return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string SseMessage(const Json& j) {
  return "data: " + j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n";
}

}  // namespace

bool EventHub::Client::Wait(std::vector<std::string>* out, int timeout_ms) {
  MutexLock lock(&mu_);
  if (queue_.empty() && !closed_) cv_.WaitFor(&mu_, std::chrono::milliseconds(timeout_ms));
  while (!queue_.empty()) {
    out->push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  return !closed_ || !out->empty();
}

EventHub::EventHub(HubLimits limits) : limits_(limits) {}

std::shared_ptr<EventHub::Client> EventHub::Connect() {
  auto c = std::make_shared<Client>();
  MutexLock lock(&mu_);
  if (closed_) {
    MutexLock cl(&c->mu_);
    c->closed_ = true;
  } else {
    clients_.push_back(c);
  }
  return c;
}

void EventHub::Disconnect(const std::shared_ptr<Client>& client) {
  MutexLock lock(&mu_);
  clients_.erase(std::remove(clients_.begin(), clients_.end(), client), clients_.end());
}

void EventHub::Close() {
  MutexLock lock(&mu_);
  closed_ = true;
  for (auto& c : clients_) {
    MutexLock cl(&c->mu_);
    c->closed_ = true;
    c->cv_.SignalAll();
  }
  clients_.clear();
}

void EventHub::Broadcast(const std::string& message) {
  for (size_t i = 0; i < clients_.size();) {
    Client& c = *clients_[i];
    MutexLock cl(&c.mu_);
    if (c.queue_.size() >= limits_.client_queue) {
      // Too far behind: drop it rather than grow without bound; the browser reconnects.
      c.closed_ = true;
      c.cv_.SignalAll();
      clients_[i] = clients_.back();
      clients_.pop_back();
      continue;
    }
    c.queue_.push_back(message);
    c.cv_.SignalAll();
    ++i;
  }
}

double EventHub::NowLocked() const {
  if (finished_ || !have_clock_) return last_time_;
  return std::max(last_time_, SteadySeconds() - clock_offset_);
}

void EventHub::OnEvent(const Json& e) {
  const std::string type = Str(e, "type");
  const std::string job = Str(e, "job");
  const double time = e.value("time", 0.0);
  MutexLock lock(&mu_);
  ++events_;
  if (time > 0 || type != "node_joined") {
    have_clock_ = true;
    clock_offset_ = SteadySeconds() - time;
    last_time_ = std::max(last_time_, time);
  }
  if (type == "progress") {
    // Progress can be many per second per job: kept as the latest value, not streamed.
    progress_[job] = e.value("data", Json());
    return;
  }
  if (type == "log") {
    auto [it, fresh] = logs_.try_emplace(job);
    if (fresh) {
      log_order_.push_back(job);
      if (log_order_.size() > limits_.log_jobs) {
        logs_.erase(log_order_.front());
        log_order_.pop_front();
      }
    }
    auto& tail = it->second;
    tail.push_back({time, Str(e, "step"), Str(e, "status"), Str(e, "message"), e.value("attempt", 0)});
    if (tail.size() > limits_.log_lines_per_job) tail.pop_front();
  } else if (type == "attempt_started") {
    Bar b{job, Str(e, "step"), Str(e, "node"), "running", e.value("attempt", 0), e.value("gpus", std::vector<int>{}),
          time};
    const uint64_t serial = first_bar_ + bars_.size();
    auto old = running_.find(job);
    if (old != running_.end()) gpus_busy_ -= old->second.gpus;
    running_[job] = {serial, b.gpus.size()};
    gpus_busy_ += b.gpus.size();
    bars_.push_back(std::move(b));
    while (bars_.size() > limits_.timeline_attempts) {
      bars_.pop_front();
      ++first_bar_;
    }
  } else if (type == "attempt_finished") {
    const std::string step = Str(e, "step");
    const std::string status = Str(e, "status");
    ++metrics_.attempts[{step, status}];
    auto it = running_.find(job);
    if (it != running_.end()) {
      gpus_busy_ -= it->second.gpus;
      if (it->second.bar >= first_bar_) {
        Bar& b = bars_[it->second.bar - first_bar_];
        b.end = time;
        b.status = status;
        const double d = std::max(0.0, time - b.start);
        StepDurations& h = metrics_.durations[step];
        size_t k = 0;
        while (k < kDurationBuckets.size() && d > kDurationBuckets[k]) ++k;
        if (k < kDurationBuckets.size()) ++h.buckets[k];
        ++h.count;
        h.sum += d;
      }
      running_.erase(it);
    }
  } else if (type == "job_succeeded" || type == "job_failed" || type == "job_cancelled") {
    const char state = type == "job_succeeded" ? 's' : type == "job_failed" ? 'f' : 'c';
    if (ended_.emplace(job, state).second) {
      (state == 's' ? succeeded_ : state == 'f' ? failed_ : cancelled_)++;
    }
  } else if (type == "job_submitted") {
    // A retried job is submitted again: it no longer counts as ended.
    auto it = ended_.find(job);
    if (it != ended_.end()) {
      (it->second == 's' ? succeeded_ : it->second == 'f' ? failed_ : cancelled_)--;
      ended_.erase(it);
    }
  } else if (type == "node_joined" || type == "node_lost") {
    nodes_changed_ = true;
  } else if (type == "run_finished") {
    finished_ = true;
  }
  Broadcast(SseMessage(e));
  // The run's last point, now rather than at the sampler's next tick: charts end on the totals.
  if (finished_ && !final_sampled_) SampleLocked();
}

Json EventHub::LogTail(const std::string& job) const {
  MutexLock lock(&mu_);
  Json out = Json::array();
  auto it = logs_.find(job);
  if (it == logs_.end()) return out;
  for (const auto& l : it->second)
    out.push_back(
        {{"time", l.time}, {"step", l.step}, {"attempt", l.attempt}, {"level", l.level}, {"message", l.message}});
  return out;
}

Json EventHub::Progress(const std::string& job) const {
  MutexLock lock(&mu_);
  auto it = progress_.find(job);
  return it == progress_.end() ? Json() : it->second;
}

Json EventHub::BarJson(const Bar& b) const {
  Json j = {{"job", b.job}, {"step", b.step}, {"node", b.node}, {"attempt", b.attempt},
            {"gpus", b.gpus}, {"start", b.start}, {"status", b.status}};
  if (b.end >= 0) j["end"] = b.end;
  return j;
}

Json EventHub::Timeline() const {
  MutexLock lock(&mu_);
  Json out = Json::array();
  for (const auto& b : bars_) out.push_back(BarJson(b));
  return out;
}

Json EventHub::Timeline(size_t last) const {
  MutexLock lock(&mu_);
  Json out = Json::array();
  const size_t skip = bars_.size() > last ? bars_.size() - last : 0;
  for (auto it = bars_.begin() + static_cast<std::ptrdiff_t>(skip); it != bars_.end(); ++it)
    out.push_back(BarJson(*it));
  return out;
}

uint64_t EventHub::EventCount() const {
  MutexLock lock(&mu_);
  return events_;
}

Json EventHub::Series() const {
  MutexLock lock(&mu_);
  Json out = Json::array();
  for (const auto& p : series_) out.push_back(p);
  return out;
}

HubMetrics EventHub::Metrics() const {
  MutexLock lock(&mu_);
  HubMetrics m = metrics_;
  m.clients = clients_.size();
  m.events = events_;
  return m;
}

bool EventHub::Sample(double gpu_total) {
  MutexLock lock(&mu_);
  gpu_total_ = gpu_total;
  if (final_sampled_ || !have_clock_) return false;
  SampleLocked();
  return true;
}

void EventHub::SampleLocked() {
  if (finished_) final_sampled_ = true;
  Json p = {{"type", "sample"}, {"t", NowLocked()}, {"succeeded", succeeded_}, {"failed", failed_},
            {"cancelled", cancelled_}, {"running", running_.size()}, {"gpu_busy", gpus_busy_},
            {"gpu_total", gpu_total_}};
  series_.push_back(p);
  if (series_.size() > limits_.series_points) series_.pop_front();
  Broadcast(SseMessage(p));
}

bool EventHub::TakeNodesChanged() {
  MutexLock lock(&mu_);
  return std::exchange(nodes_changed_, false);
}

}  // namespace baton::dashboard
