// WorkerOptionsFrom: the one reader of a worker step's engine-level `with:` keys (baton/pipeline.h),
// used by the pipeline loader and by the worker step itself.
#include <string>

#include "baton/pipeline.h"

namespace baton {
namespace {

double Seconds(const Json& v, const std::string& key, bool zero_ok) {
  double s = -1;
  if (v.is_number()) {
    s = v.get<double>();
  } else if (v.is_string()) {
    const Result<double> d = ParseDuration(v.get<std::string>());
    if (!d.ok())
      throw ConfigError("with." + key + ": '" + v.get<std::string>() + "' is not a duration (e.g. 200ms, 10s, 5m)");
    s = *d;
  } else {
    throw ConfigError("with." + key + ": must be a duration (e.g. 200ms, 10s, 5m)");
  }
  if (s < 0 || (!zero_ok && s == 0))
    throw ConfigError("with." + key + ": must be " + (zero_ok ? "0 or more" : "positive"));
  return s;
}

int Integer(const Json& v, const std::string& key, int lo, int hi) {
  if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
    throw ConfigError("with." + key + ": must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
  return v.get<int>();
}

}  // namespace

WorkerOptions WorkerOptionsFrom(const Json& with) {
  WorkerOptions o;
  if (!with.is_object()) return o;
  if (with.contains("batch")) {
    const Json& b = with["batch"];
    if (!b.is_object()) throw ConfigError("with.batch: must be a mapping {max: N, wait: DURATION}");
    for (const auto& [k, v] : b.items()) {
      if (k == "max") o.batch_max = Integer(v, "batch.max", 1, 4096);
      else if (k == "wait") o.batch_wait = Seconds(v, "batch.wait", true);
      else throw ConfigError("with.batch." + k + ": unknown parameter (batch takes max, wait)");
    }
  }
  if (with.contains("startup_timeout")) o.startup_timeout = Seconds(with["startup_timeout"], "startup_timeout", false);
  if (with.contains("idle_timeout")) o.idle_timeout = Seconds(with["idle_timeout"], "idle_timeout", false);
  if (with.contains("cancel_grace")) o.cancel_grace = Seconds(with["cancel_grace"], "cancel_grace", true);
  if (with.contains("_timeout") && with["_timeout"].is_number()) o.item_timeout = with["_timeout"].get<double>();
  if (with.contains("max_items")) o.max_items = Integer(with["max_items"], "max_items", 0, 1 << 30);
  return o;
}

}  // namespace baton
