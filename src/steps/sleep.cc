// `sleep`: the seed's simulate_work. Waits `with.seconds` (cancellable) and returns {slept: S}.
// `with.fail_attempts: N` fails the first N attempts (to try retries), `with.fail: "msg"` always fails.
#include "steps/builtin.h"

namespace baton {
namespace {

class SleepStep : public Step {
 public:
  explicit SleepStep(const Json& with) {
    if (with.contains("seconds")) {
      const Json& s = with["seconds"];
      if (!s.is_number() || s.get<double>() < 0)
        throw ConfigError("with.seconds: must be a non-negative number of seconds");
      seconds_ = s.get<double>();
    }
    if (with.contains("fail_attempts")) {
      if (!with["fail_attempts"].is_number_integer()) throw ConfigError("with.fail_attempts: must be a whole number");
      fail_attempts_ = with["fail_attempts"].get<int>();
    }
    if (with.contains("fail")) fail_ = with["fail"].is_string() ? with["fail"].get<std::string>() : with["fail"].dump();
    for (const auto& [k, v] : with.items())
      if (k != "seconds" && k != "fail_attempts" && k != "fail" && k[0] != '_')
        throw ConfigError("with." + k + ": unknown parameter (sleep takes seconds, fail_attempts, fail)");
  }

  StepOutcome Run(StepContext& ctx) const override {
    if (seconds_ > 0 && ctx.cancel != nullptr && !ctx.cancel->sleep_for(seconds_)) return StepOutcome::Cancelled();
    if (!fail_.empty()) return StepOutcome::Failure(fail_);
    if (ctx.attempt <= fail_attempts_)
      return StepOutcome::Failure("simulated failure of attempt " + std::to_string(ctx.attempt));
    return StepOutcome::Ok({{"slept", seconds_}});
  }
  bool NeedsWorkdir() const override { return false; }

 private:
  double seconds_ = 0;
  int fail_attempts_ = 0;
  std::string fail_;
};

}  // namespace

void RegisterSleepStep(StepRegistry& r) {
  StepTraits traits;
  traits.known_seconds = [](const Json& with) {
    const auto it = with.find("seconds");
    return it != with.end() && it->is_number() ? it->get<double>() : -1.0;
  };
  r.Register("sleep", StepFactoryOf([](const Json& with) { return std::make_unique<SleepStep>(with); }),
             std::move(traits));
}

}  // namespace baton
