// The driver kit's lifecycle in virtual time: every timer (backoff, timeout, abandon) is driven by
// the `now` argument, nothing sleeps.
#include "driver/driver.h"

#include <gtest/gtest.h>

#include "baton/pipeline.h"
#include "util/clock.h"
#include "driver/scheduler_setup.h"
#include "driver/views.h"

namespace baton::driver {
namespace {

class Recorder : public EventSink {
 public:
  void OnEvent(const Event& e) override { events.push_back(e); }
  std::vector<Event> events;
  int Count(Event::Type t) const {
    int n = 0;
    for (const auto& e : events) n += e.type == t;
    return n;
  }
};

class CountingStore : public JobStore {
 public:
  void JobChanged(uint32_t) override { ++changed; }
  void AttemptRecorded(uint32_t, const AttemptReport& a) override { recorded.push_back(a.status); }
  int changed = 0;
  std::vector<std::string> recorded;
};

PipelineSpec Pipeline(const std::string& yaml) { return ParsePipeline(yaml, "p.yaml").value(); }

NodeSpec Node(const std::string& name, double cpus, double gpus = 0) {
  NodeSpec n;
  n.name = name;
  n.cpus = cpus;
  n.gpus = gpus;
  return n;
}

AttemptOutcome Ok(Json result = Json::object()) { return AttemptOutcome::From(StepOutcome::Ok(std::move(result))); }
AttemptOutcome Fail(std::string why, bool retryable = true) {
  return AttemptOutcome::From(StepOutcome::Failure(std::move(why), retryable));
}

struct Fixture {
  Driver d;
  std::shared_ptr<Recorder> rec = std::make_shared<Recorder>();
  CountingStore store;
  std::vector<core::Placement> placed;
  explicit Fixture(const std::string& yaml, std::vector<NodeSpec> nodes) {
    d.AddSink(rec);
    d.SetStore(&store);
    for (const auto& n : nodes) d.AddNode(n, 0);
    const std::string from = "test";
    auto p = d.AddPipeline(Pipeline(yaml), "", &from);
    EXPECT_TRUE(p.ok()) << p.error();
  }
  std::vector<core::Placement> Decide(double now) {
    placed.clear();
    d.Decide(now, &placed);
    return placed;
  }
};

TEST(Driver, RetryWithBackoffThenSuccessRecordsEveryAttempt) {
  Fixture f("steps:\n  - name: a\n    uses: sleep\n    retries: 2\n    backoff: 4s\n", {Node("n1", 1)});
  f.d.Submit("job-0", "in", 0, 0);
  auto p = f.Decide(0);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_TRUE(f.d.Finish(0, p[0].serial, Fail("boom"), 1));
  EXPECT_TRUE(f.Decide(2).empty());           // backing off until 1 + 4
  EXPECT_DOUBLE_EQ(f.d.NextWakeup(), 5);
  p = f.Decide(5);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].step_attempt, 2);
  EXPECT_TRUE(f.d.Finish(0, p[0].serial, Ok({{"x", 1}}), 6));
  const JobRecord& j = f.d.job(0);
  EXPECT_EQ(j.report.status, "succeeded");
  ASSERT_EQ(j.report.attempts.size(), 2u);
  EXPECT_EQ(j.report.attempts[0].status, "failed");
  EXPECT_EQ(j.report.attempts[0].error, "boom");
  EXPECT_EQ(j.report.attempts[1].status, "ok");
  EXPECT_EQ((*j.results)["a"]["x"], 1);
  ASSERT_EQ(j.history->size(), 1u);
  EXPECT_EQ((*j.history)[0].attempt, 2);
  EXPECT_EQ(f.rec->Count(Event::Type::kRetryScheduled), 1);
  EXPECT_EQ(f.store.recorded, (std::vector<std::string>{"failed", "ok"}));
  EXPECT_TRUE(f.d.all_ended());
}

TEST(Driver, PermanentFailureEndsTheJobAtOnce) {
  Fixture f("steps:\n  - name: a\n    uses: sleep\n    retries: 5\n", {Node("n1", 1)});
  f.d.Submit("job-0", "", 0, 0);
  auto p = f.Decide(0);
  f.d.Finish(0, p[0].serial, Fail("404 not found", false), 1);
  EXPECT_EQ(f.d.job(0).report.status, "failed");
  EXPECT_EQ(f.d.job(0).report.error, "a failed after 1 attempt: 404 not found");
}

