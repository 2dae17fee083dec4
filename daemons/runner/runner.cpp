// kiln-runner: dispatcher connection, registration, heartbeats, jobs.
#include "runner.hpp"

#include <kiln/log.hpp>

namespace kiln {

namespace {

// A result must fit in one frame, or the dispatcher would refuse it and the
// runner would resend it forever.  Shrink the bulky parts step by step.
void fit_in_frame(Result &r, size_t max_frame)
{
    const size_t limits[] = {4096, 256, 0};
    for (size_t limit : limits) {
        if (encode_message(r).size() <= max_frame)
            return;
        for (auto &t : r.tests)
            if (t.message.size() > limit)
                t.message = JobRun::bounded_log(t.message.data(), t.message.size(), limit);
        if (r.log.size() > (limit << 8))
            r.log = JobRun::bounded_log(r.log.data(), r.log.size(), limit << 8);
    }
    if (encode_message(r).size() > max_frame) {
        log_err("job %llu: %zu test results do not fit in max_frame; sending none",
                static_cast<unsigned long long>(r.job_id), r.tests.size());
        r.error = std::to_string(r.tests.size()) + " test results did not fit in one frame";
        r.outcome = kiln_outcome_name(KILN_ERROR);
        r.tests.clear();
    }
}

} // namespace

Runner::Runner(uv_loop_t *loop, RunnerConfig config)
    : loop_(loop), config_(std::move(config)),
      client_(loop, config_.dispatcher, config_.max_frame)
{
    auto dirs = plugin_dirs(config_.plugin_dirs);
    for (const auto &name : config_.vcs_plugins)
        vcs_[name] = load_plugin(loop_, dirs, name, KILN_PLUGIN_VCS,
                                 config_.plugin_tables.table(name), "kiln-runner");
    for (const auto &name : config_.exec_plugins)
        exec_[name] = load_plugin(loop_, dirs, name, KILN_PLUGIN_EXEC,
                                  config_.plugin_tables.table(name), "kiln-runner");
    // A [plugin.X] table for a plugin nobody loads is a mistake worth naming.
    config_.plugin_tables.reject_unknown_keys();

    client_.on_connected = [this](Connection &conn) { on_connected(conn); };
    client_.on_message = [this](Connection &conn, Message &&msg) { on_message(conn, std::move(msg)); };
    client_.on_disconnected = [this](const std::string &why) {
        if (registered_)
            log_warning("dispatcher %s: disconnected: %s", client_.address().c_str(), why.c_str());
        registered_ = false;
    };
}

Runner::~Runner()
{
    running_.clear();
    if (heartbeat_timer_)
        uv_close(reinterpret_cast<uv_handle_t *>(heartbeat_timer_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
}

void Runner::start()
{
    heartbeat_timer_ = new uv_timer_t;
    uv_timer_init(loop_, heartbeat_timer_);
    heartbeat_timer_->data = this;
    uv_timer_start(heartbeat_timer_, on_heartbeat_timer, config_.heartbeat_interval_ms,
                   config_.heartbeat_interval_ms);
    log_notice("runner %s: %u slot(s), work dir %s, dispatcher %s", config_.name.c_str(),
               config_.slots, config_.work_dir.c_str(), config_.dispatcher.c_str());
    client_.start();
}

void Runner::stop()
{
    stopping_ = true;
    if (heartbeat_timer_)
        uv_timer_stop(heartbeat_timer_);
    for (auto &[id, run] : running_)
        run->cancel();
    client_.stop();
}

void Runner::on_heartbeat_timer(uv_timer_t *timer)
{
    auto *self = static_cast<Runner *>(timer->data);
    if (!self->registered_)
        return;
    Heartbeat hb;
    for (const auto &entry : self->running_)
        hb.jobs.push_back(entry.first);
    self->client_.send(hb);
}

void Runner::on_connected(Connection &conn)
{
    log_info("dispatcher %s: connected", conn.peer().c_str());
    conn.set_idle_timeout(config_.dispatcher_timeout_ms);
    conn.send(Hello{next_request_id_++, kProtocolVersion, "runner", config_.name});
    register_id_ = next_request_id_++;
    conn.send(Register{register_id_, config_.name, config_.slots, config_.labels});
}

void Runner::on_message(Connection &conn, Message &&msg)
{
    if (auto *ack = std::get_if<Ack>(&msg)) {
        if (ack->id == register_id_) {
            registered_ = true;
            log_notice("runner %s: registered with %s", config_.name.c_str(), conn.peer().c_str());
            send_pending_results();
        } else if (unacked_.erase(ack->id)) {
            log_debug("result %llu: acknowledged", static_cast<unsigned long long>(ack->id));
        }
    } else if (auto *assign = std::get_if<Assign>(&msg)) {
        on_assign(*assign);
    } else if (auto *error = std::get_if<Error>(&msg)) {
        log_err("dispatcher %s: error: %s", conn.peer().c_str(), error->message.c_str());
    } else if (!std::holds_alternative<Heartbeat>(msg) && !std::holds_alternative<Hello>(msg)) {
        conn.fail(0, std::string("unexpected message ") + message_type(msg));
    }
}

void Runner::reject(const Assign &assign, const std::string &why)
{
    log_err("job %llu: %s", static_cast<unsigned long long>(assign.job_id), why.c_str());
    Result r;
    r.id = next_request_id_++;
    r.job_id = assign.job_id;
    r.attempt = assign.attempt;
    r.commit = assign.spec.commit;
    r.outcome = kiln_outcome_name(KILN_ERROR);
    r.error = "runner " + config_.name + ": " + why;
    unacked_[r.id] = r;
    client_.send(r);
}

void Runner::on_assign(const Assign &assign)
{
    if (stopping_)
        return; // the dispatcher requeues it when we are gone
    if (running_.count(assign.job_id)) {
        log_warning("job %llu: assigned again while running; ignored",
                    static_cast<unsigned long long>(assign.job_id));
        return;
    }
    auto vcs = vcs_.find(assign.spec.vcs);
    auto exec = exec_.find(assign.spec.exec);
    if (vcs == vcs_.end())
        return reject(assign, "no vcs plugin '" + assign.spec.vcs + "' loaded here");
    if (exec == exec_.end())
        return reject(assign, "no exec plugin '" + assign.spec.exec + "' loaded here");
    // Names were validated by the decoder: job ids and numbers make a safe path.
    std::string workspace = config_.work_dir + "/workspaces/job-" +
                            std::to_string(assign.job_id) + "-" + std::to_string(assign.attempt);
    std::string cache = config_.work_dir + "/cache/" + assign.spec.vcs;
    auto run = std::make_unique<JobRun>(
        loop_, assign, *vcs->second, *exec->second, workspace, cache, config_.keep_workspaces,
        config_.max_log,
        [this](JobRun &r, Result &&result) { on_job_done(r, std::move(result)); });
    JobRun &ref = *run;
    running_[assign.job_id] = std::move(run);
    ref.start();
}

void Runner::on_job_done(JobRun &run, Result &&result)
{
    uint64_t job_id = run.job_id();
    result.id = next_request_id_++;
    fit_in_frame(result, config_.max_frame);
    log_notice("job %llu: %s (%zu tests)", static_cast<unsigned long long>(job_id),
               result.outcome.c_str(), result.tests.size());
    if (!stopping_) {
        if (registered_)
            client_.send(result);
        unacked_[result.id] = std::move(result);
    }
    // Destroy the run from the next statement on: we are inside its callback.
    auto it = running_.find(job_id);
    if (it != running_.end()) {
        auto owned = std::move(it->second);
        running_.erase(it);
        uv_loop_t *loop = loop_;
        auto *idle = new uv_idle_t;
        uv_idle_init(loop, idle);
        idle->data = owned.release();
        uv_idle_start(idle, [](uv_idle_t *h) {
            delete static_cast<JobRun *>(h->data);
            uv_close(reinterpret_cast<uv_handle_t *>(h),
                     [](uv_handle_t *hh) { delete reinterpret_cast<uv_idle_t *>(hh); });
        });
    }
}

void Runner::send_pending_results()
{
    for (const auto &[id, result] : unacked_) {
        log_info("job %llu: delivering the result held while disconnected",
                 static_cast<unsigned long long>(result.job_id));
        client_.send(result);
    }
}

} // namespace kiln
