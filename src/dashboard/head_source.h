// HeadSource: the dashboard over a cluster head (`baton head --dashboard`). The head keeps every
// job in Redis and gives the same Snapshot()/JobDetail() shapes as the embedded runtime, and its
// Overview()/JobsPage() without a JSON object per job (the loop publishes the overview; a page
// holds the head's lock for one page's jobs at a time), so a dashboard watching a large cluster
// never stalls the head's turns; reports
// and work folders live on the node agents' machines, so ReportDir/JobWorkdir are empty here
// and the dashboard leaves those links and log tails out. Construct before Head::Run().
#pragma once

#include <memory>

#include "cluster/head.h"
#include "dashboard/source.h"

namespace baton::dashboard {

class HeadSource : public DashboardSource {
 public:
  explicit HeadSource(cluster::Head& head) : head_(head), fanout_(std::make_shared<EventFanout>()) {
    head_.AddSink(fanout_);
  }
  Json Snapshot() const override { return head_.Snapshot(); }
  Json JobDetail(const std::string& id) const override { return head_.JobDetail(id); }
  Json Overview() const override { return head_.Overview(); }
  Json JobsPage(const JobsQuery& query) const override { return head_.JobsPage(query); }
  bool Cancel(const std::string& id) override { return head_.CancelJob(id); }
  bool Retry(const std::string& id) override { return head_.RetryJob(id); }
  void Subscribe(std::function<void(const Json&)> sink) override { fanout_->Add(std::move(sink)); }
  std::filesystem::path ReportDir(const std::string&) const override { return {}; }
  std::filesystem::path JobWorkdir(const std::string&, const std::string&) const override { return {}; }

 private:
  cluster::Head& head_;
  std::shared_ptr<EventFanout> fanout_;
};

}  // namespace baton::dashboard
