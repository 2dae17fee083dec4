// HTML building blocks: escaping (whole, capped, tail), times, the frame.
#include "html.hpp"

#include <cinttypes>
#include <cstdio>
#include <ctime>

namespace kiln::html {
namespace {

constexpr std::string_view kEllipsis = "\xE2\x80\xA6";    // …
constexpr std::string_view kReplacement = "\xEF\xBF\xBD"; // U+FFFD

// What one byte of text becomes on the page.
std::string_view escaped(const char &c)
{
    switch (c) {
    case '&': return "&amp;";
    case '<': return "&lt;";
    case '>': return "&gt;";
    case '"': return "&quot;";
    case '\'': return "&#39;";
    case '\t':
    case '\n':
    case '\r': return {&c, 1};
    default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            return kReplacement;
        return {&c, 1};
    }
}

bool continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// The page's whole style: states by colour, tables that read at a glance.
constexpr std::string_view kStyle = R"(<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:0 1rem;color:#222}
nav{padding:.6rem 0;border-bottom:1px solid #ddd}nav a{margin-right:1rem}
h1{font-size:1.3rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.2rem .5rem;border-bottom:1px solid #eee;vertical-align:top}
code,pre{font:12px/1.35 ui-monospace,monospace}
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.state{font-weight:600;padding:0 .3rem;border-radius:3px}
.passed{color:#116329;background:#dafbe1}.failed,.error,.timeout{color:#a40e26;background:#ffebe9}
.running{color:#7d4e00;background:#fff8c5}.queued,.skipped,.cancelled{color:#555;background:#eee}
.more,.note{color:#666;font-style:italic}
</style>
)";

} // namespace

void escape(std::string &out, std::string_view text)
{
    for (const char &c : text)
        out += escaped(c);
}

std::string escape(std::string_view text)
{
    std::string out;
    out.reserve(text.size() + text.size() / 8);
    escape(out, text);
    return out;
}

bool escape_capped(std::string &out, std::string_view text, size_t max_bytes)
{
    size_t need = 0;
    for (const char &c : text)
        need += escaped(c).size();
    if (need <= max_bytes) {
        escape(out, text);
        return false;
    }
    if (max_bytes < kEllipsis.size())
        return true;
    const size_t budget = max_bytes - kEllipsis.size();
    const size_t start = out.size();
    size_t char_start = start; // where the character being written began
    for (const char &c : text) {
        std::string_view piece = escaped(c);
        if (!continuation(c))
            char_start = out.size();
        if (out.size() - start + piece.size() > budget) {
            if (continuation(c))
                out.resize(char_start); // never half a character
            break;
        }
        out += piece;
    }
    out += kEllipsis;
    return true;
}

size_t escape_tail(std::string &out, std::string_view text, size_t max_bytes)
{
    size_t used = 0, from = text.size();
    while (from > 0 && used + escaped(text[from - 1]).size() <= max_bytes)
        used += escaped(text[--from]).size();
    if (from > 0) {
        while (from < text.size() && continuation(text[from]))
            ++from;
        // Start on a whole line when one begins in the first quarter of what is kept.
        size_t newline = text.find('\n', from);
        if (newline != text.npos && newline - from < (text.size() - from) / 4)
            from = newline + 1;
    }
    escape(out, text.substr(from));
    return from;
}

std::string duration(int64_t ms)
{
    if (ms < 0)
        ms = 0;
    char buf[48];
    if (ms < 1000)
        std::snprintf(buf, sizeof buf, "%" PRId64 " ms", ms);
    else if (ms < 60'000)
        std::snprintf(buf, sizeof buf, "%" PRId64 " s", ms / 1000);
    else if (ms < 3'600'000)
        std::snprintf(buf, sizeof buf, "%" PRId64 " min %02" PRId64 " s", ms / 60'000,
                      ms / 1000 % 60);
    else
        std::snprintf(buf, sizeof buf, "%" PRId64 " h %02" PRId64 " min", ms / 3'600'000,
                      ms / 60'000 % 60);
    return buf;
}

std::string utc_time(int64_t unix_ms)
{
    if (unix_ms <= 0)
        return "";
    std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return buf;
}

std::string_view short_commit(std::string_view commit) { return commit.substr(0, 10); }

std::string_view state_class(bool done, std::string_view outcome, bool queued)
{
    if (done)
        return outcome.empty() ? "error" : outcome;
    return queued ? "queued" : "running";
}

void page_start(std::string &out, std::string_view title, std::string_view page)
{
    out += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
           "<title>";
    escape(out, title);
    out += " \xE2\x80\x94 Kiln</title>\n";
    out += kStyle;
    out += "</head>\n<body data-page=\"";
    escape(out, page);
    out += "\">\n<nav><a href=\"/\"><b>Kiln</b></a><a href=\"/\">status</a>"
           "<span class=\"note\" id=\"live\"></span></nav>\n<main>\n";
}

void page_end(std::string &out, int64_t now_unix_ms)
{
    out += "</main>\n";
    if (now_unix_ms > 0)
        out += "<p class=\"note\" id=\"rendered\" data-live>Rendered " + utc_time(now_unix_ms) +
               ".</p>\n";
    out += "<script src=\"/static/kiln.js\" defer></script>\n</body></html>\n";
}

void more_rows(std::string &out, size_t shown, size_t more, size_t columns)
{
    if (shown == 0 && more == 0) {
        out += "<tr><td class=\"note\" colspan=\"" + std::to_string(columns) +
               "\">none</td></tr>\n";
        return;
    }
    if (more == 0)
        return;
    out += "<tr><td class=\"more\" colspan=\"" + std::to_string(columns) + "\">and " +
           std::to_string(more) + " more</td></tr>\n";
}

} // namespace kiln::html
