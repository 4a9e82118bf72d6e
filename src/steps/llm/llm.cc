#include "steps/llm/llm.h"

#include <cstdlib>
#include <filesystem>
#include <optional>

#include <fmt/format.h>

#include "steps/analysis/analysis.h"
#include "steps/llm/batch.h"
#include "steps/llm/chat_client.h"
#include "steps/llm/extractive.h"
#include "steps/llm/llm_config.h"
#include "steps/llm/material.h"
#include "steps/llm/prompt.h"
#include "steps/llm/request_gate.h"

namespace baton {
namespace {

using llm::ChatClient;
using llm::ChatResult;
using llm::EstimateTokens;
using llm::FormatTimestamp;
using llm::LlmConfig;
using llm::Material;
using llm::Render;
using llm::TimedText;

using Values = std::map<std::string, std::string>;

// Tokens kept free beyond the estimate: chat framing (roles, separators) that the template
// estimate does not see, and estimate error on unusual text.
constexpr int kMarginTokens = 64;
constexpr int kMaxReduceLevels = 8;

std::string StringOr(const Json& j, const char* key, std::string fallback = "") {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

// The material comes from the job's analysis (steps/analysis: analyze's result and what later
// steps contributed); the transcript is the one in the job's language (Analysis::Primary).
Material ReadMaterial(const StepContext& ctx, const LlmConfig& c, const analysis::Analysis& a) {
  Material m;
  const Json& download = ctx.result_of(c.title_from);
  m.title = StringOr(download, "title");
  m.source = StringOr(download, "url", ctx.input);
  if (m.title.empty() && !ctx.input.empty()) m.title = std::filesystem::path(ctx.input).filename().string();
  if (m.title.empty()) m.title = ctx.job;
  m.duration = a.media.duration;
  if (const analysis::Transcript* t = a.Primary(c.job_language)) {
    m.transcript_language = t->language;
    m.transcript_engine = t->engine;
    for (const auto& seg : t->segments) m.transcript.push_back({seg.start, seg.end, seg.text});
  }
  for (const auto& scene : a.scenes) m.scenes.push_back({scene.start, scene.end, scene.ocr});
  const auto add = [&m, &a](const char* kind, const std::vector<analysis::Section>& sections) {
    for (const auto& s : sections) {
      Material::Annotations group{kind, s.engine.empty() ? s.step : s.engine, {}};
      for (const auto& it : s.items) {
        TimedText t{it.start, it.end, it.text};
        if (t.start < 0 && it.scene > 0 && it.scene <= static_cast<int>(a.scenes.size())) {  // timed by its scene
          t.start = a.scenes[it.scene - 1].start;
          t.end = a.scenes[it.scene - 1].end;
        }
        group.items.push_back(std::move(t));
      }
      if (!group.items.empty()) m.annotations.push_back(std::move(group));
    }
  };
  add("caption", a.captions);
  add("tag", a.tags);
  add("label", a.labels);
  const analysis::Transcript* primary = a.Primary(c.job_language);
  for (const auto& t : a.transcripts) {
    if (&t == primary || t.segments.empty() || t.language.empty()) continue;  // no known language: not "other"
    std::string text;
    for (const auto& seg : t.segments) text += (text.empty() ? "" : " ") + seg.text;
    m.other_transcripts.push_back({t.language, t.engine, std::move(text)});
  }
  return m;
}

std::string OneLine(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n') {
      if (!out.empty() && out.back() != ' ') out += " / ";
    } else if (s[i] != '\r') {
      out.push_back(s[i]);
    }
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '/')) out.pop_back();
  return out;
}

struct Texts {
  std::string transcript, ocr, scenes, timeline;
  std::string annotations;  // "" when the analysis has none: the template's section disappears
};

// At most `max` bytes of `s`, cut at a UTF-8 character boundary, "…" when cut.
std::string Prefix(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + "…";
}

