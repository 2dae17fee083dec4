// When a mail is due, and the message: headers (mail_headers.cpp encodes
// each value) and a body that names the failing tests.  See mail_message.hpp.
#include "mail_message.hpp"

#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "utf8.hpp"

namespace kiln_mail {
namespace {

using kiln_report_copy::Report;
using kiln_report_copy::Test;

constexpr size_t kMaxListed = 25;      // failing tests named in the body
constexpr size_t kMaxMessage = 2000;   // bytes of each one's message
constexpr size_t kMaxField = 200;      // bytes of a name in the subject or a body field

bool bad(int o) { return o == KILN_FAILED || o == KILN_ERROR || o == KILN_TIMEOUT; }

// One line of text from data: valid UTF-8, control characters as spaces.
std::string line(const std::string &s, size_t max = kMaxField)
{
    std::string out;
    kiln_utf8::clean(out, s.data(), s.size(), [](char, std::string &o) { o += ' '; });
    size_t n = kiln_utf8::cut(out, max);
    return n < out.size() ? out.substr(0, n) + "..." : out;
}

// A test's message, indented: newlines and tabs stay, CR goes, other
// control characters become U+FFFD; bounded.
std::string indented(const std::string &s, const std::string &indent)
{
    std::string clean;
    kiln_utf8::clean(clean, s.data(), s.size(), [](char c, std::string &o) {
        if (c == '\n' || c == '\t')
            o += c;
        else if (c != '\r')
            o += kiln_utf8::kReplacement;
    });
    size_t n = kiln_utf8::cut(clean, kMaxMessage);
    bool cut = n < clean.size();
    clean.resize(n);
    while (!clean.empty() && (clean.back() == '\n' || clean.back() == ' '))
        clean.pop_back();
    std::string out = indent;
    for (char c : clean) {
        out += c;
        if (c == '\n')
            out += indent;
    }
    return out + (cut ? "\n" + indent + "[... cut]" : "") + "\n";
}

std::string seconds(uint64_t ms)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%" PRIu64 ".%01u s", ms / 1000, unsigned(ms % 1000 / 100));
    return buf;
}

// "2 failed, 1 error" for a bad result, "212 passed" for a good one.
std::string summary(const Report &r)
{
    std::string s;
    auto add = [&](uint32_t n, const char *one, const char *many) {
        if (n)
            s += (s.empty() ? "" : ", ") + std::to_string(n) + " " + (n == 1 ? one : many);
    };
    add(r.counts[KILN_FAILED], "failed", "failed");
    add(r.counts[KILN_ERROR], "error", "errors");
    add(r.counts[KILN_TIMEOUT], "timed out", "timed out");
    if (s.empty())
        add(r.counts[KILN_PASSED], "passed", "passed");
    return s.empty() ? kiln_outcome_name(r.outcome) : s;
}

// Every count, for the body: "10 passed, 2 failed, 1 error".
std::string all_counts(const Report &r)
{
    static const char *const names[6][2] = {{"passed", "passed"},       {"failed", "failed"},
                                            {"error", "errors"},        {"skipped", "skipped"},
                                            {"timed out", "timed out"}, {"cancelled", "cancelled"}};
    std::string s;
    for (int i = 0; i < 6; i++)
        if (r.counts[i])
            s += (s.empty() ? "" : ", ") + std::to_string(r.counts[i]) + " " +
                 names[i][r.counts[i] == 1 ? 0 : 1];
    return s.empty() ? "none" : s;
}

// RFC 5322 date in UTC: "Tue, 14 Nov 2023 22:13:20 +0000" (no locale).
std::string rfc5322_date(int64_t unix_ms)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = static_cast<time_t>(unix_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return "Thu, 01 Jan 1970 00:00:00 +0000";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
                  tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                  tm.tm_sec);
    return buf;
}