TEST(Driver, TimeoutIsReportedOnceAndTheLateOutcomeCountsAsTimeout) {
  Fixture f("steps:\n  - name: a\n    uses: sleep\n    timeout: 10s\n", {Node("n1", 1)});
  f.d.Submit("job-0", "", 0, 0);
  auto p = f.Decide(0);
  std::vector<core::AttemptRef> refs;
  f.d.Expired(9.9, 5, &refs);
  EXPECT_TRUE(refs.empty());
  f.d.Expired(10, 5, &refs);
  ASSERT_EQ(refs.size(), 1u);
  refs.clear();
  f.d.Expired(11, 5, &refs);
  EXPECT_TRUE(refs.empty());
  f.d.Finish(0, p[0].serial, AttemptOutcome::From(StepOutcome::Cancelled()), 11);
  EXPECT_EQ(f.d.job(0).report.attempts[0].status, "timeout");
  EXPECT_EQ(f.d.job(0).report.attempts[0].error, "timed out after 10s");
  EXPECT_EQ(f.d.job(0).report.status, "failed");
}

// The loop every backend runs (Driver::Turn) through a transport that only records: a timeout is
// stopped through the transport once, an attempt that ignores the stop is abandoned after its
// grace, the retry waits out its backoff, and each start goes through the transport.
TEST(DriverTurn, TimeoutStopAbandonAndBackoffGoThroughTheTransport) {
  Fixture f("steps:\n  - name: a\n    uses: sleep\n    timeout: 10s\n    retries: 1\n    backoff: 3s\n",
            {Node("n1", 1)});
  f.d.Submit("job-0", "", 0, 0);
  FakeTransport t;
  Driver::TurnOptions o;
  o.grace = 2;
  o.abandon = true;
  EXPECT_EQ(f.d.Turn(t, 0, o), 1u);
  ASSERT_EQ(t.started.size(), 1u);
  const uint32_t first = t.started[0].serial;
  EXPECT_EQ(f.d.Turn(t, 9.9, o), 0u);
  EXPECT_TRUE(t.stopped.empty());
  f.d.Turn(t, 10, o);  // past its deadline: stopped, once
  f.d.Turn(t, 11, o);
  ASSERT_EQ(t.stopped.size(), 1u);
  EXPECT_EQ(t.stopped[0].serial, first);
  f.d.Turn(t, 12.5, o);  // it never reports: given up after its 2 s grace, retried after 3 s
  EXPECT_EQ(f.d.job(0).report.attempts.size(), 1u);
  EXPECT_EQ(f.d.job(0).report.attempts[0].status, "timeout");
  EXPECT_EQ(t.started.size(), 1u) << "backing off";
  EXPECT_FALSE(f.d.Finish(0, first, Ok(), 13)) << "a late outcome of the abandoned attempt is stale";
  f.d.Turn(t, f.d.NextWakeup(), o);
  ASSERT_EQ(t.started.size(), 2u);
  EXPECT_EQ(t.started[1].step_attempt, 2);
  EXPECT_TRUE(f.d.Finish(0, t.started[1].serial, Ok(), 16));
  EXPECT_EQ(f.d.job(0).report.status, "succeeded");
  // A stopping run starts nothing.
  f.d.Submit("job-1", "", 0, 16);
  o.place = false;
  EXPECT_EQ(f.d.Turn(t, 16, o), 0u);
  EXPECT_EQ(t.started.size(), 2u);
}

TEST(Driver, AnAttemptStoppedWithoutBeingCancelledIsLostNotTheJobCancelled) {
  Fixture f("steps:\n  - name: a\n    uses: sleep\n    retries: 0\n", {Node("n1", 1)});
  f.d.Submit("job-0", "", 0, 0);
  auto p = f.Decide(0);
  // An executor stopped it on its own (a stale stop, say): nobody here cancelled the job.
  ASSERT_TRUE(f.d.Finish(0, p[0].serial, AttemptOutcome::From(StepOutcome::Cancelled()), 1));
  EXPECT_EQ(f.d.job(0).report.attempts[0].status, "lost");
  EXPECT_EQ(f.d.job(0).end, JobEnd::kLive);
  auto again = f.Decide(2);
  ASSERT_EQ(again.size(), 1u) << "re-queued, and retries: 0 did not count it";
  f.d.Finish(0, again[0].serial, AttemptOutcome::From(StepOutcome::Ok({})), 3);
  EXPECT_EQ(f.d.job(0).report.status, "succeeded");
}

