// A job from commit to report: queueing a commit, recording its result
// (idempotent by job and attempt), acknowledging once durable, raising its
// report events (QUEUED, FINISHED), and kilnctl retry.
#include "dispatcher.hpp"

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

namespace kiln {

void Dispatcher::on_commit(Connection &conn, const Commit &commit)
{
    // In arrival order, once the store has said whether it knows the commit.
    intake_queue_.push_back({conn.shared_from_this(), commit});
    intake_next();
}

void Dispatcher::admit_commit(Connection &conn, const Commit &commit, uint64_t stored_id)
{
    if (stored_id && jobs_.admit(commit.spec, SIZE_MAX) != JobTable::Admission::known) {
        // Finished long ago and no longer in memory: the same answer as ever.
        std::weak_ptr<Connection> weak = conn.shared_from_this();
        Ack ack{commit.id, stored_id};
        store_.sync([weak, ack] {
            if (auto c = weak.lock())
                c->send(ack);
        });
        return;
    }
    if (intake_.refuse(conn, commit, jobs_, config_.max_queued_per_repo))
        return;
    auto [job, is_new] = jobs_.add(commit.spec, unix_ms());
    // Acknowledge only what is on disk: a known commit may still be in the
    // batch being committed, so wait for that too.
    std::weak_ptr<Connection> weak = conn.shared_from_this();
    Ack ack{commit.id, job->id};
    auto send_ack = [weak, ack] {
        if (auto c = weak.lock())
            c->send(ack);
    };
    if (!is_new) {
        store_.sync(send_ack);
        return;
    }
    log_debug("job %llu: queued %s %s %.12s", static_cast<unsigned long long>(job->id),
             job->spec.repo.c_str(), job->spec.branch.c_str(), job->spec.commit.c_str());
    save_event(job->id, KILN_EVENT_QUEUED, send_ack);
    publish_job("queued", *job);
    if (job->spec.cancel_superseded)
        supersede(*job);
    schedule();
}

void Dispatcher::on_result(Connection &conn, const Result &result)
{
    for_job(result.job_id, "recording a result", [&] { record_result(conn, result); });
}

void Dispatcher::record_result(Connection &conn, const Result &result)
{
    auto verdict = jobs_.record(result, conn.name, unix_ms());
    // Acknowledge whatever the verdict — the runner may then forget the
    // result — but a recorded one only once it is on disk.
    std::weak_ptr<Connection> weak = conn.shared_from_this();
    Ack ack{result.id, result.job_id};
    auto send_ack = [weak, ack] {
        if (auto c = weak.lock())
            c->send(ack);
    };
    RunnerSlotInfo *runner = runners_.find(conn.name);
    switch (verdict) {
    case JobTable::Verdict::recorded: {
        if (runner)
            runner->completed++;
        const Job *job = jobs_.find(result.job_id);
        // What each test took, for planning this repository's next shards.
        store_.save_durations(job->spec.repo, result.tests);
        job_ended(result.job_id, send_ack);
        break;
    }
    case JobTable::Verdict::duplicate:
        log_info("job %llu: result of attempt %u received again; already recorded",
                 static_cast<unsigned long long>(result.job_id), result.attempt);
        store_.sync(send_ack);
        break;
    case JobTable::Verdict::stale:
        send_ack();
        log_warning("job %llu: discarding result of attempt %u from %s: the job is no longer "
                    "theirs",
                    static_cast<unsigned long long>(result.job_id), result.attempt,
                    conn.name.c_str());
        break;
    case JobTable::Verdict::unknown:
        send_ack();
        log_warning("runner %s: result for unknown job %llu discarded", conn.name.c_str(),
                    static_cast<unsigned long long>(result.job_id));
        break;
    }
    schedule();
}

void Dispatcher::job_ended(uint64_t job_id, Store::Durable durable)
{
    live_logs_.end(job_id); // followers now read the result's log
    counters_.job_finished(*jobs_.find(job_id));
    // A commit's result and its FINISHED rows commit together: "reported"
    // means its report is queued in the outbox.
    const Job *ended = jobs_.find(job_id);
    bool finish = !ended->parent && !ended->reported;
    if (finish)
        jobs_.set_reported(job_id);
    save_event(job_id, finish ? KILN_EVENT_FINISHED : 0, [this, job_id, durable, finish] { for_job(job_id, "logging a result", [&] {
        // Logged once durable: the line means "recorded", which the chaos
        // test counts across crashes (one per commit: shards log differently).
        const Job *job = jobs_.find(job_id);
        if (job->parent)
            log_info("job %llu: shard %u/%u of job %llu %s by %s",
                     static_cast<unsigned long long>(job_id), job->shard + 1, job->shards,
                     static_cast<unsigned long long>(job->parent), kiln_outcome_name(job->result.outcome),
                     job->runner.c_str());
        else
            log_notice("job %llu: %s %.12s %s by %s", static_cast<unsigned long long>(job_id),
                       job->spec.repo.c_str(), job->spec.commit.c_str(),
                       kiln_outcome_name(job->result.outcome), job->runner.c_str());
        publish_job(job->parent ? "shard" : "finished", *job);
        if (finish)
            retire(job_id); // its FINISHED rows are accepted: it may leave memory
        if (durable)
            durable();
    }); });
    const Job *job = jobs_.find(job_id);
    if (job->parent && jobs_.finish_if_complete(job->parent, unix_ms()))
        job_ended(job->parent);
}

void Dispatcher::retry(Connection &conn, const Query &q)
{
    const Job *job = jobs_.find_commit(q.arg);
    if (!job) {
        refuse_query(conn, q,
                     "no job for commit '" + q.arg + "' (unknown, ambiguous or shorter than 4)");
        return;
    }
    uint64_t id = job->id;
    if (!jobs_.retry(id)) {
        refuse_query(conn, q,
                     "job " + std::to_string(id) + " is " + job_state_name(job->state) +
                         "; only a finished job can be retried");
        return;
    }
    counters_.reruns["retry"]++;
    log_notice("job %llu: retry requested; queued", static_cast<unsigned long long>(id));
    std::weak_ptr<Connection> weak = conn.shared_from_this();
    save_event(id, KILN_EVENT_QUEUED, [this, weak, q] {
        std::string error;
        std::string body = query("result", q.arg, error);
        if (auto c = weak.lock())
            c->send(Reply{q.id, body});
    });
    schedule();
}

} // namespace kiln
