// The `baton` command: a thin shell over the public API (include/baton/).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "baton/inputs.h"
#include "baton/pipeline.h"
#include "baton/runtime.h"
#include "baton/step.h"
#include "cli/commands.h"
#include "cli/signals.h"

namespace {

// Set by RunCommand when a signal stopped the run: main ends the process by it once everything
// is written and destroyed (cli/signals.h).
int g_end_signal = 0;

}  // namespace

namespace baton::cli {

Result<std::map<std::string, std::string>> ParsePairs(const std::vector<std::string>& items, const char* flag) {
  std::map<std::string, std::string> out;
  for (const auto& item : items) {
    size_t start = 0;
    while (start <= item.size()) {
      const size_t comma = item.find(',', start);
      const std::string kv = item.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!kv.empty()) {
        const size_t eq = kv.find('=');
        if (eq == std::string::npos || eq == 0)
          return Status::Invalid(fmt::format("{} {}: expected NAME=VALUE", flag, kv));
        out[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return out;
}

Result<std::map<std::string, double>> ParseResourcePairs(const std::vector<std::string>& items, const char* flag) {
  Result<std::map<std::string, std::string>> pairs = ParsePairs(items, flag);
  if (!pairs.ok()) return pairs.status();
  std::map<std::string, double> out;
  for (const auto& [k, v] : *pairs) {
    const Result<double> q = ParseQuantity(v);
    if (!q.ok()) return Status::Invalid(fmt::format("{} {}={}: not a number", flag, k, v));
    out[k] = *q;
  }
  return out;
}

Status AddResourcesAndLabels(const std::vector<std::string>& resources, const std::vector<std::string>& labels,
                             std::map<std::string, double>* node_resources,
                             std::map<std::string, std::string>* node_labels) {
  Result<std::map<std::string, double>> r = ParseResourcePairs(resources, "--resources");
  if (!r.ok()) return r.status();
  Result<std::map<std::string, std::string>> l = ParsePairs(labels, "--labels");
  if (!l.ok()) return l.status();
  for (const auto& [k, v] : *r) (*node_resources)[k] = v;
  for (const auto& [k, v] : *l) (*node_labels)[k] = v;
  return Status::Ok();
}

// Tesseract's OpenMP reads OMP_THREAD_LIMIT only when the process starts; Baton runs OCR on several
// threads itself, so unless the user chose otherwise, a process that may run OCR (the analyze
// step) starts again with one OpenMP thread per call. Only such a process: the second start costs
// ~0.2 s (two loads of ~360 shared objects), a tenth of a 100,000-step run of short steps.
char** g_argv = nullptr;
void LimitOpenMpThreads() {
  if (std::getenv("OMP_THREAD_LIMIT") != nullptr || g_argv == nullptr) return;
  setenv("OMP_THREAD_LIMIT", "1", 1);
  execv("/proc/self/exe", g_argv);
}

int RunCommand(const RunArgs& a) {
  Result<PipelineSpec> loaded = LoadPipeline(a.pipeline);
  if (!loaded.ok()) return Fail(loaded.status());
  PipelineSpec pipeline = std::move(*loaded);
  // Before anything is read from standard input (--inputs -): the new start reads it.
  for (const auto& step : pipeline.steps)
    if (StepRegistry::Global().Traits(step.uses).one_openmp_thread) LimitOpenMpThreads();
  ClusterSpec cluster;
  if (!a.cluster.empty()) {
    Result<ClusterSpec> nodes = LoadCluster(a.cluster);
    if (!nodes.ok()) return Fail(nodes.status());
    cluster = std::move(*nodes);
  } else {
    NodeSpec local = DetectLocalNode();
    if (Status st = AddResourcesAndLabels(a.resources, a.labels, &local.resources, &local.labels); !st.ok())
      return Fail(st);
    cluster.nodes.push_back(local);
  }
  RunOptions opts;
  std::vector<std::string> warnings;
  // Inputs are read as the run admits jobs (memory follows the jobs in flight): the first ones now,
  // so that a small file's errors stop the run before it starts and its job count is known.
  std::unique_ptr<InputStream> stream;
  std::deque<std::string> head;
  bool read_whole = true;
  size_t job_count = static_cast<size_t>(a.jobs);
  if (!a.inputs.empty()) {
    Result<std::unique_ptr<InputStream>> opened = InputStream::Open(a.inputs, &warnings);
    if (!opened.ok()) return Fail(opened.status());
    stream = std::move(*opened);
    constexpr size_t kReadFirst = 65536;
    for (std::string in; head.size() < kReadFirst && stream->Next(&in);) head.push_back(std::move(in));
    if (!stream->status().ok()) return Fail(stream->status());
    read_whole = head.size() < kReadFirst;
    job_count = head.size();
    opts.next_input = [&head, &stream, read_whole](std::string* in) {
      if (!head.empty()) {
        *in = std::move(head.front());
        head.pop_front();
        return true;
      }
      return !read_whole && stream->Next(in);
    };
  } else {
    opts.next_input = [left = job_count](std::string* in) mutable {
      if (left == 0) return false;
      --left;
      in->clear();
      return true;
    };
  }
  if (a.dashboard_requested) {
    // The dashboard lists, counts and pages every job of the run, live: it needs every job known
    // from the start and each ended one's entry (its detail still leaves memory). So a run with a
    // dashboard reads its inputs whole, as before streaming admission: memory per job again.
    for (std::string in; opts.next_input(&in);) opts.inputs.push_back(std::move(in));
    if (stream && !stream->status().ok()) return Fail(stream->status());
    opts.next_input = nullptr;
  }
  opts.out = a.out;
  opts.trace = a.trace;
  opts.journal = !a.no_journal;
  opts.keep_finished = false;  // ended jobs leave memory: jobs.jsonl and the trace have them
  opts.rerun = a.rerun == "failed" ? RunOptions::Rerun::kFailed
               : a.rerun == "all"  ? RunOptions::Rerun::kAll
                                   : RunOptions::Rerun::kNone;
  opts.keep_work = a.keep_work;
  opts.log_format = ParseLogFormat(a.log_format);
  const bool tty = isatty(STDERR_FILENO) != 0;
  opts.progress_line =
      a.progress == "always" || (a.progress == "auto" && tty && opts.log_format != RunOptions::LogFormat::kJson);
  for (const auto& w : warnings) std::fprintf(stderr, "baton: warning: %s\n", w.c_str());
  const size_t warned = warnings.size();

  Result<std::unique_ptr<Runtime>> made = Runtime::Create(pipeline, cluster, opts);
  if (!made.ok()) return Fail(made.status());
  Runtime& runtime = **made;
  for (const auto& n : runtime.notices()) std::fprintf(stderr, "baton: %s\n", n.c_str());
  std::unique_ptr<DashboardHandle> dashboard;
  if (a.dashboard_requested) {
    Result<std::unique_ptr<DashboardHandle>> started = StartDashboard(runtime, a);
    if (!started.ok()) return Fail(started.status());
    dashboard = std::move(*started);
  }
  std::atomic<bool> run_over{false};
  StopSignals signals([&runtime, &run_over](int sig) {
    const char* name = sig == SIGTERM ? "SIGTERM" : "SIGINT";
    std::fprintf(stderr, "baton: %s received%s\n", name, run_over ? "; dashboard stopped" : "");
    if (!run_over) runtime.RequestStop();  // it says what it does next
  });
  const std::string jobs_text =
      read_whole ? fmt::format("{} jobs", job_count) : fmt::format("jobs from {} as the run goes", a.inputs);
  std::fprintf(stderr, "baton: %s: %s on %zu node%s; output in %s\n", pipeline.name.c_str(), jobs_text.c_str(),
               cluster.nodes.size(), cluster.nodes.size() == 1 ? "" : "s", opts.out.c_str());
  const RunReport& report = runtime.Run();
  run_over = true;
  std::fprintf(stderr, "baton: %d succeeded, %d failed, %d cancelled in %.2fs; summary %s%s%s\n", report.succeeded,
               report.failed, report.cancelled, report.seconds, (opts.out / "summary.json").c_str(),
               opts.trace.empty() ? "" : ", trace ", opts.trace.c_str());
  for (const auto& j : report.jobs)
    if (j.status == "failed")
      std::fprintf(stderr, "baton:   %s (%s): %s\n", j.id.c_str(), j.input.c_str(), j.error.c_str());
  for (size_t i = warned; i < warnings.size(); ++i) std::fprintf(stderr, "baton: warning: %s\n", warnings[i].c_str());
  if (stream && !stream->status().ok()) {  // a bad line past the first ones: the jobs before it ran
    std::fprintf(stderr, "baton: error: %s; no job after it was started\n", stream->status().message().c_str());
    return 2;
  }
  // Serving on after the run is for someone at a terminal; a SIGTERM (a supervisor, `timeout`,
  // `kill`) means "stop", so the process ends now.
  if (dashboard && signals.received() != SIGTERM) WaitDashboard(*dashboard, report, signals);
  if (report.interrupted && signals.received() != 0) g_end_signal = signals.received();
  return report.ExitCode();
}

}  // namespace baton::cli

int main(int argc, char** argv) {
  baton::cli::g_argv = argv;
  // An agent runs whatever pipelines are submitted: OCR may be among them (`baton run` decides
  // once its pipeline is loaded).
  if (argc > 1 && std::string(argv[1]) == "node") baton::cli::LimitOpenMpThreads();
  baton::RegisterBuiltinSteps();
  CLI::App app{"baton: run many jobs through a multi-step pipeline, on one machine or a cluster"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "baton 0.1.0");

  baton::cli::RunArgs run;
  auto* cmd_run = app.add_subcommand("run", "Run a pipeline over inputs in this process");
  cmd_run->add_option("pipeline", run.pipeline, "Pipeline YAML file")->required();
  auto* inputs = cmd_run->add_option("--inputs", run.inputs,
                                     "File (or - for standard input) with one URL, path, folder or glob per line");
  auto* jobs = cmd_run->add_option("--jobs", run.jobs, "Run N jobs with empty inputs")->check(CLI::Range(1, 100000000));
  inputs->excludes(jobs);
  cmd_run->add_option("--cluster", run.cluster, "Cluster YAML file (virtual local nodes); default: this machine");
  cmd_run->add_option("--out", run.out, "Output folder (a run there before is resumed from its journal)")
      ->capture_default_str();
  cmd_run
      ->add_option("--rerun", run.rerun, "Resume, but re-run: failed (failed and cancelled jobs) or all (start over)")
      ->check(CLI::IsMember({"failed", "all"}));
  cmd_run->add_flag("--no-journal", run.no_journal,
                    "Keep no journal in OUT/.baton (the run cannot be resumed; a journal there is ignored)");
  cmd_run->add_option("--trace", run.trace, "Write a Chrome trace (Perfetto, chrome://tracing) to FILE");
  cmd_run->add_flag("--keep-work", run.keep_work, "Keep succeeded jobs' node work folders (OUT/nodes/NODE/JOB)");
  cmd_run->add_option("--log-format", run.log_format, "text, json or none")
      ->check(CLI::IsMember({"text", "json", "none"}))
      ->capture_default_str();
  cmd_run->add_option("--progress", run.progress, "Live progress line: auto, always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  cmd_run->add_option("--resources", run.resources, "Extra resources of this machine's node, NAME=N[,NAME=N]");
  cmd_run->add_option("--labels", run.labels, "Extra labels of this machine's node, KEY=VALUE[,...]");
  auto* dash = cmd_run->add_option("--dashboard", run.dashboard, "Serve the dashboard at ADDR (default 127.0.0.1:8265)")
                   ->expected(0, 1);
  cmd_run->add_option("--token-file", run.token_file,
                      "File whose first line is the dashboard token (required off loopback; or BATON_TOKEN)");
  cmd_run->add_option("--token", run.token, "Dashboard token on the command line (visible in ps: prefer --token-file)");

  std::string validate_pipeline, validate_cluster;
  auto* cmd_validate = app.add_subcommand("validate", "Check a pipeline (and cluster) file without running anything");
  cmd_validate->add_option("pipeline", validate_pipeline)->required();
  cmd_validate->add_option("--cluster", validate_cluster);

  baton::cli::SimulateArgs sim;
  auto* cmd_sim = app.add_subcommand("simulate", "Schedule a pipeline in virtual time: makespan, placement, GPU use");
  cmd_sim->add_option("pipeline", sim.pipeline, "Pipeline YAML file")->required();
  auto* sim_inputs = cmd_sim->add_option("--inputs", sim.inputs, "File with one input per line (counts the jobs)");
  auto* sim_jobs = cmd_sim->add_option("--jobs", sim.jobs, "N jobs")->check(CLI::Range(1, 100000000));
  sim_inputs->excludes(sim_jobs);
  cmd_sim->add_option("--cluster", sim.cluster, "Cluster YAML file; default: this machine");
  cmd_sim->add_option("--duration", sim.durations,
                      "STEP=SECONDS[,STEP=SECONDS] (sleep steps: their seconds; others: 1)");
  cmd_sim->add_option("--trace", sim.trace, "Write the simulated schedule as a Chrome trace");
  cmd_sim->add_flag("--per-node", sim.per_node, "One line per node (the default up to 16 nodes)");
  cmd_sim->add_option("--per-node-file", sim.per_node_file, "Write the per-node table (TSV) to FILE");

  baton::cli::AddClusterCommands(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the message; its own codes (105-127) become the documented 2 (--help and
    // --version stay 0).
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (cmd_run->parsed()) {
      if (run.inputs.empty() && run.jobs <= 0) {
        std::fprintf(stderr, "baton run: give --inputs FILE or --jobs N\n");
        return 2;
      }
      run.dashboard_requested = dash->count() > 0;
      const int rc = baton::cli::RunCommand(run);
      if (g_end_signal != 0) baton::cli::ExitBy(g_end_signal);  // 130 or 143 as the shell reports it
      return rc;
    }
    if (cmd_sim->parsed()) {
      if (sim.inputs.empty() && sim.jobs <= 0) {
        std::fprintf(stderr, "baton simulate: give --inputs FILE or --jobs N\n");
        return 2;
      }
      return baton::cli::SimulateCommand(sim);
    }
    if (cmd_validate->parsed()) {
      auto pipeline = baton::LoadPipeline(validate_pipeline);
      if (!pipeline.ok()) return baton::cli::Fail(pipeline.status());
      baton::ClusterSpec cluster;
      if (!validate_cluster.empty()) {
        auto nodes = baton::LoadCluster(validate_cluster);
        if (!nodes.ok()) return baton::cli::Fail(nodes.status());
        cluster = std::move(*nodes);
      }
      baton::RunOptions opts;
      opts.log_format = baton::RunOptions::LogFormat::kNone;
      opts.lock_out = false;  // checks only: it runs nothing, so it neither waits for nor blocks a run
      auto check = baton::Runtime::Create(*pipeline, cluster, opts);
      if (!check.ok()) return baton::cli::Fail(check.status());
      std::printf("%s: ok (%zu steps)\n", validate_pipeline.c_str(), pipeline->steps.size());
      return 0;
    }
    return baton::cli::RunClusterCommand(app);
  } catch (const std::exception& e) {  // a last guard: commands return their errors (cli::Fail)
    std::fprintf(stderr, "baton: error: %s\n", e.what());
    return 2;
  }
}
