#include "dashboard/runtime_source.h"

namespace baton::dashboard {

Json EventToJson(const Event& e) {
  Json j = {{"type", EventTypeName(e.type)}, {"time", e.time}};
  if (!e.job.empty()) j["job"] = e.job;
  if (!e.step.empty()) j["step"] = e.step;
  if (!e.node.empty()) j["node"] = e.node;
  if (e.attempt > 0) j["attempt"] = e.attempt;
  if (!e.gpus.empty()) j["gpus"] = e.gpus;
  if (!e.status.empty()) j["status"] = e.status;
  if (!e.message.empty()) j["message"] = e.message;
  if (e.pid > 0) j["pid"] = e.pid;
  if (!e.data.is_null()) j["data"] = e.data;
  return j;
}

void EventFanout::Add(std::function<void(const Json&)> f) {
  std::lock_guard lock(mu_);
  subscribers_.push_back(std::move(f));
}

void EventFanout::OnEvent(const Event& event) {
  std::lock_guard lock(mu_);
  if (subscribers_.empty()) return;
  const Json j = EventToJson(event);
  for (auto& f : subscribers_) f(j);
}

RuntimeSource::RuntimeSource(Runtime& runtime) : runtime_(runtime), fanout_(std::make_shared<EventFanout>()) {
  runtime_.AddSink(fanout_);
}

void RuntimeSource::Subscribe(std::function<void(const Json&)> sink) { fanout_->Add(std::move(sink)); }

}  // namespace baton::dashboard
