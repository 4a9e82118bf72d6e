#include "steps/document/document.h"

#include <ctime>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "baton/language.h"
#include "util/atomic_file.h"
#include "steps/analysis/analysis.h"
#include "steps/document/report.h"
#include "steps/document/strings.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using document::Chapter;
using document::RecordRow;
using document::ReportData;
using document::Segment;

constexpr const char kKeyframeFolder[] = "report-keyframes";

struct DocumentConfig {
  std::string analysis_from = "analyze";
  std::string summary_from = "summarize";
  std::string download_from = "download";
  bool markdown = true;
  bool html = true;
  std::string title;
  Language language = DefaultLanguage();
};

std::string GetString(const Json& with, const std::string& key, std::string fallback) {
  auto it = with.find(key);
  if (it == with.end() || it->is_null()) return fallback;
  if (!it->is_string()) throw ConfigError("with." + key + ": must be a string");
  return it->get<std::string>();
}

DocumentConfig ParseConfig(const Json& with_in) {
  const Json with = with_in.is_null() ? Json::object() : with_in;
  if (!with.is_object()) throw ConfigError("with: must be a mapping of parameters");
  static const std::set<std::string> known = {"analysis_from", "summary_from", "download_from",
                                              "formats",       "title",        "language"};
  for (const auto& [key, value] : with.items()) {
    if (!key.empty() && key[0] != '_' && !known.count(key)) {
      throw ConfigError("with." + key + ": unknown parameter (see docs/steps/document.md)");
    }
  }
  DocumentConfig c;
  c.analysis_from = GetString(with, "analysis_from", c.analysis_from);
  c.summary_from = GetString(with, "summary_from", c.summary_from);
  c.download_from = GetString(with, "download_from", c.download_from);
  c.title = GetString(with, "title", "");
  c.language = StepLanguage(with);
  if (c.analysis_from.empty()) throw ConfigError("with.analysis_from: must name the analysis step");
  if (auto it = with.find("formats"); it != with.end() && !it->is_null()) {
    const Json list = it->is_string() ? Json::array({*it}) : *it;
    if (!list.is_array() || list.empty()) throw ConfigError("with.formats: must be a non-empty list of markdown, html");
    c.markdown = c.html = false;
    for (const auto& f : list) {
      const std::string name = f.is_string() ? f.get<std::string>() : f.dump();
      if (name == "markdown" || name == "md") c.markdown = true;
      else if (name == "html") c.html = true;
      else throw ConfigError("with.formats: unknown format '" + name + "' (known: markdown, html)");
    }
  }
  return c;
}

double Num(const Json& j, const char* key, double fallback = 0) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}

std::string Str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string Bytes(double n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (n >= 1024 && u < 4) { n /= 1024; ++u; }
  return u == 0 ? fmt::format("{:.0f} B", n) : fmt::format("{:.1f} {}", n, units[u]);
}

std::string MimeOf(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (ext == ".png") return "image/png";
  if (ext == ".webp") return "image/webp";
  if (ext == ".gif") return "image/gif";
  return "image/jpeg";
}

std::vector<std::pair<std::string, std::string>> MediaFacts(const std::string& ui, const analysis::Analysis& a,
                                                            const Json& download) {
  using document::Tr;
  using document::TrF;
  std::vector<std::pair<std::string, std::string>> facts;
  const analysis::Media& media = a.media;
  if (media.duration > 0) {
    facts.emplace_back(Tr(ui, "fact_duration"),
                       TrF(ui, "fact_duration_value", document::Timestamp(media.duration), media.duration));
  }
  if (!media.container.empty()) facts.emplace_back(Tr(ui, "fact_container"), media.container);
  if (media.video) {
    facts.emplace_back(Tr(ui, "fact_resolution"),
                       fmt::format("{:.0f}×{:.0f}", media.video->width, media.video->height));
    if (media.video->fps > 0) facts.emplace_back(Tr(ui, "fact_fps"), TrF(ui, "fact_fps_value", media.video->fps));
    facts.emplace_back(Tr(ui, "fact_video_codec"), media.video->codec);
  } else {
    facts.emplace_back(Tr(ui, "fact_video"), Tr(ui, "none"));
  }
  if (media.audio) {
    facts.emplace_back(Tr(ui, "fact_audio"), TrF(ui, "fact_audio_value", media.audio->codec, media.audio->sample_rate,
                                                 media.audio->channels));
  } else {
    facts.emplace_back(Tr(ui, "fact_audio"), Tr(ui, "fact_no_audio"));
  }
  if (download.is_object()) {
    if (!Str(download, "file").empty()) facts.emplace_back(Tr(ui, "fact_file"), Str(download, "file"));
    if (Num(download, "bytes") > 0) facts.emplace_back(Tr(ui, "fact_size"), Bytes(Num(download, "bytes")));
    if (!Str(download, "sha256").empty()) facts.emplace_back("SHA-256", Str(download, "sha256"));
  }
  if (!a.device.empty()) facts.emplace_back(Tr(ui, "fact_device"), a.device);
  return facts;
}

