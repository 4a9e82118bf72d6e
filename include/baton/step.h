// Baton step interface: what a built-in or user-defined step implements.
//
// A step is the code behind one pipeline entry (`uses: download`, `uses: my_step`). The engine
// creates one `Step` object per pipeline entry when the pipeline is loaded (so bad `with:`
// parameters are refused before anything runs) and calls `Run` once per attempt, possibly from
// several threads at once for different jobs: `Run` must be thread-safe and keep per-attempt state
// on its stack or in the context.
//
// A step knows nothing of scheduling. It receives the job's input, the small JSON results of the
// job's earlier steps, a work folder on the node it runs on, the GPU ids it was granted, a
// cancellation token and a sink for log lines and progress. It returns a small JSON result (which
// travels with the job, possibly to other nodes) or an error value. Bulky artifacts are files in
// the work folder; they stay on the node.
//
// Errors are values: return StepOutcome::Failure(...). An exception that escapes Run is caught
// at the step boundary and becomes a failure with its message.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "baton/status.h"

namespace baton {

using Json = nlohmann::json;
class RateLimiter;  // baton/rates.h

// Thrown by a step's own parse code while it reads its `with:` parameters. The message names the
// parameter and what is wrong ("with.seconds: must be a non-negative number"); the loader adds
// file, line and step name. It never leaves the step: its factory (StepFactoryOf below) turns it
// into an error Result.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Set by the engine when the attempt must stop (timeout, cancel, Ctrl-C). Long steps poll
// `cancelled()` (or wait on it) and return StepOutcome::Cancelled() promptly.
class CancelToken {
 public:
  bool cancelled() const noexcept { return flag_.load(std::memory_order_acquire); }
  void cancel() noexcept { flag_.store(true, std::memory_order_release); }
  // Sleeps up to `seconds`, waking early on cancel. Returns false when cancelled.
  bool sleep_for(double seconds) const;

 private:
  std::atomic<bool> flag_{false};
};

enum class LogLevel { kDebug, kInfo, kWarn, kError };
const char* LogLevelName(LogLevel level);  // "debug", "info", "warn", "error"

// One earlier successful attempt of this job's steps (the report's processing record).
struct StepRun {
  std::string step, node;
  int attempt = 1;
  double seconds = 0;
  std::vector<int> gpus;
};

// Everything an attempt may read or do. Owned by the engine; valid for the duration of Run.
struct StepContext {
  std::string job;               // job id, e.g. "job-0"
  std::string step;              // pipeline step name, e.g. "analyze"
  std::string node;              // node name, e.g. "head"
  int attempt = 1;               // 1-based
  std::string input;             // the job's input line (URL, path, or "" for --jobs N)
  const Json* results = nullptr; // {"<earlier step name>": <its result JSON>, ...}
  const std::vector<StepRun>* history = nullptr;  // this job's earlier successful attempts, in order
  std::filesystem::path workdir; // this job's folder on this node (exists unless NeedsWorkdir() is false)
  std::filesystem::path outdir;  // the run's output folder (--out) on the driver's machine
  std::vector<int> gpus;         // granted GPU device ids (also in CUDA_VISIBLE_DEVICES for children)
  // The resident worker this attempt joined (`uses: worker`: the scheduler's worker id, unique
  // per run, whose grant `gpus` is); -1 for ordinary steps.
  int worker = -1;
  const CancelToken* cancel = nullptr;
  // The run's named rates and budget (baton/rates.h); null when the runtime provides none. A step
  // that waits for a rate reports it as a progress event {"waiting": "rate NAME", "seconds": S}.
  RateLimiter* rates = nullptr;

  // Log line attributed to this job/step/node (rendered in the seed's shape or as JSON).
  std::function<void(LogLevel, std::string_view)> log;
  // Progress event, e.g. {"bytes": 1234, "total": 5678, "rate": 1.2e6}. Cheap; may be throttled.
  std::function<void(const Json&)> progress;
  // Returns a local path for an artifact `relative` (to the producing job folder) made by earlier
  // step `step` of this job, fetching it from another node when needed; an error naming what is
  // missing or what failed otherwise.
  std::function<Result<std::filesystem::path>(std::string_view step, std::string_view relative)> artifact;

