// The dashboard's request parsing (src/dashboard/request.h): Cookie, Host and Origin headers,
// query parameters and URL paths from any client. The input is split at '\n' into a header
// value and a name or parameter.
#include "dashboard/request.h"
#include "fuzz.h"

namespace d = baton::dashboard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = FuzzInput(data, size);
  const auto [first, second] = FuzzSplit(in, '\n');

  const std::string cookie = d::CookieValue(first, second);
  FUZZ_CHECK(cookie.size() <= first.size() && first.find(cookie) != std::string_view::npos);
  FUZZ_CHECK(d::CookieValue(first, "token").size() <= first.size());

  for (bool host_only : {false, true}) {
    const std::string host = d::HostPart(in, host_only);
    FUZZ_CHECK(host.size() <= in.size() && in.find(host) != std::string_view::npos);
    if (host_only) (void)d::IsLoopbackHost(host);
  }

  if (const auto n = d::ParseCount(first, 1000)) FUZZ_CHECK(*n <= 1000);
  if (const auto n = d::ParseCount(first, SIZE_MAX)) FUZZ_CHECK(!first.empty() && first[0] != '-');

  std::set<std::string> states;
  std::string unknown;
  if (d::ParseStates(in, &states, &unknown)) {
    for (const auto& s : states) FUZZ_CHECK(d::JobStates().count(s) == 1);
  } else {
    FUZZ_CHECK(!unknown.empty() && d::JobStates().count(unknown) == 0 && unknown.find(',') == std::string::npos);
  }

  if (d::SafeJobId(first)) FUZZ_CHECK(first.find('/') == std::string_view::npos && first != "..");
  if (d::SafeReportPath(second)) {
    FUZZ_CHECK(second.empty() || second[0] != '/');
    FUZZ_CHECK(second != ".." && second.find("/../") == std::string_view::npos && second.rfind("../", 0) != 0);
  }
  return 0;
}
