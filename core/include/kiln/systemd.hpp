#pragma once
// The service manager's side of a daemon (sd_notify(3)): READY=1 once it
// serves, STATUS= lines saying what it does, STOPPING=1 when a stop begins
// and WATCHDOG=1 keep-alives when the unit sets WatchdogSec.  Every call is
// a no-op when NOTIFY_SOCKET is unset (not started by systemd).
//
// None of them blocks: a manager that reads nothing costs us STATUS= lines
// (dropped when they do not fit) but never the loop.  READY=1, RELOADING=1,
// STOPPING=1 and WATCHDOG=1 that do not fit wait (the latest of each) until
// notify_retry() gets them through.
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

// Whether an essential notification waits to be sent; notify_retry() tries
// again (run_service does, on a timer, while one waits).
bool notify_pending();
void notify_retry();

// The watchdog interval in microseconds when the service manager wants
// keep-alives for this process (WATCHDOG_USEC, and WATCHDOG_PID if set is
// ours), else 0.
uint64_t watchdog_usec();

} // namespace kiln