// {{annotations}}: the captions, tags and labels by engine, then the transcripts in other
// languages (an excerpt each), under a heading in the job's language.
std::string RenderAnnotations(const Material& m, bool zh) {
  if (m.annotations.empty() && m.other_transcripts.empty()) return "";
  std::string out = zh ? "### 图像描述、标签与识别结果\n" : "### Captions, tags and labels\n";
  for (const auto& g : m.annotations) {
    const bool timed = !g.items.empty() && g.items.front().start >= 0;
    const std::string kind = zh ? (g.kind == "caption" ? "描述" : g.kind == "tag" ? "标签" : "识别")
                                : g.kind + "s";
    out += fmt::format("{} ({}):", kind, g.engine.empty() ? "?" : g.engine);
    if (timed) {
      out += "\n";
      for (const auto& it : g.items)
        out += (it.start >= 0 ? "[" + FormatTimestamp(it.start) + "] " : "") + OneLine(it.text) + "\n";
    } else {
      for (size_t i = 0; i < g.items.size(); ++i) out += (i ? ", " : " ") + OneLine(g.items[i].text);
      out += "\n";
    }
  }
  for (const auto& t : m.other_transcripts)
    out += fmt::format(fmt::runtime(zh ? "另一语言的文字记录 {}（{}）：{}\n" : "Transcript in {} (by {}): {}\n"),
                       t.language.empty() ? "?" : t.language, t.engine.empty() ? "?" : t.engine,
                       Prefix(OneLine(t.text), 1200));
  return out + "\n";
}

// Headings of {{annotations}} in Chinese for a Chinese job.
bool Zh(const LlmConfig& c) { return c.job_language.rfind("zh", 0) == 0; }

Texts RenderTexts(const Material& m, bool zh) {
  Texts t;
  std::vector<std::pair<double, std::string>> timeline;
  for (const auto& seg : m.transcript) {
    std::string line = "[" + FormatTimestamp(seg.start) + "] " + OneLine(seg.text);
    t.transcript += line + "\n";
    timeline.emplace_back(seg.start, std::move(line));
  }
  for (size_t i = 0; i < m.scenes.size(); ++i) {
    const TimedText& s = m.scenes[i];
    const std::string ocr = OneLine(s.text);
    t.scenes += fmt::format("Scene {}: {}–{}{}\n", i + 1, FormatTimestamp(s.start), FormatTimestamp(s.end),
                            ocr.empty() ? "" : " — " + ocr.substr(0, ocr.find(" / ")));
    if (ocr.empty()) continue;
    t.ocr += "[" + FormatTimestamp(s.start) + "] " + ocr + "\n";
    timeline.emplace_back(s.start, "[" + FormatTimestamp(s.start) + "] [slide] " + ocr);
  }
  for (const auto& g : m.annotations)
    if (g.kind == "caption")
      for (const auto& it : g.items)
        if (it.start >= 0)
          timeline.emplace_back(it.start, "[" + FormatTimestamp(it.start) + "] [caption] " + OneLine(it.text));
  t.annotations = RenderAnnotations(m, zh);
  std::stable_sort(timeline.begin(), timeline.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [time, line] : timeline) t.timeline += line + "\n";
  if (t.transcript.empty()) t.transcript = "(no transcript: no audio track, or no speech was recognised)\n";
  if (t.ocr.empty()) t.ocr = "(no on-screen text)\n";
  if (t.scenes.empty()) t.scenes = "(no scenes detected)\n";
  return t;
}

// The prompt's values for one job's material (the templates' {{name}}s).
Values MakeValues(const LlmConfig& c, const Material& m, const Texts& texts) {
  return {{"title", m.title},
          {"source", m.source},
          {"duration", m.duration > 0 ? FormatTimestamp(m.duration) : "unknown length"},
          {"language", c.language.empty() ? "the language of the material" : c.language},
          {"transcript", texts.transcript},
          {"ocr", texts.ocr},
          {"scenes", texts.scenes},
          {"annotations", texts.annotations}};
}

// Tokens one user message may take.
int Budget(const LlmConfig& c) {
  return c.context_tokens - c.max_tokens - EstimateTokens(c.system_prompt) - kMarginTokens;
}

// "### Part i of n" sections of partials [first, first + count).
std::string JoinParts(const std::vector<std::string>& parts, size_t first, size_t count, size_t total) {
  std::string out;
  for (size_t i = first; i < first + count; ++i)
    out += fmt::format("### Part {} of {}\n\n{}\n\n", i + 1, total, parts[i]);
  return out;
}

