#include "driver/step_host.h"

namespace baton::driver {

StepOutcome RunAttempt(AttemptSpec& spec, const CancelToken& cancel) {
  // The spec's strings move into the context (the attempt owns both); what the callbacks below
  // read (sinks, clock, artifact) stays in the spec.
  StepContext ctx;
  ctx.job = std::move(spec.job);
  ctx.step = std::move(spec.step_name);
  ctx.node = std::move(spec.node);
  ctx.attempt = spec.attempt;
  ctx.input = std::move(spec.input);
  ctx.results = spec.results.get();
  ctx.history = spec.history.get();
  ctx.workdir = std::move(spec.workdir);
  ctx.outdir = std::move(spec.outdir);
  ctx.gpus = std::move(spec.gpus);
  ctx.worker = spec.worker;
  ctx.cancel = &cancel;
  ctx.rates = spec.rates.get();
  const bool sinks = spec.sinks && !spec.sinks->empty();
  // One event of this attempt, stamped and sent to every sink.
  auto emit = [&spec, &ctx](Event e) {
    e.time = spec.clock->Monotonic() - spec.t0;
    e.job = ctx.job;
    e.step = ctx.step;
    e.node = ctx.node;
    e.attempt = ctx.attempt;
    for (const auto& s : *spec.sinks) s->OnEvent(e);
  };
  if (sinks) {
    ctx.log = [emit](LogLevel level, std::string_view msg) {
      Event e{Event::Type::kLog};
      e.status = LogLevelName(level);
      e.message = std::string(msg);
      emit(std::move(e));
    };
  }
  if (sinks || spec.on_wait) {
    ctx.progress = [emit, sinks, &spec](const Json& data) {
      if (spec.on_wait && data.is_object()) {
        if (const auto w = data.find("waiting"); w != data.end())
          spec.on_wait(w->is_string() ? w->get<std::string>() : "");
      }
      if (!sinks) return;
      Event e{Event::Type::kProgress};
      e.data = data;
      emit(std::move(e));
    };
  }
  if (spec.artifact) {
    ctx.artifact = [&spec](std::string_view step, std::string_view relative) { return spec.artifact(step, relative); };
  }
  if (!spec.step) return StepOutcome::Failure("no step object for " + ctx.step, false);
  try {
    if (spec.make_workdir && spec.step->NeedsWorkdir()) std::filesystem::create_directories(ctx.workdir);
    return spec.step->Run(ctx);
  } catch (const std::exception& e) {
    return StepOutcome::Failure(std::string("step threw: ") + e.what());
  } catch (...) {
    return StepOutcome::Failure("step threw an unknown exception");
  }
}

}  // namespace baton::driver
