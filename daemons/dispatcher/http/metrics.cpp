#include "metrics.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <vector>

namespace kiln {

namespace {

// A label value as the format wants it: \, " and newline escaped.
std::string escape_label(const std::string &value)
{
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\' || c == '"')
            out += '\\', out += c;
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

// Builds the text family by family: HELP and TYPE once, then the samples.
class Exposition {
  public:
    void family(const char *name, const char *type, const char *help)
    {
        text_ += "# HELP ";
        text_ += name;
        text_ += ' ';
        text_ += help;
        text_ += "\n# TYPE ";
        text_ += name;
        text_ += ' ';
        text_ += type;
        text_ += '\n';
    }
    // name{k1="v1",...} value
    void sample(const std::string &name,
                const std::vector<std::pair<const char *, std::string>> &labels, double value)
    {
        text_ += name;
        if (!labels.empty()) {
            text_ += '{';
            for (size_t i = 0; i < labels.size(); i++) {
                if (i)
                    text_ += ',';
                text_ += labels[i].first;
                text_ += "=\"";
                text_ += escape_label(labels[i].second);
                text_ += '"';
            }
            text_ += '}';
        }
        char buf[64];
        // Integers print exactly; %.17g round-trips the rest.
        if (value == double(int64_t(value)) && value < 9e15 && value > -9e15)
            std::snprintf(buf, sizeof buf, " %" PRId64 "\n", int64_t(value));
        else
            std::snprintf(buf, sizeof buf, " %.17g\n", value);
        text_ += buf;
    }
    std::string take() { return std::move(text_); }

  private:
    std::string text_;
};

void queue_metrics(Exposition &out, const JobTable &jobs, int64_t now)
{
    out.family("kiln_jobs_queued", "gauge", "Jobs waiting for a runner, per repository.");
    for (const auto &[repo, queue] : jobs.queues())
        out.sample("kiln_jobs_queued", {{"repo", repo}}, double(jobs.queued(repo)));

    out.family("kiln_oldest_queued_job_age_seconds", "gauge",
               "Age of the oldest job waiting for a runner, per repository.");
    for (const auto &[repo, queue] : jobs.queues()) {
        int64_t oldest = now;
        for (uint64_t id : queue)
            if (const Job *job = jobs.find(id))
                oldest = std::min(oldest, job->created_unix_ms);
        if (!queue.empty())
            out.sample("kiln_oldest_queued_job_age_seconds", {{"repo", repo}},
                       double(std::max<int64_t>(0, now - oldest)) / 1000.0);
    }
}

void runner_metrics(Exposition &out, const JobTable &jobs, const RunnerRegistry &runners)
{
    out.family("kiln_runners_connected", "gauge", "Runners registered now.");
    out.sample("kiln_runners_connected", {}, double(runners.size()));
    out.family("kiln_runner_slots", "gauge", "Job slots of each registered runner.");
    for (const auto &[name, runner] : runners.all())
        out.sample("kiln_runner_slots", {{"runner", name}}, runner.slots);
    out.family("kiln_runner_slots_busy", "gauge", "Jobs each registered runner holds now.");
    for (const auto &[name, runner] : runners.all())
        out.sample("kiln_runner_slots_busy", {{"runner", name}}, double(jobs.held_by(name).size()));
}

void counter_metrics(Exposition &out, const Counters &c)
{
    out.family("kiln_jobs_finished_total", "counter",
               "Commits finished since the dispatcher started, by repository and outcome.");
    for (const auto &[key, n] : c.finished)
        out.sample("kiln_jobs_finished_total", {{"repo", key.first}, {"outcome", key.second}},
                   double(n));

    out.family("kiln_job_duration_seconds", "histogram",
               "Time from a commit's (last) assignment to its result, per repository.");
    for (const auto &[repo, h] : c.durations) {
        uint64_t cumulative = 0;
        for (size_t i = 0; i < h.bounds.size(); i++) {
            cumulative += h.counts[i];
            char le[32];
            std::snprintf(le, sizeof le, "%g", h.bounds[i]);
            out.sample("kiln_job_duration_seconds_bucket", {{"repo", repo}, {"le", le}},
                       double(cumulative));
        }
        out.sample("kiln_job_duration_seconds_bucket", {{"repo", repo}, {"le", "+Inf"}},
                   double(h.count));
        out.sample("kiln_job_duration_seconds_sum", {{"repo", repo}}, h.sum);
        out.sample("kiln_job_duration_seconds_count", {{"repo", repo}}, double(h.count));
    }

    out.family("kiln_job_reruns_total", "counter",
               "Jobs queued again: their runner was lost, timed out, or kilnctl retry.");
    for (const char *reason : Counters::rerun_reasons) {
        auto it = c.reruns.find(reason);
        out.sample("kiln_job_reruns_total", {{"reason", reason}},
                   double(it == c.reruns.end() ? 0 : it->second));
    }

    out.family("kiln_heartbeats_missed_total", "counter",
               "Runners dropped after runner_timeout without a message.");
    out.sample("kiln_heartbeats_missed_total", {}, double(c.heartbeats_missed));
}

void report_metrics(Exposition &out, const std::vector<ReceiverStatus> &receivers)
{
    out.family("kiln_report_backlog", "gauge",
               "Report events in the outbox not yet delivered, per receiver ([[report]] table).");
    for (const auto &r : receivers)
        out.sample("kiln_report_backlog", {{"receiver", r.receiver}}, double(r.pending));
    out.family("kiln_report_deliveries_total", "counter",
               "Attempts to deliver a report event since the start, per receiver, by result "
               "(failed: retried later; rejected: refused for good).");
    for (const auto &r : receivers) {
        out.sample("kiln_report_deliveries_total", {{"receiver", r.receiver}, {"result", "delivered"}},
                   double(r.delivered));
        out.sample("kiln_report_deliveries_total", {{"receiver", r.receiver}, {"result", "failed"}},
                   double(r.failed));
        out.sample("kiln_report_deliveries_total", {{"receiver", r.receiver}, {"result", "rejected"}},
                   double(r.refused));
    }
}

void connection_metrics(Exposition &out, const std::map<std::string, size_t> &by_role)
{
    out.family("kiln_connections", "gauge",
               "Open connections to the dispatcher's port, by role (handshake: not yet known).");
    // Every role, also at zero, so an alert on "no observer" has a series.
    for (const char *role : {"runner", "observer", "ctl", ""}) {
        auto it = by_role.find(role);
        out.sample("kiln_connections", {{"role", *role ? role : "handshake"}},
                   double(it == by_role.end() ? 0 : it->second));
    }
}

} // namespace

std::string render_metrics(const MetricsSources &s, int64_t now_unix_ms)
{
    Exposition out;
    queue_metrics(out, s.jobs, now_unix_ms);
    runner_metrics(out, s.jobs, s.runners);
    counter_metrics(out, s.counters);
    report_metrics(out, s.receivers);
    connection_metrics(out, s.connections_by_role);
    return out.take();
}

} // namespace kiln
