// A small synchronous Redis client over hiredis 0.14 (RESP2): URL parsing with AUTH and database,
// commands from argv vectors (binary-safe, never a format string), and pipelining (Append many,
// then Read their replies) so a batch costs one round trip.
//
// Errors are values: a failed connection or I/O error makes the client unusable (ok() false,
// error() says why) and the caller reconnects; a Redis error reply is a Reply with is_error().
// Not thread-safe: one connection per thread.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "baton/status.h"

struct redisContext;
struct redisReply;

namespace baton::cluster {

// redis://[:PASSWORD@]HOST[:PORT][/DB], or unix:///PATH/TO/redis.sock[?db=N] (a Unix socket: Redis
// on this machine, reached by those the socket's folder lets in). The password may also come from
// BATON_REDIS_PASSWORD.
struct RedisUrl {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string socket;  // the Unix socket's path (unix://); host and port are then unused
  int db = 0;
  std::string password;
  bool password_in_url = false;  // given as :PASSWORD@ (visible in `ps` when on a command line)
  // The parsed URL, or an error naming what is wrong (never echoing the URL: it may hold a
  // password).
  static Result<RedisUrl> Parse(const std::string& url);
  bool loopback() const;  // 127.0.0.0/8, ::1, localhost, a Unix socket
  // The URL with the password shown as *** (for logs and messages).
  std::string Redacted() const;
};

// One reply, owning its hiredis object.
class Reply {
 public:
  Reply() = default;
  explicit Reply(redisReply* r);
  bool null() const;
  bool is_error() const;
  bool is_array() const;
  std::string str() const;          // string, status or error text; "" otherwise
  long long integer() const;        // integer replies (or a numeric string)
  size_t size() const;              // array length
  Reply at(size_t i) const;         // borrowed view of an element (valid while *this lives)
  redisReply* raw() const { return r_; }

 private:
  std::shared_ptr<redisReply> owner_;
  redisReply* r_ = nullptr;
};

// Commands for one script call, encoded as they are added (RESP bulk strings: each command as its
// argc then its args), so a large batch costs its protocol bytes only, never a std::string per
// argument. Redis::AppendEval sends them as the ARGV of one EVAL.
class CommandBatch {
 public:
  void Add(const std::vector<std::string>& argv);
  void Add(std::initializer_list<std::string_view> argv);
  bool empty() const { return commands_ == 0; }
  size_t commands() const { return commands_; }
  size_t args() const { return args_; }
  const std::string& encoded() const { return body_; }

 private:
  void Bulk(std::string_view s);
  std::string body_;
  size_t commands_ = 0, args_ = 0;
};

class Redis {
 public:
  Redis() = default;
  ~Redis();
  Redis(const Redis&) = delete;
  Redis& operator=(const Redis&) = delete;

  // Connects (with a timeout), authenticates and selects the database. False with error() set.
  bool Connect(const RedisUrl& url, double timeout_seconds = 2.0);
  bool ok() const { return ctx_ != nullptr && error_.empty(); }
  const std::string& error() const { return error_; }

  // One command, one round trip. On I/O failure: a null Reply and ok() false.
  Reply Command(const std::vector<std::string>& argv);
  // Pipelining: queue commands, then read each reply in order.
  void Append(const std::vector<std::string>& argv);
  Reply Read();
  size_t pending() const { return pending_; }
  // EVAL script numkeys keys... ARGV..., then `batch` as further ARGV (without copying it into an
  // argv vector).
  void AppendEval(std::string_view script, const std::vector<std::string>& keys_and_args, const CommandBatch& batch,
                  size_t numkeys);
  // Reads and drops every pending reply; false when one failed (error() names the first).
  bool Flush();
  // Socket timeout for blocking commands (XREADGROUP BLOCK ...).
  void SetTimeout(double seconds);

 private:
  redisContext* ctx_ = nullptr;
  std::string error_;
  size_t pending_ = 0;
};

}  // namespace baton::cluster
