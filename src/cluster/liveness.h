// NodeLiveness: which agents are alive, from what they write to Redis. Each agent keeps its
// registration (PREFIX:nodes NAME -> JSON with a fresh incarnation id per start) and bumps a
// heartbeat counter (PREFIX:hb NAME). The head compares what it reads with what it saw last:
//   - a new name joins;
//   - a new incarnation under a known name means the agent restarted (whatever the old one ran
//     is gone: lost), then it joins again;
//   - a registration removed means the agent left;
//   - a counter unchanged for `timeout` seconds of the head's monotonic clock means lost;
//   - "draining": true in the registration means the agent is draining (no new placements).
// Counters, not timestamps, so agents' and head's wall clocks never need to agree.
//
// Not thread-safe: used by the head's loop thread.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "baton/pipeline.h"
#include "cluster/keys.h"

namespace baton::cluster {

class NodeLiveness {
 public:
  struct Change {
    enum class Kind { kJoined, kLost, kDraining } kind;
    std::string name;
    std::string why;     // kLost
    NodeSpec spec;       // kJoined
    Json registration;   // kJoined
  };
  explicit NodeLiveness(double timeout) : timeout_(timeout) {}
  void Reset() { seen_.clear(); }
  // Compares registrations and heartbeat counters read now (`now`: monotonic seconds) with what
  // was seen before; `alive(name)` says whether the driver counts the node alive.
  std::vector<Change> Update(const std::map<std::string, Json>& registrations, const Hash& heartbeats, double now,
                             const std::function<bool(const std::string&)>& alive);
  const Json* Registration(const std::string& name) const;

 private:
  struct Seen {
    std::string incarnation;
    std::string hb;
    double last_change = 0;
    Json registration;
    bool draining = false;
  };
  double timeout_;
  std::map<std::string, Seen> seen_;
};

}  // namespace baton::cluster
