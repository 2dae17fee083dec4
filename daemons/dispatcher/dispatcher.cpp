// kiln-dispatcher: connections, hello, commits, registration, scheduling.
#include "dispatcher.hpp"

#include <algorithm>

#include <msgpack.hpp>

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

namespace kiln {

// Touches nothing on disk (--check-config builds one): start() opens the store.
Dispatcher::Dispatcher(uv_loop_t *loop, DispatcherConfig config)
    : loop_(loop), config_(std::move(config)), server_(loop, config_.max_frame),
      store_(loop, config_.state_dir)
{
    auto dirs = plugin_dirs(config_.plugin_dirs);
    for (const auto &table : config_.reports)
        reporters_->push_back(load_plugin(loop_, dirs, table.required_string("plugin"),
                                         KILN_PLUGIN_REPORT, table, "kiln-dispatcher"));
}

// What was assigned when the dispatcher stopped stays with its runner for
// restart_grace: the runner may still be running it, or hold its result,
// and be about to reconnect.
bool Dispatcher::load_store()
{
    try {
        store_.open();
        size_t loaded = 0;
        for (Job &job : store_.load_jobs()) {
            if (job.state == JobState::assigned)
                orphans_.insert(job.runner);
            jobs_.restore(std::move(job));
            loaded++;
        }
        if (loaded)
            log_notice("store %s: %zu job(s): %zu queued, %zu assigned, %zu done",
                       store_.path().c_str(), loaded, jobs_.count(JobState::queued),
                       jobs_.count(JobState::assigned), jobs_.count(JobState::done));
        if (!orphans_.empty())
            log_notice("%zu runner(s) held jobs: they have restart_grace (%llu ms) to come back",
                       orphans_.size(), static_cast<unsigned long long>(config_.restart_grace_ms));
        return true;
    } catch (const StoreError &e) {
        log_err("%s", e.what());
        return false;
    }
}

Dispatcher::~Dispatcher()
{
    if (heartbeat_timer_)
        uv_close(reinterpret_cast<uv_handle_t *>(heartbeat_timer_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
}

bool Dispatcher::start()
{
    if (!load_store())
        return false;
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
               server_.port(), reporters_->size());
    // Results recorded before a crash but not yet reported: report them now
    // (reporting is at least once).
    for (const auto &[id, job] : jobs_.jobs())
        if (job.state == JobState::done && !job.reported)
            for_job(id, "reporting", [&, &job = job] { report(job); });
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

void Dispatcher::reload(DispatcherConfig c)
{
    // Everything that can throw first: a broken plugin leaves all as it was.
    auto fresh = std::make_shared<Reporters>();
    auto dirs = plugin_dirs(c.plugin_dirs);
    for (const auto &table : c.reports)
        fresh->push_back(load_plugin(loop_, dirs, table.required_string("plugin"),
                                     KILN_PLUGIN_REPORT, table, "kiln-dispatcher"));

    for (const auto &[key, changed] : c.restart_only(config_))
        warn_needs_restart(key, changed);

    old_reporters_.push_back(std::move(reporters_));
    reporters_ = std::move(fresh);
    free_reporters();

    bool heartbeat = c.heartbeat_interval_ms != config_.heartbeat_interval_ms;
    bool timeout = c.runner_timeout_ms != config_.runner_timeout_ms;
    // Everything else applies to what comes next: connections open above a
    // lowered max_connections stay, queued jobs stay queued, peers already
    // in keep their connection (new ones prove the new secrets).
    c.max_peer_buffer = std::max(c.max_peer_buffer, config_.max_frame);
    static_cast<DispatcherSettings &>(config_) = c;
    if (heartbeat && heartbeat_timer_ && !stopping_)
        uv_timer_start(heartbeat_timer_, on_heartbeat_timer, config_.heartbeat_interval_ms,
                       config_.heartbeat_interval_ms);
    if (timeout)
        for (const auto &conn : connections_)
            if (conn->role == "runner")
                conn->set_idle_timeout(config_.runner_timeout_ms);
    log_notice("reload: %zu report plugin(s); heartbeat every %llu ms, runner_timeout %llu ms, "
               "max_attempts %u, max_connections %zu, max_queued_per_repo %zu",
               reporters_->size(), static_cast<unsigned long long>(config_.heartbeat_interval_ms),
               static_cast<unsigned long long>(config_.runner_timeout_ms), config_.max_attempts,
               config_.max_connections, config_.max_queued_per_repo);
}

// Unload the replaced report plugin sets that no report uses any more.
// Never called from inside a plugin's callback (fini and dlclose there
// would pull the code from under it): from reload and the heartbeat timer.
void Dispatcher::free_reporters()
{
    for (auto it = old_reporters_.begin(); it != old_reporters_.end();)
        if (it->use_count() == 1) {
            log_info("reload: %zu old report plugin(s) unloaded", (*it)->size());
            it = old_reporters_.erase(it);
        } else {
            ++it;
        }
}

std::string Dispatcher::status() const
{
    size_t slots = 0;
    for (const auto &entry : runners_)
        slots += entry.second.slots;
    std::string s = std::to_string(runners_.size()) +
                    (runners_.size() == 1 ? " runner (" : " runners (") +
                    std::to_string(slots) + " slots), " +
                    std::to_string(jobs_.count(JobState::queued)) + " queued, " +
                    std::to_string(jobs_.count(JobState::assigned)) + " running";
    if (stopping_)
        s = "stopping; " + s;
    return s;
}

// Each duty on its own: one that throws does not keep the others from running.
void Dispatcher::on_heartbeat_timer(uv_timer_t *timer) noexcept
{
    auto *self = static_cast<Dispatcher *>(timer->data);
    guarded("heartbeat timer: unloading old report plugins", [self] {
        if (!self->old_reporters_.empty())
            self->free_reporters();
    });
    guarded("heartbeat timer: sending heartbeats", [self] {
        for (const auto &conn : self->connections_)
            if (!conn->role.empty())
                conn->send(Heartbeat{});
    });
    guarded("heartbeat timer: runners gone after a restart", [self] { self->expire_orphans(); });
    guarded("heartbeat timer: scheduling", [self] { self->schedule(); });
    guarded("heartbeat timer: handshake deadlines", [self] { self->expire_handshakes(); });
}

void Dispatcher::for_job(uint64_t job_id, const char *what,
                         const std::function<void()> &work) noexcept
{
    std::string reason;
    try {
        work();
        return;
    } catch (const std::exception &e) {
        reason = e.what();
    } catch (...) {
        reason = "unknown exception";
    }
    guarded("failing a job", [&] {
        std::string why = std::string("dispatcher: ") + what + ": " + reason;
        log_err("job %llu: %s", static_cast<unsigned long long>(job_id), why.c_str());
        const Job *job = jobs_.find(job_id);
        bool was_assigned = job && job->state == JobState::assigned;
        std::string runner = job ? job->runner : "";
        if (!jobs_.end_in_error(job_id, why, unix_ms()))
            return; // already done: nothing more to do for it
        // Its runner may be running it: stop that (its result would not count).
        if (auto r = runners_.find(runner); was_assigned && r != runners_.end())
            r->second.conn->send(Cancel{job_id, job->attempt});
        job_ended(job_id);
    });
}

void Dispatcher::save(uint64_t job_id, Store::Durable durable)
{
    store_.save_job(*jobs_.find(job_id), std::move(durable));
}

void Dispatcher::on_accept(std::shared_ptr<Connection> conn)
{
    if (stopping_) {
        conn->close("dispatcher stopping");
        return;
    }
    if (connections_.size() >= config_.max_connections) {
        // Closed at once, before it costs more than the error frame (which
        // names the peer and the limit in the log too).
        conn->fail(0, "too many connections: " + std::to_string(connections_.size()) +
                          " open (max_connections = " + std::to_string(config_.max_connections) +
                          ")");
        return;
    }
    log_debug("peer %s: connected", conn->peer().c_str());
    connections_.insert(conn);
    handshakes_[conn.get()].deadline_ms =
        unix_ms() + static_cast<int64_t>(config_.handshake_timeout_ms);
    // Until it says hello, a peer gets only the handshake deadline.
    conn->set_idle_timeout(config_.handshake_timeout_ms);
    conn->set_max_queued_bytes(config_.max_peer_buffer);
    conn->start([this](Connection &c, Message &&msg) { on_message(c, std::move(msg)); },
                [this](Connection &c, const std::string &why) { on_close(c, why); });
}

void Dispatcher::on_close(Connection &conn, const std::string &why)
{
    log_info("peer %s%s%s: disconnected: %s", conn.peer().c_str(), conn.name.empty() ? "" : " ",
             conn.name.c_str(), why.c_str());
    // When the dispatcher itself stops, runners keep their jobs: they are
    // still assigned in the store and wait for their runner after the restart.
    if (conn.role == "runner" && !stopping_) {
        auto it = runners_.find(conn.name);
        if (it != runners_.end() && it->second.conn.get() == &conn)
            lose_runner(conn.name, why);
    }
    handshakes_.erase(&conn);
    refused_repos_.erase(&conn);
    connections_.erase(conn.shared_from_this());
}

void Dispatcher::on_message(Connection &conn, Message &&msg)
{
    // Until it has said hello (and proved it holds the secret, when its
    // role has one), a peer may send nothing else.
    if (conn.role.empty() && !std::holds_alternative<Hello>(msg) &&
        !std::holds_alternative<Auth>(msg)) {
        auto hs = handshakes_.find(&conn);
        bool said_hello = hs != handshakes_.end() && !hs->second.nonce.empty();
        conn.fail(0, std::string(said_hello ? "expected auth, got " : "expected hello, got ") +
                         message_type(msg));
        return;
    }
    std::visit(
        [&](auto &m) {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, Hello>)
                on_hello(conn, m);
            else if constexpr (std::is_same_v<T, Auth>)
                on_auth(conn, m);
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
            else if constexpr (std::is_same_v<T, TestList>)
                conn.role == "runner" && !conn.name.empty()
                    ? on_test_list(conn, m)
                    : conn.fail(m.id, "only a registered runner sends test lists");
            else if constexpr (std::is_same_v<T, Notify>)
                conn.role == "ctl" ? on_notify(conn, m)
                                   : conn.fail(m.id, "only kilnctl sends notify");
            else if constexpr (std::is_same_v<T, Query>)
                on_query(conn, m);
            else if constexpr (std::is_same_v<T, Heartbeat>)
                on_heartbeat(conn, m); // its arrival has already reset the idle timer
            else if constexpr (std::is_same_v<T, Ack> || std::is_same_v<T, Error>)
                log_debug("peer %s: %s", conn.peer().c_str(), message_type(msg));
            else
                conn.fail(0, std::string("unexpected message ") + message_type(msg));
        },
        msg);
}

// max_queued_per_repo.  A refused commit is not lost: the observer keeps
// it and offers it again later (on a new connection).  The connection stays:
// the commits of other repositories behind it still go through.
bool Dispatcher::refuse_commit(Connection &conn, const Commit &commit)
{
    const std::string &repo = commit.spec.repo;
    auto admission = jobs_.admit(commit.spec, config_.max_queued_per_repo);
    if (admission == JobTable::Admission::known)
        return false; // already queued (or done): acknowledged as before
    auto refused = refused_repos_.find(&conn);
    bool after = refused != refused_repos_.end() && refused->second.count(repo);
    if (admission == JobTable::Admission::admitted && !after)
        return false;
    std::string why;
    if (after) {
        // Queued now, it would run before the older refused one.
        why = "repository '" + repo + "': an earlier commit of it was refused on this " +
              "connection (max_queued_per_repo); offer them again in order";
        log_debug("peer %s: repo %s: commit %.12s refused too: an earlier one was refused",
                  conn.peer().c_str(), repo.c_str(), commit.spec.commit.c_str());
    } else {
        why = "repository '" + repo + "' has " + std::to_string(jobs_.queued(repo)) +
              " jobs queued (max_queued_per_repo = " +
              std::to_string(config_.max_queued_per_repo) + "); commit refused, offer it again " +
              "later";
        log_warning("peer %s: repo %s: commit %.12s refused: %zu jobs queued "
                    "(max_queued_per_repo = %zu); it and the later commits of %s on this "
                    "connection wait with the observer",
                    conn.peer().c_str(), repo.c_str(), commit.spec.commit.c_str(),
                    jobs_.queued(repo), config_.max_queued_per_repo, repo.c_str());
        refused_repos_[&conn].insert(repo);
    }
    conn.send(Error{commit.id, why});
    return true;
}

void Dispatcher::on_commit(Connection &conn, const Commit &commit)
{
    if (refuse_commit(conn, commit))
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
    store_.save_job(*job, send_ack);
    if (job->spec.cancel_superseded)
        supersede(*job);
    schedule();
}

// kilnctl notify: every connected observer polls that repository now.
void Dispatcher::on_notify(Connection &conn, const Notify &notify)
{
    size_t relayed = 0;
    for (const auto &peer : connections_)
        if (peer->role == "observer") {
            peer->send(notify);
            relayed++;
        }
    log_info("notify %s %s: relayed to %zu observer(s)", notify.repo.c_str(),
             notify.branch.empty() ? "(all branches)" : notify.branch.c_str(), relayed);
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(1);
    pk.pack("observers"), pk.pack(relayed);
    conn.send(Reply{notify.id, std::string(buf.data(), buf.size())});
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
    bool again = conn.name == reg.name && runners_.count(reg.name);
    conn.name = reg.name;
    RunnerSlotInfo &runner = runners_[reg.name];
    runner.slots = reg.slots;
    runner.labels = reg.labels;
    if (!again) {
        runner.name = reg.name;
        runner.conn = conn.shared_from_this();
        runner.connected_unix_ms = unix_ms();
        // Jobs this runner held before: it says in its first heartbeat which
        // it still runs; its spooled results come before that heartbeat.
        orphans_.erase(reg.name);
        runner.adopted = jobs_.held_by(reg.name);
        runner.awaiting_heartbeat = !runner.adopted.empty();
    }
    store_.save_runner(reg.name, reg.slots, reg.labels, unix_ms());
    conn.send(Ack{reg.id, 0});
    if (reg.slots == 0)
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
        std::none_of(runners_.begin(), runners_.end(), [this](const auto &r) {
            return jobs_.held_by(r.first).size() < r.second.slots;
        }))
        return;
    // A snapshot of the slots; the picks below keep its busy counts current.
    std::vector<Scheduler::Runner> slots;
    std::vector<RunnerSlotInfo *> infos;
    for (auto &[name, runner] : runners_) {
        slots.push_back({name, runner.slots, static_cast<uint32_t>(jobs_.held_by(name).size()),
                         &runner.labels});
        infos.push_back(&runner);
    }
    while (auto pick = scheduler_.next(jobs_, slots)) {
        RunnerSlotInfo *runner = infos[pick->runner];
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
    save(id, [this, weak, assign, name = runner.name] {
        for_job(assign.job_id, "sending an assignment", [&] {
            const Job *now = jobs_.find(assign.job_id);
            auto conn = weak.lock();
            if (conn && now && now->state == JobState::assigned && now->runner == name &&
                now->attempt == assign.attempt)
                conn->send(assign);
        });
    });
}

// A query that cannot be answered ("no job for commit X", an unknown query)
// is a normal answer, not a broken peer: an Error frame, the connection stays.
void Dispatcher::refuse_query(Connection &conn, const Query &q, const std::string &why)
{
    log_debug("peer %s: %s %s: %s", conn.peer().c_str(), q.what.c_str(), q.arg.c_str(),
              why.c_str());
    conn.send(Error{q.id, why});
}

void Dispatcher::on_query(Connection &conn, const Query &q)
{
    if (q.what == "retry") {
        retry(conn, q);
        return;
    }
    std::string error;
    std::string body = query(q.what, q.arg, error);
    if (!error.empty())
        refuse_query(conn, q, error);
    else
        conn.send(Reply{q.id, std::move(body)});
}

} // namespace kiln
