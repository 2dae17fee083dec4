// Answers to kilnctl: status, runners, jobs, result — each one packed
// msgpack object that kilnctl prints as a table or as JSON.
#include <msgpack.hpp>

#include <kiln/daemon.hpp>

#include "dispatcher.hpp"

namespace kiln {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

void pack_str(Packer &pk, const std::string &s) { pk.pack(s); }

void pack_job_summary(Packer &pk, const Job &job)
{
    pk.pack_map(10);
    pk.pack("job_id"), pk.pack(job.id);
    pk.pack("repo"), pack_str(pk, job.spec.repo);
    pk.pack("branch"), pack_str(pk, job.spec.branch);
    pk.pack("commit"), pack_str(pk, job.spec.commit);
    pk.pack("state"), pk.pack(job_state_name(job.state));
    pk.pack("attempt"), pk.pack(job.attempt);
    pk.pack("runner"), pack_str(pk, job.runner);
    pk.pack("outcome"), pack_str(pk, job.state == JobState::done ? job.result.outcome : "");
    pk.pack("created_unix_ms"), pk.pack(job.created_unix_ms);
    pk.pack("finished_unix_ms"), pk.pack(job.finished_unix_ms);
}

void pack_result(Packer &pk, const Job &job)
{
    const Result &r = job.result;
    pk.pack_map(14);
    pk.pack("job_id"), pk.pack(job.id);
    pk.pack("repo"), pack_str(pk, job.spec.repo);
    pk.pack("branch"), pack_str(pk, job.spec.branch);
    pk.pack("commit"), pack_str(pk, job.spec.commit);
    pk.pack("state"), pk.pack(job_state_name(job.state));
    pk.pack("outcome"), pack_str(pk, r.outcome);
    pk.pack("error"), pack_str(pk, r.error);
    pk.pack("runner"), pack_str(pk, job.runner);
    pk.pack("attempt"), pk.pack(job.attempt);
    pk.pack("started_unix_ms"), pk.pack(r.started_unix_ms);
    pk.pack("finished_unix_ms"), pk.pack(r.finished_unix_ms);
    pk.pack("log_bytes"), pk.pack(r.log.size());
    pk.pack("log"), pack_str(pk, r.log);
    pk.pack("tests");
    pk.pack_array(static_cast<uint32_t>(r.tests.size()));
    for (const auto &t : r.tests) {
        pk.pack_map(4);
        pk.pack("name"), pack_str(pk, t.name);
        pk.pack("outcome"), pack_str(pk, t.outcome);
        pk.pack("duration_ms"), pk.pack(t.duration_ms);
        pk.pack("message"), pack_str(pk, t.message);
    }
}

} // namespace

std::string Dispatcher::query(const std::string &what, const std::string &arg,
                              std::string &error) const
{
    msgpack::sbuffer buf;
    Packer pk(buf);
    if (what == "status") {
        size_t passed = 0, failed = 0;
        for (const auto &[id, job] : jobs_.jobs())
            if (job.state == JobState::done)
                (job.result.outcome == "passed" ? passed : failed)++;
        pk.pack_map(10);
        pk.pack("version"), pk.pack(KILN_VERSION);
        pk.pack("listen"), pk.pack(config_.listen);
        pk.pack("uptime_s"), pk.pack((unix_ms() - started_unix_ms_) / 1000);
        pk.pack("runners"), pk.pack(runners_.size());
        pk.pack("queued"), pk.pack(jobs_.count(JobState::queued));
        pk.pack("running"), pk.pack(jobs_.count(JobState::assigned));
        pk.pack("done"), pk.pack(jobs_.count(JobState::done));
        pk.pack("passed"), pk.pack(passed);
        pk.pack("not_passed"), pk.pack(failed);
        pk.pack("store_backlog"), pk.pack(store_.backlog());
    } else if (what == "runners") {
        pk.pack_array(static_cast<uint32_t>(runners_.size()));
        for (const auto &[name, r] : runners_) {
            pk.pack_map(7);
            pk.pack("name"), pk.pack(name);
            pk.pack("peer"), pk.pack(r.conn->peer());
            pk.pack("slots"), pk.pack(r.slots);
            pk.pack("busy"), pk.pack(r.jobs.size());
            pk.pack("labels"), pk.pack(r.labels);
            pk.pack("completed"), pk.pack(r.completed);
            pk.pack("connected_unix_ms"), pk.pack(r.connected_unix_ms);
        }
    } else if (what == "jobs") {
        pk.pack_array(static_cast<uint32_t>(jobs_.jobs().size()));
        for (const auto &[id, job] : jobs_.jobs())
            pack_job_summary(pk, job);
    } else if (what == "result") {
        const Job *job = jobs_.find_commit(arg);
        if (!job) {
            error = "no job for commit '" + arg + "' (unknown, ambiguous or shorter than 4)";
            return {};
        }
        pack_result(pk, *job);
    } else {
        error = "unknown query '" + what + "' (status, runners, jobs, result)";
        return {};
    }
    return std::string(buf.data(), buf.size());
}

} // namespace kiln
