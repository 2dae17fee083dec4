// Readers of ctest's reports.  See ctest_parse.hpp.
//
// The XML reader is purpose-built, not general: ctest's JUnit writer
// (cmCTestTestHandler::WriteJUnitXML through cmXMLWriter) always escapes
// & < > " in text and attributes and writes no CDATA, comments or
// namespaces, so finding tags by name and unescaping entities is exact for
// what it writes.  Anything else is refused rather than guessed at.
#include "ctest_parse.hpp"

#include <cmath>
#include <cstdlib>
#include <set>

#include <nlohmann/json.hpp>

namespace kiln_ctest {

namespace {

void put_utf8(std::string &out, unsigned long cp)
{
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        cp = 0xFFFD;
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

// XML text → bytes: the five named entities and numeric references; an
// unknown entity is kept as written.
std::string unescape(const std::string &s, size_t begin, size_t end)
{
    static const struct {
        const char *name;
        char c;
    } kNamed[] = {{"lt;", '<'}, {"gt;", '>'}, {"amp;", '&'}, {"quot;", '"'}, {"apos;", '\''}};
    std::string out;
    out.reserve(end - begin);
    for (size_t i = begin; i < end; i++) {
        if (s[i] != '&') {
            out += s[i];
            continue;
        }
        size_t semi = s.find(';', i);
        if (semi == std::string::npos || semi >= end || semi - i > 10) {
            out += s[i];
            continue;
        }
        bool done = false;
        if (s[i + 1] == '#') {
            bool hex = s[i + 2] == 'x' || s[i + 2] == 'X';
            const char *digits = s.c_str() + i + (hex ? 3 : 2);
            char *stop = nullptr;
            unsigned long cp = std::strtoul(digits, &stop, hex ? 16 : 10);
            if (stop == s.c_str() + semi && stop != digits) {
                put_utf8(out, cp);
                done = true;
            }
        } else {
            for (const auto &e : kNamed)
                if (s.compare(i + 1, semi - i, e.name) == 0) {
                    out += e.c;
                    done = true;
                }
        }
        if (done)
            i = semi;
        else
            out += s[i];
    }
    return out;
}

// The attributes of the start tag whose name ends at `pos`; sets `pos` just
// past the tag and `empty` for "<x/>".  False when the tag never closes.
bool read_tag(const std::string &xml, size_t &pos, std::map<std::string, std::string> &attrs,
              bool &empty)
{
    empty = false;
    while (pos < xml.size()) {
        char c = xml[pos];
        if (c == '>') {
            pos++;
            return true;
        }
        if (c == '/' && pos + 1 < xml.size() && xml[pos + 1] == '>') {
            empty = true;
            pos += 2;
            return true;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            pos++;
            continue;
        }
        size_t eq = xml.find('=', pos);
        if (eq == std::string::npos || eq + 1 >= xml.size() ||
            (xml[eq + 1] != '"' && xml[eq + 1] != '\''))
            return false;
        size_t close = xml.find(xml[eq + 1], eq + 2);
        if (close == std::string::npos)
            return false;
        attrs[xml.substr(pos, eq - pos)] = unescape(xml, eq + 2, close);
        pos = close + 1;
    }
    return false;
}

// Position just past "<name" when it starts an element named exactly
// `name` within [from, to), else npos.
size_t find_element(const std::string &xml, const std::string &name, size_t from, size_t to)
{
    std::string open = "<" + name;
    for (size_t at = xml.find(open, from); at != std::string::npos && at < to;
         at = xml.find(open, at + 1)) {
        size_t after = at + open.size();
        if (after < xml.size() && std::string(" \t\r\n/>").find(xml[after]) != std::string::npos)
            return after;
    }
    return std::string::npos;
}

constexpr size_t kMaxMessage = 16u << 10; // of one test's failure text

kiln_exec::TestRecord to_record(const JunitCase &tc, const std::map<std::string, std::string> &why)
{
    kiln_exec::TestRecord t{tc.name, KILN_PASSED, tc.duration_ms, {}};
    auto reason = why.find(tc.name);
    std::string output = tail(tc.output, kMaxMessage);
    if (tc.status == "run") {
        t.outcome = KILN_PASSED;
    } else if (tc.status == "fail") {
        bool timeout = reason != why.end() && reason->second == "Timeout";
        t.outcome = timeout ? KILN_TIMEOUT : KILN_FAILED;
        t.message = reason != why.end() ? reason->second : "Failed";
    } else if (tc.status == "disabled") {
        t.outcome = KILN_SKIPPED;
        t.message = "disabled";
        output.clear(); // ctest's output is just "Disabled"
    } else if (tc.status == "notrun" && reason == why.end()) {
        // Skipped on purpose (SKIP_RETURN_CODE, SKIP_REGULAR_EXPRESSION).
        t.outcome = KILN_SKIPPED;
        t.message = tc.skipped_message.empty() ? "skipped" : tc.skipped_message;
        output.clear();
    } else {
        // "Not Run" among the failures: a missing executable, a failed
        // fixture — the test could not run.
        t.outcome = KILN_ERROR;
        t.message = reason != why.end() ? reason->second : "ctest status '" + tc.status + "'";
    }
    if (!output.empty())
        t.message += "\n" + output;
    return t;
}

uint64_t seconds_to_ms(const std::string &text)
{
    double s = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(s) || s <= 0)
        return 0;
    return static_cast<uint64_t>(std::llround(s * 1000.0));
}

// Fill one case from the body [from, to) of its <testcase> element.
bool read_body(const std::string &xml, size_t from, size_t to, JunitCase &tc)
{
    std::map<std::string, std::string> attrs;
    bool empty = false;
    size_t at = find_element(xml, "failure", from, to);
    if (at != std::string::npos) {
        tc.failure = true;
        if (!read_tag(xml, at, attrs, empty))
            return false;
    }
    at = find_element(xml, "skipped", from, to);
    if (at != std::string::npos) {
        tc.skipped = true;
        attrs.clear();
        if (!read_tag(xml, at, attrs, empty))
            return false;
        tc.skipped_message = attrs["message"];
    }
    at = find_element(xml, "system-out", from, to);
    if (at != std::string::npos) {
        attrs.clear();
        if (!read_tag(xml, at, attrs, empty))
            return false;
        if (!empty) {
            size_t end = xml.find("</system-out>", at);
            if (end == std::string::npos || end > to)
                return false;
            tc.output = unescape(xml, at, end);
        }
    }
    return true;
}

} // namespace

bool parse_junit(const std::string &xml, std::vector<JunitCase> &out, std::string &error)
{
    if (find_element(xml, "testsuite", 0, xml.size()) == std::string::npos) {
        error = "no <testsuite> element";
        return false;
    }
    size_t pos = 0;
    while ((pos = find_element(xml, "testcase", pos, xml.size())) != std::string::npos) {
        std::map<std::string, std::string> attrs;
        bool empty = false;
        JunitCase tc;
        size_t body = pos;
        if (!read_tag(xml, body, attrs, empty) || attrs.count("name") == 0) {
            error = "malformed <testcase> at byte " + std::to_string(pos);
            return false;
        }
        tc.name = attrs["name"];
        tc.status = attrs["status"];
        tc.duration_ms = seconds_to_ms(attrs["time"]);
        pos = body;
        if (!empty) {
            size_t end = xml.find("</testcase>", body);
            if (end == std::string::npos || !read_body(xml, body, end, tc)) {
                error = "malformed <testcase name=\"" + tc.name + "\">";
                return false;
            }
            pos = end;
        }
        out.push_back(std::move(tc));
    }
    return true;
}

std::map<std::string, std::string> failed_reasons(const std::string &text)
{
    std::map<std::string, std::string> reasons;
    const std::string header = "The following tests FAILED:";
    size_t pos = text.find(header);
    if (pos == std::string::npos)
        return reasons;
    pos = text.find('\n', pos);
    // Each line: TAB, padding, number, " - ", name, " (", reason, ")".
    while (pos != std::string::npos && pos + 1 < text.size() && text[pos + 1] == '\t') {
        size_t begin = pos + 1;
        pos = text.find('\n', begin);
        std::string line = text.substr(begin, pos == std::string::npos ? pos : pos - begin);
        size_t dash = line.find(" - ");
        size_t paren = line.rfind(" (");
        if (dash == std::string::npos || paren == std::string::npos || paren < dash + 3 ||
            line.back() != ')')
            continue;
        reasons[line.substr(dash + 3, paren - dash - 3)] =
            line.substr(paren + 2, line.size() - paren - 3);
    }
    return reasons;
}

bool parse_show_only(const std::string &text, std::vector<std::string> &names, std::string &error)
{
    // ctest may print a line before the document; the document is the rest.
    size_t start = text.find('{');
    if (start == std::string::npos) {
        error = "ctest --show-only=json-v1 printed no JSON";
        return false;
    }
    nlohmann::json doc = nlohmann::json::parse(text.begin() + start, text.end(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
        error = "ctest --show-only=json-v1 printed invalid JSON";
        return false;
    }
    auto tests = doc.find("tests");
    if (tests == doc.end() || !tests->is_array()) {
        error = "ctest --show-only=json-v1: no \"tests\" array";
        return false;
    }
    for (const auto &t : *tests) {
        auto name = t.is_object() ? t.find("name") : t.end();
        if (!t.is_object() || name == t.end() || !name->is_string()) {
            error = "ctest --show-only=json-v1: a test without a \"name\" string";
            return false;
        }
        names.push_back(name->get<std::string>());
    }
    return true;
}

std::vector<kiln_exec::TestRecord> test_records(const std::vector<JunitCase> &cases,
                                                const std::string &ctest_stdout,
                                                const std::vector<std::string> &only)
{
    auto reasons = failed_reasons(ctest_stdout);
    std::vector<kiln_exec::TestRecord> records;
    std::set<std::string> wanted(only.begin(), only.end()), seen;
    for (const JunitCase &tc : cases) {
        // ctest adds the setup and cleanup tests of the fixtures a shard's
        // tests require: they run, but only the shard that lists them
        // reports them, so that the merged result has each once.
        if (!only.empty() && !wanted.count(tc.name))
            continue;
        records.push_back(to_record(tc, reasons));
        seen.insert(tc.name);
    }
    for (const std::string &n : only)
        if (seen.insert(n).second)
            records.push_back({n, KILN_ERROR, 0, "no test '" + n + "' in the ctest project"});
    return records;
}

std::string test_numbers(const std::vector<std::string> &listed,
                         const std::vector<std::string> &only)
{
    // Every test of a name: two directories may each add_test() the same
    // name, and a whole run runs both.
    std::set<std::string> names(only.begin(), only.end());
    std::set<size_t> wanted; // ascending, once each
    for (size_t i = 0; i < listed.size(); i++)
        if (names.count(listed[i]))
            wanted.insert(i + 1);
    if (wanted.empty())
        return {};
    std::string spec = "0,0,0";
    for (size_t n : wanted)
        spec += "," + std::to_string(n);
    return spec;
}

std::string tail(const std::string &text, size_t max)
{
    size_t end = text.find_last_not_of(" \t\r\n");
    if (end == std::string::npos)
        return {};
    std::string t = text.substr(0, end + 1);
    if (t.size() <= max)
        return t;
    size_t from = t.size() - max;
    size_t nl = t.find('\n', from);
    return "..." + t.substr(nl != std::string::npos && nl + 1 < t.size() ? nl + 1 : from);
}

} // namespace kiln_ctest