// A host name that is safe in a Message-ID: letters, digits, '.', '-'.
std::string id_domain(const std::string &host)
{
    std::string out;
    for (char c : host)
        out += (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '-' ? c : '-';
    return out.empty() ? "localhost" : out.substr(0, 200);
}

void header(std::string &m, const std::string &name, const std::string &value)
{
    m += name + ": " + value + "\n";
}

std::string body(const Report &r, const Envelope &env, const std::string &title)
{
    std::string b = title + "\n\n";
    b += "Repository: " + line(r.repo) + "\n";
    b += "Branch:     " + line(r.branch) + "\n";
    b += "Commit:     " + r.commit + "\n";
    b += "Outcome:    " + std::string(kiln_outcome_name(r.outcome));
    if (r.previous_outcome != KILN_OUTCOME_NONE)
        b += std::string(" (before: ") + kiln_outcome_name(r.previous_outcome) + ")";
    b += "\nTests:      " + all_counts(r) + "\n";
    if (r.finished_unix_ms > r.started_unix_ms)
        b += "Duration:   " + seconds(uint64_t(r.finished_unix_ms - r.started_unix_ms)) + "\n";
    if (!r.runner.empty())
        b += "Runner:     " + line(r.runner) + "\n";
    if (r.has_url)
        b += "Details:    " + line(r.url, 1000) + "\n";
    if (r.has_error)
        b += "\nWhy:\n" + indented(r.error, "    ");

    size_t failing = 0;
    for (const Test &t : r.tests)
        failing += bad(t.outcome);
    if (failing)
        b += "\nFailing tests (" + std::to_string(failing) + "):\n";
    size_t listed = 0;
    for (const Test &t : r.tests) {
        if (!bad(t.outcome) || listed == kMaxListed)
            continue;
        listed++;
        b += "\n  " + line(t.name, 500) + ": " + kiln_outcome_name(t.outcome) + " in " +
             seconds(t.duration_ms) + "\n";
        if (t.has_message && !t.message.empty())
            b += indented(t.message, "      ");
    }
    if (failing > listed)
        b += "\n  ... and " + std::to_string(failing - listed) + " more failing tests.\n";
    b += "\n-- \nkiln on " + line(env.hostname) + ", mode \"" + env.mode + "\"\n";
    return b;
}

} // namespace

bool parse_mode(const std::string &text, Mode &mode)
{
    if (text == "change")
        mode = Mode::change;
    else if (text == "failing")
        mode = Mode::failing;
    else if (text == "all")
        mode = Mode::all;
    else
        return false;
    return true;
}

std::string verdict(Mode mode, int previous, int outcome)
{
    bool was_bad = bad(previous), was_good = previous == KILN_PASSED,
         first = previous == KILN_OUTCOME_NONE;
    std::string v;
    if (bad(outcome))
        v = was_good || first ? "broken by" : was_bad ? "still failing at" : "failed at";
    else if (outcome == KILN_PASSED)
        v = was_bad ? "fixed by" : "passed at";
    else
        v = std::string(kiln_outcome_name(outcome)) + " at";
    switch (mode) {
    case Mode::change: return v == "broken by" || v == "fixed by" ? v : "";
    case Mode::failing: return bad(outcome) ? v : "";
    case Mode::all: return v;
    }
    return "";
}

std::string build_message(const Report &r, const Envelope &env, const std::string &verdict,
                          int64_t now_unix_ms)
{
    std::string title = line(r.repo) + " " + line(r.branch) + " " + verdict + " " +
                        r.commit.substr(0, 8) + ": " + summary(r);
    std::string to;
    for (const std::string &a : env.to)
        to += (to.empty() ? "" : ",\n ") + a;

    std::string m;
    header(m, "From", env.from);
    header(m, "To", to);
    header(m, "Subject", header_value("Subject", "[kiln] " + title));
    header(m, "Date", rfc5322_date(now_unix_ms));
    header(m, "Message-ID", "<kiln." + r.commit.substr(0, 16) + "." + std::to_string(r.job_id) +
                                "." + std::to_string(r.attempt) + "@" + id_domain(env.hostname) +
                                ">");
    header(m, "MIME-Version", "1.0");
    header(m, "Content-Type", "text/plain; charset=utf-8");
    header(m, "Content-Transfer-Encoding", "quoted-printable");
    header(m, "Auto-Submitted", "auto-generated"); // RFC 3834: no vacation replies
    header(m, "X-Kiln-Repository", header_value("X-Kiln-Repository", r.repo));
    header(m, "X-Kiln-Branch", header_value("X-Kiln-Branch", r.branch));
    header(m, "X-Kiln-Commit", r.commit);
    header(m, "X-Kiln-Outcome", kiln_outcome_name(r.outcome));
    return m + "\n" + quoted_printable(body(r, env, title));
}

} // namespace kiln_mail
