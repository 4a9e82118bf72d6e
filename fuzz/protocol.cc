// The head/agent protocol decoders (src/cluster/protocol.h): any bytes from Redis give a message
// or a Status naming what is wrong; a decoded message encodes again to one that decodes the same.
#include <variant>

#include "cluster/protocol.h"
#include "fuzz.h"

namespace p = baton::cluster::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = FuzzInput(data, size);
  if (auto m = p::DecodeAgentMessage(text); m.ok()) {
    std::string again;
    if (auto* run = std::get_if<p::RunAttempt>(&*m))
      again = p::Encode(*run, run->results.dump(-1, ' ', false, baton::Json::error_handler_t::replace),
                        p::HistoryJson(run->history));
    else if (auto* stop = std::get_if<p::StopAttempt>(&*m)) again = p::Encode(*stop);
    else if (auto* remove = std::get_if<p::RemoveWork>(&*m)) again = p::Encode(*remove);
    else again = p::Encode(std::get<p::DrainNode>(*m));
    auto round = p::DecodeAgentMessage(again);
    FUZZ_CHECK(round.ok() && round->index() == m->index());
    if (auto* remove = std::get_if<p::RemoveWork>(&*m))
      FUZZ_CHECK(std::get<p::RemoveWork>(*round).jobs == remove->jobs);
    if (auto* run = std::get_if<p::RunAttempt>(&*m)) {
      const auto& r = std::get<p::RunAttempt>(*round);
      FUZZ_CHECK(r.job == run->job && r.serial == run->serial && r.gpus == run->gpus &&
                 r.history.size() == run->history.size());
    }
  } else {
    FUZZ_CHECK(!m.status().message().empty());
  }
  if (auto m = p::DecodeInboxMessage(text); m.ok()) {
    if (auto* results = std::get_if<p::AttemptResults>(&*m)) {
      std::vector<std::string> encoded;
      for (const auto& r : results->list) encoded.push_back(p::Encode(r));
      auto round = p::DecodeInboxMessage(p::EncodeResults(encoded));
      FUZZ_CHECK(round.ok() && std::get<p::AttemptResults>(*round).list.size() == results->list.size());
    }
  } else {
    FUZZ_CHECK(!m.status().message().empty());
  }
  return 0;
}