// The map round of an input too long for one request: one request per chunk of the timeline.
llm::Round MapRound(const LlmConfig& c, const Values& values, const Texts& texts) {
  llm::Round r;
  Values probe = values;
  probe["part"] = probe["parts"] = "9999";
  const int chunk_budget = Budget(c) - EstimateTokens(Render(c.map_template, probe));
  if (chunk_budget < 64) {
    r.error = "llm: with.context_tokens leaves no room for input in the map template; raise context_tokens or "
              "lower max_tokens";
    return r;
  }
  const std::vector<std::string> pieces = llm::SplitToFit(texts.timeline, chunk_budget);
  if (pieces.empty()) {
    r.error = "llm: the summary prompt does not fit with.context_tokens and there is no transcript or on-screen "
              "text to split";
    return r;
  }
  const size_t chunks = pieces.size();
  for (size_t i = 0; i < chunks; ++i) {
    Values v = values;
    v["chunk"] = pieces[i];
    v["part"] = std::to_string(i + 1);
    v["parts"] = std::to_string(chunks);
    r.entries.push_back({Render(c.map_template, v), fmt::format("map part {}/{}", i + 1, chunks), std::nullopt});
  }
  return r;
}

// Reduce level `level` over `partials`: one request of everything when it fits (final), else
// consecutive groups that fit (a partial alone passes through), to be reduced again a level up.
llm::Round ReduceRound(const LlmConfig& c, const Values& values, const std::vector<std::string>& partials,
                       int level) {
  llm::Round r;
  const std::string too_small = "llm: partial summaries do not fit with.context_tokens even in pairs; raise "
                                "context_tokens or lower max_tokens";
  if (level > kMaxReduceLevels) {
    r.error = too_small;
    return r;
  }
  const int budget = Budget(c);
  Values v = values;
  v["summaries"] = JoinParts(partials, 0, partials.size(), partials.size());
  v["parts"] = std::to_string(partials.size());
  std::string prompt = Render(c.reduce_template, v);
  if (EstimateTokens(prompt) <= budget) {
    r.final = true;
    r.entries.push_back({std::move(prompt), fmt::format("reduce level {}", level), std::nullopt});
    return r;
  }
  // Too long for one request: reduce consecutive groups that fit, then go up a level.
  Values probe = values;
  probe["parts"] = "9999";
  const int group_budget = budget - EstimateTokens(Render(c.reduce_template, probe));
  size_t i = 0;
  while (i < partials.size()) {
    size_t n = 0;
    int used = 0;
    while (i + n < partials.size()) {
      const int t = EstimateTokens(JoinParts(partials, i + n, 1, partials.size()));
      if (n > 0 && used + t > group_budget) break;
      used += t;
      ++n;
    }
    if (n == 1) {  // a single partial: nothing to combine it with at this budget
      r.entries.push_back({"", "", partials[i]});
    } else {
      Values g = values;
      g["summaries"] = JoinParts(partials, i, n, partials.size());
      g["parts"] = std::to_string(n);
      r.entries.push_back({Render(c.reduce_template, g),
                           fmt::format("reduce level {} parts {}-{}", level, i + 1, i + n), std::nullopt});
    }
    i += n;
  }
  if (r.entries.size() >= partials.size()) r.error = too_small;  // no progress: budget too small
  return r;
}

// Round `level` of one job's map-reduce (level 0: map).
llm::Round NextRound(const LlmConfig& c, const Values& values, const Texts& texts, int level,
                     const std::vector<std::string>& partials) {
  return level == 0 ? MapRound(c, values, texts) : ReduceRound(c, values, partials, level);
}

class LlmStep final : public Step {
 public:
  explicit LlmStep(LlmConfig config)
      : config_(std::move(config)), book_(std::make_unique<llm::BatchBook>(config_)) {}

  ParkCheck CheckPark(ParkContext& ctx) const override { return book_->Check(ctx); }
  void RestoreNotes(const std::vector<Json>& notes) const override { book_->Restore(notes); }
  Json ParkStates() const override { return config_.batch ? book_->States() : Json(); }

