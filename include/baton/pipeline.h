// Pipeline and cluster descriptions, and their YAML loaders.
//
// A PipelineSpec is what a pipeline file says (docs/design.md "Interfaces"): named steps in order,
// each with `uses`, `with`, `resources`, `prefer`, `placement.same_node_as`, `placement.labels`,
// `retries`, `backoff`, `timeout`. A ClusterSpec lists nodes (name, cpus, gpus, memory,
// resources, labels, workdir) and cluster-wide `pools`. Loading validates everything a run needs
// and returns a Result (status.h): the spec, or an error with one line "FILE:LINE: KEY: what is
// wrong". Nothing is thrown across this boundary.
//
// Plain values; thread-compatible.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "baton/rates.h"
#include "baton/status.h"
#include "baton/step.h"

namespace baton {

// One-line, user-facing load error: "examples/x.yaml:12: steps[1].resources.gpu: must be >= 0".
// Thrown inside the loaders only, which return it as a Result (docs/design.md, "Errors").
struct LoadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What the engine needs of a resident-worker step (`uses: worker`, docs/steps/worker.md), parsed
// once from its `with:` by WorkerOptionsFrom: the loader keeps it in StepSpec::worker (the core
// sizes workers and admission from it), the step uses it to batch and supervise.
struct WorkerOptions {
  int batch_max = 1;             // with.batch.max: attempts in one call to the worker
  double batch_wait = 0;         // with.batch.wait: seconds to wait for a batch to fill
  double startup_timeout = 600;  // with.startup_timeout: from start to "ready"
  double idle_timeout = 60;      // with.idle_timeout: an idle worker exits and frees its grant
  int max_items = 0;             // with.max_items: recycle a worker after N items (0: never)
  double cancel_grace = 10;      // with.cancel_grace: a cancelled item's answer, else restart
  // The step's `timeout` (the loader passes it as with._timeout): every item of a batch must be
  // answered within it from the batch's start, else the worker is killed (core deadlines do not
  // apply to worker steps: a hung batch would time out the items batched with the culprit).
  double item_timeout = 0;
};
// Throws ConfigError naming the parameter ("with.batch.max: must be an integer from 1 to 4096").
WorkerOptions WorkerOptionsFrom(const Json& with);

struct StepSpec {
  std::string name;
  std::string uses;
  Json with = Json::object();
  std::map<std::string, double> resources;  // required: cpu, gpu, memory (bytes), custom, pools
  std::map<std::string, double> prefer;     // granted when free at placement (only gpu today)
  std::string same_node_as;                 // earlier step name, or ""
  std::map<std::string, std::string> labels;
  int retries = 0;
  double backoff = 1.0;      // seconds before the first retry; doubles each time
  double max_backoff = 60.0;
  double timeout = 0;        // seconds per attempt; 0 = none
  int line = 0;              // where the step starts in its file
  std::optional<WorkerOptions> worker;  // set for `uses: worker`
};

struct PipelineSpec {
  std::string name;
  std::string language;  // canonical BCP 47 tag ("zh-CN"), "" when not set (English); see language.h
  int prefetch = 1;
  std::vector<StepSpec> steps;
  std::map<std::string, double> pools;  // defaults for cluster-wide pools (the cluster file wins)
  RateSpecs rates;                      // named token buckets (the cluster file's win); see rates.h
  double budget_usd = 0;                // `budget: {usd: N}`; 0 = no budget
  std::filesystem::path file;           // "" when built in code

  // Index of the step named `name`, or -1.
  int StepIndex(const std::string& name) const;
};

struct NodeSpec {
  std::string name;
  double cpus = 1;
  double gpus = 0;      // logical GPUs (like Ray's --num-gpus); device ids 0..gpus-1
  double memory = 0;    // bytes
  std::map<std::string, double> resources;
  std::map<std::string, std::string> labels;
  std::filesystem::path workdir;  // "" = OUT/nodes/<name>
};

struct ClusterSpec {
  std::vector<NodeSpec> nodes;
  std::map<std::string, double> pools;
  RateSpecs rates;
  std::filesystem::path file;
};

Result<PipelineSpec> LoadPipeline(const std::filesystem::path& file);
Result<PipelineSpec> ParsePipeline(const std::string& yaml, const std::string& file_name);
Result<ClusterSpec> LoadCluster(const std::filesystem::path& file);
Result<ClusterSpec> ParseCluster(const std::string& yaml, const std::string& file_name);

// One node describing this machine: detected CPUs, memory and NVIDIA GPUs (0 when none), named
// after the host, labelled role=head (it is the head of its own one-node cluster).
NodeSpec DetectLocalNode();
int DetectGpuCount();

// "10s", "1.5m", "2h", "250ms" or a plain number of seconds; an error naming `text` otherwise.
Result<double> ParseDuration(const std::string& text);
// "16Gi", "512Mi", "2G", "1e9" or a plain number; an error naming `text` otherwise.
Result<double> ParseQuantity(const std::string& text);

}  // namespace baton
