// Losing and finding runners: requeueing the jobs of a lost runner, the
// jobs that wait for their runner after a dispatcher restart, and the
// first heartbeat of a runner that comes back.
#include "dispatcher.hpp"

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

namespace kiln {

// From the heartbeat timer: once restart_grace has passed since the start,
// the jobs of the runners that held some then and have not come back go
// back to the queue.
void Dispatcher::expire_orphans()
{
    if (orphans_.empty() ||
        unix_ms() < started_unix_ms_ + static_cast<int64_t>(config_.restart_grace_ms))
        return;
    auto orphans = std::move(orphans_);
    orphans_.clear();
    for (const auto &name : orphans)
        if (!runners_.count(name))
            release_runner(name, "did not come back within restart_grace after the restart");
}

// Every job the runner holds goes back to the queue (or ends), persisted.
void Dispatcher::release_runner(const std::string &name, const std::string &why)
{
    auto released = jobs_.release_runner(name, config_.max_attempts, unix_ms());
    for (uint64_t id : released.requeued) {
        log_warning("job %llu: runner %s %s; requeued", static_cast<unsigned long long>(id),
                    name.c_str(), why.c_str());
        save(id);
    }
    for (uint64_t id : released.ended) {
        log_err("job %llu: runner %s %s; %s", static_cast<unsigned long long>(id), name.c_str(),
                why.c_str(), jobs_.find(id)->result.error.c_str());
        job_ended(id);
    }
}

// Requeue one assigned job (or end it with an error result after
// max_attempts), persist that, and report an ending.
void Dispatcher::release(uint64_t job_id, const std::string &why)
{
    bool ended = jobs_.release_job(job_id, config_.max_attempts, unix_ms());
    const Job *job = jobs_.find(job_id);
    if (ended) {
        log_err("job %llu: %s; %s", static_cast<unsigned long long>(job_id), why.c_str(),
                job->result.error.c_str());
        job_ended(job_id);
    } else {
        log_warning("job %llu: %s; requeued", static_cast<unsigned long long>(job_id),
                    why.c_str());
        save(job_id);
    }
}

void Dispatcher::lose_runner(const std::string &name, const std::string &why)
{
    auto it = runners_.find(name);
    if (it == runners_.end())
        return;
    size_t held = jobs_.held_by(name).size();
    if (held)
        log_warning("runner %s: lost (%s); requeueing %zu job(s)", name.c_str(), why.c_str(),
                    held);
    runners_.erase(it);
    release_runner(name, "lost (" + why + ")");
    schedule();
}

void Dispatcher::on_heartbeat(Connection &conn, const Heartbeat &hb)
{
    auto it = runners_.find(conn.name);
    if (conn.role != "runner" || it == runners_.end() || it->second.conn.get() != &conn ||
        !it->second.awaiting_heartbeat)
        return;
    RunnerSlotInfo &runner = it->second;
    runner.awaiting_heartbeat = false;
    std::set<uint64_t> running(hb.jobs.begin(), hb.jobs.end());
    auto adopted = std::move(runner.adopted);
    runner.adopted.clear();
    for (uint64_t id : adopted) {
        const Job *job = jobs_.find(id);
        if (running.count(id) || !job || job->state != JobState::assigned ||
            job->runner != runner.name)
            continue;
        release(id, "runner " + runner.name + " came back without it");
    }
    schedule();
}

} // namespace kiln
