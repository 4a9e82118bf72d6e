// The `rates:` and `budget:` keys of pipeline and cluster files. The YAML loader
// (src/runtime/config.cc) calls these; errors are LoadError with one line "FILE:LINE: KEY: what".
//
//   rates:
//     openai_requests: 500/min                          # units /s, /min, /h
//     openai_tokens: {rate: 200000/min, burst: 20000}   # burst default: one second's worth
//   budget: {usd: 25}
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

#include "baton/rates.h"
#include "baton/status.h"

namespace baton::rates {

// "500/min" -> 8.333…, "2/s", "7200/h", "1.5k/min"; an error ("bad rate: TEXT") otherwise.
Result<double> ParseRatePerSecond(const std::string& text);

// `node` is the value of a `rates:` key in `file`; an error is one line, "FILE:LINE: KEY: what".
Result<RateSpecs> ParseRates(const YAML::Node& node, const std::string& file);

// `node` is the value of a `budget:` key; returns the budget in USD (> 0), or an error as above.
Result<double> ParseBudget(const YAML::Node& node, const std::string& file);

// The cluster file's buckets win over the pipeline's of the same name (like pools).
RateSpecs MergeRates(const RateSpecs& pipeline, const RateSpecs& cluster);

}  // namespace baton::rates