TEST(Driver, AnAttemptThatIgnoresStopIsAbandonedAfterItsGrace) {
  Fixture f("steps:\n  - name: a\n    uses: sleep\n    timeout: 1s\n", {Node("n1", 1)});
  f.d.Submit("job-0", "", 0, 0);
  auto p = f.Decide(0);
  std::vector<core::AttemptRef> refs;
  f.d.Expired(1, 3, &refs);
  ASSERT_EQ(refs.size(), 1u);
  EXPECT_DOUBLE_EQ(f.d.NextWakeup(), 4);
  f.d.AbandonOverdue(3.9, false);
  EXPECT_TRUE(f.d.job(0).in_flight.has_value());
  f.d.AbandonOverdue(4, false);
  EXPECT_FALSE(f.d.job(0).in_flight.has_value());
  EXPECT_EQ(f.d.job(0).report.attempts[0].status, "timeout");
  EXPECT_NE(f.d.job(0).report.attempts[0].error.find("abandoned"), std::string::npos);
  EXPECT_FALSE(f.d.Finish(0, p[0].serial, Ok(), 20));  // its late outcome is stale
}

TEST(Driver, CancelStopsTheAttemptAndEndsTheJobWhenItReports) {
  Fixture f("steps:\n  - name: a\n    uses: sleep\n    resources: {cpu: 1}\n", {Node("n1", 1)});
  f.d.Submit("job-0", "", 0, 0);
  f.d.Submit("job-1", "", 0, 0);
  auto p = f.Decide(0);
  ASSERT_EQ(p.size(), 1u);
  auto refs = f.d.Cancel(0, "cancelled", 1, 10);
  ASSERT_EQ(refs.size(), 1u);
  EXPECT_EQ(f.d.job(0).end, JobEnd::kLive);  // until its attempt reports
  f.d.Finish(0, p[0].serial, AttemptOutcome::From(StepOutcome::Cancelled()), 2);
  EXPECT_EQ(f.d.job(0).report.status, "cancelled");
  EXPECT_EQ(f.d.job(0).report.error, "cancelled");
  EXPECT_TRUE(f.d.Cancel(1, "cancelled", 2, 10).empty());  // nothing ran: ends at once
  EXPECT_EQ(f.d.job(1).report.status, "cancelled");
}

TEST(Driver, LostNodeReRunsTheAnchorThroughLineage) {
  Fixture f(
      "steps:\n  - name: fetch\n    uses: sleep\n  - name: gpu\n    uses: sleep\n    resources: {gpu: 1}\n"
      "    placement: {same_node_as: fetch}\n",
      {Node("a", 4, 1), Node("b", 4, 1)});
  f.d.Submit("job-0", "", 0, 0);
  auto p = f.Decide(0);
  ASSERT_EQ(p.size(), 1u);
  const uint32_t first = p[0].node;
  f.d.Finish(0, p[0].serial, Ok(), 1);
  p = f.Decide(1);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].node, first);  // same_node_as
  f.d.NodeLost(first, "no heartbeat", 2);
  EXPECT_EQ(f.d.job(0).report.attempts.back().status, "lost");
  p = f.Decide(2);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].step, 0);  // the download again: its file was on the lost node
  EXPECT_NE(p[0].node, first);
  f.d.Finish(0, p[0].serial, Ok(), 3);
  p = f.Decide(3);
  f.d.Finish(0, p[0].serial, Ok(), 4);
  EXPECT_EQ(f.d.job(0).report.status, "succeeded");
  Json view = f.d.JobJson(0, 4, true);
  EXPECT_EQ(view["state"], "succeeded");
  EXPECT_EQ(view["attempts"].size(), 4u);
  EXPECT_EQ(view["attempts"][1]["status"], "lost");
}

TEST(Driver, AHandedBackAttemptIsReQueuedWithoutCountingAsAFailedTry) {
  Fixture f("steps:\n  - name: a\n    uses: sleep\n    retries: 0\n", {Node("n1", 1), Node("n2", 1)});
  f.d.Submit("job-0", "", 0, 0);
  auto p = f.Decide(0);
  ASSERT_EQ(p.size(), 1u);
  f.d.scheduler().SetDraining(p[0].node, true);
  AttemptOutcome back = AttemptOutcome::From(StepOutcome::Cancelled());
  back.handed_back = true;
  EXPECT_TRUE(f.d.Finish(0, p[0].serial, std::move(back), 1));
  EXPECT_EQ(f.d.job(0).end, JobEnd::kLive);  // retries: 0, and still not failed
  EXPECT_EQ(f.d.job(0).report.attempts[0].status, "lost");
  EXPECT_EQ(f.d.job(0).report.attempts[0].error, "handed back by node " + f.d.nodes()[p[0].node].name + " (draining)");
  const uint32_t drained = p[0].node;
  p = f.Decide(1);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].node, drained);
  EXPECT_TRUE(f.d.Finish(0, p[0].serial, Ok(), 2));
  EXPECT_EQ(f.d.job(0).report.status, "succeeded");
  EXPECT_EQ(f.d.NodesJson()[drained]["draining"], true);
}

