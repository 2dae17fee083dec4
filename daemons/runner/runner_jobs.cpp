// kiln-runner: the jobs the dispatcher assigns or cancels, and their
// results and test lists, each spooled, sent, acked and unspooled.
#include "runner.hpp"

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

#include "disk_full.hpp"

namespace kiln {

using ull = unsigned long long;

// ---- jobs ----

void Runner::reject(const Assign &assign, const std::string &why)
{
    log_err("job %llu: %s", static_cast<ull>(assign.job_id), why.c_str());
    if (assign.list)
        return deliver(TestList{0, assign.job_id, assign.attempt, assign.spec.commit, {},
                                "runner " + config_.name + ": " + why});
    Result r;
    r.job_id = assign.job_id;
    r.attempt = assign.attempt;
    r.commit = assign.spec.commit;
    r.outcome = KILN_ERROR;
    r.error = "runner " + config_.name + ": " + why;
    r.started_unix_ms = r.finished_unix_ms = unix_ms();
    deliver(std::move(r));
}

void Runner::on_assign(const Assign &assign)
{
    if (stopping_) {
        log_info("job %llu: assigned while stopping; ignored (requeued when we disconnect)",
                 static_cast<ull>(assign.job_id));
        return;
    }
    if (sweeping_) {
        // Mirrors are being removed: the job could pick one half gone.  It
        // starts when the sweep ends (listed in our heartbeats meanwhile).
        log_info("job %llu: starts once the mirror sweep is over",
                 static_cast<ull>(assign.job_id));
        deferred_.push_back(assign);
        return;
    }
    if (!paused_.empty())
        // Sent before the dispatcher heard we paused: run it (it may fail
        // for want of space, and says so).
        log_warning("job %llu: assigned while paused (%s); running it anyway",
                    static_cast<ull>(assign.job_id), paused_.c_str());
    if (running_.count(assign.job_id)) {
        log_warning("job %llu: assigned again while running; ignored",
                    static_cast<ull>(assign.job_id));
        return;
    }
    for (const auto &[id, pending] : unacked_)
        if (delivery_job_id(pending.what) == assign.job_id &&
            delivery_attempt(pending.what) == assign.attempt &&
            is_test_list(pending.what) == assign.list) {
            // A dispatcher back from a restart may assign again what we ran
            // while it was away: the held result answers it.
            log_info("job %llu: attempt %u already ran here; its %s is being delivered",
                     static_cast<ull>(assign.job_id), assign.attempt, what_of(pending.what));
            return;
        }
    auto vcs = vcs_.find(assign.spec.vcs);
    auto exec = exec_.find(assign.spec.exec);
    if (vcs == vcs_.end())
        return reject(assign, "no vcs plugin '" + assign.spec.vcs + "' loaded here");
    if (exec == exec_.end())
        return reject(assign, "no exec plugin '" + assign.spec.exec + "' loaded here");
    if (assign.list && !exec->second->exec().list)
        return reject(assign, "plugin " + assign.spec.exec + " cannot list tests");
    if (running_.size() >= config_.slots)
        // The dispatcher counts our slots; more than that means its view and
        // ours differ (a reconnect).  Running it anyway loses nothing.
        log_warning("job %llu: assigned with all %u slot(s) busy; running it anyway",
                    static_cast<ull>(assign.job_id), config_.slots);
    // Names were validated by the decoder: job ids and numbers make a safe path.
    std::string workspace = config_.work_dir + "/workspaces/job-" +
                            std::to_string(assign.job_id) + "-" + std::to_string(assign.attempt);
    std::string cache = config_.work_dir + "/cache/" + assign.spec.vcs;
    auto run = std::make_unique<JobRun>(
        loop_, assign, *vcs->second, *exec->second, workspace, cache, config_.keep_workspaces,
        config_.max_log,
        [this](JobRun &r, Delivery &&what) {
            guarded("job done", [&] { on_job_done(r, std::move(what)); });
        });
    std::optional<SpawnUser> owner;
    if (!config_.test_user.empty())
        owner = SpawnUser{config_.test_uid, config_.test_gid};
    run->isolate(config_.sandbox, owner);
    run->stream_log([this](LogChunk &&chunk) { return send_log_chunk(std::move(chunk)); });
    JobRun &ref = *run;
    running_[assign.job_id] = std::move(run);
    ref.start();
}

// Cancel from the dispatcher (a superseded commit, an operator): kill what
// the job runs; its Result, "cancelled", follows through on_job_done and is
// spooled and acked like any other.
void Runner::on_cancel(const Cancel &cancel)
{
    for (auto d = deferred_.begin(); d != deferred_.end(); ++d)
        if (d->job_id == cancel.job_id && d->attempt == cancel.attempt) {
            // Waiting for the mirror sweep: it never starts.
            Assign assign = *d;
            deferred_.erase(d);
            log_notice("job %llu: cancelled by the dispatcher before it started",
                       static_cast<ull>(cancel.job_id));
            if (assign.list)
                return deliver(TestList{0, assign.job_id, assign.attempt, assign.spec.commit, {},
                                        "cancelled before it started"});
            Result r;
            r.job_id = assign.job_id;
            r.attempt = assign.attempt;
            r.commit = assign.spec.commit;
            r.outcome = KILN_CANCELLED;
            r.error = "cancelled before it started";
            r.started_unix_ms = r.finished_unix_ms = unix_ms();
            return deliver(std::move(r));
        }
    auto it = running_.find(cancel.job_id);
    if (it == running_.end() || it->second->attempt() != cancel.attempt) {
        // Over already (its result may be on its way), or never ours.
        log_debug("job %llu: cancel of attempt %u: not running here; ignored",
                  static_cast<ull>(cancel.job_id), cancel.attempt);
        return;
    }
    log_notice("job %llu: cancelled by the dispatcher", static_cast<ull>(cancel.job_id));
    it->second->cancel();
}

void Runner::on_job_done(JobRun &run, Delivery &&what)
{
    uint64_t job_id = run.job_id();
    if (auto *r = std::get_if<Result>(&what);
        r && mark_disk_full(*r, config_.name, config_.work_dir)) {
        log_err("job %llu: work_dir %s filled up: outcome error", static_cast<ull>(job_id),
                config_.work_dir.c_str());
        disk_.check(); // pause now if it stays short of min_free
    }
    if (aborting_)
        log_notice("job %llu: cancelled by the stop; handed back to the dispatcher",
                   static_cast<ull>(job_id));
    else
        deliver(std::move(what));
    // Destroy the run from the next statement on: we are inside its callback.
    auto it = running_.find(job_id);
    if (it != running_.end()) {
        auto owned = std::move(it->second);
        running_.erase(it);
        auto *idle = new uv_idle_t;
        uv_idle_init(loop_, idle);
        idle->data = owned.release();
        uv_idle_start(idle, [](uv_idle_t *h) noexcept {
            delete static_cast<JobRun *>(h->data);
            uv_close(reinterpret_cast<uv_handle_t *>(h),
                     [](uv_handle_t *hh) noexcept { delete reinterpret_cast<uv_idle_t *>(hh); });
        });
    }
    check_drained();
}

// ---- results: spooled, sent, acked, unspooled ----

void Runner::deliver(Delivery &&what)
{
    uint64_t id = next_request_id_++;
    set_request_id(what, id);
    fit_in_frame(what, config_.max_frame);
    if (auto *r = std::get_if<Result>(&what))
        log_notice("job %llu: %s (%zu tests)", static_cast<ull>(r->job_id), kiln_outcome_name(r->outcome),
                   r->tests.size());
    else if (auto *l = std::get_if<TestList>(&what); l->error.empty())
        log_notice("job %llu: listed %zu tests", static_cast<ull>(l->job_id), l->tests.size());
    else
        log_notice("job %llu: cannot list tests: %s", static_cast<ull>(l->job_id),
                   l->error.c_str());
    Pending &pending = unacked_[id];
    pending.what = std::move(what);
    // On disk before it is sent: once the dispatcher has it, we must be able
    // to deliver it again whatever happens to this process.
    std::weak_ptr<Runner *> weak = alive_;
    spool_.save(pending.what, [weak, id](int status) {
        auto alive = weak.lock();
        if (alive && *alive)
            guarded("spooled", [&] { (*alive)->on_spooled(id, status); });
    });
}

void Runner::on_spooled(uint64_t id, int status)
{
    auto it = unacked_.find(id);
    if (it == unacked_.end())
        return;
    Pending &pending = it->second;
    if (status != 0)
        log_err("job %llu: cannot spool its %s in %s: %s; held in memory only",
                static_cast<ull>(delivery_job_id(pending.what)), what_of(pending.what),
                spool_.dir().c_str(), uv_strerror(status));
    pending.ready = true;
    if (registered_ && !stopped_)
        client_.send(to_message(pending.what));
}

// ---- live logs ----

bool Runner::send_log_chunk(LogChunk &&chunk)
{
    if (!registered_ || old_dispatcher_)
        return false;
    chunk.id = next_request_id_++;
    log_chunks_[chunk.id] = chunk.job_id;
    client_.send(chunk);
    return true;
}

void Runner::on_log_acked(uint64_t request_id, const Ack &ack)
{
    auto it = log_chunks_.find(request_id);
    auto run = running_.find(it->second);
    log_chunks_.erase(it);
    if (run != running_.end() && run->second->live_log())
        run->second->live_log()->acked(ack.offset);
}

void Runner::on_acked(uint64_t id)
{
    auto it = unacked_.find(id);
    if (it == unacked_.end())
        return;
    const Delivery &d = it->second.what;
    uint64_t job_id = delivery_job_id(d);
    uint32_t attempt = delivery_attempt(d);
    log_debug("job %llu: %s acknowledged", static_cast<ull>(job_id), what_of(d));
    spool_.remove(job_id, attempt, is_test_list(d), [job_id, attempt](int status) {
        // Left behind, it is delivered again at the next start, and acked as
        // a duplicate: untidy, not wrong.  (A printf-style log: cannot throw.)
        if (status != 0 && status != UV_ENOENT)
            log_warning("job %llu: cannot remove spooled result of attempt %u: %s",
                        static_cast<ull>(job_id), attempt, uv_strerror(status));
    });
    unacked_.erase(it);
    check_drained();
}

} // namespace kiln