  bool cancelled() const { return cancel != nullptr && cancel->cancelled(); }
  // Result of an earlier step, or null JSON when that step did not run / is unknown.
  const Json& result_of(std::string_view step_name) const;
  void info(std::string_view msg) const { if (log) log(LogLevel::kInfo, msg); }
  void warn(std::string_view msg) const { if (log) log(LogLevel::kWarn, msg); }
};

struct StepOutcome {
  // kParked: the attempt handed its work to something outside (an LLM batch) and waits for
  // `park_id` to be done without holding any resource (docs/design.md, "Parked attempts"). The
  // engine asks the step's CheckPark(park_id) after `park_poll` seconds, then as it says.
  enum class Kind { kOk, kFailed, kCancelled, kParked };
  Kind kind = Kind::kOk;
  Json result;           // small JSON result (kOk)
  std::string error;     // one-line reason (kFailed)
  bool retryable = true; // false: retrying cannot help (404, bad input); the job fails now
  // A file this attempt made that is the job's main output (the document step's report): the
  // job's end event names it. "" when none.
  std::string main_output;
  // The files this attempt delivered (absolute paths): what the user gets, written once into the
  // job's output folder `outdir/<job>/`, never into the node work folder (which holds
  // intermediates and is removed when the job succeeds). The document step lists its reports
  // and their images here. Empty for steps that deliver nothing.
  std::vector<std::string> deliverables;
  // The batch this attempt was served in, for steps that serve several jobs' attempts at once (a
  // resident worker: "w3.b17"); attempts of one node with the same batch are one bar of the
  // trace, naming their jobs. "" when served alone.
  std::string batch;
  std::string park_id;    // kParked: what the attempt waits for (the step's own name for it)
  double park_poll = 0;   // kParked: seconds until the engine first asks CheckPark(park_id)

