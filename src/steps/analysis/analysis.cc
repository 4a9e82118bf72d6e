#include "steps/analysis/analysis.h"

#include <algorithm>
#include <map>
#include <set>

namespace baton::analysis {
namespace {

const char* const kShapeKeys[] = {"media", "scenes", "transcript", "captions", "tags", "labels"};

std::string Where(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

// Each checker returns "" or "FIELD: what is wrong".
std::string NeedNumber(const Json& o, const std::string& path, const char* key, bool required, double min = 0) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return required ? path + "." + key + ": missing" : "";
  if (!it->is_number()) return path + "." + key + ": must be a number, got " + it->dump().substr(0, 40);
  if (it->get<double>() < min) return path + "." + key + ": must be at least " + std::to_string(int(min));
  return "";
}

std::string NeedString(const Json& o, const std::string& path, const char* key, bool required) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return required ? path + "." + key + ": missing" : "";
  if (!it->is_string()) return path + "." + key + ": must be a string, got " + it->dump().substr(0, 40);
  if (required && it->get<std::string>().empty()) return path + "." + key + ": must not be empty";
  return "";
}

std::string CheckConfidence(const Json& o, const std::string& path) {
  if (std::string e = NeedNumber(o, path, "confidence", false); !e.empty()) return e;
  if (auto it = o.find("confidence"); it != o.end() && it->is_number() && it->get<double>() > 1)
    return path + ".confidence: must be in [0, 1]";
  return "";
}

std::string CheckTimes(const Json& o, const std::string& path, bool required) {
  for (const char* key : {"start", "end"}) {
    if (std::string e = NeedNumber(o, path, key, required); !e.empty()) return e;
  }
  if (o.contains("start") && o.contains("end") && o["start"].is_number() && o["end"].is_number() &&
      o["end"].get<double>() < o["start"].get<double>())
    return path + ".end: must not be before start";
  return "";
}

std::string CheckSegments(const Json& list, const std::string& path) {
  if (!list.is_array()) return path + ": must be a list of {start, end, text}";
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& s = list[i];
    const std::string at = Where(path, i);
    if (!s.is_object()) return at + ": must be an object {start, end, text}";
    if (std::string e = CheckTimes(s, at, true); !e.empty()) return e;
    if (std::string e = NeedString(s, at, "text", false); !e.empty()) return e;
    if (!s.contains("text")) return at + ".text: missing";
    if (std::string e = CheckConfidence(s, at); !e.empty()) return e;
    if (std::string e = NeedString(s, at, "speaker", false); !e.empty()) return e;
  }
  return "";
}

std::string CheckTranscript(const Json& t) {
  if (t.is_array()) return CheckSegments(t, "transcript");  // the bare list analyze wrote before version 1
  if (!t.is_object()) return "transcript: must be an object {language, segments}";
  if (std::string e = NeedString(t, "transcript", "language", true); !e.empty()) return e;
  if (std::string e = NeedString(t, "transcript", "engine", false); !e.empty()) return e;
  if (!t.contains("segments")) return "transcript.segments: missing";
  return CheckSegments(t["segments"], "transcript.segments");
}

std::string CheckMedia(const Json& m) {
  if (!m.is_object()) return "media: must be an object";
  if (std::string e = NeedNumber(m, "media", "duration", false); !e.empty()) return e;
  if (std::string e = NeedString(m, "media", "container", false); !e.empty()) return e;
  for (const char* stream : {"video", "audio"}) {
    auto it = m.find(stream);
    if (it == m.end() || it->is_null()) continue;
    const std::string at = std::string("media.") + stream;
    if (!it->is_object()) return at + ": must be an object or null";
    if (std::string e = NeedString(*it, at, "codec", false); !e.empty()) return e;
    for (const char* key : {"width", "height", "fps", "sample_rate", "channels"}) {
      if (std::string e = NeedNumber(*it, at, key, false); !e.empty()) return e;
    }
  }
  return "";
}

std::string CheckScenes(const Json& list) {
  if (!list.is_array()) return "scenes: must be a list of {start, end, keyframe, ocr}";
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& s = list[i];
    const std::string at = Where("scenes", i);
    if (!s.is_object()) return at + ": must be an object";
    if (std::string e = CheckTimes(s, at, true); !e.empty()) return e;
    if (auto it = s.find("index"); it != s.end() && !it->is_null() && !(it->is_number_integer() && *it >= 1))
      return at + ".index: must be a whole number >= 1";
    for (const char* key : {"keyframe", "ocr"}) {
      if (std::string e = NeedString(s, at, key, false); !e.empty()) return e;
    }
  }
  return "";
}

