// Agent liveness on virtual time: heartbeat loss, restarts and departures are decided from what
// the test passes as `now`; nothing sleeps.
#include "cluster/liveness.h"

#include <gtest/gtest.h>

namespace baton::cluster {
namespace {

Json Reg(const std::string& inc, double gpus = 1) { return {{"incarnation", inc}, {"cpus", 4}, {"gpus", gpus}}; }

TEST(NodeLiveness, HeartbeatLossRestartAndDepartureAreToldApart) {
  NodeLiveness l(5.0);
  std::map<std::string, bool> alive;
  auto is_alive = [&](const std::string& n) { return alive[n]; };
  auto apply = [&](const std::vector<NodeLiveness::Change>& changes) {
    std::vector<std::string> out;
    for (const auto& c : changes) {
      alive[c.name] = c.kind == NodeLiveness::Change::Kind::kJoined;
      out.push_back((c.kind == NodeLiveness::Change::Kind::kJoined ? "+" : "-") + c.name +
                    (c.why.empty() ? "" : " " + c.why));
    }
    return out;
  };
  std::map<std::string, Json> regs = {{"a", Reg("a1")}, {"b", Reg("b1", 2)}};
  Hash hb = {{"a", "1"}, {"b", "1"}};
  auto first = l.Update(regs, hb, 100, is_alive);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[1].spec.gpus, 2);  // the registration becomes the node's spec
  apply(first);
  hb["a"] = "2";  // a beats, b is silent
  EXPECT_TRUE(apply(l.Update(regs, hb, 104.9, is_alive)).empty());
  EXPECT_EQ(apply(l.Update(regs, hb, 105.2, is_alive)), std::vector<std::string>{"-b no heartbeat for 5.2s"});
  hb["b"] = "2";  // b is back after the gap
  EXPECT_EQ(apply(l.Update(regs, hb, 106, is_alive)), std::vector<std::string>{"+b"});
  regs["a"] = Reg("a2");  // a restarted under its name: the old one is lost, the new one joins
  EXPECT_EQ(apply(l.Update(regs, hb, 107, is_alive)), (std::vector<std::string>{"-a agent restarted", "+a"}));
  regs.erase("b");  // b deregistered
  EXPECT_EQ(apply(l.Update(regs, hb, 108, is_alive)), std::vector<std::string>{"-b left the cluster"});
}

}  // namespace
}  // namespace baton::cluster
