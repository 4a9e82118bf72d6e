// RuntimeSource: the DashboardSource of the embedded runtime (`baton run --dashboard`). It adds
// one EventSink to the runtime when constructed, so REQUIRES: constructed before Runtime::Run.
// Thread-safe; the runtime must outlive it.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "dashboard/source.h"

namespace baton::dashboard {

class RuntimeSource : public DashboardSource {
 public:
  explicit RuntimeSource(Runtime& runtime);

  Json Snapshot() const override { return runtime_.Snapshot(); }
  Json Overview() const override { return runtime_.Overview(); }
  Json JobsPage(const JobsQuery& query) const override { return runtime_.JobsPage(query); }
  Json JobDetail(const std::string& id) const override { return runtime_.JobDetail(id); }
  bool Cancel(const std::string& id) override { return runtime_.CancelJob(id); }
  bool Retry(const std::string& id) override { return runtime_.RetryJob(id); }
  void Subscribe(std::function<void(const Json&)> sink) override;
  std::filesystem::path ReportDir(const std::string& id) const override { return runtime_.options().out / id; }
  std::filesystem::path JobWorkdir(const std::string& id, const std::string& node) const override {
    return runtime_.JobWorkdir(id, node);
  }

 private:
  Runtime& runtime_;
  std::shared_ptr<EventFanout> fanout_;  // shared with the runtime, which may emit late log events
};

}  // namespace baton::dashboard
