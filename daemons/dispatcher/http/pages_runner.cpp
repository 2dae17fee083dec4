// `/runner/<name>`: slots, labels, what it runs now, what it finished last.
#include "pages.hpp"

#include "html.hpp"
#include "pages_rows.hpp"

namespace kiln {
namespace {

using page_rows::CappedRows;

void details(std::string &out, const PageSources &src, const RunnerSlotInfo *runner,
             std::string_view name)
{
    out += "<section id=\"details\" data-live><table>";
    if (!runner) {
        out += "<tr><th>state</th><td>not connected</td></tr></table></section>\n";
        return;
    }
    std::string labels;
    for (const auto &label : runner->labels)
        labels += (labels.empty() ? "" : ", ") + label;
    out += "<tr><th>state</th><td>";
    html::escape_capped(out, runner_state(*runner), page_limits::text_bytes);
    out += "</td></tr>\n<tr><th>slots</th><td>" + std::to_string(runner->slots) + "</td></tr>\n" +
           "<tr><th>busy</th><td>" + std::to_string(src.jobs.held_by(std::string(name)).size()) +
           "</td></tr>\n<tr><th>labels</th><td>";
    html::escape_capped(out, labels.empty() ? "none" : labels, page_limits::text_bytes);
    out += "</td></tr>\n<tr><th>peer</th><td>";
    if (runner->conn)
        html::escape_capped(out, runner->conn->peer(), page_limits::text_bytes);
    out += "</td></tr>\n<tr><th>connected since</th><td>" +
           html::utc_time(runner->connected_unix_ms) + "</td></tr>\n<tr><th>completed</th><td>" +
           std::to_string(runner->completed) + "</td></tr>\n</table></section>\n";
}

void job_row(std::string &out, const PageSources &src, const Job &job, std::string when)
{
    page_rows::job_row_cells(out, job);
    page_rows::state_badge(out, src.jobs, job);
    out += "</td><td>" + when + "</td></tr>\n";
}

void current_jobs(std::string &out, const PageSources &src, std::string_view name, int64_t now)
{
    const auto &held = src.jobs.held_by(std::string(name));
    out += "<section id=\"current\" data-live><h2>Running now</h2>\n<table><tr><th>commit</th>"
           "<th>repository</th><th>branch</th><th>state</th><th>for</th></tr>\n";
    CappedRows rows(out, page_limits::runner_jobs, 5);
    for (uint64_t id : held) {
        const Job *job = src.jobs.find(id);
        if (!job || !rows.room())
            continue;
        job_row(out, src, *job, html::duration(now - job->assigned_unix_ms));
        rows.shown();
    }
    rows.finish(held.size());
    out += "</table></section>\n";
}

// The newest results first, found from the newest job backwards so a busy
// history costs only as far back as the rows shown.
size_t last_results(std::string &out, const PageSources &src, std::string_view name)
{
    out += "<section id=\"results\" data-live><h2>Last results</h2>\n<table><tr><th>commit</th>"
           "<th>repository</th><th>branch</th><th>outcome</th><th>finished</th></tr>\n";
    CappedRows rows(out, page_limits::runner_results, 5);
    const auto &all = src.jobs.jobs();
    for (auto it = all.rbegin(); it != all.rend() && rows.room(); ++it) {
        const Job &job = it->second;
        if (job.state != JobState::done || job.runner != name)
            continue;
        job_row(out, src, job, html::utc_time(job.finished_unix_ms));
        rows.shown();
    }
    rows.finish(rows.count()); // "none": how many more there are is not counted
    out += "</table></section>\n";
    return rows.count();
}

} // namespace

bool render_runner(const PageSources &src, std::string_view name, int64_t now_unix_ms,
                   std::string &html)
{
    const RunnerSlotInfo *runner = src.runners.find(std::string(name));
    std::string out;
    out.reserve(16 * 1024);
    html::page_start(out, "Runner " + std::string(name), "runner");
    out += "<h1>Runner ";
    html::escape_capped(out, name, page_limits::text_bytes);
    out += "</h1>\n";
    details(out, src, runner, name);
    current_jobs(out, src, name, now_unix_ms);
    size_t results = last_results(out, src, name);
    if (!runner && results == 0)
        return false; // never seen
    html::page_end(out, now_unix_ms);
    html = std::move(out);
    return true;
}

} // namespace kiln
