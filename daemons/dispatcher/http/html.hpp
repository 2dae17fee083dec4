#pragma once
// HTML building blocks for the dispatcher's pages: escaping of everything a
// peer sent (repository and branch names, test names and messages, logs),
// escaping bounded by output size (a page must stay under 50 KB whatever a
// test prints), times and durations as people read them, and the page
// frame (head, style, navigation, script tag) around a page's body.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::html {

// Append `text` escaped for element content and quoted attribute values:
// & < > " ' become entities; control characters other than tab, newline
// and carriage return (NUL, terminal escapes) become U+FFFD.
void escape(std::string &out, std::string_view text);
std::string escape(std::string_view text);

// Append at most `max_bytes` of escaped `text`; when it does not fit, the
// cut falls on a character boundary and "…" follows (inside the limit).
// True when `text` was cut.
bool escape_capped(std::string &out, std::string_view text, size_t max_bytes);

// Append the end of `text`, escaped, in at most `max_bytes`, starting on a
// line (or at least a character) boundary.  Returns how many bytes of the
// start of `text` were left out (0: all of it is there).
size_t escape_tail(std::string &out, std::string_view text, size_t max_bytes);

// "850 ms", "42 s", "3 min 05 s", "2 h 07 min".
std::string duration(int64_t ms);
// "2026-12-02 06:16:11 UTC"; "" for 0 (never).
std::string utc_time(int64_t unix_ms);
// The first 10 hex digits of a commit id (as git's short ids).
std::string_view short_commit(std::string_view commit);
// The CSS class (and label) of a job: its outcome when done, else
// "queued" or "running".
std::string_view state_class(bool done, std::string_view outcome, bool queued);

// Everything before a page's body content: doctype, title, the style, the
// navigation.  `page` is the value of <body data-page>, which tells the
// script what to keep up to date ("home", "commit", "runner").
void page_start(std::string &out, std::string_view title, std::string_view page);
// Close the page; the script is loaded last so the page shows first.
void page_end(std::string &out, int64_t now_unix_ms);

// A table's closing row: "and 12 more" when rows were left out, "none"
// when it has none at all.
void more_rows(std::string &out, size_t shown, size_t more, size_t columns);

} // namespace kiln::html
