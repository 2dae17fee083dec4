// Log lines: the journald "<N>" form, the readable local form, debug
// suppression, one line per message.  Lines written by vlog are captured by
// pointing fd 2 at a temporary file for the duration of a test.
#include "test.hpp"

#include <kiln/log.hpp>

#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <regex.h>
#include <sys/stat.h>
#include <unistd.h>

struct Capture {
    int saved_stderr;
    int fd;
    char path[64];
};

static int capture_setup(void **state)
{
    Capture *c = new Capture;
    snprintf(c->path, sizeof c->path, "/tmp/kiln-test-log-XXXXXX");
    c->fd = mkstemp(c->path);
    if (c->fd < 0)
        return -1;
    c->saved_stderr = dup(2);
    dup2(c->fd, 2);
    *state = c;
    return 0;
}

static int capture_teardown(void **state)
{
    Capture *c = static_cast<Capture *>(*state);
    dup2(c->saved_stderr, 2);
    close(c->saved_stderr);
    close(c->fd);
    unlink(c->path);
    delete c;
    unsetenv("JOURNAL_STREAM");
    return 0;
}

// Everything written to the captured stderr so far.
static std::string captured(void **state)
{
    Capture *c = static_cast<Capture *>(*state);
    std::string out;
    char buf[4096];
    ssize_t n;
    off_t off = 0;
    while ((n = pread(c->fd, buf, sizeof buf, off)) > 0) {
        out.append(buf, static_cast<size_t>(n));
        off += n;
    }
    return out;
}

static bool matches(const std::string &text, const char *pattern)
{
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return false;
    bool ok = regexec(&re, text.c_str(), 0, nullptr, 0) == 0;
    regfree(&re);
    return ok;
}

static void test_journald_format(void **)
{
    assert_string_equal(S(kiln::format_log_line(KILN_LOG_ERR, "boom", true)), "<3>boom");
    assert_string_equal(S(kiln::format_log_line(KILN_LOG_WARNING, "w", true)), "<4>w");
    assert_string_equal(S(kiln::format_log_line(KILN_LOG_DEBUG, "d", true)), "<7>d");
    // One message stays one journal entry.
    assert_string_equal(S(kiln::format_log_line(KILN_LOG_INFO, "a\nb\n", true)), "<6>a b");
}

static void test_local_format(void **)
{
    kiln::log_init("kiln-test", false);
    std::string line = kiln::format_log_line(KILN_LOG_NOTICE, "runner: started", false);
    std::string pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3} "
                          "kiln-test\\[" +
                          std::to_string(getpid()) + "\\] notice: runner: started$";
    assert_true(matches(line, pattern.c_str()));
    const char *names[] = {"err", "warning", "notice", "info", "debug"};
    for (int level = KILN_LOG_ERR; level <= KILN_LOG_DEBUG; level++) {
        std::string suffix = std::string("] ") + names[level - KILN_LOG_ERR] + ": m";
        line = kiln::format_log_line(level, "m", false);
        assert_true(line.size() > suffix.size());
        assert_string_equal(S(line.substr(line.size() - suffix.size())), S(suffix));
    }
}

static void test_truncation(void **)
{
    std::string big(20000, 'x');
    std::string line = kiln::format_log_line(KILN_LOG_INFO, big, true);
    assert_true(line.size() < 8200);
    assert_string_equal(S(line.substr(line.size() - 4)), "x...");
}

static void test_debug_suppressed(void **state)
{
    kiln::log_init("kiln-test", false);
    assert_false(kiln::log_verbose());
    kiln::log_debug("hidden %d", 1);
    kiln::log_info("shown %d", 2);
    kiln::log_err("bad: %s", "why");
    std::string out = captured(state);
    assert_true(out.find("hidden") == std::string::npos);
    assert_true(matches(out, "^[0-9-]+ [0-9:.]+ kiln-test\\[[0-9]+\\] info: shown 2\n"
                             "[0-9-]+ [0-9:.]+ kiln-test\\[[0-9]+\\] err: bad: why\n$"));
}

static void test_debug_verbose(void **state)
{
    kiln::log_init("kiln-test", true);
    assert_true(kiln::log_verbose());
    errno = EBADF;
    kiln::log_debug("seen");
    assert_int_equal(errno, EBADF); // logging leaves errno alone
    assert_true(matches(captured(state), "^[0-9-]+ [0-9:.]+ kiln-test\\[[0-9]+\\] debug: seen\n$"));
}

// JOURNAL_STREAM only counts when it names what fd 2 really is.
static void test_journald_detection(void **state)
{
    struct stat st;
    assert_int_equal(fstat(2, &st), 0);
    std::string stream =
        std::to_string((unsigned long long)st.st_dev) + ":" + std::to_string((unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", stream.c_str(), 1);
    kiln::log_init("kiln-test", false);
    kiln::log_warning("to the journal");
    kiln::log_debug("still hidden");
    setenv("JOURNAL_STREAM", "1:1", 1); // inherited from a parent, stderr elsewhere
    kiln::log_init("kiln-test", false);
    kiln::log_warning("to a file");
    std::string out = captured(state);
    assert_true(matches(out, "^<4>to the journal\n[0-9-]+ [0-9:.]+ kiln-test\\[[0-9]+\\] "
                             "warning: to a file\n$"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_journald_format),
        cmocka_unit_test(test_local_format),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test_setup_teardown(test_debug_suppressed, capture_setup, capture_teardown),
        cmocka_unit_test_setup_teardown(test_debug_verbose, capture_setup, capture_teardown),
        cmocka_unit_test_setup_teardown(test_journald_detection, capture_setup, capture_teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
