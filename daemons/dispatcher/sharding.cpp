// Shards and superseding: a listed commit split over runners, and older
// commits of a branch cancelled when a newer one arrives.
#include "dispatcher.hpp"

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

#include "shard_planner.hpp"

namespace kiln {

void Dispatcher::on_test_list(Connection &conn, const TestList &list)
{
    for_job(list.job_id, "splitting into shards", [&] { split_job(conn, list); });
}

void Dispatcher::split_job(Connection &conn, const TestList &list)
{
    std::weak_ptr<Connection> weak = conn.shared_from_this();
    Ack ack{list.id, list.job_id};
    auto send_ack = [weak, ack] {
        if (auto c = weak.lock())
            c->send(ack);
    };
    const Job *job = jobs_.find(list.job_id);
    std::vector<std::vector<std::string>> plan;
    if (job && list.error.empty()) {
        // "auto": one shard per slot that could take it, now.
        uint32_t shards = job->spec.shards;
        if (shards == 0)
            shards = runners_.slots_for(job->spec.labels);
        plan = plan_shards(list.tests, store_.durations(job->spec.repo), std::max(shards, 1u));
    }
    std::vector<uint64_t> children;
    auto verdict = jobs_.split(list, conn.name, plan, unix_ms(), children);
    switch (verdict) {
    case JobTable::Verdict::recorded:
        job = jobs_.find(list.job_id);
        if (job->state == JobState::done) { // cancelled while it listed
            job_ended(list.job_id, send_ack);
            break;
        }
        if (children.empty())
            log_warning("job %llu: %s; running it unsplit", static_cast<unsigned long long>(job->id),
                        list.error.empty() ? "fewer than two shards to make" : list.error.c_str());
        else
            log_info("job %llu: %zu tests in %zu shards", static_cast<unsigned long long>(job->id),
                     list.tests.size(), children.size());
        for (uint64_t cid : children)
            save(cid);
        save(list.job_id, send_ack);
        break;
    case JobTable::Verdict::duplicate:
        store_.sync(send_ack);
        break;
    default:
        send_ack();
        log_warning("job %llu: discarding a test list from %s: the job is no longer theirs",
                    static_cast<unsigned long long>(list.job_id), conn.name.c_str());
    }
    schedule();
}

// Cancel every unfinished job of the same branch older than `newer`.
void Dispatcher::supersede(const Job &newer)
{
    std::vector<uint64_t> older;
    for (const auto &[id, job] : jobs_.jobs())
        if (id < newer.id && job.parent == 0 && job.state != JobState::done &&
            job.spec.repo == newer.spec.repo && job.spec.branch == newer.spec.branch)
            older.push_back(id);
    std::string why = "superseded by " + newer.spec.commit.substr(0, 12);
    for (uint64_t id : older) {
        log_info("job %llu: %s", static_cast<unsigned long long>(id), why.c_str());
        cancel_job(id, why);
    }
}

void Dispatcher::cancel_job(uint64_t job_id, const std::string &why)
{
    std::vector<uint64_t> family = {job_id};
    if (const Job *job = jobs_.find(job_id))
        family.insert(family.end(), job->children.begin(), job->children.end());
    std::vector<JobState> before;
    for (uint64_t id : family)
        before.push_back(jobs_.find(id)->state);
    jobs_.cancel(job_id, why, unix_ms());
    for (size_t i = 0; i < family.size(); i++) {
        const Job *job = jobs_.find(family[i]);
        if (job->state == JobState::done && before[i] != JobState::done) {
            job_ended(job->id); // was queued: cancelled at once
        } else if (job->state == JobState::assigned) {
            // Its runner kills the tests and answers with a "cancelled" result.
            if (auto *runner = runners_.find(job->runner))
                runner->conn->send(Cancel{job->id, job->attempt});
        }
    }
}

} // namespace kiln
