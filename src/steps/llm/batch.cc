#include "steps/llm/batch.h"

#include <curl/curl.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "baton/rates.h"
#include "rates/llm_usage.h"
#include "steps/llm/chat_client.h"
#include "steps/llm/prompt.h"

namespace baton::llm {
namespace {

double SteadyNow() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double WallNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Http {
  long status = 0;
  std::string body, error;  // error: the transport's, "" when a reply came
  bool ok() const { return error.empty() && status >= 200 && status < 300; }
  std::string Why() const {
    if (!error.empty()) return error;
    const Json j = Json::parse(body, nullptr, false);
    std::string msg = j.is_object() && j.contains("error") && j["error"].is_object()
                          ? j["error"].value("message", std::string())
                          : body.substr(0, 200);
    return fmt::format("HTTP {}: {}", status, msg);
  }
};

size_t OnBody(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

// One request. `path` is appended to base_url unless it is a whole URL; `json`: a JSON body to
// POST; `file`: a multipart upload (purpose=batch) instead.
Http Call(const LlmConfig& c, const std::string& key, const std::string& method, const std::string& path,
          const std::string* json = nullptr, const std::string* file = nullptr) {
  Http h;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    h.error = "curl_easy_init failed";
    return h;
  }
  curl_slist* headers = nullptr;
  std::vector<std::string> auth = AuthHeaders(c, key);
  for (const auto& line : auth) headers = curl_slist_append(headers, line.c_str());
  if (json) headers = curl_slist_append(headers, "Content-Type: application/json");
  curl_mime* mime = nullptr;
  const bool whole = path.rfind("http://", 0) == 0 || path.rfind("https://", 0) == 0;
  const std::string url = whole ? path : c.base_url + path;
  char errbuf[CURL_ERROR_SIZE] = {0};
  const long timeout_ms = std::max(1L, std::lround(c.timeout * 1000));
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "baton-llm/0.1");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &h.body);
  if (json) {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(json->size()));
  } else if (file) {
    mime = curl_mime_init(curl);
    curl_mimepart* part = curl_mime_addpart(mime);
    curl_mime_name(part, "purpose");
    curl_mime_data(part, "batch", CURL_ZERO_TERMINATED);
    part = curl_mime_addpart(mime);
    curl_mime_name(part, "file");
    curl_mime_data(part, file->data(), file->size());
    curl_mime_filename(part, "baton-batch.jsonl");
    curl_mime_type(part, "application/jsonl");
    curl_easy_setopt(curl, CURLOPT_MIMEPOST, mime);
  } else if (method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
  }
  const CURLcode code = curl_easy_perform(curl);
  if (code != CURLE_OK) h.error = errbuf[0] ? errbuf : curl_easy_strerror(code);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &h.status);
  if (mime) curl_mime_free(mime);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  for (auto& line : auth) std::fill(line.begin(), line.end(), '\0');
  if (!key.empty()) {  // never a key in a message
    for (std::string* s : {&h.error, &h.body})
      for (size_t pos = 0; (pos = s->find(key, pos)) != std::string::npos;) s->replace(pos, key.size(), "[redacted]");
  }
  return h;
}

void Log(ParkContext& ctx, LogLevel level, const std::string& msg) {
  if (ctx.log) ctx.log(level, msg);
}

bool Note(ParkContext& ctx, const Json& note) { return !ctx.note || ctx.note(note); }

std::string NewNonce() {
  thread_local std::mt19937_64 rng(std::random_device{}() ^ static_cast<uint64_t>(SteadyNow() * 1e9));
  return fmt::format("{:016x}", rng());
}

// "scheme://host[:port]" of a URL ("" when it has none).
std::string Origin(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return "";
  return url.substr(0, url.find('/', scheme + 3));
}

// An RFC 3339 time ("2025-06-01T12:00:30.123Z") as wall seconds; < 0 when unparsable.
double ParseTime(const Json& v) {
  if (!v.is_string()) return -1;
  std::tm tm{};
  if (strptime(v.get<std::string>().c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) return -1;
  return static_cast<double>(timegm(&tm));
}

}  // namespace

// One provider's batch endpoints; BatchBook keeps the bookkeeping (collections, notes, budget,
// outcomes). Each call is one or a few HTTP requests; `why` says what failed (key scrubbed).
class BatchApi {
 public:
  enum class Found { kNone, kFound, kUndecided };
  struct Answer {
    std::string why;  // "" when `reply` holds the answer
    ChatReply reply;
  };

  explicit BatchApi(const LlmConfig& c) : c_(c) {}
  virtual ~BatchApi() = default;

  // The item's custom_id, from the one the step asks for (JOB/STEP/ATTEMPT).
  virtual std::string CustomId(const BatchBook::Collection& col, size_t index, const std::string& job,
                               const std::string& wanted) const = 0;
  // The item's request as it goes into the batch (what max_bytes counts).
  virtual std::string Line(const std::string& custom_id, const Json& body) const = 0;
  // What must exist before the items are noted (OpenAI: the input file); false when it failed.
  virtual bool Upload(BatchBook::Collection& col, std::string* why) = 0;
  // A batch created for `col` before a crash, or by a create whose answer was lost.
  virtual Found Find(BatchBook::Collection& col, std::string* id, std::string* why) = 0;
  // Whether Create can send `col` (a restored Anthropic item's request is not journaled).
  virtual bool CanCreate(const BatchBook::Collection& col) const = 0;
  virtual bool Create(const BatchBook::Collection& col, std::string* id, std::string* why) = 0;
  // The batch object; false when it cannot be read now.
  virtual bool Poll(const std::string& id, Json* batch, std::string* why) = 0;
  virtual std::string Status(const Json& batch) const = 0;
  virtual bool Ended(const Json& batch) const = 0;
  Json Counts(const Json& batch) const { return batch.value("request_counts", Json()); }
  virtual void Cancel(const std::string& id) = 0;
  // An ended batch's answers by custom_id; false when they cannot be read now.
  virtual bool Results(const Json& batch, std::map<std::string, Answer>* out, std::string* why) = 0;