// What models added, one section per contribution: captions, tags, labels, then notes.
std::vector<document::ModelSection> ModelSections(const std::string& ui, const analysis::Analysis& a,
                                                  const analysis::Transcript* primary) {
  using document::Tr;
  using document::TrF;
  std::vector<document::ModelSection> out;
  auto add = [&](const char* kind, const std::vector<analysis::Section>& sections) {
    for (const auto& sec : sections) {
      if (sec.items.empty()) continue;
      document::ModelSection m;
      m.heading = TrF(ui, "section_by", Tr(ui, kind), sec.engine, sec.step);
      for (const auto& it : sec.items) {
        std::string line;
        if (it.start >= 0) line += "[" + document::Timestamp(it.start) + "] ";
        if (it.scene > 0) line += "(" + TrF(ui, "chapter", it.scene) + ") ";
        line += it.text;
        if (it.confidence >= 0) line += fmt::format(" ({:.2f})", it.confidence);
        m.lines.push_back(std::move(line));
      }
      out.push_back(std::move(m));
    }
  };
  add("captions", a.captions);
  add("tags", a.tags);
  add("labels", a.labels);
  // Transcripts in other languages than the report's (the report's own is its transcript); one
  // of no known language (analyze's bare list beside a contributed one) is not another language.
  for (const auto& t : a.transcripts) {
    if (&t == primary || t.segments.empty() || t.language.empty()) continue;
    document::ModelSection m;
    m.heading = TrF(ui, "section_by", TrF(ui, "transcript_in", t.language.empty() ? Tr(ui, "unknown") : t.language),
                    t.engine.empty() ? Tr(ui, "unknown") : t.engine, t.step);
    for (const auto& seg : t.segments) m.lines.push_back("[" + document::Timestamp(seg.start) + "] " + seg.text);
    out.push_back(std::move(m));
  }
  // Notes of contributing models (the built-in analyze's own notes are about the file, not the content).
  document::ModelSection notes;
  for (const auto& n : a.notes) {
    if (n.engine.empty()) continue;
    notes.lines.push_back(n.engine + Tr(ui, "colon") + n.text);
  }
  if (!notes.lines.empty()) {
    notes.heading = Tr(ui, "notes");
    out.push_back(std::move(notes));
  }
  return out;
}

