#pragma once
// The service manager's side of a daemon (sd_notify(3)): READY=1 once it
// serves, STATUS= lines saying what it does, STOPPING=1 when a stop begins
// and WATCHDOG=1 keep-alives when the unit sets WatchdogSec.  Every call is
// a no-op when NOTIFY_SOCKET is unset (not started by systemd).
#include <cstdint>
#include <string>

namespace kiln {

// True when NOTIFY_SOCKET is set: someone listens to our notifications.
bool notify_enabled();
void notify_ready(const std::string &status);
void notify_status(const std::string &status);
void notify_stopping();
void notify_reloading();
void notify_watchdog();

// The watchdog interval in microseconds when the service manager wants
// keep-alives for this process (WATCHDOG_USEC, and WATCHDOG_PID if set is
// ours), else 0.
uint64_t watchdog_usec();

} // namespace kiln
