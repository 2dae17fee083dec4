// Results: recording (idempotent by job and attempt), acknowledging once
// durable, handing to the report plugins, and kilnctl retry.
#include "dispatcher.hpp"

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

namespace kiln {

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
    auto runner = runners_.find(conn.name);
    switch (verdict) {
    case JobTable::Verdict::recorded: {
        if (runner != runners_.end())
            runner->second.completed++;
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
    // With no report plugin there is nothing to report: one write, not two.
    if (reporters_->empty())
        jobs_.set_reported(job_id);
    save(job_id, [this, job_id, durable] { for_job(job_id, "reporting", [&] {
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
        if (durable)
            durable();
        if (!job->parent && !job->reported)
            report(*job);
    }); });
    const Job *job = jobs_.find(job_id);
    if (job->parent && jobs_.finish_if_complete(job->parent, unix_ms()))
        job_ended(job->parent);
}

void Dispatcher::report(const Job &job)
{
    std::vector<kiln_test_result> tests;
    tests.reserve(job.result.tests.size());
    for (const auto &t : job.result.tests)
        tests.push_back({t.name.c_str(), t.outcome, t.duration_ms,
                         t.message.empty() ? nullptr : t.message.c_str()});
    kiln_report rep{};
    rep.repo = job.spec.repo.c_str();
    rep.branch = job.spec.branch.c_str();
    rep.commit = job.spec.commit.c_str();
    rep.outcome = job.result.outcome;
    rep.runner = job.runner.c_str();
    rep.job_id = job.id;
    rep.attempt = job.attempt;
    rep.started_unix_ms = job.result.started_unix_ms;
    rep.finished_unix_ms = job.result.finished_unix_ms ? job.result.finished_unix_ms
                                                        : job.finished_unix_ms;
    rep.tests = tests.data();
    rep.n_tests = tests.size();
    rep.log = job.result.log.data();
    rep.log_len = job.result.log.size();
    rep.error = job.result.error.empty() ? nullptr : job.result.error.c_str();
    // Once every plugin has it, the job is marked reported (persisted), so a
    // restart does not report it again.
    struct Pending {
        Dispatcher *self;
        uint64_t job_id;
        size_t left;
    };
    auto *pending = new Pending{this, job.id, reporters_->size() + 1};
    auto finish_one = [](Pending *p) {
        if (--p->left > 0)
            return;
        p->self->jobs_.set_reported(p->job_id);
        p->self->save(p->job_id);
        delete p;
    };
    for (const auto &plugin : *reporters_) {
        struct Call {
            Pending *pending;
            std::string name;
            void (*finish)(Pending *);
            std::shared_ptr<Reporters> plugins; // a reload unloads them once no call holds them
        };
        auto *call = new Call{pending, plugin->name(), finish_one, reporters_};
        void *op = nullptr;
        int rc = plugin->report().report(
            plugin->self(), &rep,
            [](void *arg, int status, const char *error) {
                std::unique_ptr<Call> call(static_cast<Call *>(arg));
                if (status != 0)
                    log_err("report %s: %s", call->name.c_str(), error ? error : "failed");
                call->finish(call->pending);
            },
            call, &op);
        if (rc != 0) {
            log_err("report %s: cannot start: %s", call->name.c_str(), uv_strerror(rc));
            finish_one(pending);
            delete call;
        }
    }
    finish_one(pending);
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
    log_notice("job %llu: retry requested; queued", static_cast<unsigned long long>(id));
    std::weak_ptr<Connection> weak = conn.shared_from_this();
    save(id, [this, weak, q] {
        std::string error;
        std::string body = query("result", q.arg, error);
        if (auto c = weak.lock())
            c->send(Reply{q.id, body});
    });
    schedule();
}

} // namespace kiln
