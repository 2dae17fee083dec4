#pragma once
// Logging to stderr: "<N>message" when running under journald (JOURNAL_STREAM
// set, so the journal gets the priority), otherwise a readable local timestamp
// and level.  Debug lines are dropped unless verbose.
#include <cstdarg>
#include <exception>
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

// Run `fn` where no exception may escape — a libuv or plugin callback, which
// returns into C frames — logging whatever it throws as "WHAT: why".  At run
// time nothing aborts a daemon: the event is dropped, and the daemons'
// protocols (resends, requeues) make a dropped event a delay, not a loss.
template <typename Fn> void guarded(const char *what, Fn &&fn) noexcept
{
    try {
        fn();
    } catch (const std::exception &e) {
        log_err("%s: %s", what, e.what());
    } catch (...) {
        log_err("%s: unknown exception", what);
    }
}

// Formats a line the way vlog would write it (without the trailing newline);
// exposed for tests.  `journald` selects the "<N>" form.
std::string format_log_line(int level, const std::string &message, bool journald);

} // namespace kiln
