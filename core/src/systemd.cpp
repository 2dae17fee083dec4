// The notify protocol of sd_notify(3), sent without ever blocking the loop.
//
// sd_notify() sends on a blocking socket: once the service manager stops
// reading (a stalled or overloaded PID 1, a test harness's socket) the
// receive queue fills after a handful of datagrams and the daemon freezes
// in sendmsg, heartbeats and SIGTERM included.  So we keep our own
// non-blocking datagram socket to NOTIFY_SOCKET (a path, or "@name" for an
// abstract one, as sd_notify accepts) and send with MSG_DONTWAIT.  A STATUS=
// line that does not fit is dropped (the next change sends a newer one);
// READY=1, RELOADING=1, STOPPING=1 and WATCHDOG=1 are kept, the latest of
// each, and sent again by notify_retry() (run_service calls it on a timer).
#include <kiln/systemd.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <systemd/sd-daemon.h>

#include <kiln/log.hpp>

namespace kiln {

namespace {

struct NotifyTarget {
    int fd = -1;
    sockaddr_un addr{};
    socklen_t addr_len = 0;
    bool tried = false; // resolved once; a bad NOTIFY_SOCKET is reported once
};

NotifyTarget g_target;
// Assignments that must reach the manager, oldest first, one per key.
std::vector<std::string> g_pending;

// The socket and address for NOTIFY_SOCKET, made on first use.
bool open_target()
{
    if (g_target.tried)
        return g_target.fd >= 0;
    g_target.tried = true;
    const char *path = getenv("NOTIFY_SOCKET");
    size_t len = path ? strlen(path) : 0;
    if (len < 2 || (path[0] != '/' && path[0] != '@')) {
        log_warning("notify: NOTIFY_SOCKET=%s: not a unix socket path or @abstract name; "
                    "not notifying",
                    path ? path : "");
        return false;
    }
    if (len >= sizeof g_target.addr.sun_path) {
        log_warning("notify: NOTIFY_SOCKET: path too long; not notifying");
        return false;
    }
    g_target.addr.sun_family = AF_UNIX;
    memcpy(g_target.addr.sun_path, path, len);
    if (path[0] == '@')
        g_target.addr.sun_path[0] = '\0'; // abstract: no trailing NUL counted
    g_target.addr_len =
        static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len + (path[0] == '/' ? 1 : 0));
    g_target.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (g_target.fd < 0) {
        log_warning("notify: socket: %s; not notifying", strerror(errno));
        return false;
    }
    return true;
}

// 0, -EAGAIN when the manager's queue is full, or another -errno.
int send_now(const std::string &state)
{
    if (!open_target())
        return -ENOTCONN;
    ssize_t n;
    do
        n = sendto(g_target.fd, state.data(), state.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                   reinterpret_cast<const sockaddr *>(&g_target.addr), g_target.addr_len);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return 0;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

std::string key_of(const std::string &assignment)
{
    return assignment.substr(0, assignment.find('='));
}

// Keep `assignment` for notify_retry(), replacing an older one of its key.
void keep(const std::string &assignment)
{
    std::string key = key_of(assignment);
    for (auto it = g_pending.begin(); it != g_pending.end(); ++it)
        if (key_of(*it) == key) {
            g_pending.erase(it);
            break;
        }
    g_pending.push_back(assignment);
}

std::string joined(const std::vector<std::string> &lines)
{
    std::string s;
    for (const auto &l : lines)
        s += (s.empty() ? "" : "\n") + l;
    return s;
}

// `essential` assignments are kept until sent; `status` (may be empty) is
// sent with them when it fits, else dropped.
void send(const std::vector<std::string> &essential, const std::string &status)
{
    if (!notify_enabled())
        return;
    for (const auto &e : essential)
        keep(e); // queued behind what still waits, so the order holds
    std::vector<std::string> lines = g_pending;
    if (!status.empty())
        lines.push_back(status);
    if (lines.empty())
        return;
    int rc = send_now(joined(lines));
    if (rc == 0) {
        g_pending.clear();
        return;
    }
    if (rc != -EAGAIN && rc != -ENOTCONN)
        log_debug("notify: %s", strerror(-rc));
    if (rc != -EAGAIN)
        g_pending.clear(); // nobody to tell: keeping them would only grow
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
    send({"READY=1"}, "STATUS=" + one_line(status));
}

void notify_status(const std::string &status)
{
    send({}, "STATUS=" + one_line(status));
}

void notify_stopping()
{
    send({"STOPPING=1"}, "");
}

void notify_reloading()
{
    // RELOADING=1 then READY=1 again (sd_notify(3)); MONOTONIC_USEC is only
    // needed by Type=notify-reload, which these units do not use.
    send({"RELOADING=1"}, "");
}

void notify_watchdog()
{
    send({"WATCHDOG=1"}, "");
}

bool notify_pending()
{
    return !g_pending.empty();
}

void notify_retry()
{
    if (!g_pending.empty())
        send({}, "");
}

uint64_t watchdog_usec()
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0)
        return usec;
    return 0;
}

} // namespace kiln
