// Prompt templates and input budgeting for the llm step: placeholder substitution, a token
// estimate, and splitting long text into pieces that fit a token budget.
//
// Thread-safety: pure functions.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace baton::llm {

// Placeholders a template may use: title, source, duration, transcript, ocr, scenes, chunk, part,
// parts, summaries, language. Returns the first other {{name}} in `tmpl`, or "" when none.
std::string FirstUnknownPlaceholder(std::string_view tmpl);

// Replaces each known {{name}} (spaces inside the braces allowed) by values[name] ("" when absent)
// in one pass: text substituted in is never scanned again, so a transcript that happens to contain
// "{{title}}" stays as it is.
std::string Render(std::string_view tmpl, const std::map<std::string, std::string>& values);

// A conservative token estimate: ASCII counts a quarter token per byte (BPE averages ~4 bytes per
// token on English), every other code point one token (CJK runs close to one token per character;
// bytes/4 would undercount it by a third).
int EstimateTokens(std::string_view text);

// Splits `text` at line boundaries into pieces of at most `max_tokens` (estimated). A line longer
// than that is cut at a space, or at a code point boundary when it has none. Never returns an
// empty piece; returns {} for blank text.
std::vector<std::string> SplitToFit(std::string_view text, int max_tokens);

// "m:ss" under an hour, else "h:mm:ss".
std::string FormatTimestamp(double seconds);

}  // namespace baton::llm