  static StepOutcome Ok(Json result = Json::object()) {
    StepOutcome o;
    o.result = std::move(result);
    return o;
  }
  static StepOutcome Failure(std::string error, bool retryable = true) {
    StepOutcome o;
    o.kind = Kind::kFailed;
    o.result = Json();
    o.error = std::move(error);
    o.retryable = retryable;
    return o;
  }
  static StepOutcome Cancelled() {
    StepOutcome o;
    o.kind = Kind::kCancelled;
    o.error = "cancelled";
    o.retryable = false;
    return o;
  }
  static StepOutcome Park(std::string id, double poll_in) {
    StepOutcome o;
    o.kind = Kind::kParked;
    o.result = Json();
    o.park_id = std::move(id);
    o.park_poll = poll_in;
    return o;
  }
  bool ok() const { return kind == Kind::kOk; }
};

// What CheckPark is given: which park id, and the run's services. Owned by the engine; valid for
// the duration of the call, which runs off the engine's loop thread (it may do IO).
struct ParkContext {
  std::string id;                  // the park id attempts returned with StepOutcome::Park
  std::string step;                // pipeline step name
  std::filesystem::path outdir;    // the run's output folder
  RateLimiter* rates = nullptr;    // the run's rates and budget; null when none
  std::function<void(LogLevel, std::string_view)> log;
  // Makes `note` durable before it returns (the embedded runtime: a journal record, synced); a
  // later run on the same output folder hands every note back through Step::RestoreNotes. Empty
  // when the engine keeps no journal. False when it could not be made durable.
  std::function<bool(const Json& note)> note;
};

// What CheckPark answers. While !done the engine asks again after `poll_in` seconds. Once done,
// each attempt parked on the id ends with its job's entry of `outcomes` (by job id; kParked parks
// it again on another id), and an attempt whose job has no entry is woken: it runs again (Run is
// called anew, holding its resources again) and the step decides what it does then.
struct ParkCheck {
  bool done = false;
  double poll_in = 60;
  std::map<std::string, StepOutcome> outcomes;
};

class Step {
 public:
  virtual ~Step() = default;
  virtual StepOutcome Run(StepContext& ctx) const = 0;
  // False for steps that never touch ctx.workdir (sleep): the engine then skips creating it.
  virtual bool NeedsWorkdir() const { return true; }
  // Resident steps (`uses: worker`) keep a process per worker between attempts. The engine calls
  // RetireWorker when the scheduler retired worker `worker` (idle, its node draining): the step
  // lets it finish and exit, without blocking the caller. Others ignore it.
  virtual void RetireWorker(int worker) const { (void)worker; }
  // Their state for views: [{"worker", "state" (starting|ready|busy|stopped), "pid", "items",
  // "batches", "restarts", "load_seconds", "gpus"}]; null for other steps.
  virtual Json WorkerStates() const { return Json(); }
  // Parked attempts (StepOutcome::Park): is `ctx.id` done? Called by the engine once per park id
  // (never once per attempt), on a worker thread. The default wakes every attempt parked on it.
  virtual ParkCheck CheckPark(ParkContext& ctx) const {
    (void)ctx;
    ParkCheck c;
    c.done = true;
    return c;
  }
  // The notes this step made durable (ParkContext::note) in earlier runs on the same output
  // folder, in order, before any attempt runs: what it needs to resume waiting instead of
  // submitting again. Others ignore them.
  virtual void RestoreNotes(const std::vector<Json>& notes) const { (void)notes; }
  // Views of what its parked attempts wait for (the llm step's batches): an array of objects,
  // null when none.
  virtual Json ParkStates() const { return Json(); }
};

// Makes a Step from its `with:` parameters, or an error naming the parameter that is invalid.
using StepFactory = std::function<Result<std::unique_ptr<Step>>(const Json& with)>;

// A StepFactory from `make(with)`, which returns a std::unique_ptr to a Step (or a type derived
// from it) and may throw ConfigError (or another std::exception) from its parse code: the error
// becomes an error Result with its message, so no exception leaves the factory.
//
//   registry.Register("shout", baton::StepFactoryOf([](const baton::Json& with) {
//     return std::make_unique<Shout>(with);  // Shout's constructor may throw ConfigError
//   }));
template <typename Make>
StepFactory StepFactoryOf(Make make) {
  return [make = std::move(make)](const Json& with) -> Result<std::unique_ptr<Step>> {
    try {
      return std::unique_ptr<Step>(make(with));
    } catch (const std::exception& e) {  // ConfigError, or a JSON type error in parse code
      return Status::Invalid(e.what());
    }
  };
}

// What the engine may know of a step kind without making a step: the CLI and the simulator ask
// the registry, never a step's name.
struct StepTraits {
  // Its attempts run OpenMP code (Tesseract): a process running it limits OpenMP to one thread
  // per call, as attempts already run side by side (`baton run` restarts itself so before
  // reading anything).
  bool one_openmp_thread = false;
  // How long one attempt takes when `with` says so (sleep's `seconds`): what `baton simulate`
  // assumes for the step when not told. Empty, or returning a negative number: unknown.
  std::function<double(const Json& with)> known_seconds;
};

// Process-wide registry of step kinds by `uses:` name. Built-ins are registered by
// RegisterBuiltinSteps(); users add theirs before loading a pipeline. Thread-safe.
class StepRegistry {
 public:
  static StepRegistry& Global();
  void Register(std::string name, StepFactory factory, StepTraits traits = {});
  bool Has(std::string_view name) const;
  // The kind's traits; the defaults for an unknown kind.
  StepTraits Traits(std::string_view name) const;
  // The step, or an error when the kind is unknown or its factory refuses `with`.
  Result<std::unique_ptr<Step>> Create(std::string_view name, const Json& with) const;
  std::vector<std::string> Names() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  StepRegistry();
};

// Registers sleep, command, and (when built) download, analyze, llm, document.
void RegisterBuiltinSteps(StepRegistry& registry = StepRegistry::Global());

}  // namespace baton
