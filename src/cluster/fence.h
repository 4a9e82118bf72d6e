// AttemptFence: which results the head accepts, and how it reconciles its attempts with what the
// agents say they run (issue 9's "fencing" and "restarts in any order").
//
// An attempt is named by (job, serial, term): `term` is a random id the head draws each time it
// (re)loads the cluster's state, so an attempt id is never reused in the cluster's life even when
// Redis loses its last second of writes (AOF everysec) and a reloaded job hands out a serial again.
// A result counts only when it names the job's current attempt, and comes from the node and the
// agent incarnation that attempt was placed on.
//
// Reconciliation. Every heartbeat, an agent writes into its registration the attempts it holds
// (running, or finished with the result not yet in Redis) and the last placement entry it has
// read ("read"). For each node the head compares:
//   - an attempt the head counts in flight there, whose placement entry the agent has read, but
//     which the agent does not list, is suspect; still absent after the head has since read its
//     inbox to the end (so a result sent before the report was written has been seen), it is
//     lost: re-queued without counting a try;
//   - an attempt the agent lists as running but the head does not want (another serial or term, a
//     job that ended or that the head never placed there), in two reports in a row, is stopped,
//     once. (One report may be a snapshot taken just before the attempt finished.)
//
// Pure and single-threaded (the head's loop); tested in fence_test.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "baton/step.h"

namespace baton::cluster {

// A Redis stream entry id ("1700000000000-3"), ordered.
struct StreamId {
  uint64_t ms = 0, seq = 0;
  static StreamId Parse(std::string_view s);  // {0,0} when malformed
  static StreamId Max() { return {UINT64_MAX, UINT64_MAX}; }
  std::string ToString() const;
  auto operator<=>(const StreamId&) const = default;
};

// What one agent incarnation says it holds (from its registration).
struct AgentReport {
  using Key = std::tuple<std::string, uint32_t, std::string>;  // job, serial, term
  bool valid = false;      // the registration carries a report (agents of this version do)
  std::string incarnation;
  StreamId read;           // the last placement entry it has read
  uint64_t beat = 0;       // the agent's count of registrations written (a newer report, a larger one)
  std::set<Key> holds;      // running, or finished with the result on its way
  std::set<Key> finished;   // the finished ones among them: never told to stop
  static AgentReport FromRegistration(const Json& registration);
};

class AttemptFence {
 public:
  // A fresh term (the head's reload): forgets every attempt.
  void NewTerm(std::string term);
  const std::string& term() const { return term_; }

  // The head placed an attempt in this term; its placement entry is known once written.
  void Placed(uint32_t job, uint32_t serial, uint32_t node, std::string incarnation);
  void Delivered(uint32_t job, StreamId entry);
  // An attempt found in flight when the state was loaded: placed in `term` at or before `entry`.
  void Restored(uint32_t job, uint32_t serial, uint32_t node, std::string term, std::string incarnation,
                StreamId entry);
  // The term of the job's attempt in flight ("" when unknown).
  const std::string& TermOf(uint32_t job) const;

  // Whether a result for (job, serial, term) from `node` / `incarnation` is for the attempt the
  // head placed. `node`: the driver's index of the node the result names (-1 unknown).
  bool Accept(uint32_t job, uint32_t serial, const std::string& term, int node, const std::string& incarnation) const;

  // The head read its inbox to the end.
  void InboxDrained() { ++drains_; }

  struct Verdict {
    std::vector<std::pair<uint32_t, uint32_t>> lost;  // job, serial: in flight, but no agent holds it
    std::vector<std::pair<uint32_t, AgentReport::Key>> stop;  // node, attempt the head does not want
  };
  struct Callbacks {
    // Whether (job, serial) is still the job's attempt in flight on `node`.
    std::function<bool(uint32_t job, uint32_t serial, uint32_t node)> in_flight;
    std::function<const std::string&(uint32_t job)> job_id;
    std::function<int(const std::string& id)> job_index;
  };
  // Compares the head's attempts with the agents' reports (node index -> report of the
  // incarnation the head places on). Forgets attempts no longer in flight.
  Verdict Reconcile(const std::map<uint32_t, AgentReport>& reports, const Callbacks& cb);

  size_t size() const { return placed_.size(); }

 private:
  struct Attempt {
    uint32_t serial = 0, node = 0;
    std::string term, incarnation;
    StreamId entry = StreamId::Max();  // unknown: not yet written
    bool suspect = false;
    uint64_t suspect_drains = 0;
  };
  std::string term_;
  std::unordered_map<uint32_t, Attempt> placed_;
  std::set<std::pair<uint32_t, AgentReport::Key>> stopped_;  // stops sent, until the agent lets go
  std::map<std::pair<uint32_t, AgentReport::Key>, uint64_t> unwanted_;  // seen unwanted: at which beat
  uint64_t drains_ = 0;
};

}  // namespace baton::cluster
