// sd_notify(3) through libsystemd.
#include <kiln/systemd.hpp>

#include <cstdlib>
#include <cstring>

#include <systemd/sd-daemon.h>

#include <kiln/log.hpp>

namespace kiln {

namespace {

void send(const std::string &state)
{
    if (!notify_enabled())
        return;
    int rc = sd_notify(0, state.c_str());
    if (rc < 0)
        log_debug("sd_notify: %s", strerror(-rc));
}

// One line: a newline inside would start another assignment.
std::string one_line(std::string s)
{
    for (char &c : s)
        if (c == '\n' || c == '\r')
            c = ' ';
    return s;
}

} // namespace

bool notify_enabled()
{
    const char *s = getenv("NOTIFY_SOCKET");
    return s && *s;
}

void notify_ready(const std::string &status)
{
    send("READY=1\nSTATUS=" + one_line(status));
}

void notify_status(const std::string &status)
{
    send("STATUS=" + one_line(status));
}

void notify_stopping()
{
    send("STOPPING=1");
}

void notify_reloading()
{
    // RELOADING=1 then READY=1 again (sd_notify(3)); MONOTONIC_USEC is only
    // needed by Type=notify-reload, which these units do not use.
    send("RELOADING=1");
}

void notify_watchdog()
{
    send("WATCHDOG=1");
}

uint64_t watchdog_usec()
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0)
        return usec;
    return 0;
}

} // namespace kiln
