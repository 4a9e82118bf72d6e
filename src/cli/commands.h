// Subcommands of the `baton` CLI beyond `run` and `validate`, and the hooks `run` uses for the
// dashboard. Each is a thin shell over a library part (src/cluster, src/dashboard).
#pragma once

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "baton/runtime.h"
#include "cli/signals.h"

namespace baton::cli {

// The CLI's one-line error: prints "baton: error: MESSAGE" and returns exit status 2. Command
// functions return it when a load, a flag or a call fails.
inline int Fail(const Status& st) {
  std::fprintf(stderr, "baton: error: %s\n", st.message().c_str());
  return 2;
}

struct RunArgs {
  std::string pipeline, inputs, cluster, trace, log_format = "text", progress = "auto";
  std::string out = "out";
  std::string rerun;     // "", "failed", "all"
  bool no_journal = false;
  int jobs = 0;
  std::vector<std::string> resources, labels;
  bool dashboard_requested = false;
  bool keep_work = false;  // --keep-work
  std::string dashboard, token, token_file;
};

// The dashboard's token, from where it is not shown to other local users: --token-file (its first
// line), else BATON_TOKEN. --token still works but warns: the command line is readable by every
// local user in /proc/PID/cmdline (`ps`). An error naming the flag when the file cannot be read,
// its first line is empty, or both flags are given.
Result<std::string> DashboardToken(const std::string& token_flag, const std::string& token_file);

struct SimulateArgs {
  std::string pipeline, inputs, cluster, trace, per_node_file;
  int jobs = 0;
  bool per_node = false;  // one line per node even for a large cluster
  std::vector<std::string> durations;
};
// `baton simulate`: the scheduling core in virtual time (src/cli/simulate.cc).
int SimulateCommand(const SimulateArgs& args);

// The dashboard served during `baton run --dashboard` (src/dashboard).
struct DashboardHandle {
  virtual ~DashboardHandle() = default;
};
// An error when it cannot start (a bad token flag, an address off loopback without a token).
Result<std::unique_ptr<DashboardHandle>> StartDashboard(Runtime& runtime, const RunArgs& args);
// After the run: keeps serving until SIGINT or SIGTERM, saying so.
void WaitDashboard(DashboardHandle& handle, const RunReport& report, StopSignals& signals);

// Flags of the form NAME=VALUE[,NAME=VALUE] (repeatable): --labels. An error names `flag`.
Result<std::map<std::string, std::string>> ParsePairs(const std::vector<std::string>& items, const char* flag);
// The same with numeric values (quantities such as 2, 0.5, 16Gi): --resources.
Result<std::map<std::string, double>> ParseResourcePairs(const std::vector<std::string>& items, const char* flag);
// --resources and --labels added to a node's (over what it had), or the first flag's error.
Status AddResourcesAndLabels(const std::vector<std::string>& resources, const std::vector<std::string>& labels,
                             std::map<std::string, double>* node_resources,
                             std::map<std::string, std::string>* node_labels);

// head, node, submit, status, cancel, nodes (src/cluster).
void AddClusterCommands(CLI::App& app);
int RunClusterCommand(CLI::App& app);

}  // namespace baton::cli
