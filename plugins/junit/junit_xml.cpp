// See junit_xml.hpp.  What each element means to the tools that read it
// (Jenkins, GitLab, junitparser): a <failure> is an assertion that failed,
// an <error> a test that could not run properly (a timeout is one), a
// <skipped/> a test that did not run.
#include "junit_xml.hpp"

#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "utf8.hpp"

namespace kiln_junit {
namespace {

using kiln_report_copy::Report;
using kiln_report_copy::Test;

// Escaped XML text.  In an attribute, tab/newline/CR are character
// references (a parser would otherwise fold them into spaces); in element
// text tab and newline stay, CR is a reference (a parser would drop it).
void escape(std::string &out, const char *p, size_t n, bool attribute)
{
    std::string clean;
    kiln_utf8::clean(
        clean, p, n,
        [](char c, std::string &o) { // keep what XML allows; the rest is U+FFFD
            o += c == '\t' || c == '\n' || c == '\r' ? c : '\x7f';
        },
        [](const char *seq, size_t len) { // U+FFFE and U+FFFF are not XML characters
            return !(len == 3 && seq[0] == '\xEF' && seq[1] == '\xBF' &&
                     (seq[2] == '\xBE' || seq[2] == '\xBF'));
        });
    for (char c : clean) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += attribute ? "&quot;" : "\""; break;
        case '\t': out += attribute ? "&#9;" : "\t"; break;
        case '\n': out += attribute ? "&#10;" : "\n"; break;
        case '\r': out += "&#13;"; break;
        case '\x7f': out += kiln_utf8::kReplacement; break; // a control character stood here
        default: out += c;
        }
    }
}

void escape(std::string &out, const std::string &s, bool attribute)
{
    escape(out, s.data(), s.size(), attribute);
}

void attr(std::string &out, const char *name, const std::string &value)
{
    out += ' ';
    out += name;
    out += "=\"";
    escape(out, value, true);
    out += '"';
}

// "12.345": seconds with milliseconds, as JUnit's time attributes are.
std::string seconds(uint64_t ms)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%" PRIu64 ".%03u", ms / 1000, unsigned(ms % 1000));
    return buf;
}

// "2023-11-14T22:13:20": UTC, no zone, as the Ant JUnit schema's timestamp.
std::string timestamp(int64_t unix_ms)
{
    time_t t = static_cast<time_t>(unix_ms / 1000);
    struct tm tm;
    char buf[32];
    if (unix_ms <= 0 || !gmtime_r(&t, &tm) || !strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm))
        return "";
    return buf;
}

// At most max bytes of s, cut at a line or byte boundary, marked when cut.
std::string bounded(const std::string &s, size_t max)
{
    if (s.size() <= max)
        return s;
    return s.substr(0, max) + "\n[kiln: " + std::to_string(s.size() - max) + " more bytes left out]";
}

// The log's head and tail when it is too long: the start says what ran, the
// end usually why it failed.
std::string bounded_log(const std::string &log)
{
    if (log.size() <= kMaxLog)
        return log;
    size_t head = kMaxLog / 4, tail = kMaxLog - head;
    return log.substr(0, head) + "\n[kiln: " + std::to_string(log.size() - head - tail) +
           " bytes of the log left out]\n" + log.substr(log.size() - tail);
}

std::string first_line(const std::string &s)
{
    std::string line = s.substr(0, s.find('\n'));
    return line.size() > kMaxAttribute ? line.substr(0, kMaxAttribute) + "..." : line;
}

// The message attribute, the line JUnit readers show as a failure's
// headline: the first line, but for a Python traceback (the unittest
// plugin's messages) the exception line after its last frame
// ("AssertionError: 6 != 7"), not "Traceback (most recent call last):".
std::string headline(const std::string &s)
{
    static const std::string traceback = "Traceback (most recent call last):";
    size_t frame = s.rfind("\n  File ");
    if (s.compare(0, traceback.size(), traceback) != 0 || frame == std::string::npos)
        return first_line(s);
    // The frame's source and caret lines are indented; the exception's is not.
    for (size_t nl = s.find('\n', frame + 1); nl != std::string::npos && nl + 1 < s.size();
         nl = s.find('\n', nl + 1))
        if (s[nl + 1] != ' ' && s[nl + 1] != '\n')
            return first_line(s.substr(nl + 1));
    return first_line(s);
}

// The element a test's outcome becomes (nothing for a pass).
void outcome_element(std::string &x, int outcome, const Test &t)
{
    const char *element = nullptr, *type = nullptr;
    std::string message = t.message;
    switch (outcome) {
    case KILN_PASSED: return;
    case KILN_FAILED: element = "failure", type = "failed"; break;
    case KILN_TIMEOUT:
        element = "error", type = "timeout";
        if (!t.has_message || message.empty())
            message = "timed out";
        break;
    case KILN_SKIPPED: element = "skipped", type = "skipped"; break;
    case KILN_CANCELLED:
        element = "skipped", type = "cancelled";
        if (!t.has_message || message.empty())
            message = "cancelled";
        break;
    default: element = "error", type = kiln_outcome_name(outcome); break;
    }
    x += "      <";
    x += element;
    attr(x, "type", type);
    if (!message.empty())
        attr(x, "message", headline(message));
    if (message.empty()) {
        x += "/>\n";
        return;
    }
    x += '>';
    escape(x, bounded(message, kMaxMessage), false);
    x += "</";
    x += element;
    x += ">\n";
}

