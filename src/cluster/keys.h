// The cluster's state in Redis: key names under a prefix (what redis_store.cc writes and
// client.cc reads).
//
// Key layout (PREFIX defaults to "baton"; docs/cluster.md explains each):
//   PREFIX:epoch             unix seconds when the cluster's first head started (times are relative)
//   PREFIX:token             shared secret nodes require to serve artifacts
//   PREFIX:head              lock held by the running head (SET NX PX, renewed)
//   PREFIX:pipeline:seq      counter;  PREFIX:pipeline:ID  hash {name, file, yaml, used} (used: the
//                            last job submitted with it; the head removes a pipeline no job in
//                            Redis refers to any more only while `used` is what it decided on)
//   PREFIX:pipelines         list of pipeline ids
//   PREFIX:pipeline:by-digest  hash sha256(name, yaml) -> pipeline id: identical pipelines stored once
//   PREFIX:job:seq           counter;  PREFIX:jobs  list of job ids in submission order
//   PREFIX:ended             sorted set: ended job ids by end time (driver seconds; retention)
//   PREFIX:job:ID            hash: input pipeline state step step_attempt serial node gpus start
//                            inc homes results history error wait attempts losses (inc: the agent
//                            incarnation the running attempt was placed on; losses: STEP:N node
//                            losses while running that step)
//   PREFIX:attempts:ID       list of attempt JSON {step attempt node status start end gpus error placed}
//   PREFIX:nodes             hash node name -> registration JSON;  PREFIX:hb  hash name -> counter
//   PREFIX:lease:NODE        the incarnation of the agent that holds the name NODE (SET NX PX,
//                            renewed with each heartbeat; node.cc)
//   PREFIX:view:nodes        the head's view of nodes (alive, resources used/total), JSON
//   PREFIX:inbox             stream to the head (group "head"): results, submits, cancels, joins
//   PREFIX:place:NODE        stream to one node agent (group "node"): attempts to run, cancels
// A node's P:nodes and P:hb entries and P:lease:NODE go when its agent leaves cleanly; those of one
// that died, and every P:place:NODE, go once the node has been dead for --forget-nodes
// (head_cleanup.cc). Jobs go after --retain, pipelines when no job refers to them any more.
//
// Plain functions; thread-compatible.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "baton/step.h"
#include "redis/redis.h"

namespace baton::cluster {

struct Keys {
  std::string p;
  explicit Keys(std::string prefix) : p(std::move(prefix)) {}
  std::string epoch() const { return p + ":epoch"; }
  std::string token() const { return p + ":token"; }
  std::string head() const { return p + ":head"; }
  std::string pipeline_seq() const { return p + ":pipeline:seq"; }
  std::string pipelines() const { return p + ":pipelines"; }
  std::string pipeline_index() const { return p + ":pipeline:by-digest"; }
  std::string pipeline(const std::string& id) const { return p + ":pipeline:" + id; }
  std::string job_seq() const { return p + ":job:seq"; }
  std::string jobs() const { return p + ":jobs"; }
  std::string ended() const { return p + ":ended"; }
  std::string job(const std::string& id) const { return p + ":job:" + id; }
  std::string attempts(const std::string& id) const { return p + ":attempts:" + id; }
  std::string nodes() const { return p + ":nodes"; }
  std::string hb() const { return p + ":hb"; }
  std::string lease(const std::string& node) const { return p + ":lease:" + node; }
  std::string view_nodes() const { return p + ":view:nodes"; }
  std::string inbox() const { return p + ":inbox"; }
  std::string place(const std::string& node) const { return p + ":place:" + node; }
};

using Hash = std::map<std::string, std::string>;

// A Redis hash reply (field, value, ...) as a map.
Hash ToHash(const Reply& r);

// True for succeeded, failed, cancelled.
bool TerminalState(const std::string& state);

}  // namespace baton::cluster
