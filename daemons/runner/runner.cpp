// kiln-runner: start-up, the dispatcher connection (registration,
// heartbeats, messages), SIGHUP and the graceful stop.  Jobs and their
// results: runner_jobs.cpp; what tests get: isolation.cpp.
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
      alive_(std::make_shared<Runner *>(this)),
      disk_(loop, config_.work_dir, [this](const std::string &why) { on_disk_state(why); })
{
    handshake_ = ClientHandshake("runner", config_.name, config_.secret);
    configure_client();
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

    // Core's Client is the exception boundary for these: a throw is logged
    // and costs the connection (the runner reconnects), never the daemon.
    client_.on_connected = [this](Connection &conn) { on_connected(conn); };
    client_.on_message = [this](Connection &conn, Message &&msg) {
        on_message(conn, std::move(msg));
    };
    client_.on_disconnected = [this](const std::string &why) { on_disconnected(why); };
}

void Runner::on_disconnected(const std::string &why)
{
    if (stopped_)
        log_info("dispatcher %s: disconnected: %s", client_.address().c_str(), why.c_str());
    else if (registered_)
        log_warning("dispatcher %s: disconnected: %s%s", client_.address().c_str(), why.c_str(),
                    running_.empty() ? "" : "; running jobs go on, their results are spooled");
    registered_ = false;
    log_chunks_.clear(); // resent from the last acknowledged offset on the next connection
    check_drained(); // a stopping runner need not wait to deliver what is spooled
}

Runner::~Runner()
{
    *alive_ = nullptr;
    running_.clear();
    for (uv_timer_t *t : {heartbeat_timer_, stop_timer_, sweep_timer_})
        if (t)
            uv_close(reinterpret_cast<uv_handle_t *>(t),
                     [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_timer_t *>(h); });
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
    start_disk_care();
    log_notice("runner %s: %u slot(s), work dir %s, dispatcher %s", config_.name.c_str(),
               config_.slots, config_.work_dir.c_str(), config_.dispatcher.c_str());
    client_.start();
}

// ---- SIGHUP, STATUS= ----

void Runner::reload(RunnerConfig c)
{
    warn_needs_restart<RunnerStartup>(config_, c);
    // The secret comes with its file: from another file it waits for the
    // restart too (the sandbox hides the file the runner started with).
    if (c.secret_file != config_.secret_file)
        c.secret = config_.secret;
    RunnerSettings before = config_;
    static_cast<RunnerSettings &>(config_) = std::move(c);
    // max_log was checked against the new max_frame; the running one stays.
    config_.max_log = std::min(config_.max_log, config_.max_frame - (1u << 20));
    apply_settings(before);
}

// The settings the connection takes from the config, at start and on reload.
void Runner::configure_client()
{
    handshake_.set_key(config_.secret);
    client_.set_reconnect_max(config_.reconnect_max_ms);
}

// What a changed setting needs beyond its new value.
void Runner::apply_settings(const RunnerSettings &before)
{
    configure_client();
    disk_.set_min_free(config_.min_free); // checked at once when it changed
    if (config_.heartbeat_interval_ms != before.heartbeat_interval_ms && heartbeat_timer_ &&
        !stopped_)
        uv_timer_start(heartbeat_timer_, on_heartbeat_timer, config_.heartbeat_interval_ms,
                       config_.heartbeat_interval_ms);
    if (Connection *conn = client_.connection())
        conn->set_idle_timeout(config_.dispatcher_timeout_ms);
    log_notice("reload: runner %s: %u slot(s), labels [%zu], heartbeat every %llu ms",
               config_.name.c_str(), config_.slots, config_.labels.size(),
               static_cast<ull>(config_.heartbeat_interval_ms));
    bool reregister = config_.slots != before.slots || config_.labels != before.labels;
    if (reregister && registered_ && !stopping_)
        send_register(); // same connection: the dispatcher updates slots and labels
}

std::string Runner::status() const
{
    std::string s;
    if (stopping_)
        s = "stopping; ";
    else if (!paused_.empty())
        s = "paused (" + paused_ + "); ";
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

void Runner::on_stop_deadline(uv_timer_t *timer) noexcept
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
    for (uv_timer_t *t : {heartbeat_timer_, stop_timer_, sweep_timer_})
        if (t)
            uv_timer_stop(t);
    disk_.stop();
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
    // Paused (min_free): 0 slots, which any dispatcher honours, and the
    // reason, which newer ones show in `kilnctl runners`.
    bool paused = !stopping_ && !paused_.empty();
    uint32_t slots = stopping_ || paused ? 0 : config_.slots;
    client_.send(
        Register{register_id_, config_.name, slots, config_.labels, paused ? paused_ : ""});
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
    for (const Assign &a : deferred_) // to start once the mirror sweep is over
        hb.jobs.push_back(a.job_id);
    for (const auto &[id, pending] : unacked_)
        if (!pending.ready)
            hb.jobs.push_back(delivery_job_id(pending.what));
    client_.send(hb);
}

void Runner::on_heartbeat_timer(uv_timer_t *timer) noexcept
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
        else if (ack->id == register_id_ && !paused_.empty())
            log_info("runner %s: registration updated: paused", config_.name.c_str());
        else if (ack->id == register_id_)
            log_info("runner %s: registration updated: %u slot(s)", config_.name.c_str(),
                     config_.slots);
        else if (log_chunks_.count(ack->id))
            on_log_acked(ack->id, *ack);
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
        // A dispatcher older than live logs closes on them: stop sending
        // them (results still carry the whole log) rather than reconnect forever.
        if (error->message == "unknown message type 'log'" && !old_dispatcher_) {
            old_dispatcher_ = true;
            log_warning("dispatcher %s: takes no live logs; logs arrive with the results",
                        conn.peer().c_str());
        }
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
    // Live logs go on from what the dispatcher acknowledged (it may have
    // restarted and hold nothing: it takes the bytes from there on).
    for (const auto &[id, run] : running_)
        if (run->live_log())
            run->live_log()->resume();
    send_heartbeat();
}

} // namespace kiln
