// Status and Result<T>: Baton's one error convention at module boundaries (loading, steps, store,
// transport, protocol). A Status is ok or carries a code and a one-line message a user can act on
// ("examples/x.yaml:12: steps.analyze.resources.gpu: must be >= 0"). Both types are [[nodiscard]]:
// dropping an error is a compile warning. Exceptions stay inside a module and are caught at its
// edge; programming errors are assertions (BATON_ASSERT), not statuses.
//
//   baton::Result<Message> m = protocol::Decode(text);
//   if (!m.ok()) return m.status();          // propagate
//   Use(*m);
//
// Plain values; thread-compatible.
#pragma once

#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace baton {

enum class StatusCode { kOk, kInvalidArgument, kNotFound, kUnavailable, kFailedPrecondition, kInternal };

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  static Status Ok() { return {}; }
  static Status Invalid(std::string msg) { return {StatusCode::kInvalidArgument, std::move(msg)}; }
  static Status NotFound(std::string msg) { return {StatusCode::kNotFound, std::move(msg)}; }
  static Status Unavailable(std::string msg) { return {StatusCode::kUnavailable, std::move(msg)}; }
  static Status FailedPrecondition(std::string msg) { return {StatusCode::kFailedPrecondition, std::move(msg)}; }
  static Status Internal(std::string msg) { return {StatusCode::kInternal, std::move(msg)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // Explicitly ignores the status (call sites that have nothing to do with an error say so).
  void IgnoreError() const {}

 private:
  Status(StatusCode c, std::string m) : code_(c), message_(std::move(m)) {}
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit from a value
  Result(Status status) : status_(std::move(status)) { assert(!status_.ok() && "Result from an ok Status"); }  // NOLINT

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  const std::string& error() const { return status_.message(); }
  // REQUIRES: ok(). Checked in every build: the error is printed and the process aborts (a
  // program that cannot go on, like a benchmark's fixed input that does not load).
  T& value() & { Check(); return *value_; }
  const T& value() const& { Check(); return *value_; }
  T&& value() && { Check(); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void Check() const {
    if (!ok()) {
      std::fprintf(stderr, "Result::value() of an error: %s\n", status_.message().c_str());
      std::abort();
    }
  }
  Status status_;
  std::optional<T> value_;
};

}  // namespace baton

// Debug-build check of a REQUIRES: contract (compiled out with NDEBUG, like assert).
#define BATON_ASSERT(cond, msg) assert((cond) && msg)
