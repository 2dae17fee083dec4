// Building what a report plugin is handed from the JobTable (report_view.hpp).
#include "report_view.hpp"

namespace kiln {

int previous_outcome(const JobTable &jobs, const Job &job) { return jobs.previous_outcome(job); }

bool ReportView::build(const JobTable &jobs, const OutboxRow &row, const std::string &base_url,
                       std::string &why)
{
    const Job *job = jobs.find(row.job_id);
    if (!job) {
        why = "job " + std::to_string(row.job_id) + " is unknown";
        return false;
    }
    bool finished = row.kind == KILN_EVENT_FINISHED;
    if (finished && (job->state != JobState::done || job->attempt != row.attempt)) {
        why = "superseded: job " + std::to_string(job->id) + " has been run again since";
        return false;
    }
    report = kiln_report{};
    report.repo = job->spec.repo.c_str();
    report.branch = job->spec.branch.c_str();
    report.commit = job->spec.commit.c_str();
    report.job_id = job->id;
    report.attempt = row.attempt;
    report.outcome = KILN_OUTCOME_NONE;
    // From STARTED on (a FINISHED without a runner, cancelled while queued,
    // says "" as report() always did).
    report.runner = row.kind == KILN_EVENT_QUEUED ? nullptr : job->runner.c_str();
    report.started_unix_ms = job->assigned_unix_ms;

    event = kiln_report_event{};
    event.size = sizeof event;
    event.kind = row.kind;
    event.report = &report;
    event.delivery_id = row.id;
    event.retries = row.retries;
    event.event_unix_ms = row.event_unix_ms;
    event.queued_unix_ms = job->created_unix_ms;
    url_ = base_url.empty() ? "" : base_url + "/commit/" + job->spec.commit;
    event.url = url_.empty() ? nullptr : url_.c_str();
    event.previous_outcome = previous_outcome(jobs, *job);

    if (finished) {
        const Result &r = job->result;
        tests_.clear();
        tests_.reserve(r.tests.size());
        for (const auto &t : r.tests) {
            tests_.push_back({t.name.c_str(), t.outcome, t.duration_ms,
                              t.message.empty() ? nullptr : t.message.c_str()});
            if (t.outcome >= 0 && t.outcome < 6)
                event.counts[t.outcome]++;
        }
        report.outcome = r.outcome;
        if (r.started_unix_ms)
            report.started_unix_ms = r.started_unix_ms;
        report.finished_unix_ms = r.finished_unix_ms ? r.finished_unix_ms : job->finished_unix_ms;
        report.tests = tests_.empty() ? nullptr : tests_.data();
        report.n_tests = tests_.size();
        report.log = r.log.empty() ? nullptr : r.log.data();
        report.log_len = r.log.size();
        report.error = r.error.empty() ? nullptr : r.error.c_str();
    }
    return true;
}

} // namespace kiln
