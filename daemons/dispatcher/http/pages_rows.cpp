// What the pages share: state badges, links, capped tables.
#include "pages_rows.hpp"

#include "html.hpp"

namespace kiln::page_rows {

std::string_view state_name(const Job &job)
{
    return html::state_class(job.state == JobState::done,
                             job.state == JobState::done ? kiln_outcome_name(job.result.outcome)
                                                         : "",
                             job.state == JobState::queued);
}

void state_badge(std::string &out, const JobTable &jobs, const Job &job)
{
    std::string_view name = state_name(job);
    out += "<span class=\"state ";
    out += name;
    out += "\">";
    out += name;
    out += "</span>";
    if (job.state == JobState::split) {
        size_t done = 0;
        for (uint64_t cid : job.children) {
            const Job *child = jobs.find(cid);
            done += child && child->state == JobState::done;
        }
        out += " " + std::to_string(done) + "/" + std::to_string(job.children.size()) +
               " shards";
    }
}

void commit_link(std::string &out, std::string_view commit)
{
    out += "<a href=\"/commit/";
    html::escape(out, commit);
    out += "\"><code>";
    html::escape(out, html::short_commit(commit));
    out += "</code></a>";
}

void runner_link(std::string &out, std::string_view runner)
{
    if (runner.empty()) {
        out += "\xE2\x80\x94";
        return;
    }
    out += "<a href=\"/runner/";
    html::escape(out, runner);
    out += "\">";
    html::escape(out, runner);
    out += "</a>";
}

std::string shard_label(const Job &job)
{
    if (job.parent == 0)
        return job.listing() && job.state == JobState::assigned ? " (listing tests)" : "";
    return " shard " + std::to_string(job.shard + 1) + "/" + std::to_string(job.shards);
}

void job_row_start(std::string &out, const Job &job)
{
    out += "<tr data-job=\"" + std::to_string(job.id) +
           "\" data-commit=\"";
    html::escape(out, job.spec.commit);
    out += "\">";
}

void job_row_cells(std::string &out, const Job &job)
{
    job_row_start(out, job);
    out += "<td>";
    commit_link(out, job.spec.commit);
    out += shard_label(job);
    out += "</td><td>";
    html::escape_capped(out, job.spec.repo, page_limits::text_bytes);
    out += "</td><td>";
    html::escape_capped(out, job.spec.branch, page_limits::text_bytes);
    out += "</td><td>";
}

void CappedRows::finish(size_t total)
{
    html::more_rows(out_, shown_, total > shown_ ? total - shown_ : 0, columns_);
}

} // namespace kiln::page_rows
