#include "redis/redis.h"

#include <cstdlib>

#include <hiredis.h>

namespace baton::cluster {

namespace {

// unix:///PATH[?db=N]: no password in it (that comes from a file or the environment).
Result<RedisUrl> ParseUnix(const std::string& url) {
  RedisUrl u;
  std::string rest = url.substr(std::string("unix://").size());
  if (size_t q = rest.find('?'); q != std::string::npos) {
    const std::string query = rest.substr(q + 1);
    rest = rest.substr(0, q);
    char* end = nullptr;
    const long v = query.rfind("db=", 0) == 0 ? std::strtol(query.c_str() + 3, &end, 10) : -1;
    if (v < 0 || end == nullptr || end == query.c_str() + 3 || *end != '\0')
      return Status::Invalid("--redis: after unix://PATH only ?db=N may follow");
    u.db = static_cast<int>(v);
  }
  if (rest.empty() || rest[0] != '/' || rest.find('@') != std::string::npos)
    return Status::Invalid(
        "--redis: expected unix:///ABSOLUTE/PATH[?db=N] (a password comes from "
        "--redis-password-file or BATON_REDIS_PASSWORD)");
  u.socket = rest;
  if (const char* env = std::getenv("BATON_REDIS_PASSWORD")) u.password = env;
  return u;
}

}  // namespace

Result<RedisUrl> RedisUrl::Parse(const std::string& url) {
  if (url.rfind("unix://", 0) == 0) return ParseUnix(url);
  RedisUrl u;
  const std::string scheme = "redis://";
  // The value itself is never echoed: it may hold a password.
  if (url.rfind(scheme, 0) != 0)
    return Status::Invalid(
        "--redis: expected redis://HOST:PORT[/DB] or unix:///PATH (the value given is not shown: it may hold a "
        "password)");
  std::string rest = url.substr(scheme.size());
  if (size_t at = rest.rfind('@'); at != std::string::npos) {
    std::string auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (size_t colon = auth.find(':'); colon != std::string::npos) auth = auth.substr(colon + 1);
    u.password = auth;
    u.password_in_url = !auth.empty();
  }
  if (size_t slash = rest.find('/'); slash != std::string::npos) {
    std::string db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty()) {
      char* end = nullptr;
      long v = std::strtol(db.c_str(), &end, 10);
      if (*end != '\0' || v < 0)
        return Status::Invalid("--redis: the database (after the last /) is not a number");
      u.db = static_cast<int>(v);
    }
  }
  if (size_t colon = rest.rfind(':'); colon != std::string::npos) {
    std::string port = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    char* end = nullptr;
    long v = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end != '\0' || v <= 0 || v > 65535)
      return Status::Invalid("--redis: the port (after the last :) is not a port number");
    u.port = static_cast<int>(v);
  }
  if (!rest.empty()) u.host = rest;
  if (u.password.empty())
    if (const char* env = std::getenv("BATON_REDIS_PASSWORD")) u.password = env;
  return u;
}