void testcase(std::string &x, const Test &t, const std::string &suite)
{
    SplitName n = split_test_name(t.name, suite);
    x += "    <testcase";
    attr(x, "classname", n.classname);
    attr(x, "name", n.name);
    attr(x, "time", seconds(t.duration_ms));
    if (t.outcome == KILN_PASSED) {
        x += "/>\n";
        return;
    }
    x += ">\n";
    outcome_element(x, t.outcome, t);
    x += "    </testcase>\n";
}

void property(std::string &x, const char *name, const std::string &value)
{
    x += "      <property";
    attr(x, "name", name);
    attr(x, "value", value);
    x += "/>\n";
}

} // namespace

SplitName split_test_name(const std::string &test, const std::string &fallback)
{
    // unittest's own str(): "test_y (test_mod.TestX)"
    size_t open = test.find(" (");
    if (open != std::string::npos && open > 0 && test.size() > open + 3 && test.back() == ')' &&
        test.find_first_of(" ()", open + 2) == test.size() - 1)
        return {test.substr(open + 2, test.size() - open - 3), test.substr(0, open)};
    size_t last = test.rfind('.');
    bool dotted = last != std::string::npos && last > 0 && last + 1 < test.size() &&
                  test.rfind('.', last - 1) != std::string::npos &&
                  test.find_first_of(" \t/\\") == std::string::npos;
    if (!dotted)
        return {fallback, test};
    return {test.substr(0, last), test.substr(last + 1)};
}

std::string junit_xml(const Report &rep)
{
    const std::string suite = rep.repo.empty() ? "kiln" : rep.repo;
    std::vector<Test> tests = rep.tests;
    // A commit that could not run has no tests: one testcase says so, or a
    // tool would show it as green.
    if (tests.empty() && (rep.outcome == KILN_ERROR || rep.outcome == KILN_TIMEOUT))
        tests.push_back({"kiln.job.run", rep.outcome,
                         rep.finished_unix_ms > rep.started_unix_ms
                             ? uint64_t(rep.finished_unix_ms - rep.started_unix_ms) : 0,
                         true, rep.has_error ? rep.error : kiln_outcome_name(rep.outcome)});

    size_t failures = 0, errors = 0, skipped = 0;
    uint64_t total_ms = 0;
    for (const Test &t : tests) {
        failures += t.outcome == KILN_FAILED;
        skipped += t.outcome == KILN_SKIPPED || t.outcome == KILN_CANCELLED;
        errors += t.outcome != KILN_PASSED && t.outcome != KILN_FAILED &&
                  t.outcome != KILN_SKIPPED && t.outcome != KILN_CANCELLED;
        total_ms += t.duration_ms;
    }
    uint64_t wall_ms = rep.finished_unix_ms > rep.started_unix_ms
                           ? uint64_t(rep.finished_unix_ms - rep.started_unix_ms) : total_ms;

    std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites";
    attr(x, "name", "kiln");
    attr(x, "tests", std::to_string(tests.size()));
    attr(x, "failures", std::to_string(failures));
    attr(x, "errors", std::to_string(errors));
    attr(x, "time", seconds(wall_ms));
    x += ">\n  <testsuite";
    attr(x, "name", suite);
    attr(x, "tests", std::to_string(tests.size()));
    attr(x, "failures", std::to_string(failures));
    attr(x, "errors", std::to_string(errors));
    attr(x, "skipped", std::to_string(skipped));
    attr(x, "time", seconds(wall_ms));
    std::string ts = timestamp(rep.started_unix_ms);
    if (!ts.empty())
        attr(x, "timestamp", ts);
    if (!rep.runner.empty())
        attr(x, "hostname", rep.runner);
    x += ">\n    <properties>\n";
    property(x, "kiln.commit", rep.commit);
    property(x, "kiln.branch", rep.branch);
    property(x, "kiln.outcome", kiln_outcome_name(rep.outcome));
    property(x, "kiln.job_id", std::to_string(rep.job_id));
    property(x, "kiln.attempt", std::to_string(rep.attempt));
    if (rep.has_url)
        property(x, "kiln.url", rep.url);
    if (rep.has_error)
        property(x, "kiln.error", first_line(rep.error));
    x += "    </properties>\n";
    for (const Test &t : tests)
        testcase(x, t, suite);
    x += "    <system-out>";
    escape(x, bounded_log(rep.log), false);
    x += "</system-out>\n  </testsuite>\n</testsuites>\n";
    return x;
}

} // namespace kiln_junit
