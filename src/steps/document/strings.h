// The report's words in each language it is written in: English (the default), Simplified
// Chinese (zh-CN, "zh-Hans") and Traditional Chinese (zh-TW, "zh-Hant"). Every heading, label,
// table header, note and date the document step writes comes from here.
//
// Thread-safety: immutable tables and pure functions.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace baton::document {

// The text for `key` in `ui` ("en", "zh-Hans", "zh-Hant"); English when the translation is
// missing. Unknown keys are a bug: they return the key itself.
const std::string& Tr(std::string_view ui, std::string_view key);

// Tr() used as a format string: TrF(ui, "chapter", 3) -> "第 3 章".
template <class... Args>
std::string TrF(std::string_view ui, std::string_view key, Args&&... args) {
  return fmt::format(fmt::runtime(Tr(ui, key)), std::forward<Args>(args)...);
}

// A calendar date in the report's language: "30 November 2026", "2026年11月30日".
std::string FormatDate(std::string_view ui, std::time_t when);

}  // namespace baton::document
