// The head/agent wire protocol: every message round-trips, other versions and malformed
// messages are refused with a line that says what is wrong.
#include "cluster/protocol.h"

#include <gtest/gtest.h>

namespace baton::cluster::protocol {
namespace {

TEST(Protocol, RunAttemptRoundTrips) {
  RunAttempt m;
  m.job = "job-\"7\"";
  m.serial = 4000000000u;
  m.step = 2;
  m.attempt = 3;
  m.pipeline = "12";
  m.input = "http://127.0.0.1/季度报告.mp4";
  m.homes = {{"a", "127.0.0.1:9000"}, {}};
  m.gpus = {0, 3};
  m.incarnation = "abc-1";
  m.term = "5f0e";
  m.placed = 1.8e9 + 0.25;
  const std::vector<StepRun> history = {{"download", "a", 1, 1.5, {}}, {"analyze", "a", 2, 3.25, {0}}};
  auto d = DecodeAgentMessage(Encode(m, R"({"download":{"path":"x"}})", HistoryJson(history)));
  ASSERT_TRUE(d.ok()) << d.error();
  const auto& r = std::get<RunAttempt>(*d);
  EXPECT_EQ(r.job, m.job);
  EXPECT_EQ(r.serial, m.serial);
  EXPECT_EQ(r.step, 2);
  EXPECT_EQ(r.attempt, 3);
  EXPECT_EQ(r.input, m.input);
  EXPECT_EQ(r.results["download"]["path"], "x");
  ASSERT_EQ(r.history.size(), 2u);
  EXPECT_EQ(r.history[1].step, "analyze");
  EXPECT_EQ(r.history[1].gpus, std::vector<int>{0});
  EXPECT_DOUBLE_EQ(r.history[1].seconds, 3.25);
  ASSERT_EQ(r.homes.size(), 2u);
  EXPECT_EQ(r.homes[0].address, "127.0.0.1:9000");
  EXPECT_EQ(r.homes[1].node, "");
  EXPECT_EQ(r.gpus, (std::vector<int>{0, 3}));
  EXPECT_EQ(r.incarnation, "abc-1");
  EXPECT_EQ(r.term, "5f0e");
  EXPECT_NEAR(r.placed, m.placed, 1e-6);
}

TEST(Protocol, StopAndInboxMessagesRoundTrip) {
  auto stop = DecodeAgentMessage(Encode(StopAttempt{"job-1", 9, "inc", "t1"}));
  ASSERT_TRUE(stop.ok()) << stop.error();
  EXPECT_EQ(std::get<StopAttempt>(*stop).serial, 9u);
  EXPECT_EQ(std::get<StopAttempt>(*stop).term, "t1");

  AttemptResult ok;
  ok.job = "job-1";
  ok.serial = 2;
  ok.node = "n";
  ok.incarnation = "inc-2";
  ok.term = "t1";
  ok.pid = 42;
  ok.start = 10;
  ok.end = 12.5;
  ok.kind = StepOutcome::Kind::kOk;
  ok.result = {{"bytes", 5}};
  ok.main_output = "/out/job-1/report.md";
  AttemptResult back = ok;
  back.kind = StepOutcome::Kind::kCancelled;
  back.handed_back = true;
  auto backd = DecodeInboxMessage(EncodeResults({Encode(back)}));
  ASSERT_TRUE(backd.ok()) << backd.error();
  EXPECT_TRUE(std::get<AttemptResults>(*backd).list[0].handed_back);
  EXPECT_EQ(std::get<AttemptResults>(*backd).list[0].incarnation, "inc-2");
  EXPECT_EQ(std::get<AttemptResults>(*backd).list[0].term, "t1");
  AttemptResult batched = ok;
  batched.batch = "w2.b7";
  auto batchd = DecodeInboxMessage(EncodeResults({Encode(batched)}));
  ASSERT_TRUE(batchd.ok()) << batchd.error();
  EXPECT_EQ(std::get<AttemptResults>(*batchd).list[0].batch, "w2.b7");
  auto retire = DecodeAgentMessage(Encode(RetireWorker{"p-3", 2, 5, "inc-2"}));
  ASSERT_TRUE(retire.ok()) << retire.error();
  EXPECT_EQ(std::get<RetireWorker>(*retire).pipeline, "p-3");
  EXPECT_EQ(std::get<RetireWorker>(*retire).step, 2);
  EXPECT_EQ(std::get<RetireWorker>(*retire).worker, 5);
  EXPECT_EQ(std::get<RetireWorker>(*retire).incarnation, "inc-2");
  auto drain = DecodeAgentMessage(Encode(DrainNode{"maintenance"}));
  ASSERT_TRUE(drain.ok()) << drain.error();
  EXPECT_EQ(std::get<DrainNode>(*drain).reason, "maintenance");
  AttemptResult bad = ok;
  bad.kind = StepOutcome::Kind::kFailed;
  bad.retryable = false;
  bad.error = "404";
  auto results = DecodeInboxMessage(EncodeResults({Encode(ok), Encode(bad)}));
  ASSERT_TRUE(results.ok()) << results.error();
  const auto& list = std::get<AttemptResults>(*results).list;
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].kind, StepOutcome::Kind::kOk);
  EXPECT_EQ(list[0].result["bytes"], 5);
  EXPECT_EQ(list[0].main_output, "/out/job-1/report.md");
  EXPECT_DOUBLE_EQ(list[0].end, 12.5);
  EXPECT_EQ(list[1].kind, StepOutcome::Kind::kFailed);
  EXPECT_FALSE(list[1].retryable);
  EXPECT_EQ(list[1].error, "404");

