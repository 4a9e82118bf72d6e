// What the dashboard reads from a request, parsed without IO or httplib types: cookies, the Host
// and Origin headers, query parameters and the job and report paths of the URL. server.cc and
// api.cc call these; fuzz/dashboard_request.cc fuzzes them.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace baton::dashboard {

// The value of cookie `name` in a Cookie header ("a=1; token=x"), "" when absent.
std::string CookieValue(std::string_view cookies, std::string_view name);

// "host:port" of a Host or Origin value, without scheme; the host part only when `host_only`
// ("[::1]:8080" -> "::1").
std::string HostPart(std::string_view value, bool host_only);

// localhost, ::1 or 127.0.0.0/8.
bool IsLoopbackHost(const std::string& host);

// A non-negative decimal integer capped at `max`; nullopt when `text` is not one.
std::optional<size_t> ParseCount(std::string_view text, size_t max);

// The job states of a comma-separated `state=` list; false with `*unknown` set at the first
// name that is not a state. Empty items are skipped.
bool ParseStates(std::string_view list, std::set<std::string>* states, std::string* unknown);
const std::set<std::string>& JobStates();

// A job id that is safe in a path: not empty, ".", "..", no '/', '\\' or control byte.
bool SafeJobId(std::string_view id);

// The part of a report URL after /report/JOB/: a plain relative path below the job's folder (no
// "..", ".", absolute path, '\\' or NUL). The symlink check happens where the file is opened.
bool SafeReportPath(std::string_view rest);

}  // namespace baton::dashboard
