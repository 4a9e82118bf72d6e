#include "steps/llm/batch.h"

#include <curl/curl.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include <fmt/format.h>

#include "baton/rates.h"
#include "rates/llm_usage.h"
#include "steps/llm/chat_client.h"

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

// One request. `json`: a JSON body to POST; `file`: a multipart upload (purpose=batch) instead.
Http Call(const LlmConfig& c, const std::string& key, const std::string& method, const std::string& path,
          const std::string* json = nullptr, const std::string* file = nullptr) {
  Http h;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    h.error = "curl_easy_init failed";
    return h;
  }
  curl_slist* headers = nullptr;
  std::string auth;
  if (!key.empty()) {
    auth = "Authorization: Bearer " + key;
    headers = curl_slist_append(headers, auth.c_str());
  }
  if (json) headers = curl_slist_append(headers, "Content-Type: application/json");
  curl_mime* mime = nullptr;
  const std::string url = c.base_url + path;
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
  std::fill(auth.begin(), auth.end(), '\0');
  if (!key.empty()) {  // never a key in a message
    for (std::string* s : {&h.error, &h.body})
      for (size_t pos = 0; (pos = s->find(key, pos)) != std::string::npos;) s->replace(pos, key.size(), "[redacted]");
  }
  return h;
}

bool Terminal(const std::string& status) {
  return status == "completed" || status == "expired" || status == "cancelled" || status == "failed";
}

void Log(ParkContext& ctx, LogLevel level, const std::string& msg) {
  if (ctx.log) ctx.log(level, msg);
}

bool Note(ParkContext& ctx, const Json& note) { return !ctx.note || ctx.note(note); }

}  // namespace

std::string BatchBook::Key() const {
  if (c_.api_key_env.empty()) return "";
  const char* v = std::getenv(c_.api_key_env.c_str());
  return v ? v : "";
}

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
  Item item{job, custom_id, "", est_usd, false};
  item.line = Json{{"custom_id", custom_id}, {"method", "POST"}, {"url", "/v1/chat/completions"}, {"body", body}}
                  .dump(-1, ' ', false, Json::error_handler_t::replace) +
              "\n";
  std::lock_guard lock(mu_);
  const double now = SteadyNow();
  std::shared_ptr<Collection> col;
  if (!open_.empty()) {
    col = cols_[open_];
    if (col->closed || col->items.size() >= static_cast<size_t>(c_.batch_config.max_requests) ||
        col->bytes + item.line.size() > static_cast<size_t>(c_.batch_config.max_bytes))
      col.reset();
  }
  if (!col) {
    if (!open_.empty()) cols_[open_]->closed = true;
    col = std::make_shared<Collection>();
    col->id = "batch-" + std::to_string(++seq_);
    col->first_at = now;
    cols_[col->id] = col;
    open_ = col->id;
  }
  col->bytes += item.line.size();
  col->items.push_back(std::move(item));
  by_job_[job] = col->id;
  const bool full = col->items.size() >= static_cast<size_t>(c_.batch_config.max_requests);
  if (full) {
    col->closed = true;
    open_.clear();
  }
  return {col->id, full ? 0 : std::max(0.0, col->first_at + c_.batch_config.collect - now)};
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
  const std::string key = Key();
  if (col.file_id.empty()) {
    // The budget: a batch's estimated cost is reserved before it exists; what does not fit fails.
    ParkCheck refused;
    std::string file;
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
      file += item.line;
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
    const Http up = Call(c_, key, "POST", "/files", nullptr, &file);
    const Json fj = Json::parse(up.body, nullptr, false);
    if (!up.ok() || !fj.is_object() || !fj.contains("id")) {
      Log(ctx, LogLevel::kWarn, fmt::format("llm: uploading {} failed ({}); trying again", col.id, up.Why()));
      return later;
    }
    col.file_id = fj.value("id", "");
    Json items = Json::array();
    for (const auto& i : col.items) items.push_back({i.job, i.custom_id, i.est_usd});
    if (!Note(ctx, {{"c", col.id}, {"file", col.file_id}, {"items", items}, {"reserved", col.reserved_usd}}))
      Log(ctx, LogLevel::kWarn, "llm: the journal did not take the batch's file id");
  }
  // Created before a crash with this very file? Then that is the batch (never a second one).
  const Http list = Call(c_, key, "GET", "/batches?limit=100");
  const Json lj = Json::parse(list.body, nullptr, false);
  std::string id;
  if (list.ok() && lj.is_object() && lj.value("data", Json()).is_array())
    for (const auto& b : lj["data"])
      if (b.is_object() && b.value("input_file_id", "") == col.file_id) id = b.value("id", "");
  if (id.empty()) {
    const std::string body = Json{{"input_file_id", col.file_id},
                                  {"endpoint", "/v1/chat/completions"},
                                  {"completion_window", "24h"},
                                  {"metadata", {{"baton", col.id}}}}
                                 .dump();
    const Http made = Call(c_, key, "POST", "/batches", &body);
    const Json bj = Json::parse(made.body, nullptr, false);
    if (!made.ok() || !bj.is_object() || !bj.contains("id")) {
      Log(ctx, LogLevel::kWarn, fmt::format("llm: creating {} failed ({}); trying again", col.id, made.Why()));
      return later;
    }
    id = bj.value("id", "");
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
      fmt::format("llm: {} sent as {} ({} requests, file {})", col.id, id, col.items.size(), col.file_id));
  return later;
}

