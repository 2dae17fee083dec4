// `/commit/<id>`: outcome, shards, failing tests first (with messages),
// the rest, and the log's end.  While the job runs, the log element names
// the live stream the script follows (data-follow).
#include "pages.hpp"

#include "html.hpp"
#include "pages_rows.hpp"

namespace kiln {
namespace {

using page_rows::CappedRows;

bool failing(kiln_outcome outcome) { return outcome != KILN_PASSED && outcome != KILN_SKIPPED; }

void outcome_section(std::string &out, const PageSources &src, const Job &job, int64_t now)
{
    out += "<section id=\"outcome\" data-live><table>";
    page_rows::job_row_start(out, job); // the script recolours it as any job's row
    out += "<th>state</th><td>";
    page_rows::state_badge(out, src.jobs, job);
    out += "</td></tr>\n<tr><th>runner</th><td>";
    page_rows::runner_link(out, job.runner);
    out += "</td></tr>\n<tr><th>attempt</th><td>" + std::to_string(job.attempt) +
           "</td></tr>\n<tr><th>queued</th><td>" + html::utc_time(job.created_unix_ms) +
           "</td></tr>\n";
    if (job.state == JobState::done) {
        const Result &r = job.result;
        out += "<tr><th>finished</th><td>" + html::utc_time(job.finished_unix_ms) + "</td></tr>\n";
        if (r.started_unix_ms > 0 && r.finished_unix_ms >= r.started_unix_ms)
            out += "<tr><th>took</th><td>" +
                   html::duration(r.finished_unix_ms - r.started_unix_ms) + "</td></tr>\n";
        if (!r.error.empty()) {
            out += "<tr><th>why</th><td>";
            html::escape_capped(out, r.error, page_limits::test_message_bytes);
            out += "</td></tr>\n";
        }
    } else if (job.state != JobState::queued) {
        out += "<tr><th>running for</th><td>" + html::duration(now - job.assigned_unix_ms) +
               "</td></tr>\n";
    }
    out += "</table></section>\n";
}

void shards_section(std::string &out, const PageSources &src, const Job &job)
{
    if (job.children.empty())
        return;
    out += "<section id=\"shards\" data-live><h2>Shards</h2>\n<table><tr><th>shard</th>"
           "<th>state</th><th>runner</th><th>attempt</th><th>tests</th></tr>\n";
    CappedRows rows(out, page_limits::shards, 5);
    for (uint64_t cid : job.children) {
        const Job *shard = src.jobs.find(cid);
        if (!shard || !rows.room())
            continue;
        page_rows::job_row_start(out, *shard);
        out += "<td>" + std::to_string(shard->shard + 1) + "/" + std::to_string(shard->shards) +
               "</td><td>";
        page_rows::state_badge(out, src.jobs, *shard);
        out += "</td><td>";
        page_rows::runner_link(out, shard->runner);
        out += "</td><td>" + std::to_string(shard->attempt) + "</td><td>" +
               std::to_string(shard->tests.size()) + "</td></tr>\n";
        rows.shown();
    }
    rows.finish(job.children.size());
    out += "</table></section>\n";
}

void test_row(std::string &out, const TestOutcome &t, bool with_message)
{
    const char *outcome = kiln_outcome_name(t.outcome);
    out += "<tr><td><code>";
    html::escape_capped(out, t.name, page_limits::text_bytes);
    out += "</code></td><td><span class=\"state ";
    out += outcome;
    out += "\">";
    out += outcome;
    out += "</span></td><td>" + html::duration(static_cast<int64_t>(t.duration_ms)) +
           "</td></tr>\n";
    if (with_message && !t.message.empty()) {
        out += "<tr><td colspan=\"3\"><pre>";
        html::escape_capped(out, t.message, page_limits::test_message_bytes);
        out += "</pre></td></tr>\n";
    }
}

// Failing tests first, each with its message, then the others by name only.
void tests_section(std::string &out, const Job &job)
{
    out += "<section id=\"tests\" data-live>";
    if (job.state != JobState::done) {
        out += "<p class=\"note\">Tests are listed once the job is done.</p></section>\n";
        return;
    }
    const auto &tests = job.result.tests;
    size_t failed = 0;
    for (const auto &t : tests)
        failed += failing(t.outcome);
    if (failed > 0) {
        out += "<h2>Failing tests (" + std::to_string(failed) + ")</h2>\n<table>";
        CappedRows rows(out, page_limits::failing_tests, 3);
        for (const auto &t : tests)
            if (failing(t.outcome) && rows.room()) {
                test_row(out, t, true);
                rows.shown();
            }
        rows.finish(failed);
        out += "</table>\n";
    }
    if (failed > 0 && failed == tests.size()) {
        out += "</section>\n";
        return;
    }
    out += "<h2>" + std::string(failed ? "Other tests" : "Tests") + " (" +
           std::to_string(tests.size() - failed) + ")</h2>\n<table>";
    CappedRows rows(out, page_limits::other_tests, 3);
    for (const auto &t : tests)
        if (!failing(t.outcome) && rows.room()) {
            test_row(out, t, false);
            rows.shown();
        }
    rows.finish(tests.size() - failed);
    out += "</table></section>\n";
}

// The log's end; a running job's log element also names its live stream.
void log_section(std::string &out, const PageSources &src, const Job &job)
{
    LiveLogView log;
    bool live = job.state != JobState::done;
    if (!live)
        log.bytes = job.result.log;
    else if (src.live_log)
        log = src.live_log(job.id);
    out += "<section id=\"log-section\"><h2>Log</h2>\n";
    std::string body;
    uint64_t left_out = log.start + html::escape_tail(body, log.bytes, page_limits::log_tail_bytes);
    uint64_t end = log.start + log.bytes.size();
    out += "<p class=\"note\" id=\"log-note\">";
    if (left_out > 0)
        out += "The first " + std::to_string(left_out) + " of " + std::to_string(end) +
               " bytes are not shown.";
    else if (end == 0 && !live)
        out += "The job wrote no log.";
    out += "</p>\n<pre id=\"log\" data-attempt=\"" + std::to_string(job.attempt) +
           "\" data-offset=\"" + std::to_string(end) + "\"";
    if (live) {
        out += " data-follow=\"/api/v1/commits/";
        html::escape(out, job.spec.commit);
        out += "/log?follow=1\"";
    }
    out += ">" + body + "</pre></section>\n";
}

} // namespace

bool render_commit(const PageSources &src, std::string_view id, int64_t now_unix_ms,
                   std::string &html)
{
    const Job *job = src.jobs.find_commit(std::string(id));
    if (!job)
        return false;
    std::string out;
    out.reserve(16 * 1024);
    std::string title = job->spec.repo + " " + std::string(html::short_commit(job->spec.commit));
    html::page_start(out, title, "commit");
    out += "<h1>";
    html::escape_capped(out, job->spec.repo, page_limits::text_bytes);
    out += " <small>";
    html::escape_capped(out, job->spec.branch, page_limits::text_bytes);
    out += "</small> <code>";
    html::escape(out, job->spec.commit);
    out += "</code></h1>\n";
    outcome_section(out, src, *job, now_unix_ms);
    shards_section(out, src, *job);
    tests_section(out, *job);
    log_section(out, src, *job);
    html::page_end(out, now_unix_ms);
    html = std::move(out);
    return true;
}

} // namespace kiln
