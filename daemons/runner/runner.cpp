// kiln-runner: dispatcher connection, registration, heartbeats, jobs.
#include "runner.hpp"

#include <algorithm>

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

namespace kiln {

using ull = unsigned long long;

Runner::Runner(uv_loop_t *loop, RunnerConfig config)
    : loop_(loop), config_(std::move(config)),
      client_(loop, config_.dispatcher, config_.max_frame),
      spool_(loop, config_.work_dir + "/spool"), groups_(loop, config_.work_dir + "/groups"),
      alive_(std::make_shared<Runner *>(this))
{
    handshake_ = ClientHandshake("runner", config_.name, config_.secret);
    auto dirs = plugin_dirs(config_.plugin_dirs);
    for (const auto &name : config_.vcs_plugins)
        vcs_[name] = load_plugin(loop_, dirs, name, KILN_PLUGIN_VCS,
                                 config_.plugin_tables.table(name), "kiln-runner");
    for (const auto &name : config_.exec_plugins)
        exec_[name] = load_plugin(loop_, dirs, name, KILN_PLUGIN_EXEC,
                                  config_.plugin_tables.table(name), "kiln-runner");
    // A [plugin.X] table for a plugin nobody loads is a mistake worth naming.
    config_.plugin_tables.reject_unknown_keys();
    // The exec plugins start the tests: those spawns are isolated.  The vcs
    // plugins' are not (git fetches, and runs no repository code).
    for (auto &[name, plugin] : exec_)
        plugin->set_spawn_hook([this, name = name](const kiln_spawn_request &req,
                                                   kiln_spawn_cb cb, void *arg,
                                                   kiln_process **proc) {
            return spawn_test(name, req, cb, arg, proc);
        });

    client_.on_connected = [this](Connection &conn) {
        guarded("connected", [&] { on_connected(conn); });
    };
    client_.on_message = [this](Connection &conn, Message &&msg) {
        guarded(message_type(msg), [&] { on_message(conn, std::move(msg)); });
    };
    client_.on_disconnected = [this](const std::string &why) {
        guarded("disconnected", [&] { on_disconnected(why); });
    };
}

void Runner::on_disconnected(const std::string &why)
{
    if (stopped_)
        log_info("dispatcher %s: disconnected: %s", client_.address().c_str(), why.c_str());
    else if (registered_)
        log_warning("dispatcher %s: disconnected: %s%s", client_.address().c_str(), why.c_str(),
                    running_.empty() ? "" : "; running jobs go on, their results are spooled");
    registered_ = false;
    check_drained(); // a stopping runner need not wait to deliver what is spooled
}

Runner::~Runner()
{
    *alive_ = nullptr;
    running_.clear();
    for (uv_timer_t *t : {heartbeat_timer_, stop_timer_})
        if (t)
            uv_close(reinterpret_cast<uv_handle_t *>(t),
                     [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
}

void Runner::start()
{
    // Tests an earlier run of this runner left running when it died: they
    // would compete with ours for the machine and write into workspaces
    // that jobs reuse.  Killed before we take a job.
    groups_.kill_leftovers();
    // Results of an earlier run that were never acked: delivered after the
    // first registration, with request ids of this process.
    for (Delivery &d : spool_.load()) {
        log_notice("job %llu: %s of attempt %u found in the spool; delivering it",
                   static_cast<ull>(delivery_job_id(d)), what_of(d), delivery_attempt(d));
        uint64_t id = next_request_id_++;
        set_request_id(d, id);
        unacked_[id] = Pending{std::move(d), true};
    }
    prepare_isolation();
    heartbeat_timer_ = new uv_timer_t;
    uv_timer_init(loop_, heartbeat_timer_);
    heartbeat_timer_->data = this;
    uv_timer_start(heartbeat_timer_, on_heartbeat_timer, config_.heartbeat_interval_ms,
                   config_.heartbeat_interval_ms);
    log_notice("runner %s: %u slot(s), work dir %s, dispatcher %s", config_.name.c_str(),
               config_.slots, config_.work_dir.c_str(), config_.dispatcher.c_str());
    client_.start();
}

// ---- SIGHUP, STATUS= ----

void Runner::reload(RunnerConfig c)
{
    warn_needs_restart("dispatcher", c.dispatcher != config_.dispatcher);
    warn_needs_restart("name", c.name != config_.name);
    warn_needs_restart("work_dir", c.work_dir != config_.work_dir);
    warn_needs_restart("plugin_dir", c.plugin_dirs != config_.plugin_dirs);
    warn_needs_restart("vcs", c.vcs_plugins != config_.vcs_plugins);
    warn_needs_restart("exec", c.exec_plugins != config_.exec_plugins);
    warn_needs_restart("max_frame", c.max_frame != config_.max_frame);
    // Checked and prepared at start-up (bwrap probed, work_dir opened to the user).
    warn_needs_restart("sandbox", c.sandbox != config_.sandbox);
    warn_needs_restart("test_user", c.test_user != config_.test_user);

    bool reregister = c.slots != config_.slots || c.labels != config_.labels;
    bool heartbeat = c.heartbeat_interval_ms != config_.heartbeat_interval_ms;
    config_.slots = c.slots;
    config_.labels = c.labels;
    config_.heartbeat_interval_ms = c.heartbeat_interval_ms;
    config_.dispatcher_timeout_ms = c.dispatcher_timeout_ms;
    config_.stop_timeout_ms = c.stop_timeout_ms;
    config_.keep_workspaces = c.keep_workspaces;
    config_.env_allow = c.env_allow; // for the tests started from now on
    handshake_.set_key(c.secret);
    config_.max_log = std::min(c.max_log, config_.max_frame - (1u << 20));

    if (heartbeat && heartbeat_timer_ && !stopped_)
        uv_timer_start(heartbeat_timer_, on_heartbeat_timer, config_.heartbeat_interval_ms,
                       config_.heartbeat_interval_ms);
    if (Connection *conn = client_.connection())
        conn->set_idle_timeout(config_.dispatcher_timeout_ms);
    log_notice("reload: runner %s: %u slot(s), labels [%zu], heartbeat every %llu ms",
               config_.name.c_str(), config_.slots, config_.labels.size(),
               static_cast<ull>(config_.heartbeat_interval_ms));
    if (reregister && registered_ && !stopping_)
        send_register(); // same connection: the dispatcher updates slots and labels
}

std::string Runner::status() const
{
    std::string s;
    if (stopping_)
        s = "stopping; ";
    if (running_.empty()) {
        s += "idle";
    } else {
        s += running_.size() == 1 ? "running job" : "running jobs";
        const char *sep = " ";
        for (const auto &entry : running_) {
            s += sep + std::to_string(entry.first);
            sep = ", ";
        }
    }
    s += "; " + std::to_string(running_.size()) + "/" + std::to_string(config_.slots) + " slot(s)";
    if (!registered_)
        s += "; not connected to " + config_.dispatcher;
    if (!unacked_.empty())
        s += "; " + std::to_string(unacked_.size()) + " result(s) unacknowledged";
    return s;
}

// ---- stopping ----

void Runner::stop()
{
    guarded("stop", [this] { begin_stop(); });
}

void Runner::begin_stop()
{
    if (stopping_)
        return;
    stopping_ = true;
    log_notice("runner %s: stopping: %zu job(s) running, %zu result(s) unacknowledged; waiting "
               "up to %llu ms",
               config_.name.c_str(), running_.size(), unacked_.size(),
               static_cast<ull>(config_.stop_timeout_ms));
    if (registered_)
        send_register(); // with 0 slots: the dispatcher assigns nothing more
    stop_timer_ = new uv_timer_t;
    uv_timer_init(loop_, stop_timer_);
    stop_timer_->data = this;
    uv_timer_start(stop_timer_, on_stop_deadline, config_.stop_timeout_ms, 0);
    check_drained();
}

// Done draining once no job runs and every result is acked — or, when the
// dispatcher is away, safe in the spool for the next start.
void Runner::check_drained()
{
    if (stopping_ && !stopped_ && running_.empty() && (unacked_.empty() || !registered_))
        finish_stop();
}

void Runner::on_stop_deadline(uv_timer_t *timer)
{
    auto *self = static_cast<Runner *>(timer->data);
    if (!self->stopped_)
        guarded("stop_timeout", [self] { self->abort_stop(); });
}

void Runner::abort_stop()
{
    log_warning("runner %s: stop_timeout passed: cancelling %zu job(s); the dispatcher requeues "
                "them",
                config_.name.c_str(), running_.size());
    aborting_ = true;
    for (auto &[id, run] : running_)
        run->cancel();
    finish_stop();
}

void Runner::finish_stop()
{
    stopped_ = true;
    for (uv_timer_t *t : {heartbeat_timer_, stop_timer_})
        if (t)
            uv_timer_stop(t);
    if (!unacked_.empty())
        log_notice("runner %s: %zu result(s) stay in %s for the next start", config_.name.c_str(),
                   unacked_.size(), spool_.dir().c_str());
    // Disconnecting is the hand-back: the dispatcher requeues whatever is
    // still assigned to us.
    client_.stop();
}

// ---- the dispatcher connection ----

void Runner::send_register()
{
    register_id_ = next_request_id_++;
    uint32_t slots = stopping_ ? 0 : config_.slots;
    client_.send(Register{register_id_, config_.name, slots, config_.labels});
}

void Runner::send_heartbeat()
{
    // Jobs without a delivered result: those running, and those whose result
    // is still on its way to the spool (sent as soon as it is there).  A job
    // missing from this list and without a result is requeued by the
    // dispatcher.
    Heartbeat hb;
    for (const auto &entry : running_)
        hb.jobs.push_back(entry.first);
    for (const auto &[id, pending] : unacked_)
        if (!pending.ready)
            hb.jobs.push_back(delivery_job_id(pending.what));
    client_.send(hb);
}

void Runner::on_heartbeat_timer(uv_timer_t *timer)
{
    auto *self = static_cast<Runner *>(timer->data);
    if (self->registered_)
        guarded("heartbeat", [self] { self->send_heartbeat(); });
}

void Runner::on_connected(Connection &conn)
{
    log_info("dispatcher %s: connected", conn.peer().c_str());
    conn.set_idle_timeout(config_.dispatcher_timeout_ms);
    conn.send(handshake_.hello(next_request_id_++));
    // Registration waits for the dispatcher's hello: it may want proof first.
}

void Runner::on_dispatcher_hello(Connection &conn, const Hello &hello)
{
    std::string error;
    if (!handshake_.reply(conn, hello, next_request_id_++, error)) {
        log_err("dispatcher %s: %s", conn.peer().c_str(), error.c_str());
        return;
    }
    send_register();
}

void Runner::on_message(Connection &conn, Message &&msg)
{
    if (auto *ack = std::get_if<Ack>(&msg)) {
        if (ack->id == register_id_ && !registered_)
            on_registered(conn);
        else if (ack->id == register_id_ && stopping_)
            log_info("runner %s: draining: the dispatcher assigns nothing more",
                     config_.name.c_str());
        else if (ack->id == register_id_)
            log_info("runner %s: registration updated: %u slot(s)", config_.name.c_str(),
                     config_.slots);
        else
            on_acked(ack->id);
    } else if (auto *assign = std::get_if<Assign>(&msg)) {
        on_assign(*assign);
    } else if (auto *cancel = std::get_if<Cancel>(&msg)) {
        on_cancel(*cancel);
    } else if (auto *hello = std::get_if<Hello>(&msg)) {
        on_dispatcher_hello(conn, *hello);
    } else if (auto *error = std::get_if<Error>(&msg)) {
        log_err("dispatcher %s: error: %s", conn.peer().c_str(), error->message.c_str());
    } else if (!std::holds_alternative<Heartbeat>(msg)) {
        conn.fail(0, std::string("unexpected message ") + message_type(msg));
    }
}

void Runner::on_registered(Connection &conn)
{
    registered_ = true;
    log_notice("runner %s: registered with %s%s", config_.name.c_str(), conn.peer().c_str(),
               stopping_ ? " (draining)" : "");
    // Every result we hold goes out before the first heartbeat: the
    // dispatcher reconciles its assignments with that heartbeat, and one
    // connection keeps the order.
    for (const auto &[id, pending] : unacked_) {
        if (!pending.ready)
            continue; // sent when its spool write is over
        log_info("job %llu: delivering the %s of attempt %u",
                 static_cast<ull>(delivery_job_id(pending.what)), what_of(pending.what),
                 delivery_attempt(pending.what));
        client_.send(to_message(pending.what));
    }
    send_heartbeat();
}

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
    r.outcome = kiln_outcome_name(KILN_ERROR);
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
    JobRun &ref = *run;
    running_[assign.job_id] = std::move(run);
    ref.start();
}

// Cancel from the dispatcher (a superseded commit, an operator): kill what
// the job runs; its Result, "cancelled", follows through on_job_done and is
// spooled and acked like any other.
void Runner::on_cancel(const Cancel &cancel)
{
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
        uv_idle_start(idle, [](uv_idle_t *h) {
            delete static_cast<JobRun *>(h->data);
            uv_close(reinterpret_cast<uv_handle_t *>(h),
                     [](uv_handle_t *hh) { delete reinterpret_cast<uv_idle_t *>(hh); });
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
        log_notice("job %llu: %s (%zu tests)", static_cast<ull>(r->job_id), r->outcome.c_str(),
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
