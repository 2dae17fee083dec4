// Runners: registering, handing them jobs, losing them (their jobs back to
// the queue), and finding them again after a restart (restart_grace, the
// first heartbeat of a runner that comes back).
#include "dispatcher.hpp"

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

#include <algorithm>

namespace kiln {

// From the heartbeat timer: once restart_grace has passed since the start,
// the jobs of the runners that held some then and have not come back go
// back to the queue.
void Dispatcher::expire_orphans()
{
    if (!runners_.expected() ||
        unix_ms() < started_unix_ms_ + static_cast<int64_t>(config_.restart_grace_ms))
        return;
    for (const auto &name : runners_.take_missing())
        release_runner(name, "did not come back within restart_grace after the restart");
}

// Every job the runner holds goes back to the queue (or ends), persisted.
void Dispatcher::release_runner(const std::string &name, const std::string &why, bool silent)
{
    auto released = jobs_.release_runner(name, config_.max_attempts, unix_ms());
    counters_.runner_released(silent, released.requeued.size());
    for (uint64_t id : released.requeued) {
        log_warning("job %llu: runner %s %s; requeued", static_cast<unsigned long long>(id),
                    name.c_str(), why.c_str());
        save(id);
        publish_job("requeued", *jobs_.find(id));
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
        counters_.runner_released(false, 1);
        log_warning("job %llu: %s; requeued", static_cast<unsigned long long>(job_id),
                    why.c_str());
        save(job_id);
        publish_job("requeued", *job);
    }
}

void Dispatcher::lose_runner(const std::string &name, const std::string &why, bool silent)
{
    if (!runners_.find(name))
        return;
    size_t held = jobs_.held_by(name).size();
    if (held)
        log_warning("runner %s: lost (%s); requeueing %zu job(s)", name.c_str(), why.c_str(),
                    held);
    runners_.remove(name);
    release_runner(name, "lost (" + why + ")", silent);
    schedule();
}

void Dispatcher::on_heartbeat(Connection &conn, const Heartbeat &hb)
{
    RunnerSlotInfo *found = conn.role == "runner" ? runners_.on(conn) : nullptr;
    if (!found || !found->awaiting_heartbeat)
        return;
    RunnerSlotInfo &runner = *found;
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

void Dispatcher::on_register(Connection &conn, const Register &reg)
{
    RunnerSlotInfo *existing = runners_.find(reg.name);
    if (existing && existing->conn.get() != &conn) {
        // The same runner again (it restarted, or its old connection is
        // half-dead): the newer connection wins.
        log_warning("runner %s: registered again from %s; dropping the old connection",
                    reg.name.c_str(), conn.peer().c_str());
        auto old = existing->conn;
        lose_runner(reg.name, "replaced by a new registration");
        old->close("replaced by a new registration");
    }
    bool again = conn.name == reg.name && runners_.find(reg.name);
    conn.name = reg.name;
    // Jobs this runner held before: it says in its first heartbeat which it
    // still runs; its spooled results come before that heartbeat.
    RunnerSlotInfo &runner =
        again ? *runners_.find(reg.name)
              : runners_.add(reg.name, conn.shared_from_this(), jobs_.held_by(reg.name), unix_ms());
    runner.slots = reg.paused.empty() ? reg.slots : 0; // paused: no new jobs
    runner.labels = reg.labels;
    runner.paused = reg.paused;
    store_.save_runner(reg.name, reg.slots, reg.labels, unix_ms());
    conn.send(Ack{reg.id, 0});
    if (!reg.paused.empty())
        log_notice("runner %s: paused: %s", reg.name.c_str(), reg.paused.c_str());
    else if (reg.slots == 0)
        log_notice("runner %s: draining (%zu job(s) still running)", reg.name.c_str(),
                   jobs_.held_by(reg.name).size());
    else
        log_notice("runner %s: registered from %s with %u slot(s)%s", reg.name.c_str(),
                   conn.peer().c_str(), runner.slots,
                   runner.adopted.empty() ? "" : ", holding jobs from before");
    schedule();
}

void Dispatcher::schedule()
{
    // Called after every commit and result: leave at once when nothing can move.
    if (jobs_.queues().empty() ||
        std::none_of(runners_.all().begin(), runners_.all().end(), [this](const auto &r) {
            return jobs_.held_by(r.first).size() < r.second.slots;
        }))
        return;
    // A snapshot of the slots; the picks below keep its busy counts current.
    std::vector<Scheduler::Runner> slots;
    std::vector<const RunnerSlotInfo *> infos;
    for (const auto &[name, runner] : runners_.all()) {
        slots.push_back({name, runner.slots, static_cast<uint32_t>(jobs_.held_by(name).size()),
                         &runner.labels});
        infos.push_back(&runner);
    }
    while (auto pick = scheduler_.next(jobs_, slots)) {
        const RunnerSlotInfo *runner = infos[pick->runner];
        slots[pick->runner].busy++;
        for_job(pick->job_id, "assigning", [&] { assign(pick->job_id, *runner); });
    }
}

void Dispatcher::assign(uint64_t id, const RunnerSlotInfo &runner)
{
    jobs_.assign(id, runner.name, unix_ms());
    const Job *job = jobs_.find(id);
    log_debug("job %llu: assigned to %s (attempt %u)%s", static_cast<unsigned long long>(id),
              runner.name.c_str(), job->attempt, job->listing() ? " to list its tests" : "");
    publish_job("started", *job);
    Assign assign;
    assign.job_id = id;
    assign.attempt = job->attempt;
    assign.spec = job->spec;
    assign.list = job->listing();
    assign.tests = job->tests;
    assign.shard_index = job->shard;
    assign.shard_count = job->shards;
    // Tell the runner once the assignment is on disk, so that after a
    // crash the dispatcher never forgets a job a runner is running.
    std::weak_ptr<Connection> weak = runner.conn;
    save_event(id, KILN_EVENT_STARTED, [this, weak, assign, name = runner.name] {
        for_job(assign.job_id, "sending an assignment", [&] {
            const Job *now = jobs_.find(assign.job_id);
            auto conn = weak.lock();
            if (conn && now && now->state == JobState::assigned && now->runner == name &&
                now->attempt == assign.attempt)
                conn->send(assign);
        });
    });
}

} // namespace kiln