std::string CheckSection(const Json& s, const std::string& at) {
  if (!s.is_object()) return at + ": must be an object {engine, items}";
  if (std::string e = NeedString(s, at, "engine", true); !e.empty()) return e;
  if (std::string e = NeedString(s, at, "language", false); !e.empty()) return e;
  if (!s.contains("items")) return at + ".items: missing";
  const Json& items = s["items"];
  if (!items.is_array()) return at + ".items: must be a list";
  for (size_t i = 0; i < items.size(); ++i) {
    const Json& it = items[i];
    const std::string item_at = Where(at + ".items", i);
    if (it.is_string()) continue;
    if (!it.is_object()) return item_at + ": must be a string or an object {text}";
    if (std::string e = NeedString(it, item_at, "text", true); !e.empty()) return e;
    if (std::string e = CheckTimes(it, item_at, false); !e.empty()) return e;
    if (auto sc = it.find("scene"); sc != it.end() && !sc->is_null() && !(sc->is_number_integer() && *sc >= 1))
      return item_at + ".scene: must be a whole number >= 1";
    if (std::string e = CheckConfidence(it, item_at); !e.empty()) return e;
  }
  return "";
}

std::string CheckSections(const Json& v, const std::string& key) {
  if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (std::string e = CheckSection(v[i], Where(key, i)); !e.empty()) return e;
    }
    return "";
  }
  return CheckSection(v, key);
}

std::string CheckNotes(const Json& v) {
  if (!v.is_array()) return "notes: must be a list of strings or {text, engine}";
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i].is_string()) continue;
    const std::string at = Where("notes", i);
    if (!v[i].is_object()) return at + ": must be a string or an object {text, engine}";
    if (std::string e = NeedString(v[i], at, "text", true); !e.empty()) return e;
    if (std::string e = NeedString(v[i], at, "engine", false); !e.empty()) return e;
  }
  return "";
}

double Num(const Json& o, const char* key, double fallback) {
  auto it = o.find(key);
  return it != o.end() && it->is_number() ? it->get<double>() : fallback;
}

// A scene number as an int: one no video has (below 1, above a million, not finite) is `fallback`
// (a cast of it would be undefined behaviour; the fuzz target found 4294967295).
int Index(double v, int fallback) { return v >= 1 && v <= 1e6 ? static_cast<int>(v) : fallback; }

std::string Str(const Json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : "";
}

bool Blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

// BCP 47 tags compare without regard to case or to "_" for "-" ("zh_cn" is "zh-CN").
bool SameTag(const std::string& x, const std::string& y) {
  if (x.size() != y.size()) return false;
  for (size_t i = 0; i < x.size(); ++i) {
    const auto norm = [](char c) {
      return c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    };
    if (norm(x[i]) != norm(y[i])) return false;
  }
  return true;
}

std::string Primary(const std::string& tag) {
  std::string p = tag.substr(0, tag.find_first_of("-_"));
  for (char& c : p) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return p;
}

void MergeSections(const Json& v, const std::string& step, std::vector<Section>* into) {
  const Json list = v.is_array() ? v : Json::array({v});
  for (const Json& s : list) {
    Section sec;
    sec.engine = Str(s, "engine");
    sec.language = Str(s, "language");
    sec.step = step;
    for (const Json& it : s["items"]) {
      Item item;
      if (it.is_string()) {
        item.text = it.get<std::string>();
      } else {
        item.text = Str(it, "text");
        item.start = Num(it, "start", -1);
        item.end = Num(it, "end", item.start);
        item.scene = Index(Num(it, "scene", 0), 0);
        item.confidence = Num(it, "confidence", -1);
      }
      if (!Blank(item.text)) sec.items.push_back(std::move(item));
    }
    into->push_back(std::move(sec));
  }
}

}  // namespace

const Transcript* Analysis::Primary(const std::string& language) const {
  const std::string want = analysis::Primary(language);
  const Transcript* match = nullptr;
  for (const auto& t : transcripts) {
    if (!want.empty() && analysis::Primary(t.language) == want && (match == nullptr || !t.segments.empty()))
      match = &t;
  }
  if (match != nullptr && !match->segments.empty()) return match;
  for (auto it = transcripts.rbegin(); it != transcripts.rend(); ++it) {
    if (!it->segments.empty()) return &*it;
  }
  if (match != nullptr) return match;
  return transcripts.empty() ? nullptr : &transcripts.back();
}

bool IsContribution(const Json& output) {
  if (!output.is_object()) return false;
  for (const char* key : kShapeKeys) {
    if (output.contains(key)) return true;
  }
  return false;
}

const Json& ContributionOf(const Json& result) {
  static const Json kNull;
  if (!result.is_object()) return kNull;
  // A command step's result: its JSON output line is the contribution.
  if (result.contains("exit_code") && result.contains("stdout") && result.contains("stderr")) {
    auto it = result.find("output");
    return it != result.end() ? *it : kNull;
  }
  return result;
}

std::string CheckContribution(const Json& o) {
  if (!o.is_object()) return "the output must be a JSON object";
  if (auto it = o.find("media"); it != o.end() && !it->is_null()) {
    if (std::string e = CheckMedia(*it); !e.empty()) return e;
  }
  if (auto it = o.find("scenes"); it != o.end() && !it->is_null()) {
    if (std::string e = CheckScenes(*it); !e.empty()) return e;
  }
  if (auto it = o.find("transcript"); it != o.end() && !it->is_null()) {
    if (std::string e = CheckTranscript(*it); !e.empty()) return e;
  }
  for (const char* key : {"captions", "tags", "labels"}) {
    if (auto it = o.find(key); it != o.end() && !it->is_null()) {
      if (std::string e = CheckSections(*it, key); !e.empty()) return e;
    }
  }
  if (auto it = o.find("notes"); it != o.end() && !it->is_null()) {
    if (std::string e = CheckNotes(*it); !e.empty()) return e;
  }
  for (const char* key : {"language", "device", "transcript_note"}) {
    if (std::string e = NeedString(o, "", key, false); !e.empty()) return e.substr(1);
  }
  return "";
}

