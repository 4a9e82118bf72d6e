// The job's language: the pipeline's top-level `language:` key (a BCP 47 tag such as `en`,
// `zh-CN`, `zh-TW`, `ja`) and the defaults it sets for every built-in step.
//
// The loader checks the tag (FindLanguage) and hands it to every step as the hidden `with` key
// `_language` (like `_base_dir`), so user steps that refuse unknown keys keep working. A built-in
// step reads its language with StepLanguage(with): its own `with.language` first, then the
// pipeline's, then English. What each step does with it:
//   analyze   OCR languages (`zh-CN` -> chi_sim+eng); Chinese speech needs a `command` engine
//   llm       prompt templates and the "write in" instruction; extractive sentence segmentation
//   document  headings, labels, notes, dates and <html lang>
//
// Plain values and pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace baton {

struct Language {
  std::string tag;          // canonical BCP 47: "en", "zh-CN", "zh-TW", "ja", ...
  std::string tesseract;    // default OCR languages, '+'-joined: "chi_sim+eng", "jpn+eng"
  std::string english_name; // "Simplified Chinese"
  std::string native_name;  // "简体中文"
  // Which of the report's translations applies: "en", "zh-Hans" or "zh-Hant" (others: "en").
  std::string ui;
  bool cjk = false;         // written without spaces between words (zh, ja)

  bool chinese() const { return tag.rfind("zh", 0) == 0; }
  bool english() const { return tag == "en"; }
};

// The language for `tag`, matched case-insensitively, with common aliases ("zh" and "zh-Hans" ->
// zh-CN, "zh-Hant" and "zh-HK" -> zh-TW, "en-US" -> en). nullopt for tags Baton does not know.
std::optional<Language> FindLanguage(std::string_view tag);

// English.
const Language& DefaultLanguage();

// The known canonical tags, comma-separated, for error messages.
std::string KnownLanguageTags();

// A step's language from its `with`: `language` (the step's own, may be any known tag), else
// `_language` (set by the loader from the pipeline), else English. Throws ConfigError
// ("with.language: unknown language 'xx' (known: ...)") for an unknown tag.
Language StepLanguage(const nlohmann::json& with);

// Whether the step's `with` (or the pipeline) named a language at all.
bool HasStepLanguage(const nlohmann::json& with);

}  // namespace baton