bool RedisUrl::loopback() const {
  return !socket.empty() || host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

std::string RedisUrl::Redacted() const {
  if (!socket.empty()) return "unix://" + socket + (db ? "?db=" + std::to_string(db) : "");
  return "redis://" + std::string(password.empty() ? "" : ":***@") + host + ":" + std::to_string(port) +
         (db ? "/" + std::to_string(db) : "");
}

Reply::Reply(redisReply* r) : owner_(r, [](redisReply* p) { if (p) freeReplyObject(p); }), r_(r) {}
bool Reply::null() const { return r_ == nullptr || r_->type == REDIS_REPLY_NIL; }
bool Reply::is_error() const { return r_ != nullptr && r_->type == REDIS_REPLY_ERROR; }
bool Reply::is_array() const { return r_ != nullptr && r_->type == REDIS_REPLY_ARRAY; }
std::string Reply::str() const {
  if (r_ == nullptr) return "";
  if (r_->type == REDIS_REPLY_STRING || r_->type == REDIS_REPLY_STATUS || r_->type == REDIS_REPLY_ERROR)
    return std::string(r_->str, r_->len);
  if (r_->type == REDIS_REPLY_INTEGER) return std::to_string(r_->integer);
  return "";
}
long long Reply::integer() const {
  if (r_ == nullptr) return 0;
  if (r_->type == REDIS_REPLY_INTEGER) return r_->integer;
  if (r_->type == REDIS_REPLY_STRING) return std::atoll(r_->str);
  return 0;
}
size_t Reply::size() const { return is_array() ? r_->elements : 0; }
Reply Reply::at(size_t i) const {
  Reply r;
  if (i < size()) {
    r.owner_ = owner_;
    r.r_ = r_->element[i];
  }
  return r;
}

Redis::~Redis() {
  if (ctx_) redisFree(ctx_);
}

bool Redis::Connect(const RedisUrl& url, double timeout_seconds) {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
  error_.clear();
  pending_ = 0;
  timeval tv{static_cast<time_t>(timeout_seconds),
             static_cast<suseconds_t>((timeout_seconds - static_cast<long>(timeout_seconds)) * 1e6)};
  ctx_ = url.socket.empty() ? redisConnectWithTimeout(url.host.c_str(), url.port, tv)
                            : redisConnectUnixWithTimeout(url.socket.c_str(), tv);
  if (ctx_ == nullptr || ctx_->err) {
    error_ = "cannot connect to " + url.Redacted() + ": " + (ctx_ ? ctx_->errstr : "out of memory");
    return false;
  }
  redisSetTimeout(ctx_, tv);
  if (!url.password.empty()) {
    Reply r = Command({"AUTH", url.password});
    if (!ok() || r.is_error()) {
      error_ = "redis AUTH failed at " + url.Redacted() + (r.is_error() ? ": " + r.str() : "");
      return false;
    }
  }
  if (url.db != 0) {
    Reply r = Command({"SELECT", std::to_string(url.db)});
    if (!ok() || r.is_error()) {
      error_ = "redis SELECT " + std::to_string(url.db) + " failed at " + url.Redacted();
      return false;
    }
  }
  return true;
}

void Redis::SetTimeout(double seconds) {
  if (!ctx_) return;
  timeval tv{static_cast<time_t>(seconds), static_cast<suseconds_t>((seconds - static_cast<long>(seconds)) * 1e6)};
  redisSetTimeout(ctx_, tv);
}

void Redis::Append(const std::vector<std::string>& argv) {
  if (!ok()) return;
  std::vector<const char*> args;
  std::vector<size_t> lens;
  args.reserve(argv.size());
  lens.reserve(argv.size());
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), args.data(), lens.data()) != REDIS_OK) {
    error_ = std::string("redis: ") + ctx_->errstr;
    return;
  }
  ++pending_;
}

void CommandBatch::Bulk(std::string_view s) {
  body_ += '$';
  body_ += std::to_string(s.size());
  body_ += "\r\n";
  body_.append(s.data(), s.size());
  body_ += "\r\n";
  ++args_;
}

void CommandBatch::Add(const std::vector<std::string>& argv) {
  Bulk(std::to_string(argv.size()));
  for (const auto& a : argv) Bulk(a);
  ++commands_;
}

void CommandBatch::Add(std::initializer_list<std::string_view> argv) {
  Bulk(std::to_string(argv.size()));
  for (const auto& a : argv) Bulk(a);
  ++commands_;
}

void Redis::AppendEval(std::string_view script, const std::vector<std::string>& keys_and_args,
                       const CommandBatch& batch, size_t numkeys) {
  if (!ok()) return;
  std::string head = "*" + std::to_string(3 + keys_and_args.size() + batch.args()) + "\r\n";
  auto bulk = [&head](std::string_view s) {
    head += '$';
    head += std::to_string(s.size());
    head += "\r\n";
    head.append(s.data(), s.size());
    head += "\r\n";
  };
  bulk("EVAL");
  bulk(script);
  bulk(std::to_string(numkeys));
  for (const auto& a : keys_and_args) bulk(a);
  if (redisAppendFormattedCommand(ctx_, head.data(), head.size()) != REDIS_OK ||
      redisAppendFormattedCommand(ctx_, batch.encoded().data(), batch.encoded().size()) != REDIS_OK) {
    error_ = std::string("redis: ") + ctx_->errstr;
    return;
  }
  ++pending_;  // one command, one reply
}

Reply Redis::Read() {
  if (!ok() || pending_ == 0) return Reply();
  void* r = nullptr;
  --pending_;
  if (redisGetReply(ctx_, &r) != REDIS_OK || r == nullptr) {
    error_ = std::string("redis: ") + (ctx_->errstr[0] ? ctx_->errstr : "connection lost");
    return Reply();
  }
  return Reply(static_cast<redisReply*>(r));
}

Reply Redis::Command(const std::vector<std::string>& argv) {
  Flush();
  Append(argv);
  return Read();
}

bool Redis::Flush() {
  bool good = true;
  while (pending_ > 0) {
    Reply r = Read();
    if (!ok()) return false;
    if (r.is_error() && good) {
      good = false;
    }
  }
  return good && ok();
}

}  // namespace baton::cluster