  // A wait notice rides in the same batch, in order with the attempt's end.
  AttemptResult wait;
  wait.job = "job-1";
  wait.serial = 3;
  wait.node = "a";
  wait.wait_notice = true;
  wait.waiting = "rate openai_tokens";
  AttemptResult resumed = wait;
  resumed.waiting = "";
  auto waits = DecodeInboxMessage(EncodeResults({Encode(wait), Encode(resumed), Encode(ok)}));
  ASSERT_TRUE(waits.ok()) << waits.error();
  const auto& wl = std::get<AttemptResults>(*waits).list;
  ASSERT_EQ(wl.size(), 3u);
  EXPECT_TRUE(wl[0].wait_notice);
  EXPECT_EQ(wl[0].waiting, "rate openai_tokens");
  EXPECT_EQ(wl[0].serial, 3u);
  EXPECT_TRUE(wl[1].wait_notice);
  EXPECT_EQ(wl[1].waiting, "");
  EXPECT_FALSE(wl[2].wait_notice);

  auto submit = DecodeInboxMessage(Encode(SubmitJobs{"3", {"job-0", "job-1"}}));
  ASSERT_TRUE(submit.ok());
  EXPECT_EQ(std::get<SubmitJobs>(*submit).jobs.size(), 2u);
  auto retry = DecodeInboxMessage(Encode(JobCommand{JobCommand::Kind::kRetry, "job-4"}));
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(std::get<JobCommand>(*retry).kind, JobCommand::Kind::kRetry);
  auto joined = DecodeInboxMessage(Encode(NodeJoined{"gpu-1"}));
  ASSERT_TRUE(joined.ok());
  EXPECT_EQ(std::get<NodeJoined>(*joined).name, "gpu-1");
}

TEST(Protocol, RemoveWorkRoundTrips) {
  auto d = DecodeAgentMessage(Encode(RemoveWork{{"job-\"9\" 季", "job-10"}}));
  ASSERT_TRUE(d.ok()) << d.error();
  ASSERT_TRUE(std::holds_alternative<RemoveWork>(*d));
  EXPECT_EQ(std::get<RemoveWork>(*d).jobs, (std::vector<std::string>{"job-\"9\" 季", "job-10"}));
  EXPECT_EQ(DecodeAgentMessage(R"({"v":2,"t":"remove_work"})").error(),
            "protocol: remove_work.jobs: missing or not an array");
  EXPECT_EQ(DecodeAgentMessage(R"({"v":2,"t":"remove_work","jobs":[7]})").error(),
            "protocol: remove_work.jobs: not a list of strings");
}

TEST(Protocol, OtherVersionsAreRefusedByName) {
  auto r = DecodeInboxMessage(R"({"v":3,"t":"cancel","job":"job-1"})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.error(),
            "protocol: version 3 is not supported (this is version 2); run one Baton version across the cluster");
  // Version 1 agents know no RemoveWork: they are refused too, not half understood.
  auto old = DecodeAgentMessage(R"({"v":1,"t":"remove_work","job":"job-1"})");
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.error(),
            "protocol: version 1 is not supported (this is version 2); run one Baton version across the cluster");
  auto unversioned = DecodeAgentMessage(R"({"t":"run","job":"job-1"})");
  ASSERT_FALSE(unversioned.ok());
  EXPECT_EQ(unversioned.error(), "protocol: message without a version (this is version 2)");
}

