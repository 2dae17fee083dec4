// `/`: branches with their latest outcome, what runs, what waits, runners.
// Its cost follows what it shows (branches, queue, runners), never the
// length of the history: BranchIndex looks only at jobs added since the
// last page, and keeps a copy of the few it shows per branch, so a finished
// commit that has left memory still shows.
#include "pages.hpp"

#include "html.hpp"
#include "pages_rows.hpp"

namespace kiln {

using page_rows::CappedRows;

void BranchIndex::update(const JobTable &jobs)
{
    const auto &all = jobs.jobs();
    for (auto it = all.upper_bound(last_seen_); it != all.end(); ++it) {
        const Job &job = it->second;
        last_seen_ = job.id;
        if (job.parent != 0)
            continue; // a shard: its commit's job stands for it
        auto &recent = branches_[{job.spec.repo, job.spec.branch}];
        recent.push_front(job.id);
        seen_[job.id];
        if (recent.size() > kRecent) {
            seen_.erase(recent.back());
            recent.pop_back();
        }
    }
    // What a page shows of each: refreshed while the table has it.
    for (auto &[id, copy] : seen_)
        if (const Job *job = jobs.find(id)) {
            if (copy.id && copy.state == JobState::done && job->state == JobState::done &&
                copy.attempt == job->attempt)
                continue; // a finished job does not change (until a retry)
            copy = *job;
            copy.result.log.clear();
            copy.result.tests.clear();
            copy.tests.clear();
        }
}

const Job *BranchIndex::find(const JobTable &jobs, uint64_t id) const
{
    if (const Job *job = jobs.find(id))
        return job;
    auto it = seen_.find(id);
    return it == seen_.end() || it->second.id == 0 ? nullptr : &it->second;
}

namespace {

void summary(std::string &out, const PageSources &src, size_t queued, size_t running)
{
    uint32_t slots = src.runners.slots();
    size_t n = src.runners.size();
    out += "<p id=\"summary\" data-live>" + std::to_string(n) +
           (n == 1 ? " runner, " : " runners, ") +
           std::to_string(running) + " of " + std::to_string(slots) + " slots busy, " +
           std::to_string(queued) + " queued.</p>\n";
}

// Each branch: its newest commit, how that stands, and the last finished
// outcome before it (so a running branch still shows whether it was green).
void branches(std::string &out, const PageSources &src, const BranchIndex &index, int64_t now)
{
    out += "<section id=\"branches\" data-live><h2>Branches</h2>\n<table><tr><th>repository"
           "</th><th>branch</th><th>commit</th><th>state</th><th>when</th><th>before</th></tr>\n";
    CappedRows rows(out, page_limits::branches, 6);
    for (const auto &[key, recent] : index.branches()) {
        if (!rows.room())
            break;
        const Job *latest = index.find(src.jobs, recent.front());
        if (!latest)
            continue;
        page_rows::job_row_start(out, *latest);
        out += "<td>";
        html::escape_capped(out, key.first, page_limits::text_bytes);
        out += "</td><td>";
        html::escape_capped(out, key.second, page_limits::text_bytes);
        out += "</td><td>";
        page_rows::commit_link(out, latest->spec.commit);
        out += "</td><td>";
        page_rows::state_badge(out, src.jobs, *latest);
        out += "</td><td>";
        if (latest->state == JobState::done)
            out += html::utc_time(latest->finished_unix_ms);
        else if (latest->state == JobState::queued)
            out += "waiting " + html::duration(now - latest->created_unix_ms);
        else
            out += "running " + html::duration(now - latest->assigned_unix_ms);
        out += "</td><td>";
        for (size_t i = 1; i < recent.size(); ++i) {
            const Job *before = index.find(src.jobs, recent[i]);
            if (before && before->state == JobState::done) {
                page_rows::state_badge(out, src.jobs, *before);
                out += " ";
                page_rows::commit_link(out, before->spec.commit);
                break;
            }
        }
        out += "</td></tr>\n";
        rows.shown();
    }
    rows.finish(index.branches().size());
    out += "</table></section>\n";
}

void running(std::string &out, const PageSources &src, size_t total, int64_t now)
{
    out += "<section id=\"running\" data-live><h2>Running</h2>\n<table><tr><th>commit</th>"
           "<th>repository</th><th>branch</th><th>runner</th><th>for</th></tr>\n";
    CappedRows rows(out, page_limits::running, 5);
    for (const auto &[name, runner] : src.runners.all())
        for (uint64_t id : src.jobs.held_by(name)) {
            const Job *job = src.jobs.find(id);
            if (!job || !rows.room())
                continue;
            page_rows::job_row_cells(out, *job);
            page_rows::runner_link(out, name);
            out += "</td><td><span class=\"state running\">running</span> ";
            out += html::duration(now - job->assigned_unix_ms);
            out += "</td></tr>\n";
            rows.shown();
        }
    rows.finish(total);
    out += "</table></section>\n";
}

void queue(std::string &out, const PageSources &src, size_t total, int64_t now)
{
    out += "<section id=\"queue\" data-live><h2>Queue</h2>\n<table><tr><th>commit</th>"
           "<th>repository</th><th>branch</th><th>waiting</th></tr>\n";
    CappedRows rows(out, page_limits::queue, 4);
    for (const auto &[_, ids] : src.jobs.queues())
        for (uint64_t id : ids) {
            if (!rows.room())
                break;
            const Job *job = src.jobs.find(id);
            if (!job)
                continue;
            page_rows::job_row_cells(out, *job);
            out += html::duration(now - job->created_unix_ms);
            out += "</td></tr>\n";
            rows.shown();
        }
    rows.finish(total);
    out += "</table></section>\n";
}

void runners(std::string &out, const PageSources &src)
{
    out += "<section id=\"runners\" data-live><h2>Runners</h2>\n<table><tr><th>runner</th>"
           "<th>busy</th><th>labels</th><th>completed</th><th>connected since</th>"
           "<th>state</th></tr>\n";
    CappedRows rows(out, page_limits::runners, 5);
    for (const auto &[name, runner] : src.runners.all()) {
        if (!rows.room())
            break;
        out += "<tr><td>";
        page_rows::runner_link(out, name);
        out += "</td><td>" + std::to_string(src.jobs.held_by(name).size()) + " of " +
               std::to_string(runner.slots) + "</td><td>";
        std::string labels;
        for (const auto &label : runner.labels)
            labels += (labels.empty() ? "" : ", ") + label;
        html::escape_capped(out, labels, page_limits::text_bytes);
        out += "</td><td>" + std::to_string(runner.completed) + "</td><td>" +
               html::utc_time(runner.connected_unix_ms) + "</td><td>";
        html::escape_capped(out, runner_state(runner), page_limits::text_bytes);
        out += "</td></tr>\n";
        rows.shown();
    }
    rows.finish(src.runners.size());
    out += "</table></section>\n";
}

// The report receivers: what waits in the outbox for each, and why the
// last attempt failed.
void reports(std::string &out, const PageSources &src)
{
    if (!src.receivers)
        return;
    auto receivers = src.receivers();
    if (receivers.empty())
        return;
    out += "<section id=\"reports\" data-live><h2>Reports</h2>\n<table><tr><th>receiver</th>"
           "<th>backlog</th><th>in flight</th><th>rejected</th><th>delivered</th>"
           "<th>last error</th></tr>\n";
    CappedRows rows(out, page_limits::reports, 6);
    for (const auto &r : receivers) {
        if (!rows.room())
            break;
        out += "<tr><td>";
        html::escape_capped(out, r.receiver, page_limits::text_bytes);
        out += "</td><td>" + std::to_string(r.pending) + "</td><td>" +
               std::to_string(r.in_flight) + "</td><td>" + std::to_string(r.rejected) +
               "</td><td>" + std::to_string(r.delivered) + "</td><td>";
        html::escape_capped(out, r.last_error, page_limits::text_bytes);
        out += "</td></tr>\n";
        rows.shown();
    }
    rows.finish(receivers.size());
    out += "</table></section>\n";
}

} // namespace

std::string render_home(const PageSources &src, BranchIndex &index, int64_t now_unix_ms)
{
    index.update(src.jobs);
    size_t queued = 0, busy = 0;
    for (const auto &[repo, ids] : src.jobs.queues())
        queued += ids.size();
    for (const auto &[name, runner] : src.runners.all())
        busy += src.jobs.held_by(name).size();

    std::string out;
    out.reserve(16 * 1024);
    html::page_start(out, "Status", "home");
    out += "<h1>Status</h1>\n";
    summary(out, src, queued, busy);
    branches(out, src, index, now_unix_ms);
    running(out, src, busy, now_unix_ms);
    queue(out, src, queued, now_unix_ms);
    runners(out, src);
    reports(out, src);
    html::page_end(out, now_unix_ms);
    return out;
}

std::string render_not_found(std::string_view what)
{
    std::string out;
    html::page_start(out, "Not found", "none");
    out += "<h1>Not found</h1>\n<p>";
    html::escape_capped(out, what, page_limits::text_bytes);
    out += "</p>\n<p><a href=\"/\">Back to the status page</a></p>\n";
    html::page_end(out, 0);
    return out;
}

} // namespace kiln