  std::string Key() const {
    if (c_.api_key_env.empty()) return "";
    const char* v = std::getenv(c_.api_key_env.c_str());
    return v ? v : "";
  }

 protected:
  const LlmConfig& c_;
};

namespace {

// OpenAI's Batch API: a JSONL input file (POST /files, purpose=batch), POST /batches with it, GET
// /batches/{id} until completed/expired/cancelled/failed, then its output and error files.
class OpenAiBatchApi final : public BatchApi {
 public:
  using BatchApi::BatchApi;

  std::string CustomId(const BatchBook::Collection&, size_t, const std::string&,
                       const std::string& wanted) const override {
    return wanted;
  }
  std::string Line(const std::string& custom_id, const Json& body) const override {
    return Json{{"custom_id", custom_id}, {"method", "POST"}, {"url", "/v1/chat/completions"}, {"body", body}}.dump(
               -1, ' ', false, Json::error_handler_t::replace) +
           "\n";
  }
  bool Upload(BatchBook::Collection& col, std::string* why) override {
    std::string file;
    for (const auto& item : col.items) file += item.line;
    const Http up = Call(c_, Key(), "POST", "/files", nullptr, &file);
    const Json fj = Json::parse(up.body, nullptr, false);
    if (!up.ok() || !fj.is_object() || !fj.value("id", Json()).is_string()) {
      *why = up.Why();
      return false;
    }
    col.file_id = fj["id"].get<std::string>();
    return true;
  }
  // The batch made from this very input file, if any (a list that cannot be read: none).
  Found Find(BatchBook::Collection& col, std::string* id, std::string*) override {
    const Http list = Call(c_, Key(), "GET", "/batches?limit=100");
    const Json lj = Json::parse(list.body, nullptr, false);
    if (list.ok() && lj.is_object() && lj.value("data", Json()).is_array())
      for (const auto& b : lj["data"])
        if (b.is_object() && b.value("input_file_id", "") == col.file_id && b.value("id", Json()).is_string()) {
          *id = b["id"].get<std::string>();
          return Found::kFound;
        }
    return Found::kNone;
  }
  bool CanCreate(const BatchBook::Collection& col) const override { return !col.file_id.empty(); }
  bool Create(const BatchBook::Collection& col, std::string* id, std::string* why) override {
    const std::string body = Json{{"input_file_id", col.file_id},
                                  {"endpoint", "/v1/chat/completions"},
                                  {"completion_window", "24h"},
                                  {"metadata", {{"baton", col.id}}}}
                                 .dump();
    const Http made = Call(c_, Key(), "POST", "/batches", &body);
    const Json bj = Json::parse(made.body, nullptr, false);
    if (!made.ok() || !bj.is_object() || !bj.value("id", Json()).is_string()) {
      *why = made.Why();
      return false;
    }
    *id = bj["id"].get<std::string>();
    return true;
  }
  bool Poll(const std::string& id, Json* batch, std::string* why) override {
    const Http h = Call(c_, Key(), "GET", "/batches/" + id);
    *batch = Json::parse(h.body, nullptr, false);
    if (h.ok() && batch->is_object()) return true;
    *why = h.Why();
    return false;
  }
  std::string Status(const Json& batch) const override { return batch.value("status", ""); }
  bool Ended(const Json& batch) const override {
    const std::string s = Status(batch);
    return s == "completed" || s == "expired" || s == "cancelled" || s == "failed";
  }
  void Cancel(const std::string& id) override { Call(c_, Key(), "POST", "/batches/" + id + "/cancel"); }
  bool Results(const Json& batch, std::map<std::string, Answer>* out, std::string* why) override {
    std::map<std::string, Json> lines;  // custom_id -> its output or error line
    for (const char* field : {"output_file_id", "error_file_id"}) {
      const Json fid = batch.value(field, Json());
      if (!fid.is_string() || fid.get<std::string>().empty()) continue;
      const Http f = Call(c_, Key(), "GET", "/files/" + fid.get<std::string>() + "/content");
      if (!f.ok()) {
        *why = fmt::format("reading {}: {}", field, f.Why());
        return false;
      }
      std::istringstream in(f.body);
      for (std::string line; std::getline(in, line);) {
        Json j = Json::parse(line, nullptr, false);
        if (!j.is_object() || !j.value("custom_id", Json()).is_string()) continue;
        const std::string id = j["custom_id"].get<std::string>();
        // An answer beats an error for the same item.
        if (!lines.count(id) || (j.value("response", Json()).is_object() && j.value("error", Json()).is_null()))
          lines[id] = std::move(j);
      }
    }
    for (const auto& [id, l] : lines) {
      Answer& a = (*out)[id];
      const Json resp = l.value("response", Json());
      const Json err = l.value("error", Json());
      if (err.is_object()) a.why = fmt::format("{}: {}", err.value("code", "error"), err.value("message", ""));
      else if (!resp.is_object() || resp.value("status_code", 0) != 200)
        a.why = fmt::format("status {}", resp.is_object() ? resp.value("status_code", 0) : 0);
      if (!a.why.empty()) continue;
      a.reply = ParseChatReply(resp.value("body", Json()).dump());
      if (a.reply.problem != ChatReply::Problem::kNone) a.why = "the answer has no message";
    }
    return true;
  }
};

// Anthropic's Message Batches: POST /messages/batches {requests: [{custom_id, params}]}, GET
// /messages/batches/{id} until processing_status is ended, then the JSONL at its results_url.
// Its batches carry no metadata and no input file; they are known as ours by the nonce in the
// custom_ids of their results.
class AnthropicBatchApi final : public BatchApi {
 public:
  using BatchApi::BatchApi;
  // Find: batches created this long before the items' note are still looked at (clock skew).
  static constexpr double kSkew = 600;
  static constexpr int kPages = 20;  // of 100 batches each

