// The LLM reply parsers (src/steps/llm, ParseChatReply and Anthropic's ParseMessagesReply): any
// body a server sends gives content or a named problem; they never throw, and usage is read only
// from a usage object.
#include "fuzz.h"
#include "steps/llm/chat_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(FuzzInput(data, size));
  for (const baton::llm::ChatReply& r : {baton::llm::ParseChatReply(body), baton::llm::ParseMessagesReply(body)}) {
    using P = baton::llm::ChatReply::Problem;
    if (r.problem == P::kNone) FUZZ_CHECK(r.content.find_first_not_of(" \t\r\n") != std::string::npos);
    if (r.problem == P::kNotObject) FUZZ_CHECK(!r.has_usage && r.content.empty());
    if (!r.has_usage) FUZZ_CHECK(r.prompt_tokens == 0 && r.completion_tokens == 0 && r.cached_tokens == 0);
  }
  return 0;
}
