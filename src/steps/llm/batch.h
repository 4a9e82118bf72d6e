// The llm step's `mode: batch`: requests go through a provider's Batch API (OpenAI's /v1/files +
// /v1/batches, and any base_url that speaks it) at the batch price, their attempts parked
// meanwhile (docs/design.md "Parked attempts", docs/steps/llm.md "Batch mode").
//
//   Run (an attempt)  ──Add──> the open collection (park id "batch-N")  ──> StepOutcome::Park
//   CheckPark(id)     ──collecting, `collect` not over and not full──> ask again later
//                     ──reserve the budget item by item (what does not fit fails, not retryable),
//                       upload the JSONL input file, note {file, items}, create the batch (or find
//                       the one created with that file before a crash), note {batch}
//                     ──poll: not ended──> ask again after `poll` (cancel once past `expire`)
//                     ──ended──> output and error files mapped back by custom_id (never by order);
//                       settle the budget from the output's usage; note {ended}; outcomes: a done
//                       item ends its attempt, a failed/expired/cancelled one follows `fallback`
//                       (sync or batch: woken to run again; fail: fails)
//
// Notes (ParkContext::note) are journaled before what they describe can be lost, and handed back
// by RestoreNotes after a restart: a restarted run's attempts join the same batch, so nothing is
// uploaded, submitted or billed twice.
//
// Thread-safety: every method may be called from any thread; one CheckPark per id at a time.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "baton/step.h"
#include "steps/llm/llm_config.h"

namespace baton::llm {

class BatchBook {
 public:
  explicit BatchBook(const LlmConfig& config) : c_(config) {}

  struct Join {
    std::string id;
    double poll_in = 0;
  };
  // The collection `job` already has an item in (a restored run's, or one that ended with its
  // answer before this attempt parked), if any.
  std::optional<Join> Pending(const std::string& job);
  // True once after an item of `job` failed with `fallback: sync`: this attempt runs synchronously.
  bool TakeSyncFallback(const std::string& job);
  // Adds `job`'s request (a chat completion body) to the open collection.
  Join Add(const std::string& job, const std::string& custom_id, Json body, double est_usd);
  ParkCheck Check(ParkContext& ctx);
  void Restore(const std::vector<Json>& notes);
  Json States() const;

 private:
  struct Item {
    std::string job, custom_id;
    std::string line;  // the JSONL input line ("" for a restored item: it is in the uploaded file)
    double est_usd = 0;
    bool reserved = false;
  };
  struct Collection {
    std::string id;
    double first_at = 0;  // steady seconds
    bool closed = false;  // full, or being sent: new requests go to a new collection
    size_t bytes = 0;
    std::vector<Item> items;
    std::string file_id, batch_id, status = "collecting";
    double created_at = 0;  // wall seconds (journaled: expiry survives restarts)
    bool cancel_sent = false, settled = false, restored_reservation = false;
    double reserved_usd = 0, cost_usd = 0;
    Json counts;  // the provider's request_counts
    std::map<std::string, StepOutcome> outcomes;  // once ended, by job
  };
  ParkCheck Submit(ParkContext& ctx, Collection& col);
  ParkCheck Poll(ParkContext& ctx, Collection& col);
  ParkCheck End(ParkContext& ctx, Collection& col, const Json& batch);
  std::string Key() const;

  const LlmConfig& c_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Collection>> cols_;
  std::string open_;                          // the collecting one, "" none
  std::map<std::string, std::string> by_job_;  // job -> collection of its pending item
  std::set<std::string> sync_next_;
  int seq_ = 0;
};

}  // namespace baton::llm
