// kiln-dispatcher: connections, scheduling, results.
#include "dispatcher.hpp"

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

namespace kiln {

Dispatcher::Dispatcher(uv_loop_t *loop, DispatcherConfig config)
    : loop_(loop), config_(std::move(config)), server_(loop, config_.max_frame)
{
    auto dirs = plugin_dirs(config_.plugin_dirs);
    for (const auto &table : config_.reports)
        reporters_.push_back(load_plugin(loop_, dirs, table.required_string("plugin"),
                                         KILN_PLUGIN_REPORT, table, "kiln-dispatcher"));
}

Dispatcher::~Dispatcher()
{
    if (heartbeat_timer_)
        uv_close(reinterpret_cast<uv_handle_t *>(heartbeat_timer_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
}

bool Dispatcher::start()
{
    std::string error;
    if (server_.listen(config_.listen, [this](auto conn) { on_accept(std::move(conn)); }, error) !=
        0) {
        log_err("%s", error.c_str());
        return false;
    }
    started_unix_ms_ = unix_ms();
    heartbeat_timer_ = new uv_timer_t;
    uv_timer_init(loop_, heartbeat_timer_);
    heartbeat_timer_->data = this;
    uv_timer_start(heartbeat_timer_, on_heartbeat_timer, config_.heartbeat_interval_ms,
                   config_.heartbeat_interval_ms);
    log_notice("listening on %s (port %d), %zu report plugin(s)", config_.listen.c_str(),
               server_.port(), reporters_.size());
    return true;
}

void Dispatcher::stop()
{
    stopping_ = true;
    server_.close();
    if (heartbeat_timer_)
        uv_timer_stop(heartbeat_timer_);
    auto conns = connections_;
    for (const auto &conn : conns)
        conn->close("dispatcher stopping");
}

void Dispatcher::on_heartbeat_timer(uv_timer_t *timer)
{
    auto *self = static_cast<Dispatcher *>(timer->data);
    for (const auto &conn : self->connections_)
        if (!conn->role.empty())
            conn->send(Heartbeat{});
}

void Dispatcher::on_accept(std::shared_ptr<Connection> conn)
{
    if (stopping_) {
        conn->close("dispatcher stopping");
        return;
    }
    log_debug("peer %s: connected", conn->peer().c_str());
    connections_.insert(conn);
    // Until it says hello, a peer gets only the handshake deadline.
    conn->set_idle_timeout(config_.handshake_timeout_ms);
    conn->start([this](Connection &c, Message &&msg) { on_message(c, std::move(msg)); },
                [this](Connection &c, const std::string &why) { on_close(c, why); });
}

void Dispatcher::on_close(Connection &conn, const std::string &why)
{
    log_info("peer %s%s%s: disconnected: %s", conn.peer().c_str(), conn.name.empty() ? "" : " ",
             conn.name.c_str(), why.c_str());
    if (conn.role == "runner") {
        auto it = runners_.find(conn.name);
        if (it != runners_.end() && it->second.conn.get() == &conn)
            lose_runner(conn.name, why);
    }
    connections_.erase(conn.shared_from_this());
}

void Dispatcher::on_message(Connection &conn, Message &&msg)
{
    if (conn.role.empty() && !std::holds_alternative<Hello>(msg)) {
        conn.fail(0, std::string("expected hello, got ") + message_type(msg));
        return;
    }
    std::visit(
        [&](auto &m) {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, Hello>)
                on_hello(conn, m);
            else if constexpr (std::is_same_v<T, Commit>)
                conn.role == "observer" ? on_commit(conn, m)
                                        : conn.fail(m.id, "only an observer sends commits");
            else if constexpr (std::is_same_v<T, Register>)
                conn.role == "runner" ? on_register(conn, m)
                                      : conn.fail(m.id, "only a runner registers");
            else if constexpr (std::is_same_v<T, Result>)
                conn.role == "runner" && !conn.name.empty()
                    ? on_result(conn, m)
                    : conn.fail(m.id, "only a registered runner sends results");
            else if constexpr (std::is_same_v<T, Query>)
                on_query(conn, m);
            else if constexpr (std::is_same_v<T, Heartbeat>)
                ; // its arrival has already reset the idle timer
            else if constexpr (std::is_same_v<T, Ack> || std::is_same_v<T, Error>)
                log_debug("peer %s: %s", conn.peer().c_str(), message_type(msg));
            else
                conn.fail(0, std::string("unexpected message ") + message_type(msg));
        },
        msg);
}

void Dispatcher::on_hello(Connection &conn, const Hello &hello)
{
    if (!conn.role.empty()) {
        conn.fail(hello.id, "hello sent twice");
        return;
    }
    if (hello.version != kProtocolVersion) {
        conn.fail(hello.id, "protocol version " + std::to_string(hello.version) +
                                " not supported (this dispatcher speaks " +
                                std::to_string(kProtocolVersion) + ")");
        return;
    }
    if (hello.role != "observer" && hello.role != "runner" && hello.role != "ctl") {
        conn.fail(hello.id, "unknown role '" + hello.role + "'");
        return;
    }
    conn.role = hello.role;
    // A runner must heartbeat; observers and kilnctl may stay quiet.
    conn.set_idle_timeout(hello.role == "runner" ? config_.runner_timeout_ms
                          : hello.role == "ctl"  ? config_.handshake_timeout_ms
                                                 : 0);
    conn.send(Hello{hello.id, kProtocolVersion, "dispatcher", "kiln-dispatcher"});
    log_info("peer %s: hello from %s %s", conn.peer().c_str(), hello.role.c_str(),
             hello.name.c_str());
}

void Dispatcher::on_commit(Connection &conn, const Commit &commit)
{
    auto [job, is_new] = jobs_.add(commit.spec, unix_ms());
    conn.send(Ack{commit.id, job->id});
    if (is_new) {
        log_info("job %llu: queued %s %s %.12s", static_cast<unsigned long long>(job->id),
                 job->spec.repo.c_str(), job->spec.branch.c_str(), job->spec.commit.c_str());
        schedule();
    }
}

void Dispatcher::on_register(Connection &conn, const Register &reg)
{
    auto existing = runners_.find(reg.name);
    if (existing != runners_.end() && existing->second.conn.get() != &conn) {
        // The same runner again (it restarted, or its old connection is
        // half-dead): the newer connection wins.
        log_warning("runner %s: registered again from %s; dropping the old connection",
                    reg.name.c_str(), conn.peer().c_str());
        auto old = existing->second.conn;
        lose_runner(reg.name, "replaced by a new registration");
        old->close("replaced by a new registration");
    }
    conn.name = reg.name;
    RunnerSlotInfo &runner = runners_[reg.name];
    runner.name = reg.name;
    runner.conn = conn.shared_from_this();
    runner.slots = reg.slots == 0 ? 1 : reg.slots;
    runner.labels = reg.labels;
    runner.connected_unix_ms = unix_ms();
    conn.send(Ack{reg.id, 0});
    log_notice("runner %s: registered from %s with %u slot(s)", reg.name.c_str(),
               conn.peer().c_str(), runner.slots);
    schedule();
}

void Dispatcher::schedule()
{
    while (const Job *job = jobs_.next_queued()) {
        // The least busy runner with a free slot.
        RunnerSlotInfo *best = nullptr;
        for (auto &[name, runner] : runners_)
            if (runner.jobs.size() < runner.slots &&
                (!best || runner.jobs.size() * best->slots < best->jobs.size() * runner.slots))
                best = &runner;
        if (!best)
            return;
        jobs_.assign(job->id, best->name, unix_ms());
        best->jobs.insert(job->id);
        best->conn->send(Assign{job->id, job->attempt, job->spec});
        log_info("job %llu: assigned to %s (attempt %u)", static_cast<unsigned long long>(job->id),
                 best->name.c_str(), job->attempt);
    }
}

void Dispatcher::lose_runner(const std::string &name, const std::string &why)
{
    auto it = runners_.find(name);
    if (it == runners_.end())
        return;
    if (!it->second.jobs.empty())
        log_warning("runner %s: lost (%s); requeueing %zu job(s)", name.c_str(), why.c_str(),
                    it->second.jobs.size());
    runners_.erase(it);
    for (const Job *job : jobs_.release_runner(name, config_.max_attempts, unix_ms())) {
        log_err("job %llu: %s", static_cast<unsigned long long>(job->id),
                job->result.error.c_str());
        report(*job);
    }
    schedule();
}

void Dispatcher::on_result(Connection &conn, const Result &result)
{
    auto verdict = jobs_.record(result, conn.name, unix_ms());
    // Acknowledge whatever the verdict: the runner may forget the result now.
    conn.send(Ack{result.id, result.job_id});
    auto runner = runners_.find(conn.name);
    switch (verdict) {
    case JobTable::Verdict::recorded: {
        const Job *job = jobs_.find(result.job_id);
        log_notice("job %llu: %s %.12s %s by %s", static_cast<unsigned long long>(job->id),
                   job->spec.repo.c_str(), job->spec.commit.c_str(), result.outcome.c_str(),
                   conn.name.c_str());
        if (runner != runners_.end()) {
            runner->second.jobs.erase(result.job_id);
            runner->second.completed++;
        }
        report(*job);
        break;
    }
    case JobTable::Verdict::duplicate:
        log_info("job %llu: result of attempt %u received again; already recorded",
                 static_cast<unsigned long long>(result.job_id), result.attempt);
        break;
    case JobTable::Verdict::stale:
        log_warning("job %llu: discarding result of attempt %u from %s: the job is no longer "
                    "theirs",
                    static_cast<unsigned long long>(result.job_id), result.attempt,
                    conn.name.c_str());
        break;
    case JobTable::Verdict::unknown:
        log_warning("runner %s: result for unknown job %llu discarded", conn.name.c_str(),
                    static_cast<unsigned long long>(result.job_id));
        break;
    }
    schedule();
}

void Dispatcher::report(const Job &job)
{
    std::vector<kiln_test_result> tests;
    tests.reserve(job.result.tests.size());
    for (const auto &t : job.result.tests)
        tests.push_back({t.name.c_str(), outcome_from_name(t.outcome), t.duration_ms,
                         t.message.empty() ? nullptr : t.message.c_str()});
    kiln_report rep{};
    rep.repo = job.spec.repo.c_str();
    rep.branch = job.spec.branch.c_str();
    rep.commit = job.spec.commit.c_str();
    rep.outcome = outcome_from_name(job.result.outcome);
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
    for (const auto &plugin : reporters_) {
        auto *name = new std::string(plugin->name());
        void *op = nullptr;
        int rc = plugin->report().report(
            plugin->self(), &rep,
            [](void *arg, int status, const char *error) {
                std::unique_ptr<std::string> name(static_cast<std::string *>(arg));
                if (status != 0)
                    log_err("report %s: %s", name->c_str(), error ? error : "failed");
            },
            name, &op);
        if (rc != 0) {
            log_err("report %s: cannot start: %s", name->c_str(), uv_strerror(rc));
            delete name;
        }
    }
}

void Dispatcher::on_query(Connection &conn, const Query &q)
{
    std::string error;
    std::string body = query(q.what, q.arg, error);
    if (!error.empty())
        conn.fail(q.id, error);
    else
        conn.send(Reply{q.id, std::move(body)});
}

} // namespace kiln
