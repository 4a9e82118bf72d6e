// `uses: worker`: a user's model as a resident process that loads once and serves attempts of many
// jobs, alone or in batches (docs/steps/worker.md). The scheduler decides which attempts join
// which worker (core rule 8: core::Placement::worker, here ctx.worker); this step keeps one
// Resident per worker id on this node, started when its first attempt arrives, and hands each
// attempt to it. Run blocks until the worker answers the attempt.
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "baton/pipeline.h"
#include "steps/analysis/analysis.h"
#include "steps/builtin.h"
#include "steps/command_args.h"
#include "steps/worker/resident.h"

namespace baton {
namespace {

const std::vector<std::string>& Placeholders() {
  static const std::vector<std::string> names = {"step", "node", "gpus", "outdir", "worker"};
  return names;
}

class WorkerStep : public Step {
 public:
  explicit WorkerStep(const Json& with)
      : args_(CommandArgs::From(with, Placeholders(), false)),
        options_(WorkerOptionsFrom(with)),
        base_dir_(with.value("_base_dir", std::string())),
        state_(std::make_shared<State>()) {
    static const std::set<std::string> kKeys = {"argv",         "env",          "pass_env",  "batch",
                                                "startup_timeout", "idle_timeout", "max_items", "cancel_grace"};
    for (const auto& [k, v] : with.items())
      if (!kKeys.count(k) && k[0] != '_')
        throw ConfigError("with." + k +
                          ": unknown parameter (worker takes argv, env, pass_env, batch, startup_timeout, "
                          "idle_timeout, max_items, cancel_grace)");
  }

  ~WorkerStep() override {
    std::map<int, std::shared_ptr<worker::Resident>> all;
    std::vector<std::shared_ptr<worker::Resident>> retired;
    {
      MutexLock lock(&state_->mu);
      all.swap(state_->residents);
      retired.swap(state_->retired);
    }
    for (auto& [id, r] : all) r->Retire();  // every worker winds down at once, then each is joined
  }

  StepOutcome Run(StepContext& ctx) const override {
    auto item = std::make_shared<worker::Item>();
    item->id = ctx.job + ":" + ctx.step + ":" + std::to_string(ctx.attempt);
    item->job = ctx.job;
    item->ctx = &ctx;
    item->request = {{"id", item->id},
                     {"job", ctx.job},
                     {"input", ctx.input},
                     {"attempt", ctx.attempt},
                     {"workdir", AbsolutePath(ctx.workdir).string()},
                     {"outdir", AbsolutePath(ctx.outdir).string()},
                     {"results", ctx.results ? *ctx.results : Json::object()}};
    {
      MutexLock lock(&state_->mu);
      item->solo = state_->poisoned.count(ctx.job) > 0;
    }
    for (int tries = 0; tries < 5; ++tries) {
      std::shared_ptr<worker::Resident> resident = Get(ctx);
      if (resident == nullptr) return StepOutcome::Failure("worker: cannot start a worker for this step", false);
      if (resident->Run(item)) return Checked(std::move(item->outcome));
      if (ctx.cancelled()) return StepOutcome::Cancelled();
    }
    return StepOutcome::Failure("worker: its worker kept exiting before taking the item", true);
  }

  // An output with parts of the analysis shape must follow it (docs/schema/analysis.md): the
  // attempt fails naming the field, so nothing downstream runs on half an analysis.
  static StepOutcome Checked(StepOutcome out) {
    if (out.ok() && analysis::IsContribution(out.result)) {
      if (std::string e = analysis::CheckContribution(out.result); !e.empty()) {
        return StepOutcome::Failure("worker: output breaks the analysis shape (docs/schema/analysis.md): " + e, false);
      }
    }
    return out;
  }

  void RetireWorker(int worker) const override {
    MutexLock lock(&state_->mu);
    auto it = state_->residents.find(worker);
    if (it == state_->residents.end()) return;
    it->second->Retire();  // returns at once; joined later, off the driver's thread
    state_->retired.push_back(std::move(it->second));
    state_->residents.erase(it);
  }

  Json WorkerStates() const override {
    Json out = Json::array();
    MutexLock lock(&state_->mu);
    for (const auto& [id, r] : state_->residents) out.push_back(r->State());
    return out;
  }

