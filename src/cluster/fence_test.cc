// AttemptFence: results count only for the current attempt of the current term, from the node and
// incarnation it was placed on; reconciliation finds attempts no agent holds and attempts agents
// hold that the head does not want. Pure: no Redis, no clock.
#include "cluster/fence.h"

#include <gtest/gtest.h>

namespace baton::cluster {
namespace {

struct World {
  // job index -> (serial, node) in flight
  std::map<uint32_t, std::pair<uint32_t, uint32_t>> in_flight;
  std::vector<std::string> ids = {"job-0", "job-1", "job-2"};
  AttemptFence::Callbacks cb() {
    AttemptFence::Callbacks c;
    c.in_flight = [this](uint32_t job, uint32_t serial, uint32_t node) {
      auto it = in_flight.find(job);
      return it != in_flight.end() && it->second == std::make_pair(serial, node);
    };
    c.job_id = [this](uint32_t job) -> const std::string& { return ids[job]; };
    c.job_index = [this](const std::string& id) {
      for (size_t i = 0; i < ids.size(); ++i)
        if (ids[i] == id) return static_cast<int>(i);
      return -1;
    };
    return c;
  }
};

AgentReport Report(std::string inc, std::string read, std::set<AgentReport::Key> holds, uint64_t beat = 1) {
  AgentReport r;
  r.valid = true;
  r.beat = beat;
  r.incarnation = std::move(inc);
  r.read = StreamId::Parse(read);
  r.holds = std::move(holds);
  return r;
}

TEST(StreamId, ParsesAndOrders) {
  EXPECT_EQ(StreamId::Parse("1700000000000-3").ms, 1700000000000u);
  EXPECT_EQ(StreamId::Parse("1700000000000-3").seq, 3u);
  EXPECT_LT(StreamId::Parse("5-9"), StreamId::Parse("6-0"));
  EXPECT_LT(StreamId::Parse("6-1"), StreamId::Parse("6-2"));
  EXPECT_EQ(StreamId::Parse("garbage"), StreamId{});
  EXPECT_EQ(StreamId::Parse("12-7").ToString(), "12-7");
}

TEST(AttemptFence, AcceptsOnlyTheCurrentAttemptFromItsNodeAndIncarnation) {
  AttemptFence f;
  f.NewTerm("t2");
  f.Placed(0, 7, 1, "inc-a");
  EXPECT_TRUE(f.Accept(0, 7, "t2", 1, "inc-a"));
  EXPECT_FALSE(f.Accept(0, 7, "t1", 1, "inc-a")) << "same serial, earlier term (Redis lost the write that placed it)";
  EXPECT_FALSE(f.Accept(0, 6, "t2", 1, "inc-a")) << "an earlier attempt";
  EXPECT_FALSE(f.Accept(0, 7, "t2", 2, "inc-a")) << "another node";
  EXPECT_FALSE(f.Accept(0, 7, "t2", 1, "inc-b")) << "the agent restarted";
  EXPECT_FALSE(f.Accept(1, 7, "t2", 1, "inc-a")) << "a job with nothing placed";
  f.Restored(1, 3, 0, "t1", "inc-z", StreamId{5, 0});
  EXPECT_TRUE(f.Accept(1, 3, "t1", 0, "inc-z")) << "an attempt placed by the previous head still counts";
  EXPECT_EQ(f.TermOf(1), "t1");
  EXPECT_EQ(f.TermOf(0), "t2");
  f.NewTerm("t3");
  EXPECT_FALSE(f.Accept(0, 7, "t2", 1, "inc-a")) << "a new term forgets everything";
}

TEST(AttemptFence, AnAttemptNoAgentHoldsIsLostOnlyAfterTheInboxWasReadToTheEnd) {
  World w;
  AttemptFence f;
  f.NewTerm("t");
  w.in_flight[0] = {4, 1};
  f.Placed(0, 4, 1, "inc");
  // Not written yet: never suspect.
  std::map<uint32_t, AgentReport> reports = {{1, Report("inc", "100-0", {})}};
  EXPECT_TRUE(f.Reconcile(reports, w.cb()).lost.empty());
  f.Delivered(0, StreamId{200, 0});
  // The agent has not read that far: not suspect.
  EXPECT_TRUE(f.Reconcile(reports, w.cb()).lost.empty());
  f.InboxDrained();
  EXPECT_TRUE(f.Reconcile(reports, w.cb()).lost.empty());
  // Read, held: fine.
  reports = {{1, Report("inc", "200-0", {{"job-0", 4, "t"}})}};
  EXPECT_TRUE(f.Reconcile(reports, w.cb()).lost.empty());
  // Read, not held: suspect; a result may still be on its way, so not lost until the inbox has
  // been read to the end after the report.
  reports = {{1, Report("inc", "200-0", {})}};
  EXPECT_TRUE(f.Reconcile(reports, w.cb()).lost.empty());
  EXPECT_TRUE(f.Reconcile(reports, w.cb()).lost.empty()) << "no inbox read since";
  f.InboxDrained();
  const auto v = f.Reconcile(reports, w.cb());
  ASSERT_EQ(v.lost.size(), 1u);
  EXPECT_EQ(v.lost[0], std::make_pair(0u, 4u));
  // Once the head re-queued it (no longer in flight), it is forgotten.
  w.in_flight.erase(0);
  EXPECT_TRUE(f.Reconcile(reports, w.cb()).lost.empty());
  EXPECT_EQ(f.size(), 0u);
}

TEST(AttemptFence, ReportsOfAnotherIncarnationDecideNothing) {
  World w;
  AttemptFence f;
  f.NewTerm("t");
  w.in_flight[0] = {1, 0};
  f.Placed(0, 1, 0, "old");
  f.Delivered(0, StreamId{1, 0});
  std::map<uint32_t, AgentReport> reports = {{0, Report("new", "9-0", {})}};
  f.InboxDrained();
  f.Reconcile(reports, w.cb());
  f.InboxDrained();
  EXPECT_TRUE(f.Reconcile(reports, w.cb()).lost.empty()) << "the restart itself is the liveness check's to handle";
}

TEST(AttemptFence, AttemptsTheHeadDoesNotWantAreStoppedOnceWhenTwoReportsAgree) {
  World w;
  AttemptFence f;
  f.NewTerm("t2");
  w.in_flight[0] = {5, 0};
  f.Placed(0, 5, 0, "inc");
  f.Delivered(0, StreamId{1, 0});
  const std::set<AgentReport::Key> held = {
      {"job-0", 5, "t2"}, {"job-0", 5, "t1"}, {"job-1", 2, "t2"}, {"ghost", 1, "t2"}};
  EXPECT_TRUE(f.Reconcile({{0, Report("inc", "1-0", held, 7)}}, w.cb()).stop.empty())
      << "one report may predate the attempt's end: wait for the next";
  EXPECT_TRUE(f.Reconcile({{0, Report("inc", "1-0", held, 7)}}, w.cb()).stop.empty()) << "the same report read again";
  auto v = f.Reconcile({{0, Report("inc", "1-0", held, 8)}}, w.cb());
  ASSERT_EQ(v.stop.size(), 3u);
  std::set<AgentReport::Key> stopped;
  for (const auto& [node, key] : v.stop) {
    EXPECT_EQ(node, 0u);
    stopped.insert(key);
  }
  EXPECT_TRUE(stopped.count({"job-0", 5, "t1"})) << "the same serial of an earlier term";
  EXPECT_TRUE(stopped.count({"job-1", 2, "t2"})) << "a job with nothing in flight there";
  EXPECT_TRUE(stopped.count({"ghost", 1, "t2"})) << "a job the head does not know";
  EXPECT_TRUE(f.Reconcile({{0, Report("inc", "1-0", held, 9)}}, w.cb()).stop.empty()) << "told once";
  f.Reconcile({{0, Report("inc", "1-0", {{"job-0", 5, "t2"}}, 10)}}, w.cb());
  f.Reconcile({{0, Report("inc", "1-0", {{"job-0", 5, "t2"}, {"job-1", 2, "t2"}}, 11)}}, w.cb());
  EXPECT_EQ(f.Reconcile({{0, Report("inc", "1-0", {{"job-0", 5, "t2"}, {"job-1", 2, "t2"}}, 12)}}, w.cb()).stop.size(),
            1u)
      << "held again later: told again";
  AgentReport done = Report("inc", "1-0", {{"job-2", 9, "t2"}}, 13);
  done.finished.insert({"job-2", 9, "t2"});
  f.Reconcile({{0, done}}, w.cb());
  done.beat = 14;
  EXPECT_TRUE(f.Reconcile({{0, done}}, w.cb()).stop.empty()) << "finished, result on its way: nothing to stop";
}

TEST(AgentReport, FromRegistration) {
  Json holds = Json::array();
  holds.push_back({{"job", "a"}, {"serial", 3}, {"term", "t"}});
  Json reg = {{"incarnation", "i1"}, {"read", "17-2"}, {"holds", holds}, {"beat", 4u}};
  AgentReport r = AgentReport::FromRegistration(reg);
  EXPECT_TRUE(r.valid);
  EXPECT_EQ(r.incarnation, "i1");
  EXPECT_EQ(r.read, (StreamId{17, 2}));
  EXPECT_EQ(r.holds.size(), 1u);
  EXPECT_TRUE(r.holds.count({"a", 3, "t"}));
  EXPECT_EQ(r.beat, 4u);
  EXPECT_FALSE(AgentReport::FromRegistration(Json{{"incarnation", "i1"}}).valid) << "an agent without a report";
}

}  // namespace
}  // namespace baton::cluster
