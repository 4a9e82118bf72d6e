#include "baton/language.h"

#include <vector>

#include "baton/step.h"

namespace baton {
namespace {

struct Entry {
  Language language;
  std::vector<std::string_view> aliases;  // lower case
};

const std::vector<Entry>& Table() {
  static const std::vector<Entry> table = {
      {{"en", "eng", "English", "English", "en", false}, {"en", "en-us", "en-gb", "en-au", "en-ca", "en-in"}},
      {{"zh-CN", "chi_sim+eng", "Simplified Chinese", "简体中文", "zh-Hans", true},
       {"zh-cn", "zh", "zh-hans", "zh-hans-cn", "zh-sg", "zh-hans-sg", "cmn", "cmn-hans"}},
      {{"zh-TW", "chi_tra+eng", "Traditional Chinese", "繁體中文", "zh-Hant", true},
       {"zh-tw", "zh-hant", "zh-hant-tw", "zh-hk", "zh-hant-hk", "zh-mo", "cmn-hant"}},
      {{"ja", "jpn+eng", "Japanese", "日本語", "en", true}, {"ja", "ja-jp"}},
      {{"ko", "kor+eng", "Korean", "한국어", "en", false}, {"ko", "ko-kr"}},
      {{"de", "deu+eng", "German", "Deutsch", "en", false}, {"de", "de-de", "de-at", "de-ch"}},
      {{"fr", "fra+eng", "French", "Français", "en", false}, {"fr", "fr-fr", "fr-ca", "fr-be", "fr-ch"}},
      {{"es", "spa+eng", "Spanish", "Español", "en", false}, {"es", "es-es", "es-mx", "es-419"}},
      {{"it", "ita+eng", "Italian", "Italiano", "en", false}, {"it", "it-it"}},
      {{"pt", "por+eng", "Portuguese", "Português", "en", false}, {"pt", "pt-br", "pt-pt"}},
      {{"ru", "rus+eng", "Russian", "Русский", "en", false}, {"ru", "ru-ru"}},
  };
  return table;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '_') c = '-';  // zh_CN, as in locale names
  }
  return out;
}

}  // namespace

std::optional<Language> FindLanguage(std::string_view tag) {
  const std::string key = Lower(tag);
  for (const auto& e : Table()) {
    for (auto alias : e.aliases) {
      if (alias == key) return e.language;
    }
  }
  return std::nullopt;
}

const Language& DefaultLanguage() { return Table().front().language; }

std::string KnownLanguageTags() {
  std::string out;
  for (const auto& e : Table()) out += (out.empty() ? "" : ", ") + e.language.tag;
  return out;
}

bool HasStepLanguage(const nlohmann::json& with) {
  return with.is_object() && ((with.contains("language") && !with["language"].is_null()) || with.contains("_language"));
}

Language StepLanguage(const nlohmann::json& with) {
  if (!with.is_object()) return DefaultLanguage();
  for (const char* key : {"language", "_language"}) {
    auto it = with.find(key);
    if (it == with.end() || it->is_null()) continue;
    if (!it->is_string()) throw ConfigError(std::string("with.") + key + ": must be a language tag such as zh-CN");
    const std::string tag = it->get<std::string>();
    if (auto l = FindLanguage(tag)) return *l;
    throw ConfigError(std::string("with.") + key + ": unknown language '" + tag + "' (known: " + KnownLanguageTags() +
                      ")");
  }
  return DefaultLanguage();
}

}  // namespace baton