TEST(Driver, RestoredJobKeepsItsAttemptWhenTheNodeIsKnown) {
  Fixture f("steps:\n  - name: a\n    uses: sleep\n  - name: b\n    uses: sleep\n", {Node("n1", 2)});
  RestoredJob r;
  r.id = "job-9";
  r.step = 1;
  r.homes = {0, -1};
  r.serial = 7;
  r.results = {{"a", {{"v", 3}}}};
  r.in_flight = InFlightAttempt{};
  r.in_flight->serial = 7;
  r.in_flight->step = 1;
  r.in_flight->step_attempt = 1;
  r.in_flight->start = 5.0;
  const uint32_t j = f.d.Restore(r, 10);
  EXPECT_TRUE(f.d.job(j).in_flight.has_value());
  EXPECT_TRUE(f.Decide(10).empty());
  EXPECT_TRUE(f.d.Finish(j, 7, Ok(), 11));
  EXPECT_EQ(f.d.job(j).report.status, "succeeded");
  EXPECT_EQ((*f.d.job(j).results)["a"]["v"], 3);
}

TEST(Views, AttemptJsonRoundTrips) {
  AttemptReport a{"analyze", "gpu-1", "failed", "boom", 2, 1.5, 4.0, {0, 1}, 1.25, "w0.b1"};
  AttemptReport b = AttemptFromJson(AttemptJson(a));
  EXPECT_EQ(b.step, a.step);
  EXPECT_EQ(b.node, a.node);
  EXPECT_EQ(b.status, a.status);
  EXPECT_EQ(b.error, a.error);
  EXPECT_EQ(b.attempt, 2);
  EXPECT_DOUBLE_EQ(b.end, 4.0);
  EXPECT_EQ(b.gpus, (std::vector<int>{0, 1}));
  EXPECT_DOUBLE_EQ(AttemptJson(a)["seconds"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(b.placed, 1.25);
  EXPECT_EQ(b.batch, "w0.b1");
  // Fields of another type are left as they were; a running attempt has no end.
  AttemptReport c = AttemptFromJson(Json{{"step", 3}, {"attempt", "two"}, {"status", "running"}, {"start", 1.0}});
  EXPECT_EQ(c.step, "");
  EXPECT_EQ(c.attempt, 0);
  EXPECT_FALSE(AttemptJson(c).contains("end"));
}

TEST(SchedulerSetup, GpuMasksAndNodeRegistrationsRoundTrip) {
  EXPECT_EQ(GpusFromMask(0b1011), (std::vector<int>{0, 1, 3}));
  EXPECT_EQ(MaskFromGpus({0, 1, 3}), 0b1011u);
  NodeSpec n = Node("w", 8, 2);
  n.resources["download_slot"] = 1;
  n.labels["role"] = "head";
  NodeSpec back = NodeSpecFromJson("w", NodeSpecToJson(n));
  EXPECT_EQ(back.cpus, 8);
  EXPECT_EQ(back.gpus, 2);
  EXPECT_EQ(back.resources, n.resources);
  EXPECT_EQ(back.labels, n.labels);
}

TEST(SchedulerSetup, UnknownStepKindIsOneLineNamingFileLineAndStep) {
  StepRegistry& reg = StepRegistry::Global();
  auto steps = CreateSteps(Pipeline("steps:\n  - name: a\n    uses: nope\n"), reg);
  ASSERT_FALSE(steps.ok());
  EXPECT_EQ(steps.error().rfind("p.yaml:2: steps.a.uses: unknown step kind 'nope'", 0), 0u) << steps.error();
}

TEST(Clock, FakeClockMovesOnlyWhenTold) {
  FakeClock c(100, 2000);
  EXPECT_EQ(c.Monotonic(), 100);
  c.Advance(5);
  EXPECT_EQ(c.Monotonic(), 105);
  EXPECT_EQ(c.Wall(), 2005);
  c.JumpWall(-3600);  // NTP step back: intervals unaffected
  EXPECT_EQ(c.Monotonic(), 105);
  EXPECT_EQ(c.Wall(), 2005 - 3600);
}

}  // namespace
}  // namespace baton::driver

