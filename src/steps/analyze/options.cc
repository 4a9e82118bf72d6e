// ParseAnalyzeOptions: the analyze step's `with:` parameters, validated when the pipeline loads.
#include <set>

#include <fmt/format.h>

#include "baton/language.h"
#include "steps/analyze/analyze.h"

namespace baton::analyze {
namespace {

[[noreturn]] void Bad(const std::string& key, const std::string& what) {
  throw ConfigError("with." + key + ": " + what);
}

void CheckKeys(const Json& obj, const std::string& prefix, const std::set<std::string>& known) {
  for (const auto& [key, value] : obj.items()) {
    if (!key.empty() && key[0] == '_') continue;  // set by the loader (_base_dir)
    if (known.count(key) == 0) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      Bad(prefix + key, "unknown parameter (known: " + list + ")");
    }
  }
}

std::string NonEmptyString(const Json& v, const std::string& key) {
  if (!v.is_string() || v.get<std::string>().empty()) Bad(key, "must be a non-empty string");
  return v.get<std::string>();
}

double NumberIn(const Json& v, const std::string& key, double lo, double hi, bool lo_open) {
  if (!v.is_number()) Bad(key, "must be a number");
  const double d = v.get<double>();
  if (d > hi || d < lo || (lo_open && d == lo)) {
    Bad(key, fmt::format("must be in {}{:g}, {:g}], got {:g}", lo_open ? "(" : "[", lo, hi, d));
  }
  return d;
}

int IntIn(const Json& v, const std::string& key, int lo, int hi) {
  if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi) {
    Bad(key, fmt::format("must be a whole number from {} to {}", lo, hi));
  }
  return v.get<int>();
}

// `asr: pocketsphinx` or `asr: {engine: command, argv: [...]}`.
EngineOptions ParseEngine(const Json& v, const std::string& key, EngineOptions engine,
                          const std::set<std::string>& builtin, const std::string& placeholder) {
  if (v.is_string()) return ParseEngine(Json{{"engine", v}}, key, engine, builtin, placeholder);
  if (!v.is_object()) Bad(key, "must be an engine name or a mapping with `engine:`");
  const bool tesseract = builtin.count("tesseract") > 0;
  CheckKeys(v, key + ".", tesseract ? std::set<std::string>{"engine", "argv", "lang", "dpi", "layout", "prepare"}
                                    : std::set<std::string>{"engine", "argv", "model", "fast"});
  if (v.contains("engine")) engine.engine = NonEmptyString(v["engine"], key + ".engine");
  std::string names;
  for (const auto& b : builtin) names += b + ", ";
  if (builtin.count(engine.engine) == 0 && engine.engine != "command" && engine.engine != "none") {
    Bad(key + ".engine", "unknown engine '" + engine.engine + "' (expected " + names + "command or none)");
  }
  if (engine.engine == "command") {
    if (!v.contains("argv")) Bad(key + ".argv", "required for engine: command (the program and its arguments)");
    const Json& argv = v["argv"];
    if (!argv.is_array() || argv.empty()) Bad(key + ".argv", "must be a non-empty list of strings");
    bool has_placeholder = false;
    for (size_t i = 0; i < argv.size(); ++i) {
      if (!argv[i].is_string()) Bad(fmt::format("{}.argv[{}]", key, i), "must be a string");
      engine.argv.push_back(argv[i].get<std::string>());
      has_placeholder = has_placeholder || engine.argv.back().find(placeholder) != std::string::npos;
    }
    if (engine.argv[0].empty()) Bad(key + ".argv[0]", "must name a program");
    if (!has_placeholder) Bad(key + ".argv", "must contain " + placeholder + " where the file path goes");
  } else if (v.contains("argv")) {
    Bad(key + ".argv", "only used with engine: command");
  }
  if (v.contains("lang")) engine.lang = NonEmptyString(v["lang"], key + ".lang");
  if (v.contains("dpi")) engine.dpi = IntIn(v["dpi"], key + ".dpi", 30, 1200);
  if (v.contains("layout")) {
    engine.layout = NonEmptyString(v["layout"], key + ".layout");
    if (engine.layout != "block" && engine.layout != "auto" && engine.layout != "sparse" && engine.layout != "vertical")
      Bad(key + ".layout", "must be block, auto, sparse or vertical (got '" + engine.layout + "')");
  }
  if (v.contains("prepare")) {
    if (!v["prepare"].is_boolean()) Bad(key + ".prepare", "must be true or false");
    engine.prepare = v["prepare"].get<bool>();
  }
  if (v.contains("model")) engine.model = NonEmptyString(v["model"], key + ".model");
  if (v.contains("fast")) {
    if (!v["fast"].is_boolean()) Bad(key + ".fast", "must be true or false");
    engine.fast = v["fast"].get<bool>();
  }
  return engine;
}

}  // namespace

AnalyzeOptions ParseAnalyzeOptions(const Json& with) {
  AnalyzeOptions o;
  if (with.is_null()) return o;
  if (!with.is_object()) throw ConfigError("with: must be a mapping of parameters");
  CheckKeys(with, "",
            {"from", "path", "scene_threshold", "min_scene", "all_frames", "threads", "asr", "ocr", "language",
             "audio"});
  const Language language = StepLanguage(with);
  o.language = language.tag;
  o.ocr.lang = language.tesseract;
  if (with.contains("from")) o.from = NonEmptyString(with["from"], "from");
  if (with.contains("path")) o.path = NonEmptyString(with["path"], "path");
  if (with.contains("scene_threshold")) {
    o.scene_threshold = NumberIn(with["scene_threshold"], "scene_threshold", 0.0, 1.0, true);
  }
  if (with.contains("min_scene")) o.min_scene = NumberIn(with["min_scene"], "min_scene", 0.0, 3600.0, false);
  if (with.contains("all_frames")) {
    if (!with["all_frames"].is_boolean()) Bad("all_frames", "must be true or false");
    o.all_frames = with["all_frames"].get<bool>();
  }
  if (with.contains("audio")) {
    if (!with["audio"].is_boolean()) Bad("audio", "must be true or false");
    o.keep_audio = with["audio"].get<bool>();
  }
  if (with.contains("threads")) o.threads = IntIn(with["threads"], "threads", 1, 256);
  if (with.contains("asr")) o.asr = ParseEngine(with["asr"], "asr", o.asr, {"pocketsphinx"}, "{audio}");
  if (with.contains("ocr")) o.ocr = ParseEngine(with["ocr"], "ocr", o.ocr, {"tesseract"}, "{image}");
  if (o.ocr.engine == "tesseract") {
    if (const std::string missing = MissingTesseractLanguage(o.ocr.lang); !missing.empty()) {
      Bad(with.contains("ocr") && with["ocr"].is_object() && with["ocr"].contains("lang") ? "ocr.lang" : "language",
          "Tesseract has no data for '" + missing + "' (needed for " + o.ocr.lang + "): install the Debian package " +
              TesseractPackage(missing));
    }
  }
  // Debian's PocketSphinx has only an English model: rather than English guesses at other
  // languages, say that speech was not transcribed (a `command` engine such as whisper.cpp can).
  const bool default_model = o.asr.model == PocketSphinxAsr::kDefaultModelDir;
  if (o.asr.engine == "pocketsphinx" && default_model && !language.english()) {
    o.asr_note = "Speech was not transcribed: PocketSphinx has no " + language.english_name +
                 " model; use asr: {engine: command} with whisper.cpp (-l " + language.tag.substr(0, 2) +
                 ") or another engine (docs/steps/analyze.md).";
  }
  return o;
}

}  // namespace baton::analyze
