// Answers to kilnctl: status, runners, jobs, result, reports — each one packed
// msgpack object that kilnctl prints as a table or as JSON.
#include <algorithm>
#include <array>
#include <map>

#include <msgpack.hpp>

#include <kiln/daemon.hpp>

#include "queries.hpp"

namespace kiln {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

void pack_str(Packer &pk, const std::string &s) { pk.pack(s); }

// kilnctl sees outcomes by name; "" while the job has none.
void pack_outcome(Packer &pk, const Job &job)
{
    pk.pack(job.state == JobState::done ? kiln_outcome_name(job.result.outcome) : "");
}

void pack_job_summary(Packer &pk, const JobTable &jobs, const Job &job)
{
    size_t shards_done = 0;
    for (uint64_t cid : job.children)
        shards_done += jobs.find(cid)->state == JobState::done;
    pk.pack_map(13);
    pk.pack("shards"), pk.pack(job.children.size());
    pk.pack("shards_done"), pk.pack(shards_done);
    pk.pack("labels"), pk.pack(job.spec.labels);
    pk.pack("job_id"), pk.pack(job.id);
    pk.pack("repo"), pack_str(pk, job.spec.repo);
    pk.pack("branch"), pack_str(pk, job.spec.branch);
    pk.pack("commit"), pack_str(pk, job.spec.commit);
    pk.pack("state"), pk.pack(job_state_name(job.state));
    pk.pack("attempt"), pk.pack(job.attempt);
    pk.pack("runner"), pack_str(pk, job.runner);
    pk.pack("outcome"), pack_outcome(pk, job);
    pk.pack("created_unix_ms"), pk.pack(job.created_unix_ms);
    pk.pack("finished_unix_ms"), pk.pack(job.finished_unix_ms);
}

void pack_result(Packer &pk, const JobTable &jobs, const Job &job)
{
    const Result &r = job.result;
    pk.pack_map(15);
    pk.pack("shards");
    pk.pack_array(static_cast<uint32_t>(job.children.size()));
    for (uint64_t cid : job.children) {
        const Job &c = *jobs.find(cid);
        pk.pack_map(6);
        pk.pack("job_id"), pk.pack(c.id);
        pk.pack("shard"), pk.pack(c.shard);
        pk.pack("state"), pk.pack(job_state_name(c.state));
        pk.pack("runner"), pack_str(pk, c.runner);
        pk.pack("attempt"), pk.pack(c.attempt);
        pk.pack("tests"), pk.pack(c.tests.size());
    }
    pk.pack("job_id"), pk.pack(job.id);
    pk.pack("repo"), pack_str(pk, job.spec.repo);
    pk.pack("branch"), pack_str(pk, job.spec.branch);
    pk.pack("commit"), pack_str(pk, job.spec.commit);
    pk.pack("state"), pk.pack(job_state_name(job.state));
    pk.pack("outcome"), pack_outcome(pk, job);
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
        pk.pack("outcome"), pk.pack(kiln_outcome_name(t.outcome));
        pk.pack("duration_ms"), pk.pack(t.duration_ms);
        pk.pack("message"), pack_str(pk, t.message);
    }
}

} // namespace

std::string Queries::jobs(const std::vector<Job> &stored) const
{
    std::vector<const Job *> all;
    for (const Job &job : stored)
        if (!jobs_.find(job.id))
            all.push_back(&job); // finished, left memory: as stored
    for (const auto &[id, job] : jobs_.jobs())
        if (job.parent == 0)
            all.push_back(&job);
    std::stable_sort(all.begin(), all.end(),
                     [](const Job *a, const Job *b) { return a->id < b->id; });
    msgpack::sbuffer buf;
    Packer pk(buf);
    pk.pack_array(static_cast<uint32_t>(all.size()));
    for (const Job *job : all)
        pack_job_summary(pk, jobs_, *job);
    return std::string(buf.data(), buf.size());
}

