// Readiness for supervisors of `baton head` and `baton node` (docs/systemd/): when the command
// is up, systemd's sd_notify(READY=1) when NOTIFY_SOCKET is set (Type=notify units) and one
// line on stderr, `baton ROLE: ready` (for supervisors that read output instead); STOPPING=1
// when a stop begins. Lines are printed once per process, whatever the log format.
//
// Thread-safety: may be called from any thread.
#pragma once

#include <string>

namespace baton::cli {

// `role` is "head" or "node"; `status` is a short human line (systemd shows it as Status:).
// Later calls (a head that reconnected to Redis and reloaded) update the status only.
void NotifyReady(const std::string& role, const std::string& status);
// `signal` names the reason in the stderr line.
void NotifyStopping(const std::string& role, int signal);

}  // namespace baton::cli