  StepOutcome Run(StepContext& ctx) const override {
    if (!ctx.result_of(config_.from).is_object()) {
      return StepOutcome::Failure(fmt::format("llm: no result from step '{}' (with.from): nothing to summarise",
                                              config_.from), false);
    }
    const analysis::ReadResult read = analysis::ReadAnalysis(ctx, config_.from);
    if (!read.ok()) return StepOutcome::Failure("llm: " + read.error, false);
    const Material material = ReadMaterial(ctx, config_, read.analysis);
    if (!material.transcript_engine.empty()) {
      ctx.info(fmt::format("llm: transcript ({}) by {}: {} segments", material.transcript_language,
                           material.transcript_engine, material.transcript.size()));
    }
    if (config_.extractive) {
      ctx.info(fmt::format("llm: offline extractive summary of {} transcript segments and {} scenes",
                           material.transcript.size(), material.scenes.size()));
      return StepOutcome::Ok({{"summary", llm::ExtractiveSummary(material, config_)},
                              {"provider", "extractive"},
                              {"model", "extractive (word frequency)"},
                              {"extractive", true},
                              {"chunks", 1},
                              {"calls", Json::array()},
                              {"usage", rates::LlmUsage().ToJson()}});
    }

    std::string key;
    if (!config_.api_key_env.empty()) {
      const char* value = std::getenv(config_.api_key_env.c_str());
      if (value == nullptr || *value == '\0') {
        return StepOutcome::Failure(
            fmt::format("llm: environment variable {} is not set; it must hold the API key for provider {} "
                        "(with.api_key_env names the variable)", config_.api_key_env, config_.provider), false);
      }
      key = value;
    }
    if (config_.batch && !book_->TakeSyncFallback(ctx.job)) {
      const std::string system = config_.system_prompt;
      const Texts texts = RenderTexts(material, Zh(config_));
      const Values values = MakeValues(config_, material, texts);
      const std::string user = Render(config_.summary_template, values);
      const std::string base_id = fmt::format("{}/{}/{}", ctx.job, ctx.step, ctx.attempt);
      if (EstimateTokens(user) <= Budget(config_)) {  // one request
        if (auto pending = book_->Pending(ctx.job)) {  // a restarted run: its request is already in a batch
          ctx.info(fmt::format("llm: the request is in {} already; waiting for it", pending->id));
          return StepOutcome::Park(pending->id, pending->poll_in);
        }
        Json body = llm::ChatRequest(config_, system, user);  // the API's request shape
        const double est = rates::CostUsd(config_.batch_price,
                                          EstimateTokens(body.dump(-1, ' ', false, Json::error_handler_t::replace)), 0,
                                          config_.max_tokens);
        const llm::BatchBook::Join join = book_->Add(ctx.job, base_id, std::move(body), est);
        ctx.info(fmt::format("llm: request {} queued in {} (batch mode)", base_id, join.id));
        return StepOutcome::Park(join.id, join.poll_in);
      }
      // Map-reduce: each round's requests go in a batch; the book renders the next round when one ends.
      const LlmConfig& c = config_;
      std::optional<StepOutcome> out = book_->MapReduce(
          ctx.job, base_id, ctx.attempt,
          [&c, values, texts](int level, const std::vector<std::string>& partials) {
            return NextRound(c, values, texts, level, partials);
          });
      if (out) {
        if (out->kind == StepOutcome::Kind::kParked)
          ctx.info(fmt::format("llm: input too long for one request: map-reduce in batches; waiting in {}",
                               out->park_id));
        return *out;
      }
      ctx.info(fmt::format("llm: the map round has more requests than with.batch.max_requests ({}): map-reduce "
                           "runs synchronously", config_.batch_config.max_requests));
    }
    llm::RequestGate gate(config_, ctx);
    Attempt attempt(config_, ctx, ChatClient(config_, key, ctx, &gate));
    StepOutcome out = attempt.Summarise(material);
    // What this attempt used and cost, also when it failed (the driver may keep it).
    if (out.ok()) out.result["usage"] = gate.usage().ToJson();
    else if (out.kind == StepOutcome::Kind::kFailed) out.result = {{"usage", gate.usage().ToJson()}};
    return out;
  }

 private:
  // Per-attempt state: the client, usage records and request counter.
  struct Attempt {
    Attempt(const LlmConfig& config, StepContext& context, ChatClient chat)
        : c(config), ctx(context), client(std::move(chat)) {}