namespace baton::driver {
namespace {

AttemptOutcome Parked(const std::string& id, double poll) { return AttemptOutcome::From(StepOutcome::Park(id, poll)); }

// Parked attempts: one timer per park id, not per attempt; done ends them with their outcome or
// wakes them (the same attempt runs again); cancel ends a parked attempt at once.
TEST(DriverPark, OneCheckPerParkIdThenOutcomesAndWakes) {
  Fixture f("steps:\n  - name: s\n    uses: sleep\n    timeout: 5s\n    resources: {cpu: 1}\n", {Node("n1", 1)});
  FakeTransport t;
  for (int i = 0; i < 4; ++i) f.d.Submit("job-" + std::to_string(i), "", 0, 0);
  // One cpu, yet all four park in turn: a parked attempt holds nothing.
  for (int round = 0; round < 4; ++round) {
    const size_t before = t.started.size();
    ASSERT_EQ(f.d.Turn(t, round, {}), 1u);
    const core::Placement p = t.started[before];
    ASSERT_TRUE(f.d.Finish(p.job, p.serial, Parked("b1", 10), round));
  }
  EXPECT_EQ(f.d.parked_count(), 4u);
  EXPECT_NE(f.d.WaitText(0, 4).find("parked in b1"), std::string::npos);
  f.d.Turn(t, 9, {});
  EXPECT_TRUE(t.checks.empty());
  EXPECT_TRUE(t.stopped.empty());  // past their 5 s timeout, but parked: no deadline
  EXPECT_EQ(f.d.NextWakeup(), 10);  // the first park's poll: one timer for the id
  f.d.Turn(t, 10, {});
  ASSERT_EQ(t.checks.size(), 1u);
  EXPECT_EQ(t.checks[0].id, "b1");
  f.d.Turn(t, 11, {});
  EXPECT_EQ(t.checks.size(), 1u);  // asked once; waiting for the answer
  // No deadline while parked (timeout 5s).
  EXPECT_EQ(f.d.job(0).in_flight->timed_out, false);
  ParkCheck not_yet;
  not_yet.poll_in = 30;
  f.d.ParkChecked(t, 0, 0, "b1", not_yet, 12);
  EXPECT_EQ(f.d.NextWakeup(), 42);
  // Cancel ends a parked attempt at once.
  t.stopped.clear();
  EXPECT_TRUE(f.d.Cancel(3, "cancelled", 13, 1).empty());
  EXPECT_EQ(f.d.job(3).end, JobEnd::kCancelled);
  f.d.Turn(t, 42, {});
  ASSERT_EQ(t.checks.size(), 2u);
  ParkCheck done;
  done.done = true;
  done.outcomes["job-0"] = StepOutcome::Ok({{"summary", "a"}});
  done.outcomes["job-1"] = StepOutcome::Failure("item failed", false);
  const size_t started = t.started.size();
  f.d.ParkChecked(t, 0, 0, "b1", done, 43);
  EXPECT_EQ(f.d.job(0).end, JobEnd::kSucceeded);
  EXPECT_EQ(f.d.job(1).end, JobEnd::kFailed);
  // job-2 had no outcome: woken, the same attempt (serial) starts again.
  ASSERT_EQ(t.started.size(), started + 1);
  EXPECT_EQ(t.started.back().job, 2u);
  EXPECT_EQ(t.started.back().serial, f.d.job(2).in_flight->serial);
  EXPECT_TRUE(f.d.job(2).in_flight->parked.empty());
  EXPECT_TRUE(f.d.Finish(2, t.started.back().serial, Ok(), 44));
  EXPECT_TRUE(f.d.all_ended());
  EXPECT_EQ(f.d.ParksJson(44).size(), 0u);
}

TEST(DriverPark, ABackendThatCannotCheckFailsTheParkedAttempts) {
  struct NoParks : FakeTransport {
    bool CheckPark(uint32_t, uint16_t, const std::string&) override { return false; }
  } t;
  Fixture f("steps:\n  - name: s\n    uses: sleep\n", {Node("n1", 1)});
  f.d.Submit("job-0", "", 0, 0);
  f.d.Turn(t, 0, {});
  ASSERT_TRUE(f.d.Finish(0, t.started[0].serial, Parked("b1", 0), 0));
  f.d.Turn(t, 1, {});
  EXPECT_EQ(f.d.job(0).end, JobEnd::kFailed);
  EXPECT_NE(f.d.job(0).report.error.find("cannot wait for parked attempts"), std::string::npos);
}

}  // namespace
}  // namespace baton::driver
