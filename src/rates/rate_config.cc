#include "rates/rate_config.h"

#include <cmath>
#include <regex>

#include "baton/pipeline.h"

namespace baton::rates {
namespace {

// The parsers below throw (std::invalid_argument, LoadError) inside this file only; the public
// functions at its end catch them and return a Result.

// "200000", "2.5e5", "200k", "1.5M". Throws std::invalid_argument.
double ParseAmount(const std::string& text) {
  static const std::regex kRe(R"(^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(k|K|M|G)?\s*$)");
  std::smatch m;
  if (!std::regex_match(text, m, kRe)) throw std::invalid_argument("bad amount: " + text);
  const std::string unit = m[2];
  const double mul = unit.empty() ? 1 : unit == "M" ? 1e6 : unit == "G" ? 1e9 : 1e3;
  return std::stod(m[1]) * mul;
}

[[noreturn]] void Fail(const std::string& file, const YAML::Node& at, const std::string& key,
                       const std::string& what) {
  const int line = at.Mark().line >= 0 ? at.Mark().line + 1 : 0;
  std::string text = key + ": " + what;  // one line, even when a key spans lines
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  throw LoadError(file + ":" + std::to_string(line) + ": " + text);
}

std::string ScalarOf(const std::string& file, const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) Fail(file, n, key, "must be a single value");
  return n.Scalar();
}

double PositiveNumber(const std::string& file, const YAML::Node& n, const std::string& key) {
  const std::string s = ScalarOf(file, n, key);
  double v = 0;
  try {
    v = ParseAmount(s);
  } catch (const std::logic_error&) {  // invalid_argument, or out_of_range from stod
    Fail(file, n, key, "'" + s + "' is not a number");
  }
  if (!(v > 0) || std::isinf(v)) Fail(file, n, key, "must be a positive number (got " + s + ")");
  return v;
}

// Throws std::invalid_argument.
double RatePerSecond(const std::string& text) {
  static const std::regex kRe(R"(^\s*([^/\s]+)\s*/\s*(s|sec|second|min|minute|h|hour)\s*$)");
  std::smatch m;
  if (!std::regex_match(text, m, kRe)) throw std::invalid_argument("bad rate: " + text);
  const double amount = ParseAmount(m[1]);
  const std::string unit = m[2];
  const double per = unit[0] == 's' ? 1 : unit[0] == 'm' ? 60 : 3600;
  return amount / per;
}

double Rate(const std::string& file, const YAML::Node& n, const std::string& key) {
  const std::string s = ScalarOf(file, n, key);
  try {
    const double v = RatePerSecond(s);
    if (!(v > 0) || std::isinf(v)) Fail(file, n, key, "must be positive (got " + s + ")");
    return v;
  } catch (const std::logic_error&) {  // invalid_argument, or out_of_range from stod
    Fail(file, n, key, "'" + s + "' is not a rate (use N/s, N/min or N/h, e.g. 500/min)");
  }
}

RateSpecs Rates(const YAML::Node& node, const std::string& file) {
  if (!node.IsMap()) Fail(file, node, "rates", "must be a mapping of name: rate (e.g. openai_requests: 500/min)");
  static const std::regex kName(R"(^[A-Za-z_][A-Za-z0-9_.-]*$)");
  RateSpecs out;
  for (const auto& kv : node) {
    const std::string name = kv.first.as<std::string>();
    const std::string key = "rates." + name;
    if (!std::regex_match(name, kName)) Fail(file, kv.first, key, "is not a valid rate name");
    RateSpec spec;
    const YAML::Node v = kv.second;
    if (v.IsMap()) {
      for (const auto& field : v) {
        const std::string f = field.first.as<std::string>();
        if (f != "rate" && f != "burst") Fail(file, field.first, key + "." + f, "unknown key (allowed: burst, rate)");
      }
      if (!v["rate"]) Fail(file, v, key + ".rate", "missing (e.g. rate: 200000/min)");
      spec.per_second = Rate(file, v["rate"], key + ".rate");
      if (v["burst"]) spec.burst = PositiveNumber(file, v["burst"], key + ".burst");
    } else {
      spec.per_second = Rate(file, v, key);
    }
    if (spec.burst == 0) spec.burst = std::max(1.0, spec.per_second);
    out[name] = spec;
  }
  return out;
}

double Budget(const YAML::Node& node, const std::string& file) {
  if (!node.IsMap()) Fail(file, node, "budget", "must be a mapping (e.g. budget: {usd: 25})");
  for (const auto& kv : node) {
    const std::string f = kv.first.as<std::string>();
    if (f != "usd") Fail(file, kv.first, "budget." + f, "unknown key (allowed: usd)");
  }
  if (!node["usd"]) Fail(file, node, "budget.usd", "missing (e.g. budget: {usd: 25})");
  return PositiveNumber(file, node["usd"], "budget.usd");
}

}  // namespace

Result<double> ParseRatePerSecond(const std::string& text) {
  try {
    return RatePerSecond(text);
  } catch (const std::logic_error&) {  // invalid_argument, or out_of_range from stod
    return Status::Invalid("bad rate: " + text);
  }
}

Result<RateSpecs> ParseRates(const YAML::Node& node, const std::string& file) {
  try {
    return Rates(node, file);
  } catch (const LoadError& e) {
    return Status::Invalid(e.what());
  }
}

Result<double> ParseBudget(const YAML::Node& node, const std::string& file) {
  try {
    return Budget(node, file);
  } catch (const LoadError& e) {
    return Status::Invalid(e.what());
  }
}

RateSpecs MergeRates(const RateSpecs& pipeline, const RateSpecs& cluster) {
  RateSpecs out = pipeline;
  for (const auto& [name, spec] : cluster) out[name] = spec;
  return out;
}

}  // namespace baton::rates