TEST(Protocol, MalformedMessagesSayWhatIsWrong) {
  EXPECT_EQ(DecodeAgentMessage("not json").error(), "protocol: message is not a JSON object");
  EXPECT_EQ(DecodeAgentMessage(R"({"v":2,"t":"dance"})").error(),
            "protocol: unknown message type 'dance' for an agent");
  EXPECT_EQ(DecodeAgentMessage(R"({"v":2,"t":"stop","job":"j","serial":-1,"inc":"x"})").error(),
            "protocol: stop.serial: missing or not an unsigned 32-bit number");
  auto gpus = DecodeAgentMessage(
      R"({"v":2,"t":"run","job":"j","serial":1,"step":0,"attempt":1,"pipeline":"1","input":"","inc":"i",)"
      R"("history":[],"homes":[],"gpus":[99]})");
  EXPECT_EQ(gpus.error(), "protocol: run.gpus: must list device ids 0..63");
  auto result = DecodeInboxMessage(R"({"v":2,"t":"results","list":[{"job":"j","serial":1,"status":"maybe"}]})");
  EXPECT_EQ(result.error(), "protocol: result.status: must be ok, failed, cancelled or waiting");
}

// Inputs the fuzz target found (fuzz/regressions/protocol/): a field of another type threw, a
// number past int's range was converted with undefined behaviour, a huge GPU id wrapped to 0.
TEST(Protocol, FuzzFindingsAreErrorsNotExceptions) {
  const std::string run =
      R"({"v":2,"t":"run","job":"j","serial":1,"step":0,"pipeline":"1","input":"","inc":"i","homes":[{"node":7}],)";
  auto typed = DecodeAgentMessage(run + R"("attempt":1,"history":[{"step":3,"node":"n","attempt":"2"}],"gpus":[]})");
  ASSERT_TRUE(typed.ok()) << typed.error();
  const auto& m = std::get<RunAttempt>(*typed);
  ASSERT_EQ(m.history.size(), 1u);
  EXPECT_EQ(m.history[0].step, "");  // not a string: empty, as when missing
  EXPECT_EQ(m.history[0].node, "n");
  ASSERT_EQ(m.homes.size(), 1u);
  EXPECT_EQ(m.homes[0].node, "");
  EXPECT_EQ(DecodeAgentMessage(run + R"("attempt":1e300,"history":[],"gpus":[]})").error(),
            "protocol: run.attempt: out of range");
  EXPECT_EQ(DecodeAgentMessage(run + R"("attempt":1,"history":[{"attempt":-1e300}],"gpus":[]})").error(),
            "protocol: run.history[].attempt: out of range");
  EXPECT_EQ(DecodeAgentMessage(run + R"("attempt":1,"history":[],"gpus":[4294967296]})").error(),
            "protocol: run.gpus: must list device ids 0..63");
  EXPECT_EQ(
      DecodeInboxMessage(R"({"v":2,"t":"results","list":[{"job":"j","serial":1,"pid":1e300,"status":"ok"}]})").error(),
      "protocol: result.pid: out of range");
}

// A stream entry nested deeper than kMaxNesting levels is refused before anything copies or prints it: parsing is
// iterative, but copying and dump() recurse, and 1,000,000 levels crashed the head.
TEST(Protocol, DeeplyNestedMessagesAreRefused) {
  const auto nested = [](size_t levels) {
    return R"({"v":2,"t":"results","list":[{"job":"j","serial":1,"status":"ok","result":)" + std::string(levels, '[') +
           std::string(levels, ']') + "}]}";
  };
  // The message's own 3 levels (object, list, entry) count: a result may nest kMaxNesting - 3 levels.
  auto fits = DecodeInboxMessage(nested(kMaxNesting - 3));
  ASSERT_TRUE(fits.ok()) << fits.error();
  const std::string refused = "protocol: message nested deeper than 64 levels";
  EXPECT_EQ(DecodeInboxMessage(nested(kMaxNesting - 2)).error(), refused);
  EXPECT_EQ(DecodeInboxMessage(nested(1000000)).error(), refused);
  std::string run = R"({"v":2,"t":"run","job":"j","serial":1,"step":0,"attempt":1,"pipeline":"1","input":"","inc":"i",)"
                    R"("history":[],"homes":[],"gpus":[],"results":{"a":)";
  for (int i = 0; i < 500000; ++i) run += R"({"x":)";
  run += "1";
  for (int i = 0; i < 500000; ++i) run += "}";
  run += "}}";
  EXPECT_EQ(DecodeAgentMessage(run).error(), refused);
  // Brackets inside strings are text, not nesting.
  const std::string text = std::string(100, '[') + "\\\"" + std::string(100, '{');
  auto quoted = DecodeInboxMessage(R"({"v":2,"t":"results","list":[{"job":"j","serial":1,"status":"ok","error":")" +
                                   text + R"("}]})");
  ASSERT_TRUE(quoted.ok()) << quoted.error();
}

}  // namespace
}  // namespace baton::cluster::protocol