std::string Merge(const Json& o, const std::string& step, Analysis* a) {
  if (std::string e = CheckContribution(o); !e.empty()) return e;
  a->steps.push_back(step);
  if (auto it = o.find("media"); it != o.end() && it->is_object()) {
    const Json& m = *it;
    a->media.known = true;
    if (m.contains("duration") && m["duration"].is_number()) a->media.duration = m["duration"].get<double>();
    if (m.contains("container") && m["container"].is_string()) a->media.container = Str(m, "container");
    if (auto v = m.find("video"); v != m.end()) {
      if (v->is_object()) a->media.video = VideoFacts{Str(*v, "codec"), Num(*v, "width", 0), Num(*v, "height", 0),
                                                      Num(*v, "fps", 0)};
      else a->media.video.reset();
    }
    if (auto v = m.find("audio"); v != m.end()) {
      if (v->is_object())
        a->media.audio = AudioFacts{Str(*v, "codec"), Num(*v, "sample_rate", 0), Num(*v, "channels", 0)};
      else a->media.audio.reset();
    }
  }
  if (auto it = o.find("scenes"); it != o.end() && it->is_array() && !it->empty()) {
    a->scenes.clear();
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& s = (*it)[i];
      a->scenes.push_back({Index(Num(s, "index", static_cast<double>(i + 1)), static_cast<int>(i + 1)),
                           Num(s, "start", 0), Num(s, "end", 0), Str(s, "keyframe"), Str(s, "ocr"), step});
    }
  }
  if (auto it = o.find("transcript"); it != o.end() && !it->is_null()) {
    Transcript t;
    t.step = step;
    const Json* segments = &*it;
    if (it->is_object()) {
      t.language = Str(*it, "language");
      t.engine = Str(*it, "engine");
      segments = &(*it)["segments"];
    }
    for (const Json& s : *segments) {
      Segment seg{Num(s, "start", 0), Num(s, "end", 0), Str(s, "text"), Num(s, "confidence", -1), Str(s, "speaker")};
      if (!Blank(seg.text)) t.segments.push_back(std::move(seg));
    }
    std::stable_sort(t.segments.begin(), t.segments.end(),
                     [](const Segment& x, const Segment& y) { return x.start < y.start; });
    auto same = std::find_if(a->transcripts.begin(), a->transcripts.end(),
                             [&](const Transcript& x) { return SameTag(x.language, t.language); });
    if (same != a->transcripts.end()) a->transcripts.erase(same);  // a later one replaces it
    a->transcripts.push_back(std::move(t));
  }
  if (auto it = o.find("captions"); it != o.end() && !it->is_null()) MergeSections(*it, step, &a->captions);
  if (auto it = o.find("tags"); it != o.end() && !it->is_null()) MergeSections(*it, step, &a->tags);
  if (auto it = o.find("labels"); it != o.end() && !it->is_null()) MergeSections(*it, step, &a->labels);
  if (auto it = o.find("notes"); it != o.end() && it->is_array()) {
    for (const Json& n : *it) {
      if (n.is_string()) a->notes.push_back({n.get<std::string>(), "", step});
      else a->notes.push_back({Str(n, "text"), Str(n, "engine"), step});
    }
  }
  if (!Str(o, "device").empty()) a->device = Str(o, "device");
  if (!Str(o, "transcript_note").empty()) a->transcript_note = Str(o, "transcript_note");
  return "";
}

ReadResult ReadAnalysis(const StepContext& ctx, const std::string& base) {
  ReadResult r;
  const Json empty = Json::object();
  const Json& results = ctx.results != nullptr && ctx.results->is_object() ? *ctx.results : empty;
  // Pipeline order: the last successful attempt of each step, as the history lists them.
  std::vector<std::string> order;
  if (ctx.history != nullptr && !ctx.history->empty()) {
    for (const StepRun& run : *ctx.history) {
      order.erase(std::remove(order.begin(), order.end(), run.step), order.end());
      order.push_back(run.step);
    }
  }
  std::set<std::string> listed(order.begin(), order.end());
  if (!listed.count(base)) order.insert(order.begin(), base);  // e.g. tests without a history
  for (const auto& [name, value] : results.items()) {
    if (!listed.count(name) && name != base) order.push_back(name);
  }
  for (const std::string& step : order) {
    if (!results.contains(step)) continue;
    const Json& contribution = ContributionOf(results[step]);
    if (step != base && !IsContribution(contribution)) continue;
    if (std::string e = Merge(contribution, step, &r.analysis); !e.empty()) {
      r.error = "step '" + step + "' breaks the analysis shape (docs/schema/analysis.md): " + e;
      return r;
    }
  }
  return r;
}

}  // namespace baton::analysis
