// Logging to stderr, one write(2) per line: the daemons, their plugins and
// the processes they spawn share the same stderr (a terminal, a file or the
// journal), and a single write keeps their lines from interleaving.
#include <kiln/log.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

namespace kiln {

namespace {

// Set once by log_init() before any other thread exists; read-only afterwards.
std::string g_program = program_invocation_short_name;
bool g_verbose = false;
bool g_journald = false;

// Longer messages are cut here: a line must fit one write, and a runaway
// message (a whole stderr dump) should not flood the log.
constexpr size_t max_message = 8192;

const char *level_name(int level)
{
    static const char *const names[] = {"emerg",  "alert", "crit", "err",
                                        "warning", "notice", "info", "debug"};
    return names[level];
}

int clamp_level(int level)
{
    return level < 0 ? 0 : level > KILN_LOG_DEBUG ? KILN_LOG_DEBUG : level;
}

// systemd sets JOURNAL_STREAM to "DEV:INODE" of the stream it connected to
// stderr.  It is inherited by children whose stderr may point elsewhere (a
// test harness's file, a runner's job log), so compare it with what fd 2
// really is, as sd_journal_stream_fd(3) / systemd.exec(5) recommend.
bool stderr_is_journal()
{
    const char *env = std::getenv("JOURNAL_STREAM");
    if (!env || !*env)
        return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2)
        return false;
    struct stat st;
    if (fstat(STDERR_FILENO, &st) != 0)
        return false;
    return static_cast<unsigned long long>(st.st_dev) == dev &&
           static_cast<unsigned long long>(st.st_ino) == ino;
}

// Whether a line at this level is written at all.
bool log_enabled(int level) { return level < KILN_LOG_DEBUG || g_verbose; }

void write_all(const std::string &line)
{
    const char *p = line.data();
    size_t left = line.size();
    while (left > 0) {
        ssize_t n = ::write(STDERR_FILENO, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; // nowhere left to report a failing stderr
        }
        p += n;
        left -= static_cast<size_t>(n);
    }
}

} // namespace

void log_init(const std::string &program, bool verbose)
{
    g_program = program;
    g_verbose = verbose;
    g_journald = stderr_is_journal();
}

bool log_verbose() { return g_verbose; }

std::string format_log_line(int level, const std::string &message, bool journald)
{
    level = clamp_level(level);
    // One message, one line: a trailing newline is dropped and inner ones
    // become spaces, so the journal does not split a message into entries
    // with no priority.
    std::string text = message;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
    for (char &c : text)
        if (c == '\n' || c == '\r')
            c = ' ';
    if (text.size() > max_message) {
        text.resize(max_message);
        text += "...";
    }

    if (journald)
        return "<" + std::to_string(level) + ">" + text;

    struct timeval tv;
    gettimeofday(&tv, nullptr);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char stamp[64];
    size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    std::snprintf(stamp + n, sizeof stamp - n, ".%03ld", static_cast<long>(tv.tv_usec / 1000));
    return std::string(stamp) + " " + g_program + "[" + std::to_string(getpid()) + "] " +
           level_name(level) + ": " + text;
}

void vlog(int level, const char *fmt, va_list ap)
{
    level = clamp_level(level);
    if (!log_enabled(level))
        return;
    int saved = errno; // callers log and then still look at errno (%m, returns)
    char buf[max_message + 1];
    int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
    std::string message;
    if (n < 0)
        message = fmt; // an encoding error; the format is better than nothing
    else if (static_cast<size_t>(n) >= sizeof buf)
        message = std::string(buf, max_message) + "...";
    else
        message.assign(buf, static_cast<size_t>(n));
    write_all(format_log_line(level, message, g_journald) + "\n");
    errno = saved;
}

void log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

} // namespace kiln