    const LlmConfig& c;
    StepContext& ctx;
    ChatClient client;
    Json calls = Json::array();  // one record per chat completion (its retries included)
    std::string system;
    int budget = 0;  // tokens one user message may take

    // Returns false and sets *out on failure/cancel.
    bool Ask(const std::string& phase, const std::string& label, const std::string& user,
             std::string* reply, StepOutcome* out) {
      ChatResult r = client.Complete(system, user, label);
      if (r.kind == ChatResult::Kind::kCancelled) {
        *out = StepOutcome::Cancelled();
        return false;
      }
      if (!r.ok()) {
        *out = StepOutcome::Failure(fmt::format("{} ({})", r.error, label), r.retryable);
        return false;
      }
      Json u = {{"attempt", ctx.attempt},
                {"request", calls.size() + 1},
                {"phase", phase},
                {"tries", r.tries},
                {"prompt_tokens", r.prompt_tokens},
                {"completion_tokens", r.completion_tokens}};
      if (r.cached_tokens > 0) u["cached_tokens"] = r.cached_tokens;
      if (r.usage_estimated) u["estimated"] = true;
      calls.push_back(std::move(u));
      *reply = std::move(r.content);
      return true;
    }

    StepOutcome Summarise(const Material& m) {
      system = c.system_prompt;  // in the job's language (llm_config.cc)
      budget = Budget(c);
      const Texts texts = RenderTexts(m, Zh(c));
      Values values = MakeValues(c, m, texts);
      StepOutcome failure;
      std::string summary;
      int chunks = 1;
      const std::string single = Render(c.summary_template, values);
      if (EstimateTokens(single) <= budget) {
        ctx.info(fmt::format("llm: one request to {} ({} prompt tokens est.)", c.model, EstimateTokens(single)));
        if (!Ask("summary", "summary", single, &summary, &failure)) return failure;
      } else {
        const llm::Round map = MapRound(c, values, texts);
        if (!map.error.empty()) return StepOutcome::Failure(map.error, false);
        chunks = static_cast<int>(map.entries.size());
        ctx.info(
            fmt::format("llm: input too long for one request ({} tokens est., budget {}): map-reduce over {} chunks",
                        EstimateTokens(single), budget, chunks));
        std::vector<std::string> partials;
        for (int i = 0; i < chunks; ++i) {
          std::string partial;
          if (!Ask("map", map.entries[i].label, map.entries[i].prompt, &partial, &failure)) return failure;
          partials.push_back(std::move(partial));
          if (ctx.progress) ctx.progress({{"chunks_done", i + 1}, {"chunks", chunks}});
        }
        if (!Reduce(values, std::move(partials), &summary, &failure)) return failure;
      }
      return StepOutcome::Ok({{"summary", summary},
                              {"provider", c.provider},
                              {"model", c.model},
                              {"extractive", false},
                              {"chunks", chunks},
                              {"calls", calls}});
    }

    // Combines partial summaries, round by round (ReduceRound), until one is left.
    bool Reduce(const Values& values, std::vector<std::string> partials, std::string* summary, StepOutcome* failure) {
      for (int level = 1;; ++level) {
        const llm::Round r = ReduceRound(c, values, partials, level);
        if (!r.error.empty()) {
          *failure = StepOutcome::Failure(r.error, false);
          return false;
        }
        std::vector<std::string> next;
        for (const auto& e : r.entries) {
          std::string text;
          if (e.text) text = *e.text;
          else if (!Ask("reduce", e.label, e.prompt, &text, failure)) return false;
          next.push_back(std::move(text));
        }
        if (r.final) {
          *summary = std::move(next.at(0));
          return true;
        }
        partials = std::move(next);
      }
    }
  };

  const LlmConfig config_;
  const std::unique_ptr<llm::BatchBook> book_;  // mode: batch (mutable state behind its own lock)
};

}  // namespace

void RegisterLlmStep(StepRegistry& registry) {
  registry.Register("llm", StepFactoryOf([](const Json& with) {
    return std::make_unique<LlmStep>(llm::ParseLlmConfig(with));
  }));
}

}  // namespace baton
