// The NodeOptions of an in-process test agent (src/cluster's tests run a NodeAgent on a thread
// against a real redis-server): loopback addresses, its work folder, a short heartbeat, no log.
// Header-only, so that tests/support does not link the cluster library.
#pragma once

#include <filesystem>
#include <string>

#include "cluster/node.h"

namespace baton::testing {

inline cluster::NodeOptions TestAgentOptions(const cluster::RedisUrl& redis, const std::string& prefix,
                                             const std::filesystem::path& dir, int cpus,
                                             const std::string& name = "a") {
  cluster::NodeOptions o;
  o.redis = redis;
  o.prefix = prefix;
  o.name = name;
  o.cpus = cpus;
  o.workdir = dir / ("work-" + name);
  o.address = "127.0.0.1";
  o.listen = "127.0.0.1";
  o.heartbeat = 0.2;
  o.log_format = LogFormat::kNone;
  return o;
}

}  // namespace baton::testing
