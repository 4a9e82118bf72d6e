// For src/cluster's in-process tests (a Head and NodeAgents on threads against a real
// redis-server): the redis-server, and the NodeOptions of a test agent. Header-only, so that
// tests/support does not link the cluster library.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cluster/node.h"
#include "support/child_process.h"
#include "support/util.h"

namespace baton::testing {

// A redis-server of its own on a free loopback port, without persistence; killed with the object.
struct TestRedis {
  std::unique_ptr<ChildProcess> process;
  cluster::RedisUrl url;
};
inline TestRedis StartTestRedis(const std::filesystem::path& dir) {
  const std::string port = std::to_string(FreeLoopbackPort());
  TestRedis r;
  r.url = cluster::RedisUrl::Parse("redis://127.0.0.1:" + port).value();
  r.process = std::make_unique<ChildProcess>(
      std::vector<std::string>{"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly",
                               "no"},
      dir / "redis.log");
  return r;
}

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
