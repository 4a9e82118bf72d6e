#include "cli/readiness.h"

#include <systemd/sd-daemon.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>

namespace baton::cli {
namespace {

std::atomic<bool> g_ready_said{false}, g_stopping_said{false};

std::string OneLine(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

void NotifyReady(const std::string& role, const std::string& status) {
  sd_notify(0, ("READY=1\nSTATUS=" + OneLine(status)).c_str());
  if (!g_ready_said.exchange(true)) std::fprintf(stderr, "baton %s: ready\n", role.c_str());
}

void NotifyStopping(const std::string& role, int signal) {
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
  if (!g_stopping_said.exchange(true))
    std::fprintf(stderr, "baton %s: stopping (%s)\n", role.c_str(),
                 signal == SIGINT    ? "SIGINT"
                 : signal == SIGTERM ? "SIGTERM"
                                     : "signal");
}

}  // namespace baton::cli
