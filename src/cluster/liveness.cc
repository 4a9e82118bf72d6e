#include "cluster/liveness.h"

#include <fmt/format.h>

#include "driver/scheduler_setup.h"

namespace baton::cluster {

const Json* NodeLiveness::Registration(const std::string& name) const {
  auto it = seen_.find(name);
  return it == seen_.end() ? nullptr : &it->second.registration;
}

std::vector<NodeLiveness::Change> NodeLiveness::Update(const std::map<std::string, Json>& regs, const Hash& hbs,
                                                       double now,
                                                       const std::function<bool(const std::string&)>& alive) {
  std::vector<Change> out;
  auto join = [&](const std::string& name, const Json& reg) {
    out.push_back({Change::Kind::kJoined, name, "", driver::NodeSpecFromJson(name, reg), reg});
    seen_[name].draining = false;
  };
  auto draining = [&](const std::string& name, const Json& reg) {
    Seen& s = seen_[name];
    const bool now_draining = reg.value("draining", false);
    if (now_draining && !s.draining) out.push_back({Change::Kind::kDraining, name, "draining", {}, {}});
    s.draining = now_draining;
  };
  for (const auto& [name, reg] : regs) {
    auto hb_it = hbs.find(name);
    const std::string hb = hb_it == hbs.end() ? "" : hb_it->second;
    const std::string inc = reg.value("incarnation", "");
    auto it = seen_.find(name);
    if (it == seen_.end()) {
      seen_[name] = {inc, hb, now, reg};
      join(name, reg);
      draining(name, reg);
      continue;
    }
    Seen& s = it->second;
    if (inc != s.incarnation) {
      if (alive(name)) out.push_back({Change::Kind::kLost, name, "agent restarted", {}, {}});
      s = {inc, hb, now, reg};
      join(name, reg);
      draining(name, reg);
      continue;
    }
    if (hb != s.hb) {
      s.hb = hb;
      s.last_change = now;
      if (!alive(name)) {  // back after a heartbeat gap
        join(name, reg);
        s.draining = false;
      }
    }
    draining(name, reg);
  }
  for (auto& [name, s] : seen_) {
    if (!alive(name)) continue;
    if (!regs.count(name)) out.push_back({Change::Kind::kLost, name, "left the cluster", {}, {}});
    else if (now - s.last_change > timeout_)
      out.push_back({Change::Kind::kLost, name, fmt::format("no heartbeat for {:.1f}s", now - s.last_change), {}, {}});
  }
  return out;
}

}  // namespace baton::cluster
