#pragma once
// Logging to stderr: "<N>message" when running under journald (JOURNAL_STREAM
// set, so the journal gets the priority), otherwise a readable local timestamp
// and level.  Debug lines are dropped unless verbose.
#include <cstdarg>
#include <exception>
#include <optional>
#include <utility>
#include <string>

#include <kiln/plugin.h>

namespace kiln {

// Call once from main(): program name for the prefix, verbosity.
void log_init(const std::string &program, bool verbose);
bool log_verbose();

// Levels are syslog priorities (KILN_LOG_ERR .. KILN_LOG_DEBUG).
void vlog(int level, const char *fmt, va_list ap);
void log(int level, const char *fmt, ...) KILN_PRINTF(2, 3);

#define KILN_LOG_FN(fn, lvl)                                                                      \
    inline void fn(const char *fmt, ...) KILN_PRINTF(1, 2);                                        \
    inline void fn(const char *fmt, ...)                                                           \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        vlog(lvl, fmt, ap);                                                                        \
        va_end(ap);                                                                                \
    }
KILN_LOG_FN(log_err, KILN_LOG_ERR)
KILN_LOG_FN(log_warning, KILN_LOG_WARNING)
KILN_LOG_FN(log_notice, KILN_LOG_NOTICE)
KILN_LOG_FN(log_info, KILN_LOG_INFO)
KILN_LOG_FN(log_debug, KILN_LOG_DEBUG)
#undef KILN_LOG_FN

// The one exception boundary.  Everything libuv (or a plugin) calls back
// returns into C frames, where an exception would end the daemon: such a
// callback is `noexcept` and runs its C++ work through caught() or guarded().
//
// caught(fn): run `fn`; what it threw as text ("unknown exception" for a
// non-std one), or nothing when it returned normally.  For a caller that
// must answer the failure itself (close a connection, fail a job).
template <typename Fn> std::optional<std::string> caught(Fn &&fn) noexcept
{
    try {
        fn();
        return std::nullopt;
    } catch (const std::exception &e) {
        try {
            return std::string(e.what());
        } catch (...) { // no memory for the message: still a failure
            return std::string();
        }
    } catch (...) {
        return std::string("unknown exception");
    }
}

// guarded(what, fn): caught(), logging what was thrown as "WHAT: why";
// true when `fn` returned normally.  At run time nothing aborts a daemon:
// the event is dropped, and the daemons' protocols (resends, requeues) make
// a dropped event a delay, not a loss.
template <typename Fn> bool guarded(const char *what, Fn &&fn) noexcept
{
    std::optional<std::string> error = caught(std::forward<Fn>(fn));
    if (error)
        log_err("%s: %s", what, error->c_str());
    return !error;
}

// Formats a line the way vlog would write it (without the trailing newline);
// exposed for tests.  `journald` selects the "<N>" form.
std::string format_log_line(int level, const std::string &message, bool journald);

} // namespace kiln
