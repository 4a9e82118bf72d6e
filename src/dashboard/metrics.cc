// /metrics in the Prometheus text exposition format (version 0.0.4), named as Prometheus'
// conventions ask and checked by `promtool check metrics` in tests/metrics_test.cc: base units
// (seconds, bytes), `_total` only on counters, a unit suffix where there is a unit, `_ratio` for
// 0..1, HELP and TYPE for every family. Names are documented in docs/dashboard.md.
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "dashboard/server_impl.h"

namespace baton::dashboard {
namespace {

std::string Label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// A sample value as the exposition format spells it (NaN, +Inf, -Inf; shortest round-trip otherwise).
std::string Number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

void Header(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

std::string PrometheusMetrics(const JobsView& view, const HubMetrics& m) {
  // O(nodes + steps): the job counts come with the shared view (api.cc).
  std::string out;
  const Json& snap = view.overview;
  const auto& jobs = view.counts;
  const auto& at_step = view.at_step;
  Header(out, "baton_jobs", "gauge", "Jobs by state.");
  for (const auto& [state, n] : jobs) out += fmt::format("baton_jobs{{state=\"{}\"}} {}\n", Label(state), n);
  Header(out, "baton_step_jobs", "gauge",
         "Unfinished jobs by the step they are at and its state (queue depth per step).");
  for (const auto& [key, n] : at_step)
    out += fmt::format("baton_step_jobs{{step=\"{}\",state=\"{}\"}} {}\n", Label(key.first), Label(key.second), n);

  Header(out, "baton_attempts_total", "counter",
         "Finished attempts by step and status (ok, failed, timeout, cancelled, lost).");
  for (const auto& [key, n] : m.attempts)
    out +=
        fmt::format("baton_attempts_total{{step=\"{}\",status=\"{}\"}} {}\n", Label(key.first), Label(key.second), n);

  Header(out, "baton_step_duration_seconds", "histogram", "Duration of finished attempts by step.");
  for (const auto& [step, h] : m.durations) {
    uint64_t cumulative = 0;
    for (size_t k = 0; k < kDurationBuckets.size(); ++k) {
      cumulative += h.buckets[k];
      out += fmt::format("baton_step_duration_seconds_bucket{{step=\"{}\",le=\"{}\"}} {}\n", Label(step),
                         kDurationBuckets[k], cumulative);
    }
    out += fmt::format("baton_step_duration_seconds_bucket{{step=\"{}\",le=\"+Inf\"}} {}\n", Label(step), h.count);
    out += fmt::format("baton_step_duration_seconds_sum{{step=\"{}\"}} {}\n", Label(step), Number(h.sum));
    out += fmt::format("baton_step_duration_seconds_count{{step=\"{}\"}} {}\n", Label(step), h.count);
  }

  // Parked attempts and LLM batches (mode: batch), from the overview (Runtime::Overview adds them).
  Header(out, "baton_parked_attempts", "gauge", "Attempts parked (holding nothing) by step and park id.");
  for (const auto& p : snap.value("parked", Json::array()))
    out += fmt::format("baton_parked_attempts{{step=\"{}\",id=\"{}\"}} {}\n", Label(p.value("step", "")),
                       Label(p.value("id", "")), p.value("attempts", 0));
  Header(out, "baton_llm_batches", "gauge", "LLM Batch API batches by step and status.");
  std::map<std::pair<std::string, std::string>, int> batches;
  for (const auto& b : snap.value("batches", Json::array()))
    ++batches[{b.value("step", ""), b.value("status", "")}];
  for (const auto& [key, n] : batches)
    out += fmt::format("baton_llm_batches{{step=\"{}\",status=\"{}\"}} {}\n", Label(key.first), Label(key.second), n);

  // The LLM totals of the jobs shown (the snapshot's "llm": the sum of every job's step usage).
  const Json llm = snap.value("llm", Json::object());
  Header(out, "baton_llm_requests_total", "counter", "HTTP requests sent by llm steps (retries included).");
  out += fmt::format("baton_llm_requests_total {}\n", llm.value("requests", 0LL));
  Header(out, "baton_llm_tokens_total", "counter", "Tokens the LLM provider reported, by kind (prompt, completion).");
  out += fmt::format("baton_llm_tokens_total{{kind=\"prompt\"}} {}\n", llm.value("prompt_tokens", 0LL));
  out += fmt::format("baton_llm_tokens_total{{kind=\"completion\"}} {}\n", llm.value("completion_tokens", 0LL));
  Header(out, "baton_llm_cost_usd_total", "counter", "What the LLM requests cost in USD (usage x the step's prices).");
  out += fmt::format("baton_llm_cost_usd_total {}\n", Number(llm.value("cost_usd", 0.0)));

  const Json nodes = snap.value("nodes", Json::array());
  Header(out, "baton_node_up", "gauge", "1 while the node is alive.");
  for (const auto& n : nodes)
    out += fmt::format("baton_node_up{{node=\"{}\"}} {}\n", Label(n.value("name", "")), n.value("alive", true) ? 1 : 0);
  // Counts (cpu, gpu, custom resources) and bytes (memory) go to separate metrics, so that each
  // metric has one unit; the ratio is unitless and covers every resource.
  std::string capacity, used, mem_capacity, mem_used, ratio;
  for (const auto& n : nodes) {
    const std::string node = Label(n.value("name", ""));
    const Json t = n.value("total", Json::object()), u = n.value("used", Json::object());
    for (const auto& [res, v] : t.items()) {
      if (!v.is_number()) continue;
      const double tv = v.get<double>();
      const double uv = u.value(res, 0.0);
      if (res == "memory") {
        mem_capacity += fmt::format("baton_node_memory_capacity_bytes{{node=\"{}\"}} {}\n", node, Number(tv));
        mem_used += fmt::format("baton_node_memory_used_bytes{{node=\"{}\"}} {}\n", node, Number(uv));
      } else {
        capacity += fmt::format("baton_node_resource_capacity{{node=\"{}\",resource=\"{}\"}} {}\n", node, Label(res),
                                Number(tv));
        used +=
            fmt::format("baton_node_resource_used{{node=\"{}\",resource=\"{}\"}} {}\n", node, Label(res), Number(uv));
      }
      ratio += fmt::format("baton_node_resource_utilization_ratio{{node=\"{}\",resource=\"{}\"}} {}\n", node,
                           Label(res), Number(tv > 0 ? uv / tv : 0.0));
    }
  }
  Header(
      out, "baton_node_resource_capacity", "gauge",
      "Capacity per node of each counted resource (cpu, gpu, custom); memory is in baton_node_memory_capacity_bytes.");
  out += capacity;
  Header(out, "baton_node_resource_used", "gauge",
         "Amount in use per node of each counted resource (cpu, gpu, custom).");
  out += used;
  Header(out, "baton_node_memory_capacity_bytes", "gauge", "Memory a node offers to attempts, in bytes.");
  out += mem_capacity;
  Header(out, "baton_node_memory_used_bytes", "gauge", "Memory granted to running attempts per node, in bytes.");
  out += mem_used;
  Header(out, "baton_node_resource_utilization_ratio", "gauge", "Used over capacity per node and resource, 0 to 1.");
  out += ratio;
  Header(out, "baton_node_gpu_busy", "gauge", "1 while the GPU runs an attempt.");
  for (const auto& n : nodes)
    for (const auto& g : n.value("gpus", Json::array()))
      out += fmt::format("baton_node_gpu_busy{{node=\"{}\",gpu=\"{}\"}} {}\n", Label(n.value("name", "")),
                         g.value("id", 0), g.value("busy", 0));

  // Resident workers (uses: worker): the nodes' "workers" lists.
  std::string w_items, w_served, w_restarts, w_load, w_batches, w_hist;
  size_t workers = 0;
  for (const auto& n : nodes) {
    for (const auto& w : n.value("workers", Json::array())) {
      ++workers;
      const std::string labels = fmt::format("node=\"{}\",step=\"{}\",worker=\"{}\"", Label(n.value("name", "")),
                                             Label(w.value("step", "")), w.value("worker", 0));
      w_items += fmt::format("baton_worker_items{{{}}} {}\n", labels, w.value("items", 0));
      w_served += fmt::format("baton_worker_items_served_total{{{}}} {}\n", labels, w.value("items_served", 0));
      w_restarts += fmt::format("baton_worker_restarts_total{{{}}} {}\n", labels, w.value("restarts", 0));
      w_load += fmt::format("baton_worker_load_seconds{{{}}} {}\n", labels, Number(w.value("load_seconds", 0.0)));
      w_batches += fmt::format("baton_worker_batches_total{{{}}} {}\n", labels, w.value("batches", 0));
      // Batch sizes of its recent batches as a histogram (buckets 1, 2, 4, ... 256).
      const Json sizes = w.value("batch_sizes", Json::object());
      uint64_t cumulative = 0, count = 0;
      double sum = 0;
      for (const auto& [size, k] : sizes.items()) {
        count += k.get<uint64_t>();
        sum += std::stod(size) * k.get<double>();
      }
      for (int le = 1; le <= 256; le *= 2) {
        cumulative = 0;
        for (const auto& [size, k] : sizes.items())
          if (std::stoi(size) <= le) cumulative += k.get<uint64_t>();
        w_hist += fmt::format("baton_worker_batch_size_bucket{{{},le=\"{}\"}} {}\n", labels, le, cumulative);
      }
      w_hist += fmt::format("baton_worker_batch_size_bucket{{{},le=\"+Inf\"}} {}\n", labels, count);
      w_hist += fmt::format("baton_worker_batch_size_sum{{{}}} {}\n", labels, Number(sum));
      w_hist += fmt::format("baton_worker_batch_size_count{{{}}} {}\n", labels, count);
    }
  }
  if (workers > 0) {
    Header(out, "baton_worker_items", "gauge", "Attempts a resident worker holds now (its batch).");
    out += w_items;
    Header(out, "baton_worker_items_served_total", "counter", "Items a resident worker answered (rate: items/s).");
    out += w_served;
    Header(out, "baton_worker_batches_total", "counter", "Batches a resident worker ran.");
    out += w_batches;
    Header(out, "baton_worker_restarts_total", "counter", "Times a resident worker's process was restarted.");
    out += w_restarts;
    Header(out, "baton_worker_load_seconds", "gauge", "How long the worker took from start to ready.");
    out += w_load;
    Header(out, "baton_worker_batch_size", "histogram", "Items per batch of a resident worker (recent batches).");
    out += w_hist;
  }

  Header(out, "baton_dashboard_events_total", "counter", "Events the dashboard received.");
  out += fmt::format("baton_dashboard_events_total {}\n", m.events);
  Header(out, "baton_dashboard_live_clients", "gauge", "Open /api/events streams.");
  out += fmt::format("baton_dashboard_live_clients {}\n", m.clients);
  return out;
}

}  // namespace baton::dashboard
