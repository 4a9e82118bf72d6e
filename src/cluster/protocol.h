// The wire protocol between `baton submit`/`cancel`, the head and node agents: typed messages
// with one encoder and one decoder each, carried as the "m" field of Redis stream entries.
//
//   head -> agent   (PREFIX:place:NODE)  RunAttempt, StopAttempt, RemoveWork, RetireWorker; DrainNode (from
//                                        `baton node drain`)
//   agent -> head   (PREFIX:inbox)       AttemptResults (a batch of AttemptResult), NodeJoined
//   client -> head  (PREFIX:inbox)       SubmitJobs, JobCommand (cancel, retry)
//
// Every message is a JSON object {"v": kProtocolVersion, "t": TYPE, ...}. A decoder refuses a
// message of another version (a mixed-version cluster is told, never misread) and names what is
// wrong with a malformed one, or one nested deeper than kMaxNesting. Encoders of the hot messages
// (RunAttempt, AttemptResult) write the text directly, splicing in JSON the caller encoded once
// (results, history).
//
// Plain functions; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "baton/status.h"
#include "baton/step.h"

namespace baton::cluster::protocol {

// 2: RemoveWork (an agent of version 1 would not know it; the versions are refused, not mixed).
// RetireWorker is new within version 2 on purpose: an agent that does not know it logs the
// placement as ignored and its worker exits by its own idle timer, which is what it did before.
inline constexpr int kProtocolVersion = 2;

// The deepest nesting of arrays and objects a message may have, its own levels included (a result
// in AttemptResults sits 3 levels down, in RunAttempt's results 2). Deeper messages are refused
// before they are parsed: parsing is iterative, but copying a Json and dump() recurse, so a result
// nested a million levels deep would overflow the head's stack.
inline constexpr int kMaxNesting = 64;

// Where an earlier step of the job ran: its node and artifact server address.
struct StepHome {
  std::string node, address;
};

struct RunAttempt {
  std::string job;
  uint32_t serial = 0;
  uint16_t step = 0;
  int attempt = 1;
  std::string pipeline;            // the cluster's pipeline id
  std::string input;
  Json results = Json::object();   // decoded; encoded from results_json
  std::vector<StepRun> history;    // decoded; encoded from history_json
  std::vector<StepHome> homes;     // per earlier step ("" node: unknown)
  std::vector<int> gpus;
  int worker = -1;                 // the resident worker it joins (uses: worker), -1 none; optional
                                   // on the wire, so agents of the same protocol version interoperate
  std::string incarnation;         // the agent incarnation it is meant for
  std::string term;                // the head term that placed it (fence.h): with job and serial,
                                   // an attempt id never reused in the cluster's life
  double placed = 0;               // wall seconds
};

struct StopAttempt {
  std::string job;
  uint32_t serial = 0;
  std::string incarnation;
  std::string term;                // "" stops the attempt (job, serial) of any term
};

// The scheduler retired this resident worker (idle past its idle_timeout, or its node drains) and
// gave its grant back: the agent tells it to shut down now, before the grant is placed again.
struct RetireWorker {
  std::string pipeline;            // the cluster's pipeline id
  uint16_t step = 0;
  int worker = 0;
  std::string incarnation;
};

// These jobs ended (succeeded or cancelled) and an attempt of each ran on this agent: remove their
// work folders (WORKDIR/JOB/), unless the agent runs with --keep-work, once no attempt of the job
// runs there. The jobs' delivered files are in WORKDIR/out/JOB/ on the node that made them: kept.
// One message per node per head turn, for every job that ended in it.
struct RemoveWork {
  std::vector<std::string> jobs;
};

// `baton node drain NAME`: the agent drains as on SIGTERM (no new work, running attempts finish
// within its drain timeout, the rest handed back), then leaves.
struct DrainNode {
  std::string reason;
};

struct AttemptResult {
  std::string job;
  uint32_t serial = 0;
  std::string node;
  std::string incarnation;         // of the agent that ran it
  std::string term;                // copied from the RunAttempt
  int pid = 0;
  double start = 0, end = 0;       // wall seconds on the agent
  StepOutcome::Kind kind = StepOutcome::Kind::kFailed;
  bool retryable = true;
  Json result;                     // kOk
  std::string error;               // otherwise
  std::string main_output;
  std::string batch;               // StepOutcome::batch
  bool handed_back = false;        // not finished: the agent is draining (re-queued, not a failure)
  // Not an end but a notice: the attempt started waiting outside the CPU for `waiting` ("rate
  // NAME"), or stopped ("" ). Travels in the same batch as results so it stays in order with the
  // attempt's end ("status": "waiting", "wait": ...).
  bool wait_notice = false;
  std::string waiting;
};

struct AttemptResults {
  std::vector<AttemptResult> list;
};

struct NodeJoined {
  std::string name;
};

struct SubmitJobs {
  std::string pipeline;
  std::vector<std::string> jobs;
};

struct JobCommand {
  enum class Kind { kCancel, kRetry } kind = Kind::kCancel;
  std::string job;
};

using AgentMessage = std::variant<RunAttempt, StopAttempt, DrainNode, RemoveWork, RetireWorker>;
using InboxMessage = std::variant<AttemptResults, NodeJoined, SubmitJobs, JobCommand>;

// `results_json` and `history_json` are the JSON texts of the job's results object and history
// array (HistoryJson), encoded once per change by the head.
std::string Encode(const RunAttempt& m, std::string_view results_json, std::string_view history_json);
std::string Encode(const StopAttempt& m);
std::string Encode(const RetireWorker& m);
std::string Encode(const DrainNode& m);
std::string Encode(const RemoveWork& m);
std::string Encode(const AttemptResult& m);  // one result, as listed in an AttemptResults
// An AttemptResults entry from results already encoded with Encode(AttemptResult).
std::string EncodeResults(const std::vector<std::string>& encoded);
std::string Encode(const NodeJoined& m);
std::string Encode(const SubmitJobs& m);
std::string Encode(const JobCommand& m);

std::string HistoryJson(const std::vector<StepRun>& history);

Result<AgentMessage> DecodeAgentMessage(std::string_view text);
Result<InboxMessage> DecodeInboxMessage(std::string_view text);

}  // namespace baton::cluster::protocol
