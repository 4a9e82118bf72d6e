// Step host: runs one attempt of a step, the same way in the embedded runtime's workers and in a
// node agent. It builds the StepContext, creates the job's work folder when the step needs one,
// routes the step's log lines and progress to event sinks, and catches whatever the step throws
// at this boundary (an escaped exception becomes a failure naming it).
//
// Ownership (why everything here is a value or a shared_ptr): an attempt that ignores
// cancellation is abandoned by its driver and may outlive it (Ctrl-C, a timeout, the end of a
// run). It must then read nothing its driver owns: the spec below owns its strings, shares the
// step object, the results and the history it started with, and the event sinks.
//
// Thread-safety: RunAttempt may run on many threads at once; each call owns its spec.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "baton/events.h"
#include "baton/rates.h"
#include "baton/step.h"
#include "util/clock.h"

namespace baton::driver {

using SinkList = std::vector<std::shared_ptr<EventSink>>;

struct AttemptSpec {
  std::shared_ptr<const Step> step;
  std::string job, step_name, node, input;
  int attempt = 1;
  std::shared_ptr<const Json> results;                   // earlier steps' results
  std::shared_ptr<const std::vector<StepRun>> history;   // earlier successful attempts
  std::filesystem::path workdir, outdir;
  std::vector<int> gpus;
  int worker = -1;  // the resident worker it joined (core::Placement::worker), -1 none
  bool make_workdir = true;
  // Finds an artifact of an earlier step (another node's in a cluster), or says why it cannot.
  std::function<Result<std::filesystem::path>(std::string_view step, std::string_view relative)> artifact;
  // Where log lines and progress go (null or empty: dropped), stamped with `clock` seconds
  // since `t0`. REQUIRES: *clock outlives the attempt (Clock::Real() does).
  std::shared_ptr<const SinkList> sinks;
  // Told when the step waits outside the CPU and when that wait ends: the step's progress event
  // {"waiting": "rate NAME"} calls it with "rate NAME", {"waiting": null} with "" (the llm step's
  // rate waits, baton/step.h). The transport passes it to Driver::AttemptWaiting, which gives the
  // attempt's cpu back to its node meanwhile. Called on the attempt's thread; empty: ignored.
  std::function<void(const std::string& what)> on_wait;
  // The run's rates and budget (baton/rates.h), shared for the same reason; null: none.
  std::shared_ptr<RateLimiter> rates;
  const Clock* clock = &Clock::Real();
  double t0 = 0;
};

// Runs the attempt to its end (or until it notices `cancel`). Never throws. The spec's strings
// are moved into the step's context (the caller owns the spec for this one attempt).
StepOutcome RunAttempt(AttemptSpec& spec, const CancelToken& cancel);

}  // namespace baton::driver
