// What the `baton submit|status|cancel|nodes` commands do against Redis, without a running head
// in the loop (status reads the state the head wrote; cancel and submit leave a message in the
// head's inbox). Shapes match baton::Runtime::Snapshot()/JobDetail(). Each returns the Redis
// error (one line) when Redis fails; nothing is thrown. Thread-compatible.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "baton/pipeline.h"
#include "baton/report.h"
#include "baton/status.h"
#include "cluster/keys.h"
#include "redis/redis.h"

namespace baton::cluster {

// Stores the pipeline (its YAML text) and one job per input; tells the head. Returns the job ids.
Result<std::vector<std::string>> SubmitJobs(Redis& db, const Keys& keys, const std::filesystem::path& pipeline_file,
                                            const std::string& yaml, const PipelineSpec& spec,
                                            const std::vector<std::string>& inputs);

// Snapshot-shaped JSON of every job (or only `ids` when given) and the head's node view.
Result<Json> ClusterSnapshot(Redis& db, const Keys& keys, const std::vector<std::string>* ids = nullptr);
// JobDetail-shaped JSON of one job; null when unknown.
Result<Json> ClusterJob(Redis& db, const Keys& keys, const std::string& id);
// A RunReport of every job with its attempts (for the trace and the summary); and node names.
Result<RunReport> ClusterReport(Redis& db, const Keys& keys, std::vector<std::string>* node_names);
// Asks the head to cancel a job. False when the job is unknown.
Result<bool> RequestCancel(Redis& db, const Keys& keys, const std::string& id);
// Tells agent `node` to drain (as SIGTERM does); false when no such node is registered.
Result<bool> RequestDrain(Redis& db, const Keys& keys, const std::string& node);
// States of `ids` (one HGET each, pipelined).
Result<std::vector<std::string>> JobStates(Redis& db, const Keys& keys, const std::vector<std::string>& ids);

}  // namespace baton::cluster