std::string Queries::answer(const std::string &what, const std::string &arg,
                            std::string &error) const
{
    msgpack::sbuffer buf;
    Packer pk(buf);
    if (what == "status") {
        size_t passed = 0, failed = 0;
        for (const auto &[id, job] : jobs_.jobs())
            if (job.state == JobState::done && job.parent == 0)
                (job.result.outcome == KILN_PASSED ? passed : failed)++;
        // Per repository: what waits, what runs, what is done.
        std::map<std::string, std::array<size_t, 3>> repos;
        for (const auto &[id, job] : jobs_.jobs())
            if (job.parent == 0)
                repos[job.spec.repo][job.state == JobState::queued   ? 0
                                     : job.state == JobState::done ? 2
                                                                   : 1]++;
        // Finished commits no longer in memory.
        size_t stored_done = 0;
        for (const auto &[repo, tally] : jobs_.stored()) {
            if (!tally.done)
                continue;
            repos[repo][2] += tally.done;
            stored_done += tally.done;
            passed += tally.passed;
            failed += tally.done - tally.passed;
        }
        pk.pack_map(12);
        pk.pack("repos");
        pk.pack_map(static_cast<uint32_t>(repos.size()));
        for (const auto &[repo, n] : repos) {
            pk.pack(repo);
            pk.pack_map(3);
            pk.pack("queued"), pk.pack(n[0]);
            pk.pack("running"), pk.pack(n[1]);
            pk.pack("done"), pk.pack(n[2]);
        }
        pk.pack("version"), pk.pack(KILN_VERSION);
        pk.pack("listen"), pk.pack(config_.listen);
        pk.pack("uptime_s"), pk.pack((unix_ms() - started_unix_ms_) / 1000);
        pk.pack("runners"), pk.pack(runners_.size());
        pk.pack("queued"), pk.pack(jobs_.count(JobState::queued));
        pk.pack("running"), pk.pack(jobs_.count(JobState::assigned) + jobs_.count(JobState::split));
        pk.pack("done"), pk.pack(jobs_.count(JobState::done) + stored_done);
        pk.pack("passed"), pk.pack(passed);
        pk.pack("not_passed"), pk.pack(failed);
        pk.pack("store_backlog"), pk.pack(store_.backlog());
        // Jobs (shards too) in memory: live ones and the newest finished.
        pk.pack("jobs_in_memory"), pk.pack(jobs_.jobs().size());
    } else if (what == "runners") {
        pk.pack_array(static_cast<uint32_t>(runners_.size()));
        for (const auto &[name, r] : runners_.all()) {
            pk.pack_map(8);
            pk.pack("name"), pk.pack(name);
            pk.pack("state"), pk.pack(runner_state(r));
            pk.pack("peer"), pk.pack(r.conn->peer());
            pk.pack("slots"), pk.pack(r.slots);
            pk.pack("busy"), pk.pack(jobs_.held_by(name).size());
            pk.pack("labels"), pk.pack(r.labels);
            pk.pack("completed"), pk.pack(r.completed);
            pk.pack("connected_unix_ms"), pk.pack(r.connected_unix_ms);
        }
    } else if (what == "jobs") {
        // A commit's jobs; its shards show in `result`.
        uint32_t n = 0;
        for (const auto &[id, job] : jobs_.jobs())
            n += job.parent == 0;
        pk.pack_array(n);
        for (const auto &[id, job] : jobs_.jobs())
            if (job.parent == 0)
                pack_job_summary(pk, jobs_, job);
    } else if (what == "result") {
        const Job *job = jobs_.find_commit(arg);
        if (!job) {
            error = "no job for commit '" + arg + "' (unknown, ambiguous or shorter than 4)";
            return {};
        }
        pack_result(pk, jobs_, *job);
    } else if (what == "reports") {
        auto receivers = deliveries_.status(unix_ms());
        pk.pack_array(static_cast<uint32_t>(receivers.size()));
        for (const auto &r : receivers) {
            pk.pack_map(11);
            pk.pack("receiver"), pk.pack(r.receiver);
            pk.pack("plugin"), pk.pack(r.plugin);
            pk.pack("configured"), pk.pack(r.configured);
            pk.pack("pending"), pk.pack(r.pending);
            pk.pack("in_flight"), pk.pack(r.in_flight);
            pk.pack("rejected"), pk.pack(r.rejected);
            pk.pack("delivered"), pk.pack(r.delivered);
            pk.pack("retries"), pk.pack(r.failed);
            pk.pack("refused"), pk.pack(r.refused);
            pk.pack("next_attempt_unix_ms"), pk.pack(r.next_attempt_unix_ms);
            pk.pack("last_error"), pk.pack(r.last_error);
        }
    } else {
        error = "unknown query '" + what + "' (status, runners, jobs, result, reports)";
        return {};
    }
    return std::string(buf.data(), buf.size());
}

} // namespace kiln