 private:
  struct State {
    Mutex mu;
    std::map<int, std::shared_ptr<worker::Resident>> residents GUARDED_BY(mu);
    std::vector<std::shared_ptr<worker::Resident>> retired GUARDED_BY(mu);  // winding down
    std::set<std::string> poisoned GUARDED_BY(mu);  // jobs whose item killed its worker alone
  };

  // The live resident of ctx.worker, started when missing, exited or holding other GPUs (a head
  // that restarted may number its workers anew).
  std::shared_ptr<worker::Resident> Get(const StepContext& ctx) const {
    std::shared_ptr<worker::Resident> old;
    std::vector<std::shared_ptr<worker::Resident>> done;
    std::shared_ptr<worker::Resident> out;
    {
      MutexLock lock(&state_->mu);
      // Retired residents that have exited are joined here, by an attempt's thread.
      for (auto it = state_->retired.begin(); it != state_->retired.end();) {
        if ((*it)->Exited()) {
          done.push_back(std::move(*it));
          it = state_->retired.erase(it);
        } else {
          ++it;
        }
      }
      const int key = ctx.worker;  // -1 when the engine gave none: one shared worker
      auto it = state_->residents.find(key);
      if (it != state_->residents.end() && (it->second->Exited() || it->second->gpus() != ctx.gpus)) {
        it->second->Retire();
        old = std::move(it->second);
        state_->residents.erase(it);
        it = state_->residents.end();
      }
      if (it == state_->residents.end()) {
        auto r = std::make_shared<worker::Resident>(Config(ctx));
        it = state_->residents.emplace(key, std::move(r)).first;
      }
      out = it->second;
    }
    return out;  // `old` and `done` are joined here, outside the lock
  }

  worker::ResidentConfig Config(const StepContext& ctx) const {
    worker::ResidentConfig c;
    c.id = ctx.worker;
    c.step = ctx.step;
    c.options = options_;
    c.gpus = ctx.gpus;
    const auto value = [&ctx](const std::string& name) -> std::optional<std::string> {
      if (name == "step") return ctx.step;
      if (name == "node") return ctx.node;
      if (name == "gpus") return JoinGpus(ctx.gpus);
      if (name == "outdir") return AbsolutePath(ctx.outdir).string();
      if (name == "worker") return std::to_string(ctx.worker);
      return std::nullopt;
    };
    for (const auto& a : args_.argv) {
      Result<std::string> arg = SubstitutePlaceholders(a, value);  // a placeholder without a value: ""
      c.process.argv.push_back(arg.ok() ? std::move(*arg) : std::string());
    }
    c.process.env = args_.env;
    c.process.pass_env = args_.pass_env;
    c.process.env["CUDA_VISIBLE_DEVICES"] = VisibleDevices(ctx.gpus);
    c.process.env["BATON_STEP"] = ctx.step;
    c.process.env["BATON_NODE"] = ctx.node;
    c.process.env["BATON_WORKER"] = std::to_string(ctx.worker);
    c.process.env["PYTHONUNBUFFERED"] = "1";
    // Relative paths in argv are relative to the pipeline file's folder (where the user's model
    // lives); the node's work root when that folder is not on this node.
    const std::filesystem::path root = AbsolutePath(ctx.workdir).parent_path();
    std::error_code ec;
    c.process.cwd = !base_dir_.empty() && std::filesystem::is_directory(base_dir_, ec) ? base_dir_ : root;
    if (!root.empty()) {
      std::filesystem::create_directories(root / "workers", ec);
      if (!ec) c.log_file = root / "workers" / (ctx.step + "." + std::to_string(ctx.worker) + ".stderr");
    }
    c.poisoned = [state = state_](const std::string& job) {
      MutexLock lock(&state->mu);
      state->poisoned.insert(job);
    };
    return c;
  }

  CommandArgs args_;
  WorkerOptions options_;
  std::filesystem::path base_dir_;
  std::shared_ptr<State> state_;
};

}  // namespace

void RegisterWorkerStep(StepRegistry& r) {
  r.Register("worker", StepFactoryOf([](const Json& with) { return std::make_unique<WorkerStep>(with); }));
}

}  // namespace baton
