// The llm step's `mode: batch`: requests go through a provider's batch API at the batch price,
// their attempts parked meanwhile (docs/design.md "Parked attempts", docs/steps/llm.md "Batch
// mode"). Two APIs, behind one small interface in batch.cc (BatchApi): OpenAI's Batch API
// (/v1/files + /v1/batches, and any base_url that speaks it) and Anthropic's Message Batches
// (/v1/messages/batches: the requests go in the create call itself, no file).
//
//   Run (an attempt)  ──Add──> the open collection (park id "batch-N")  ──> StepOutcome::Park
//   CheckPark(id)     ──collecting, `collect` not over and not full──> ask again later
//                     ──reserve the budget item by item (what does not fit fails, not retryable),
//                       upload the JSONL input file (OpenAI), note {file?, nonce, noted_at, items},
//                       find a batch created for them before a crash (OpenAI: by its input file;
//                       Anthropic: among the batches created since noted_at, by the nonce in its
//                       custom_ids once it has ended), else create the batch, note {batch}
//                     ──poll: not ended──> ask again after `poll` (cancel once past `expire`)
//                     ──ended──> results mapped back by custom_id (never by order); settle the
//                       budget from their usage; note {ended}; outcomes: a done item ends its
//                       attempt, a failed/expired/cancelled one follows `fallback` (sync or batch:
//                       woken to run again; fail: fails)
//   MapReduce (an attempt whose input needs map-reduce) ──> its map round's requests together in
//                     the open collection ──> park; when a collection ends, each map-reduce job's
//                     answers are kept (and noted); Advance replays its rounds (NextRound, llm.cc)
//                     over them: the next round's requests go in the open collection and the
//                     attempt parks again on it, or the final reduce's answer ends it
//
// Notes (ParkContext::note) are journaled before what they describe can be lost, and handed back
// by RestoreNotes after a restart: a restarted run's attempts join the same batch, so nothing is
// uploaded, submitted or billed twice. (An Anthropic collection noted but never created is
// released: its requests are not journaled, so its jobs simply run again.)
//
// Thread-safety: every method may be called from any thread; one CheckPark per id at a time.
#pragma once

#include <functional>
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

class BatchApi;  // batch.cc: one provider's batch endpoints

// One round of a map-reduce summary (llm.cc renders it; the synchronous path and the batch run the
// same rounds): level 0 is the map round (one request per chunk), each later level a reduce round
// over the previous round's texts. An entry is a request (`prompt`) or a text passed through as it
// is (`text`: a partial with nothing to combine it with at this budget). `final`: the round is one
// reduce of everything, whose answer is the summary. `error`: the input cannot be summarised so.
struct Round {
  struct Entry {
    std::string prompt, label;
    std::optional<std::string> text;
  };
  std::vector<Entry> entries;
  bool final = false;
  std::string error;
};
// Round `level` from the texts of round level-1 (none for level 0).
using NextRound = std::function<Round(int level, const std::vector<std::string>& partials)>;

class BatchBook {
 public:
  explicit BatchBook(const LlmConfig& config);
  ~BatchBook();

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
  // A job whose input needs map-reduce: its rounds (`next`) go through batches, each round's
  // requests together in one collection. Returns what the attempt does now: park on the
  // collection that holds the round's requests, end with the summary (every round answered
  // already: a restarted run), or fail. Nullopt when the map round alone has more requests than
  // with.batch.max_requests (the attempt then runs synchronously). `base_id`: JOB/STEP/ATTEMPT.
  std::optional<StepOutcome> MapReduce(const std::string& job, const std::string& base_id, int attempt,
                                       NextRound next);
  ParkCheck Check(ParkContext& ctx);
  void Restore(const std::vector<Json>& notes);
  Json States() const;

  // The book's records (BatchApi reads them).
  struct Item {
    std::string job, custom_id;
    std::string line;  // the request as the API sends it ("" for a restored item: never journaled)
    double est_usd = 0;
    bool reserved = false;
    int level = -1, part = -1;  // a map-reduce request: its round and entry; -1: the job's one request
  };
  struct Collection {
    std::string id;
    std::string nonce;  // random; in an Anthropic item's custom_id: how a batch is known as ours
    double first_at = 0;  // steady seconds
    bool closed = false;  // full, or being sent: new requests go to a new collection
    size_t bytes = 0;
    std::vector<Item> items;
    std::string file_id, batch_id, status = "collecting";
    bool noted = false;          // its items are journaled (sent, or maybe sent)
    bool maybe_created = false;  // a create may have reached the provider without its id coming back
    double noted_at = 0;         // wall seconds of the items' note
    double created_at = 0;  // wall seconds (journaled: expiry survives restarts)
    bool cancel_sent = false, settled = false, restored_reservation = false;
    double reserved_usd = 0, cost_usd = 0;
    Json counts;  // the provider's request_counts
    std::set<std::string> not_ours;  // batches looked at by Find and known to be someone else's
    std::map<std::string, StepOutcome> outcomes;  // once ended, by job
  };

 private:
  ParkCheck Submit(ParkContext& ctx, Collection& col);
  ParkCheck Poll(ParkContext& ctx, Collection& col);
  ParkCheck End(ParkContext& ctx, Collection& col, const Json& batch);
  ParkCheck Release(ParkContext& ctx, Collection& col);

  // A map-reduce job's answers so far (journaled as they come) and how to render its rounds.
  struct Answer {
    int level = 0, part = 0;
    std::string text, batch;
    long long prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  };
  struct MapReduceJob {
    NextRound next;  // empty for a restored job until its attempt runs again
    std::string base_id;
    int attempt = 1, tries = 0;
    std::vector<Answer> answers;  // in the order they came
    bool Has(int level, int part) const;
  };
  struct Request {
    std::string custom_id;
    Json body;
    double est_usd = 0;
    int level = -1, part = -1;
  };
  // mu_ held. Adds requests of one job together (a new collection when the open one cannot take them all).
  Join AddLocked(const std::string& job, std::vector<Request> requests);
  // mu_ held. Replays the job's rounds over its answers: the first round with an unanswered request
  // parks (on the collection that has them, else they are added now), a final round answered ends it.
  StepOutcome Advance(const std::string& job, MapReduceJob& m);

  const LlmConfig& c_;
  const std::unique_ptr<BatchApi> api_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Collection>> cols_;
  std::string open_;                          // the collecting one, "" none
  std::map<std::string, std::string> by_job_;  // job -> collection of its pending item
  std::set<std::string> sync_next_;
  std::map<std::string, MapReduceJob> mr_;  // by job
  int seq_ = 0;
};

}  // namespace baton::llm