// The title an input gives when nothing better is known: its last path segment without query,
// percent-decoded ("%E5%AD%A3%E5%BA%A6%E6%8A%A5%E5%91%8A.mp4" -> "季度报告"), extension dropped.
std::string TitleFromInput(const std::string& input) {
  std::string path = input.substr(0, input.find_first_of("?#"));
  while (!path.empty() && path.back() == '/') path.pop_back();
  std::string name = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
  std::string decoded;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == '%' && i + 2 < name.size() && std::isxdigit(static_cast<unsigned char>(name[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(name[i + 2]))) {
      decoded.push_back(static_cast<char>(std::stoi(name.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else {
      decoded.push_back(name[i]);
    }
  }
  if (const size_t dot = decoded.rfind('.'); dot != std::string::npos && dot > 0) decoded.resize(dot);
  return decoded;
}

class DocumentStep final : public Step {
 public:
  explicit DocumentStep(DocumentConfig c) : c_(std::move(c)) {}

  StepOutcome Run(StepContext& ctx) const override {
    if (!ctx.result_of(c_.analysis_from).is_object()) {
      return StepOutcome::Failure(fmt::format("document: no result from step '{}' (with.analysis_from); "
                                              "the report needs the analysis", c_.analysis_from), false);
    }
    // The job's analysis: analyze's result and what later steps contributed (steps/analysis).
    const analysis::ReadResult read = analysis::ReadAnalysis(ctx, c_.analysis_from);
    if (!read.ok()) return StepOutcome::Failure("document: " + read.error, false);
    const analysis::Analysis& analysis = read.analysis;
    const Json& download = ctx.result_of(c_.download_from);
    const Json& summary = ctx.result_of(c_.summary_from);
    std::vector<std::pair<std::string, std::string>> images;  // Markdown-relative path -> bytes
    ReportData r = Gather(ctx, analysis, download, summary, &images);
    if (ctx.cancelled()) return StepOutcome::Cancelled();

    // One copy: the job's output folder (OUT/<job>/) when there is one, else the work folder.
    const fs::path folder = fs::absolute(!ctx.outdir.empty() ? ctx.outdir / ctx.job : ctx.workdir);
    if (ctx.outdir.empty() && ctx.workdir.empty())
      return StepOutcome::Failure("document: neither an output folder nor a work folder is set", false);

    const std::string md = c_.markdown ? document::RenderMarkdown(r) : "";
    const std::string html = c_.html ? document::RenderHtml(r) : "";
    std::vector<std::string> delivered;
    Status st;
    if (c_.markdown) {
      for (const auto& [rel, bytes] : images) {
        if (st.ok()) st = WriteFileAtomically(folder / rel, bytes);
        delivered.push_back((folder / rel).string());
      }
      if (st.ok()) st = WriteFileAtomically(folder / "report.md", md);
      delivered.push_back((folder / "report.md").string());
    }
    if (c_.html && st.ok()) st = WriteFileAtomically(folder / "report.html", html);
    if (c_.html) delivered.push_back((folder / "report.html").string());
    if (!st.ok()) return StepOutcome::Failure("document: " + st.message());
    Json result = Json::object();
    if (c_.markdown) result["markdown"] = (folder / "report.md").string();
    if (c_.html) result["html"] = (folder / "report.html").string();
    ctx.info(fmt::format("document: wrote {} ({} chapters, {} transcript segments)", folder.string(),
                         r.chapters.size(), r.transcript.size()));
    StepOutcome out = StepOutcome::Ok(std::move(result));
    out.main_output = (folder / (c_.markdown ? "report.md" : "report.html")).string();
    out.deliverables = std::move(delivered);
    return out;
  }

 private:
  ReportData Gather(const StepContext& ctx, const analysis::Analysis& analysis, const Json& download,
                    const Json& summary,
                    std::vector<std::pair<std::string, std::string>>* images) const {
    using document::Tr;
    using document::TrF;
    ReportData r;
    const std::string& ui = c_.language.ui;
    r.lang = c_.language.tag;
    r.ui = ui;
    r.date = document::FormatDate(ui, std::time(nullptr));
    r.job = ctx.job;
    r.source = download.is_object() && !Str(download, "url").empty() ? Str(download, "url") : ctx.input;
    r.title = !c_.title.empty() ? c_.title : Str(download, "title");
    if (r.title.empty()) r.title = TitleFromInput(ctx.input);
    if (r.title.empty()) r.title = ctx.job;
    r.facts = MediaFacts(ui, analysis, download);

    if (!summary.is_object()) {
      r.summary_note = TrF(ui, "summary_missing", c_.summary_from);
    } else if (Str(summary, "summary").find_first_not_of(" \t\r\n") == std::string::npos) {
      r.summary_note = TrF(ui, "summary_empty", c_.summary_from);
    } else {
      r.summary = Str(summary, "summary");
      r.summary_by = summary.value("extractive", false)
                         ? Tr(ui, "summary_extractive")
                         : TrF(ui, "summary_by", Str(summary, "provider"), Str(summary, "model"));
      long prompt = 0, completion = 0, requests = 0;
      double cost = -1;
      if (auto u = summary.find("usage"); u != summary.end() && u->is_object()) {
        // The llm step's totals: HTTP requests (retries included), tokens, cost.
        prompt = static_cast<long>(Num(*u, "prompt_tokens"));
        completion = static_cast<long>(Num(*u, "completion_tokens"));
        requests = static_cast<long>(Num(*u, "requests"));
        cost = Num(*u, "cost_usd");
      } else if (u != summary.end() && u->is_array()) {  // results written before usage totals
        for (const auto& e : *u) {
          prompt += static_cast<long>(Num(e, "prompt_tokens"));
          completion += static_cast<long>(Num(e, "completion_tokens"));
          ++requests;
        }
      }
      if (requests > 0) {
        r.tokens = TrF(ui, "tokens_line", prompt, completion, requests, Str(summary, "model"));
        if (cost > 0) r.tokens += cost >= 0.01 ? fmt::format(", ${:.2f}", cost) : fmt::format(", ${:.6f}", cost);
      }
    }

    if (const analysis::Transcript* t = analysis.Primary(r.lang)) {
      for (const auto& seg : t->segments) r.transcript.push_back({seg.start, seg.end, seg.text});
      if (!t->engine.empty()) {
        r.transcript_by = TrF(ui, "transcript_by", t->engine, t->language.empty() ? Tr(ui, "unknown") : t->language,
                              t->step);
      }
    }
    if (r.transcript.empty()) {
      r.transcript_note = analysis.media.audio ? Tr(ui, "no_transcript_speech") : Tr(ui, "no_transcript_audio");
      // The analysis says why it did not transcribe (no model for the language).
      if (!analysis.transcript_note.empty())
        r.transcript_note = TrF(ui, "no_transcript_engine", analysis.transcript_note);
    }
    r.models = ModelSections(ui, analysis, analysis.Primary(r.lang));

    if (analysis.scenes.empty()) {
      r.chapters_note = Tr(ui, "no_chapters");
    } else {
      for (const analysis::Scene& s : analysis.scenes) {
        Chapter ch;
        ch.index = s.index;
        ch.start = s.start;
        ch.end = s.end;
        ch.ocr = s.ocr;
        LoadKeyframe(ctx, s.step, s.keyframe, &ch);
        if (!ch.image_bytes.empty()) {
          ch.image_file = std::string(kKeyframeFolder) + "/" + fmt::format("chapter-{:03d}", ch.index) +
                          fs::path(s.keyframe).extension().string();
          images->emplace_back(ch.image_file, ch.image_bytes);
        }
        r.chapters.push_back(std::move(ch));
      }
      // Each segment goes to the chapter its start falls in; before the first, to the first.
      for (const auto& seg : r.transcript) {
        size_t k = 0;
        for (size_t i = 0; i < r.chapters.size(); ++i) {
          if (seg.start >= r.chapters[i].start) k = i;
        }
        r.chapters[k].segments.push_back(seg);
      }
    }

    for (const StepRun& run : ctx.history ? *ctx.history : std::vector<StepRun>{}) {
      RecordRow row{run.step, run.node, "ok", "", run.attempt, run.seconds};
      for (int id : run.gpus) row.gpus += (row.gpus.empty() ? "" : ",") + std::to_string(id);
      r.record.push_back(std::move(row));
    }
    if (r.record.empty()) r.record_note = Tr(ui, "no_record");
    return r;
  }

  // `rel` is relative to step `step`'s job folder (fetched as its artifact), or an absolute path
  // on this node (a contributing step may name its files so).
  void LoadKeyframe(const StepContext& ctx, const std::string& step, const std::string& rel, Chapter* ch) const {
    if (rel.empty()) {
      ch->image_note = document::Tr(c_.language.ui, "no_keyframe");
      return;
    }
    if (const std::string why = ReadKeyframe(ctx, step, rel, ch); !why.empty()) {
      ch->image_bytes.clear();
      ch->image_note = document::TrF(c_.language.ui, "keyframe_unavailable", rel, why);
      ctx.warn("document: " + ch->image_note);
    }
  }
  // Reads the keyframe into ch->image_bytes; "" when done, else why it could not.
  static std::string ReadKeyframe(const StepContext& ctx, const std::string& step, const std::string& rel,
                                  Chapter* ch) {
    fs::path path = rel;
    if (!path.is_absolute()) {
      if (!ctx.artifact) return "no artifact access in this context";
      Result<fs::path> fetched = ctx.artifact(step, rel);
      if (!fetched.ok()) return fetched.error();
      path = std::move(*fetched);
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) return "cannot read " + path.string();
    std::ostringstream ss;
    ss << in.rdbuf();
    ch->image_bytes = ss.str();
    if (ch->image_bytes.empty()) return path.string() + " is empty";
    ch->image_mime = MimeOf(rel);
    return "";
  }

  const DocumentConfig c_;
};

}  // namespace

void RegisterDocumentStep(StepRegistry& registry) {
  registry.Register("document", StepFactoryOf([](const Json& with) {
    return std::make_unique<DocumentStep>(ParseConfig(with));
  }));
}

}  // namespace baton