  // Anthropic allows ^[a-zA-Z0-9_-]{1,64}$: the nonce, the item's index, what fits of the job.
  std::string CustomId(const BatchBook::Collection& col, size_t index, const std::string& job,
                       const std::string&) const override {
    std::string id = fmt::format("{}-{}-", col.nonce, index);
    for (char ch : job) {
      if (id.size() >= 64) break;
      id += std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' ? ch : '_';
    }
    if (id.back() == '-') id.pop_back();
    return id;
  }
  std::string Line(const std::string& custom_id, const Json& body) const override {
    return Json{{"custom_id", custom_id}, {"params", body}}.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  bool Upload(BatchBook::Collection&, std::string*) override { return true; }
  // Only after a create that may have reached Anthropic (a restart, a lost answer): the batches
  // created since the note (newest first) with as many requests as ours; one that has ended is
  // ours when its results carry our nonce; one still running cannot be told yet (kUndecided).
  Found Find(BatchBook::Collection& col, std::string* id, std::string* why) override {
    if (!col.maybe_created) return Found::kNone;
    const std::string key = Key();
    bool undecided = false;
    std::string after;
    for (int page = 0; page < kPages; ++page) {
      const Http list =
          Call(c_, key, "GET", "/messages/batches?limit=100" + (after.empty() ? "" : "&after_id=" + after));
      const Json lj = Json::parse(list.body, nullptr, false);
      if (!list.ok() || !lj.is_object() || !lj.value("data", Json()).is_array()) {
        *why = "listing the batches: " + list.Why();
        return Found::kUndecided;
      }
      bool older = false;
      for (const auto& b : lj["data"]) {
        if (!b.is_object() || !b.value("id", Json()).is_string()) continue;
        const std::string bid = b["id"].get<std::string>();
        const double created = ParseTime(b.value("created_at", Json()));
        if (created >= 0 && created < col.noted_at - kSkew) {
          older = true;
          break;
        }
        if (col.not_ours.count(bid) || Total(Counts(b)) != static_cast<long long>(col.items.size())) continue;
        if (!Ended(b)) {
          undecided = true;
          *why = fmt::format("batch {} ({} requests, created since the note) is still running: whether it is ours "
                             "shows once it has ended",
                             bid, col.items.size());
          continue;
        }
        std::map<std::string, Answer> answers;
        std::string fail;
        if (!Results(b, &answers, &fail)) {
          undecided = true;
          *why = fmt::format("reading the results of {}: {}", bid, fail);
          continue;
        }
        if (!answers.empty() && answers.begin()->first.rfind(col.nonce + "-", 0) == 0) {
          *id = bid;
          return Found::kFound;
        }
        col.not_ours.insert(bid);
      }
      if (older || !lj.value("has_more", false) || !lj.value("last_id", Json()).is_string()) break;
      after = lj["last_id"].get<std::string>();
      if (page + 1 == kPages) {
        undecided = true;
        *why = fmt::format("more than {} batches created since the note; not all looked at", kPages * 100);
      }
    }
    return undecided ? Found::kUndecided : Found::kNone;
  }
  bool CanCreate(const BatchBook::Collection& col) const override {
    for (const auto& item : col.items)
      if (item.line.empty()) return false;
    return true;
  }
  bool Create(const BatchBook::Collection& col, std::string* id, std::string* why) override {
    std::string body = "{\"requests\":[";
    for (size_t i = 0; i < col.items.size(); ++i) body += (i ? "," : "") + col.items[i].line;
    body += "]}";
    const Http made = Call(c_, Key(), "POST", "/messages/batches", &body);
    const Json bj = Json::parse(made.body, nullptr, false);
    if (!made.ok() || !bj.is_object() || !bj.value("id", Json()).is_string()) {
      *why = made.Why();
      return false;
    }
    *id = bj["id"].get<std::string>();
    return true;
  }
  bool Poll(const std::string& id, Json* batch, std::string* why) override {
    const Http h = Call(c_, Key(), "GET", "/messages/batches/" + id);
    *batch = Json::parse(h.body, nullptr, false);
    if (h.ok() && batch->is_object()) return true;
    *why = h.Why();
    return false;
  }
  std::string Status(const Json& batch) const override { return batch.value("processing_status", ""); }
  bool Ended(const Json& batch) const override { return Status(batch) == "ended"; }
  void Cancel(const std::string& id) override { Call(c_, Key(), "POST", "/messages/batches/" + id + "/cancel"); }
  bool Results(const Json& batch, std::map<std::string, Answer>* out, std::string* why) override {
    // results_url when it is on the API's own host (the key goes nowhere else), else the
    // documented GET /messages/batches/{id}/results.
    const Json url = batch.value("results_url", Json());
    const bool same = url.is_string() && !Origin(url.get<std::string>()).empty() &&
                      Origin(url.get<std::string>()) == Origin(c_.base_url);
    const std::string path = same ? url.get<std::string>() : "/messages/batches/" + batch.value("id", "") + "/results";
    const Http f = Call(c_, Key(), "GET", path);
    if (!f.ok()) {
      *why = "reading the results: " + f.Why();
      return false;
    }
    std::istringstream in(f.body);
    for (std::string line; std::getline(in, line);) {
      const Json j = Json::parse(line, nullptr, false);
      if (!j.is_object() || !j.value("custom_id", Json()).is_string()) continue;
      const Json r = j.value("result", Json());
      const std::string type = r.is_object() ? r.value("type", "") : "";
      Answer& a = (*out)[j["custom_id"].get<std::string>()];
      if (type == "succeeded") {
        a.reply = ParseMessagesReply(r.value("message", Json()).dump());
        if (a.reply.problem != ChatReply::Problem::kNone) a.why = "the answer has no text";
      } else if (type == "errored") {  // error: {type: "error", error: {type, message}} (or flat)
        Json e = r.value("error", Json());
        if (e.is_object() && e.value("error", Json()).is_object()) e = e["error"];
        a.why = e.is_object() ? fmt::format("errored: {}: {}", e.value("type", "error"), e.value("message", ""))
                              : "errored";
      } else {
        a.why = type.empty() ? "no result" : type;  // canceled, expired
      }
    }
    return true;
  }

 private:
  static long long Total(const Json& counts) {
    if (!counts.is_object()) return -1;
    long long n = 0;
    for (const char* k : {"processing", "succeeded", "errored", "canceled", "expired"})
      if (counts.value(k, Json()).is_number_integer()) n += counts[k].get<long long>();
    return n;
  }
};

}  // namespace

BatchBook::BatchBook(const LlmConfig& config)
    : c_(config),
      api_(config.api == LlmApi::kAnthropic ? std::unique_ptr<BatchApi>(std::make_unique<AnthropicBatchApi>(config))
                                            : std::make_unique<OpenAiBatchApi>(config)) {}

BatchBook::~BatchBook() = default;

std::optional<BatchBook::Join> BatchBook::Pending(const std::string& job) {
  std::lock_guard lock(mu_);
  auto it = by_job_.find(job);
  if (it == by_job_.end()) return std::nullopt;
  return Join{it->second, 0};
}

bool BatchBook::TakeSyncFallback(const std::string& job) {
  std::lock_guard lock(mu_);
  return sync_next_.erase(job) > 0;
}

BatchBook::Join BatchBook::Add(const std::string& job, const std::string& custom_id, Json body, double est_usd) {
  std::lock_guard lock(mu_);
  std::vector<Request> one;
  one.push_back({custom_id, std::move(body), est_usd, -1, -1});
  return AddLocked(job, std::move(one));
}

BatchBook::Join BatchBook::AddLocked(const std::string& job, std::vector<Request> requests) {
  const double now = SteadyNow();
  std::shared_ptr<Collection> col;
  // The lines' size before they have their custom_ids: a custom_id is at most 64 bytes longer.
  size_t size = 0;
  for (const auto& r : requests) size += api_->Line(r.custom_id, r.body).size() + 64;
  if (!open_.empty()) {
    col = cols_[open_];
    if (col->closed || col->items.size() + requests.size() > static_cast<size_t>(c_.batch_config.max_requests) ||
        col->bytes + size > static_cast<size_t>(c_.batch_config.max_bytes))
      col.reset();
  }
  if (!col) {
    if (!open_.empty()) cols_[open_]->closed = true;
    col = std::make_shared<Collection>();
    col->id = "batch-" + std::to_string(++seq_);
    col->nonce = NewNonce();
    col->first_at = now;
    cols_[col->id] = col;
    open_ = col->id;
  }
  for (auto& r : requests) {
    Item item{job, api_->CustomId(*col, col->items.size(), job, r.custom_id), "", r.est_usd, false, r.level, r.part};
    item.line = api_->Line(item.custom_id, r.body);
    col->bytes += item.line.size() + 1;
    col->items.push_back(std::move(item));
  }
  by_job_[job] = col->id;
  const bool full = col->items.size() >= static_cast<size_t>(c_.batch_config.max_requests);
  if (full) {
    col->closed = true;
    open_.clear();
  }
  return {col->id, full ? 0 : std::max(0.0, col->first_at + c_.batch_config.collect - now)};
}

bool BatchBook::MapReduceJob::Has(int level, int part) const {
  for (const auto& a : answers)
    if (a.level == level && a.part == part) return true;
  return false;
}

std::optional<StepOutcome> BatchBook::MapReduce(const std::string& job, const std::string& base_id, int attempt,
                                                NextRound next) {
  std::lock_guard lock(mu_);
  auto it = mr_.find(job);
  if (it == mr_.end()) {  // a new one: its map round must fit one collection
    const Round map = next(0, {});
    if (map.error.empty() && map.entries.size() > static_cast<size_t>(c_.batch_config.max_requests))
      return std::nullopt;
    it = mr_.emplace(job, MapReduceJob{}).first;
  }
  MapReduceJob& m = it->second;
  m.next = std::move(next);
  m.base_id = base_id;
  m.attempt = attempt;
  StepOutcome out = Advance(job, m);
  if (out.kind != StepOutcome::Kind::kParked) mr_.erase(job);
  return out;
}

StepOutcome BatchBook::Advance(const std::string& job, MapReduceJob& m) {
  std::vector<std::string> partials;
  int chunks = 0;
  for (int level = 0;; ++level) {
    const Round r = m.next(level, partials);
    if (!r.error.empty()) return StepOutcome::Failure(r.error, false);
    if (level == 0) chunks = static_cast<int>(r.entries.size());
    std::vector<std::string> texts;
    std::vector<size_t> missing;
    for (size_t i = 0; i < r.entries.size(); ++i) {
      const Round::Entry& e = r.entries[i];
      const Answer* got = nullptr;
      for (const auto& a : m.answers)
        if (a.level == level && a.part == static_cast<int>(i)) got = &a;
      if (e.text) texts.push_back(*e.text);
      else if (got) texts.push_back(got->text);
      else missing.push_back(i);
    }
    if (!missing.empty()) {
      if (auto pending = by_job_.find(job); pending != by_job_.end()) return StepOutcome::Park(pending->second, 0);
      std::vector<Request> adds;
      const int tries = m.tries++;
      for (size_t i : missing) {
        Json body = ChatRequest(c_, c_.system_prompt, r.entries[i].prompt);
        const double est = rates::CostUsd(
            c_.batch_price, EstimateTokens(body.dump(-1, ' ', false, Json::error_handler_t::replace)), 0,
            c_.max_tokens);
        std::string id = fmt::format("{}/{}{}.{}", m.base_id, level == 0 ? "map" : "reduce", level, i + 1);
        if (tries > 0) id += fmt::format("/{}", tries + 1);
        adds.push_back({std::move(id), std::move(body), est, level, static_cast<int>(i)});
      }
      const Join j = AddLocked(job, std::move(adds));
      return StepOutcome::Park(j.id, j.poll_in);
    }
    if (!r.final) {
      partials = std::move(texts);
      continue;
    }
    // The summary: every request's usage at the batch price, a call record per completion.
    rates::LlmUsage usage;
    Json calls = Json::array();
    std::set<std::string> batches;
    for (const auto& a : m.answers) {
      rates::LlmUsage u;
      u.requests = 1;
      u.prompt_tokens = a.prompt_tokens;
      u.completion_tokens = a.completion_tokens;
      u.cached_tokens = a.cached_tokens;
      u.cost_usd = rates::CostUsd(c_.batch_price, a.prompt_tokens, a.cached_tokens, a.completion_tokens);
      usage.Add(u);
      Json call = {{"attempt", m.attempt}, {"request", calls.size() + 1}, {"phase", a.level == 0 ? "map" : "reduce"},
                   {"tries", 1}, {"prompt_tokens", a.prompt_tokens}, {"completion_tokens", a.completion_tokens},
                   {"batch", a.batch}};
      if (a.cached_tokens > 0) call["cached_tokens"] = a.cached_tokens;
      calls.push_back(std::move(call));
      batches.insert(a.batch);
    }
    return StepOutcome::Ok({{"summary", texts.at(0)},
                            {"provider", c_.provider},
                            {"model", c_.model},
                            {"extractive", false},
                            {"chunks", chunks},
                            {"calls", std::move(calls)},
                            {"batch", {{"ids", Json(batches)}}},
                            {"usage", usage.ToJson()}});
  }
}

ParkCheck BatchBook::Check(ParkContext& ctx) {
  std::shared_ptr<Collection> col;
  {
    std::lock_guard lock(mu_);
    auto it = cols_.find(ctx.id);
    if (it == cols_.end()) {  // unknown (forgotten): its attempts run again
      ParkCheck wake;
      wake.done = true;
      return wake;
    }
    col = it->second;
    if (col->status == "collecting") {
      const double left = col->first_at + c_.batch_config.collect - SteadyNow();
      if (!col->closed && left > 0) {
        ParkCheck later;
        later.poll_in = left;
        return later;
      }
      col->closed = true;
      if (open_ == col->id) open_.clear();
    }
    if (col->status == "ended") {
      ParkCheck done;
      done.done = true;
      done.outcomes = col->outcomes;
      return done;
    }
  }
  if (col->restored_reservation && ctx.rates) {  // a restarted run holds the batch's reservation again
    ctx.rates->Reserve(col->reserved_usd);
    col->restored_reservation = false;
  }
  if (col->batch_id.empty()) return Submit(ctx, *col);
  return Poll(ctx, *col);
}

ParkCheck BatchBook::Submit(ParkContext& ctx, Collection& col) {
  ParkCheck later;
  later.poll_in = c_.batch_config.poll;
  if (!col.noted) {
    // The budget: a batch's estimated cost is reserved before it exists; what does not fit fails.
    ParkCheck refused;
    std::vector<Item> kept;
    for (auto& item : col.items) {
      if (!item.reserved && ctx.rates) {
        const BudgetGrant g = ctx.rates->Reserve(item.est_usd);
        if (!g.granted) {
          refused.outcomes[item.job] = StepOutcome::Failure(
              g.error.empty() ? fmt::format("LLM budget of ${:.2f} reached: ${:.2f} spent (${:.2f} reserved by "
                                            "requests and batches in flight); not sent in {}",
                                            g.limit, g.spent, g.reserved, col.id)
                              : "llm: the budget store cannot be reached: " + g.error,
              !g.error.empty());
          continue;
        }
        item.reserved = true;
        col.reserved_usd += item.est_usd;
      }
      kept.push_back(std::move(item));
    }
    {
      std::lock_guard lock(mu_);
      col.items = std::move(kept);
      for (const auto& [job, o] : refused.outcomes) {
        by_job_.erase(job);
        col.outcomes[job] = o;  // they end when the batch does (attempts end only on done)
      }
    }
    if (!refused.outcomes.empty())
      Log(ctx, LogLevel::kWarn, fmt::format("llm: {} of the requests of {} do not fit the budget; {} are sent",
                                            refused.outcomes.size(), col.id, col.items.size()));
    if (col.items.empty()) {
      std::lock_guard lock(mu_);
      col.status = "ended";
      refused.done = true;
      col.outcomes = refused.outcomes;
      return refused;
    }
    std::string why;
    if (col.file_id.empty() && !api_->Upload(col, &why)) {
      Log(ctx, LogLevel::kWarn, fmt::format("llm: uploading {} failed ({}); trying again", col.id, why));
      return later;
    }
    col.noted_at = WallNow();
    Json items = Json::array();
    for (const auto& i : col.items) {
      if (i.part >= 0) items.push_back({i.job, i.custom_id, i.est_usd, i.level, i.part});
      else items.push_back({i.job, i.custom_id, i.est_usd});
    }
    Json note = {{"c", col.id}, {"nonce", col.nonce}, {"noted_at", col.noted_at}, {"items", items},
                 {"reserved", col.reserved_usd}};
    if (!col.file_id.empty()) note["file"] = col.file_id;
    if (!Note(ctx, note)) Log(ctx, LogLevel::kWarn, "llm: the journal did not take the batch's items");
    col.noted = true;
    std::lock_guard lock(mu_);
    col.status = col.file_id.empty() ? "noted" : "uploaded";
  }
  // Created before a crash (or by a create whose answer was lost)? Then that is the batch.
  std::string id, why;
  const BatchApi::Found found = api_->Find(col, &id, &why);
  if (found == BatchApi::Found::kUndecided) {
    Log(ctx, LogLevel::kInfo, fmt::format("llm: {}: not created again yet: {}", col.id, why));
    return later;
  }
  if (found == BatchApi::Found::kNone) {
    if (!api_->CanCreate(col)) return Release(ctx, col);
    col.maybe_created = true;  // from here on, a batch may exist without its id
    if (!api_->Create(col, &id, &why)) {
      Log(ctx, LogLevel::kWarn, fmt::format("llm: creating {} failed ({}); trying again", col.id, why));
      return later;
    }
  }
  col.created_at = WallNow();
  if (!Note(ctx, {{"c", col.id}, {"batch", id}, {"created_at", col.created_at}}))
    Log(ctx, LogLevel::kWarn, "llm: the journal did not take the batch id");
  {
    std::lock_guard lock(mu_);
    col.batch_id = id;
    col.status = "in_progress";
  }
  Log(ctx, LogLevel::kInfo,
      fmt::format("llm: {} {} {} ({} requests{})", col.id, found == BatchApi::Found::kFound ? "found as" : "sent as",
                  id, col.items.size(), col.file_id.empty() ? "" : ", file " + col.file_id));
  return later;
}

// A restored collection that no batch was made from, and whose requests are not journaled: its
// reservation is given back and its jobs run again (into a new collection).
ParkCheck BatchBook::Release(ParkContext& ctx, Collection& col) {
  if (ctx.rates && !col.settled) ctx.rates->Settle(col.reserved_usd, 0);
  Note(ctx, {{"c", col.id}, {"ended", "not created"}});
  Log(ctx, LogLevel::kInfo,
      fmt::format("llm: {} was never created before the restart; its {} requests are queued again", col.id,
                  col.items.size()));
  ParkCheck done;
  done.done = true;
  std::lock_guard lock(mu_);
  col.settled = true;
  col.status = "ended";
  col.counts = {{"batch_status", "not created"}};
  for (const auto& item : col.items) {
    auto it = by_job_.find(item.job);
    if (it != by_job_.end() && it->second == col.id) by_job_.erase(it);
  }
  done.outcomes = col.outcomes;  // refused by the budget earlier, if any
  return done;
}

ParkCheck BatchBook::Poll(ParkContext& ctx, Collection& col) {
  ParkCheck later;
  later.poll_in = c_.batch_config.poll;
  Json b;
  std::string why;
  if (!api_->Poll(col.batch_id, &b, &why)) {
    Log(ctx, LogLevel::kWarn, fmt::format("llm: polling {} failed ({}); trying again", col.batch_id, why));
    return later;
  }
  const std::string status = api_->Status(b);
  {
    std::lock_guard lock(mu_);
    col.status = status.empty() ? col.status : status;
    col.counts = api_->Counts(b);
  }
  if (api_->Ended(b)) return End(ctx, col, b);
  if (!col.cancel_sent && WallNow() - col.created_at > c_.batch_config.expire) {
    Log(ctx, LogLevel::kWarn, fmt::format("llm: {} not done after with.batch.expire; cancelling it", col.batch_id));
    api_->Cancel(col.batch_id);
    col.cancel_sent = true;
  }
  return later;
}

ParkCheck BatchBook::End(ParkContext& ctx, Collection& col, const Json& batch) {
  const std::string status = api_->Status(batch);
  std::map<std::string, BatchApi::Answer> answers;
  std::string why_not;
  if (!api_->Results(batch, &answers, &why_not)) {
    Log(ctx, LogLevel::kWarn, fmt::format("llm: {} of {} failed; trying again", why_not, col.batch_id));
    ParkCheck later;
    later.poll_in = c_.batch_config.poll;
    return later;
  }
  ParkCheck done;
  done.done = true;
  double cost = 0;
  int ok = 0, failed = 0;
  std::set<std::string> mr_jobs;  // map-reduce jobs with requests here
  std::map<std::string, std::string> mr_failed;  // with fallback: fail, by job
  Json mr_note = Json::array();  // their answers: [job, level, part, text, prompt, completion, cached]
  for (const auto& item : col.items) {
    auto found = answers.find(item.custom_id);
    std::string why = found == answers.end() ? fmt::format("batch {} {} without an answer for it", col.batch_id, status)
                                             : found->second.why;
    if (item.part >= 0) {  // a map-reduce request: its answer is kept for the job's next round
      mr_jobs.insert(item.job);
      if (!why.empty()) {
        ++failed;
        if (c_.batch_config.fallback == "fail") {
          mr_failed.emplace(item.job, fmt::format("llm: batch item {} failed: {}", item.custom_id, why));
        } else {
          Log(ctx, LogLevel::kWarn,
              fmt::format("llm: batch item {} failed ({}); it goes in a later batch", item.custom_id, why));
        }
        continue;
      }
      const ChatReply& r = found->second.reply;
      cost += rates::CostUsd(c_.batch_price, r.prompt_tokens, r.cached_tokens, r.completion_tokens);
      ++ok;
      mr_note.push_back({item.job, item.level, item.part, r.content, r.prompt_tokens, r.completion_tokens,
                         r.cached_tokens});
      std::lock_guard lock(mu_);
      MapReduceJob& m = mr_[item.job];
      if (!m.Has(item.level, item.part))
        m.answers.push_back({item.level, item.part, r.content, col.batch_id, r.prompt_tokens, r.completion_tokens,
                             r.cached_tokens});
      continue;
    }
    if (why.empty()) {
      const ChatReply& r = found->second.reply;
      rates::LlmUsage u;
      u.requests = 1;
      u.prompt_tokens = r.prompt_tokens;
      u.completion_tokens = r.completion_tokens;
      u.cached_tokens = r.cached_tokens;
      u.cost_usd = rates::CostUsd(c_.batch_price, r.prompt_tokens, r.cached_tokens, r.completion_tokens);
      cost += u.cost_usd;
      Json call = {{"request", 1}, {"phase", "summary"}, {"tries", 1}, {"prompt_tokens", r.prompt_tokens},
                   {"completion_tokens", r.completion_tokens}, {"batch", col.batch_id}};
      if (r.cached_tokens > 0) call["cached_tokens"] = r.cached_tokens;
      done.outcomes[item.job] = StepOutcome::Ok({{"summary", r.content},
                                                 {"provider", c_.provider},
                                                 {"model", c_.model},
                                                 {"extractive", false},
                                                 {"chunks", 1},
                                                 {"calls", Json::array({call})},
                                                 {"batch", {{"id", col.batch_id}, {"custom_id", item.custom_id}}},
                                                 {"usage", u.ToJson()}});
      ++ok;
      continue;
    }
    ++failed;
    const std::string& fb = c_.batch_config.fallback;
    if (fb == "fail") {
      done.outcomes[item.job] =
          StepOutcome::Failure(fmt::format("llm: batch item {} failed: {}", item.custom_id, why), false);
    } else {
      Log(ctx, LogLevel::kWarn,
          fmt::format("llm: batch item {} failed ({}); it runs again ({})", item.custom_id, why,
                      fb == "sync" ? "synchronously" : "in a new batch"));
      std::lock_guard lock(mu_);
      if (fb == "sync") sync_next_.insert(item.job);
    }
  }
  if (!col.settled) {
    // The map-reduce answers are journaled before the batch is noted as ended: a restarted run
    // continues from them and never sends those requests again.
    if (!mr_note.empty() && !Note(ctx, {{"c", col.id}, {"answers", mr_note}}))
      Log(ctx, LogLevel::kWarn, "llm: the journal did not take the map-reduce answers");
    if (ctx.rates) ctx.rates->Settle(col.reserved_usd, cost);
    col.settled = true;
    Note(ctx, {{"c", col.id}, {"ended", status}});
  }
  Log(ctx, LogLevel::kInfo, fmt::format("llm: {} ({}) {}: {} answered, {} failed, ${:.6f}", col.id, col.batch_id,
                                        status, ok, failed, cost));
  std::lock_guard lock(mu_);
  // A map-reduce job goes on with its next round (or ends); one not attached to an attempt since a
  // restart has no outcome: its attempt runs again and continues from the answers.
  for (const auto& job : mr_jobs) {
    auto pending = by_job_.find(job);
    if (pending != by_job_.end() && pending->second == col.id) by_job_.erase(pending);
    auto m = mr_.find(job);
    if (auto refused = col.outcomes.find(job); refused != col.outcomes.end()) {  // by the budget
      if (m != mr_.end()) mr_.erase(m);
      continue;
    }
    if (auto f = mr_failed.find(job); f != mr_failed.end()) {
      done.outcomes[job] = StepOutcome::Failure(f->second, false);
      if (m != mr_.end()) mr_.erase(m);
      continue;
    }
    if (m == mr_.end() || !m->second.next) continue;
    done.outcomes[job] = Advance(job, m->second);
    // Ended: a late parker gets the outcome from col.outcomes; a rerun replays it from the notes.
    if (done.outcomes[job].kind != StepOutcome::Kind::kParked) mr_.erase(job);
  }
  for (auto& [job, o] : col.outcomes) done.outcomes.emplace(job, o);  // refused by the budget earlier
  col.outcomes = done.outcomes;
  col.cost_usd = cost;
  col.status = "ended";
  if (!col.counts.is_object()) col.counts = Json::object();
  col.counts["batch_status"] = status;
  // A job with an answer keeps pointing here: its attempt may park after the batch ended (a resumed
  // run's attempts park one by one) and then gets the answer at once. The others run again afresh.
  for (const auto& item : col.items) {
    if (item.part >= 0) continue;
    auto it = by_job_.find(item.job);
    auto answer = done.outcomes.find(item.job);
    if (it != by_job_.end() && it->second == col.id && (answer == done.outcomes.end() || !answer->second.ok()))
      by_job_.erase(it);
  }
  return done;
}

void BatchBook::Restore(const std::vector<Json>& notes) {
  std::lock_guard lock(mu_);
  for (const Json& n : notes) {
    if (!n.is_object() || !n.value("c", Json()).is_string()) continue;
    const std::string id = n["c"].get<std::string>();
    auto& col = cols_[id];
    if (!col) {
      col = std::make_shared<Collection>();
      col->id = id;
      col->closed = true;
    }
    if (const size_t dash = id.rfind('-'); dash != std::string::npos)
      seq_ = std::max(seq_, std::atoi(id.c_str() + dash + 1));
    if (n.contains("items")) {
      col->file_id = n.value("file", "");
      col->nonce = n.value("nonce", "");
      col->noted_at = n.value("noted_at", 0.0);
      col->noted = true;
      col->maybe_created = true;  // created or not: Find tells
      col->reserved_usd = n.value("reserved", 0.0);
      col->restored_reservation = col->reserved_usd > 0;
      col->status = col->file_id.empty() ? "noted" : "uploaded";
      col->items.clear();
      for (const auto& i : n.value("items", Json::array())) {
        if (!i.is_array() || i.size() < 3 || !i[0].is_string() || !i[1].is_string() || !i[2].is_number()) continue;
        Item item{i[0].get<std::string>(), i[1].get<std::string>(), "", i[2].get<double>(), true};
        if (i.size() >= 5 && i[3].is_number_integer() && i[4].is_number_integer()) {
          item.level = i[3].get<int>();
          item.part = i[4].get<int>();
          mr_[item.job];  // a map-reduce job: its attempt re-attaches its rounds when it runs again
        }
        by_job_[item.job] = id;
        col->items.push_back(std::move(item));
      }
    }
    if (n.contains("answers") && n["answers"].is_array()) {  // map-reduce answers of this collection's batch
      for (const auto& a : n["answers"]) {
        if (!a.is_array() || a.size() < 7 || !a[0].is_string() || !a[1].is_number_integer() ||
            !a[2].is_number_integer() || !a[3].is_string() || !a[4].is_number_integer() ||
            !a[5].is_number_integer() || !a[6].is_number_integer())
          continue;
        MapReduceJob& m = mr_[a[0].get<std::string>()];
        if (m.Has(a[1].get<int>(), a[2].get<int>())) continue;
        m.answers.push_back({a[1].get<int>(), a[2].get<int>(), a[3].get<std::string>(), col->batch_id,
                             a[4].get<long long>(), a[5].get<long long>(), a[6].get<long long>()});
      }
    }
    if (n.contains("batch")) {
      col->batch_id = n.value("batch", "");
      col->created_at = n.value("created_at", 0.0);
      col->status = "in_progress";
    }
    if (n.contains("ended")) {  // settled already: a re-read maps the answers, bills nothing again
      col->settled = true;
      col->restored_reservation = false;
      for (const auto& item : col->items) {  // map-reduce answers are journaled: the job goes on from them
        auto it = by_job_.find(item.job);
        if (item.part >= 0 && it != by_job_.end() && it->second == id) by_job_.erase(it);
      }
      if (col->batch_id.empty()) {  // released, never created: its jobs run again
        for (const auto& item : col->items) {
          auto it = by_job_.find(item.job);
          if (it != by_job_.end() && it->second == id) by_job_.erase(it);
        }
        col->noted = false;
      }
    }
  }
  // A collection whose items were never noted has nothing outside: its jobs simply queue again.
  for (auto it = cols_.begin(); it != cols_.end();) {
    if (!it->second->noted) it = cols_.erase(it);
    else ++it;
  }
}

Json BatchBook::States() const {
  std::lock_guard lock(mu_);
  Json out = Json::array();
  for (const auto& [id, col] : cols_) {
    Json s = {{"id", id}, {"status", col->status}, {"requests", col->items.size()}};
    if (!col->batch_id.empty()) s["batch"] = col->batch_id;
    if (!col->file_id.empty()) s["input_file"] = col->file_id;
    if (col->created_at > 0) s["created_at"] = col->created_at;
    if (col->counts.is_object()) s["counts"] = col->counts;
    s["reserved_usd"] = col->reserved_usd;
    if (col->status == "ended") s["cost_usd"] = col->cost_usd;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace baton::llm