ParkCheck BatchBook::Poll(ParkContext& ctx, Collection& col) {
  ParkCheck later;
  later.poll_in = c_.batch_config.poll;
  const std::string key = Key();
  const Http h = Call(c_, key, "GET", "/batches/" + col.batch_id);
  const Json b = Json::parse(h.body, nullptr, false);
  if (!h.ok() || !b.is_object()) {
    Log(ctx, LogLevel::kWarn, fmt::format("llm: polling {} failed ({}); trying again", col.batch_id, h.Why()));
    return later;
  }
  const std::string status = b.value("status", "");
  {
    std::lock_guard lock(mu_);
    col.status = status.empty() ? col.status : status;
    col.counts = b.value("request_counts", Json());
  }
  if (Terminal(status)) return End(ctx, col, b);
  if (!col.cancel_sent && WallNow() - col.created_at > c_.batch_config.expire) {
    Log(ctx, LogLevel::kWarn, fmt::format("llm: {} not done after with.batch.expire; cancelling it", col.batch_id));
    Call(c_, key, "POST", "/batches/" + col.batch_id + "/cancel");
    col.cancel_sent = true;
  }
  return later;
}

ParkCheck BatchBook::End(ParkContext& ctx, Collection& col, const Json& batch) {
  const std::string key = Key();
  const std::string status = batch.value("status", "");
  std::map<std::string, Json> lines;  // custom_id -> its output or error line
  for (const char* field : {"output_file_id", "error_file_id"}) {
    const Json fid = batch.value(field, Json());
    if (!fid.is_string() || fid.get<std::string>().empty()) continue;
    const Http f = Call(c_, key, "GET", "/files/" + fid.get<std::string>() + "/content");
    if (!f.ok()) {
      Log(ctx, LogLevel::kWarn, fmt::format("llm: reading {} of {} failed ({}); trying again", field, col.batch_id,
                                            f.Why()));
      ParkCheck later;
      later.poll_in = c_.batch_config.poll;
      return later;
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
  ParkCheck done;
  done.done = true;
  double cost = 0;
  int ok = 0, failed = 0;
  for (const auto& item : col.items) {
    std::string why;
    auto found = lines.find(item.custom_id);
    if (found == lines.end()) {
      why = fmt::format("batch {} {} without an answer for it", col.batch_id, status);
    } else {
      const Json& l = found->second;
      const Json resp = l.value("response", Json());
      const Json err = l.value("error", Json());
      if (err.is_object()) why = fmt::format("{}: {}", err.value("code", "error"), err.value("message", ""));
      else if (!resp.is_object() || resp.value("status_code", 0) != 200)
        why = fmt::format("status {}", resp.is_object() ? resp.value("status_code", 0) : 0);
      if (why.empty()) {
        const ChatReply r = ParseChatReply(resp.value("body", Json()).dump());
        if (r.problem != ChatReply::Problem::kNone) {
          why = "the answer has no message";
        } else {
          rates::LlmUsage u;
          u.requests = 1;
          u.prompt_tokens = r.prompt_tokens;
          u.completion_tokens = r.completion_tokens;
          u.cached_tokens = r.cached_tokens;
          u.cost_usd = rates::CostUsd(c_.batch_price, r.prompt_tokens, r.cached_tokens, r.completion_tokens);
          cost += u.cost_usd;
          Json call = {{"request", 1}, {"phase", "summary"}, {"tries", 1}, {"prompt_tokens", r.prompt_tokens},
                       {"completion_tokens", r.completion_tokens}, {"batch", col.batch_id}};
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
      }
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
    if (ctx.rates) ctx.rates->Settle(col.reserved_usd, cost);
    col.settled = true;
    Note(ctx, {{"c", col.id}, {"ended", status}});
  }
  Log(ctx, LogLevel::kInfo, fmt::format("llm: {} ({}) {}: {} answered, {} failed, ${:.6f}", col.id, col.batch_id,
                                        status, ok, failed, cost));
  std::lock_guard lock(mu_);
  for (auto& [job, o] : col.outcomes) done.outcomes.emplace(job, o);  // refused by the budget earlier
  col.outcomes = done.outcomes;
  col.cost_usd = cost;
  col.status = "ended";
  col.counts["batch_status"] = status;
  // A job with an answer keeps pointing here: its attempt may park after the batch ended (a resumed
  // run's attempts park one by one) and then gets the answer at once. The others run again afresh.
  for (const auto& item : col.items) {
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
    if (n.contains("file")) {
      col->file_id = n.value("file", "");
      col->reserved_usd = n.value("reserved", 0.0);
      col->restored_reservation = col->reserved_usd > 0;
      col->status = "uploaded";
      col->items.clear();
      for (const auto& i : n.value("items", Json::array())) {
        if (!i.is_array() || i.size() < 3 || !i[0].is_string() || !i[1].is_string()) continue;
        col->items.push_back({i[0].get<std::string>(), i[1].get<std::string>(), "", i[2].get<double>(), true});
        by_job_[i[0].get<std::string>()] = id;
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
    }
  }
  // A collection that was never uploaded has nothing outside: its jobs simply queue again.
  for (auto it = cols_.begin(); it != cols_.end();) {
    if (it->second->file_id.empty()) it = cols_.erase(it);
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
