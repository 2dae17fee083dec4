// kiln-dispatcher: connections, hello, commits, registration, scheduling.
#include "dispatcher.hpp"

#include <algorithm>
#include <optional>

#include <msgpack.hpp>

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

namespace kiln {

// Touches nothing on disk (--check-config builds one): start() opens the store.
Dispatcher::Dispatcher(uv_loop_t *loop, DispatcherConfig config)
    : loop_(loop), config_(std::move(config)), server_(loop, config_.max_frame),
      store_(loop, config_.state_dir)
{
    reporter_.install(reporter_.load(config_));
    deliveries_.configure(config_.report_retry_max_ms, config_.http.base_url);
    add_http_routes();
}

// What was assigned when the dispatcher stopped stays with its runner for
// restart_grace: the runner may still be running it, or hold its result,
// and be about to reconnect.
bool Dispatcher::load_store()
{
    try {
        store_.open();
        // Only the live jobs come into memory, and the history's facts per
        // repository and branch; finished results stay on disk.
        uint64_t finished = 0;
        for (const auto &f : store_.load_finished()) {
            jobs_.restore_finished(f.repo, f.branch, f.outcome, f.count, f.newest);
            finished += f.count;
        }
        size_t loaded = 0;
        std::vector<uint64_t> reported;
        for (Job &job : store_.load_live_jobs()) {
            if (job.state == JobState::assigned)
                runners_.expect(job.runner);
            if (job.state == JobState::done && !job.parent && job.reported)
                reported.push_back(job.id); // still has reports to deliver
            jobs_.restore(std::move(job));
            loaded++;
        }
        jobs_.reserve_ids(store_.last_job_id());
        deliveries_.restore(store_.load_deliveries());
        for (uint64_t id : reported)
            retire(id);
        if (loaded || finished)
            log_notice("store %s: %zu live job(s) loaded: %zu queued, %zu assigned, %zu done;"
                       " %llu finished commit(s) stay on disk",
                       store_.path().c_str(), loaded, jobs_.count(JobState::queued),
                       jobs_.count(JobState::assigned), jobs_.count(JobState::done),
                       static_cast<unsigned long long>(finished));
        if (runners_.expected())
            log_notice("%zu runner(s) held jobs: they have restart_grace (%llu ms) to come back",
                       runners_.expected(), static_cast<unsigned long long>(config_.restart_grace_ms));
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
                 [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_timer_t *>(h); });
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
               server_.port(), reporter_.size());
    // After the line above: scripts read the first "listening on" as the peers' port.
    if (!start_http())
        return false;
    restore_reports();
    gc_.start(store_.path(), config_.retention); // a first run a little after listening
    return true;
}

void Dispatcher::stop()
{
    stopping_ = true;
    server_.close();
    http_.stop();
    deliveries_.stop(); // cancels the attempts in flight; their rows stay queued
    gc_.stop();         // a batch in flight commits; no next one starts
    if (heartbeat_timer_)
        uv_timer_stop(heartbeat_timer_);
    auto conns = connections_;
    for (const auto &conn : conns)
        conn->close("dispatcher stopping");
}

void Dispatcher::reload(DispatcherConfig c)
{
    // Everything that can throw first: a broken plugin leaves all as it was.
    auto fresh = reporter_.load(c);

    warn_needs_restart(config_, c);

    reporter_.install(std::move(fresh));
    deliveries_.configure(c.report_retry_max_ms, config_.http.base_url);
    deliveries_.kick(); // rows of a receiver configured now go out

    bool heartbeat = c.heartbeat_interval_ms != config_.heartbeat_interval_ms;
    bool timeout = c.runner_timeout_ms != config_.runner_timeout_ms;
    // Everything else applies to what comes next: connections open above a
    // lowered max_connections stay, queued jobs stay queued, peers already
    // in keep their connection (new ones prove the new secrets).
    c.max_peer_buffer = std::max(c.max_peer_buffer, config_.max_frame);
    static_cast<DispatcherSettings &>(config_) = c;
    gc_.set_policy(config_.retention);
    if (heartbeat && heartbeat_timer_ && !stopping_)
        uv_timer_start(heartbeat_timer_, on_heartbeat_timer, config_.heartbeat_interval_ms,
                       config_.heartbeat_interval_ms);
    if (timeout)
        for (const auto &conn : connections_)
            if (conn->role == "runner")
                conn->set_idle_timeout(config_.runner_timeout_ms);
    log_notice("reload: %zu report plugin(s); heartbeat every %llu ms, runner_timeout %llu ms, "
               "max_attempts %u, max_connections %zu, max_queued_per_repo %zu",
               reporter_.size(), static_cast<unsigned long long>(config_.heartbeat_interval_ms),
               static_cast<unsigned long long>(config_.runner_timeout_ms), config_.max_attempts,
               config_.max_connections, config_.max_queued_per_repo);
}

std::string Dispatcher::status() const
{
    uint32_t slots = runners_.slots();
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
    guarded("heartbeat timer: unloading old report plugins",
            [self] { self->reporter_.free_unused(); });
    guarded("heartbeat timer: sending heartbeats", [self] {
        for (const auto &conn : self->connections_)
            if (!conn->role.empty())
                conn->send(Heartbeat{});
    });
    guarded("heartbeat timer: runners gone after a restart", [self] { self->expire_orphans(); });
    guarded("heartbeat timer: scheduling", [self] { self->schedule(); });
    guarded("heartbeat timer: reported commits leave memory", [self] { self->evict_delivered(); });
    guarded("heartbeat timer: handshake deadlines", [self] { self->handshakes_.expire(self->connections_); });
    guarded("heartbeat timer: event stream keepalive", [self] {
        // Often enough that a subscriber gone away is noticed and dropped.
        if (unix_ms() - self->last_keepalive_ms_ >= 15000) {
            self->last_keepalive_ms_ = unix_ms();
            self->events_.keepalive();
            self->live_logs_.keepalive(); // log followers too
        }
    });
}

void Dispatcher::for_job(uint64_t job_id, const char *what,
                         const std::function<void()> &work) noexcept
{
    std::optional<std::string> reason = caught(work);
    if (!reason)
        return;
    guarded("failing a job", [&] {
        std::string why = std::string("dispatcher: ") + what + ": " + *reason;
        log_err("job %llu: %s", static_cast<unsigned long long>(job_id), why.c_str());
        const Job *job = jobs_.find(job_id);
        bool was_assigned = job && job->state == JobState::assigned;
        std::string runner = job ? job->runner : "";
        if (!jobs_.end_in_error(job_id, why, unix_ms()))
            return; // already done: nothing more to do for it
        // Its runner may be running it: stop that (its result would not count).
        if (auto *r = runners_.find(runner); was_assigned && r)
            r->conn->send(Cancel{job_id, job->attempt});
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
    handshakes_.begin(*conn);
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
        if (runners_.on(conn)) {
            counters_.runner_lost(conn.idled_out());
            lose_runner(conn.name, why, conn.idled_out());
        }
    }
    handshakes_.forget(conn);
    intake_.forget(conn);
    reads_.erase(&conn);
    connections_.erase(conn.shared_from_this());
}

void Dispatcher::on_message(Connection &conn, Message &&msg)
{
    // Until it has said hello (and proved it holds the secret, when its
    // role has one), a peer may send nothing else.
    if (conn.role.empty() && !std::holds_alternative<Hello>(msg) &&
        !std::holds_alternative<Auth>(msg)) {
        conn.fail(0, std::string(handshakes_.said_hello(conn) ? "expected auth, got "
                                                              : "expected hello, got ") +
                         message_type(msg));
        return;
    }
    std::visit(
        [&](auto &m) {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, Hello>)
                handshakes_.on_hello(conn, m);
            else if constexpr (std::is_same_v<T, Auth>)
                handshakes_.on_auth(conn, m);
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
            else if constexpr (std::is_same_v<T, LogChunk>)
                conn.role == "runner" && !conn.name.empty()
                    ? live_logs_.on_chunk(conn, m)
                    : conn.fail(m.id, "only a registered runner sends logs");
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

// kilnctl notify: every connected observer polls that repository now.
void Dispatcher::on_notify(Connection &conn, const Notify &notify)
{
    size_t relayed = relay_notify(notify);
    log_info("notify %s %s: relayed to %zu observer(s)", notify.repo.c_str(),
             notify.branch.empty() ? "(all branches)" : notify.branch.c_str(), relayed);
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(1);
    pk.pack("observers"), pk.pack(relayed);
    conn.send(Reply{notify.id, std::string(buf.data(), buf.size())});
}

size_t Dispatcher::relay_notify(const Notify &notify)
{
    size_t relayed = 0;
    for (const auto &peer : connections_)
        if (peer->role == "observer") {
            peer->send(notify);
            relayed++;
        }
    return relayed;
}

std::map<std::string, size_t> Dispatcher::connections_by_role() const
{
    std::map<std::string, size_t> by_role;
    for (const auto &conn : connections_)
        by_role[conn->role]++;
    return by_role;
}

// A query that cannot be answered ("no job for commit X", an unknown query)
// is a normal answer, not a broken peer: an Error frame, the connection stays.
void Dispatcher::refuse_query(Connection &conn, const Query &q, const std::string &why)
{
    log_debug("peer %s: %s %s: %s", conn.peer().c_str(), q.what.c_str(), q.arg.c_str(),
              why.c_str());
    conn.send(Error{q.id, why});
}

// A query about one commit that the table does not hold: read it back from
// the store first (off the loop), then answer as usual.
void Dispatcher::on_query(Connection &conn, const Query &q)
{
    if (q.what == "jobs") {
        // Every commit: the history is read off the loop, then merged.
        if (!begin_read(conn, q))
            return;
        auto stored = std::make_shared<std::vector<Job>>();
        std::weak_ptr<Connection> weak = conn.shared_from_this();
        store_.read([stored](sqlite3 *db) { *stored = Store::read_commit_summaries(db); },
                    [this, weak, q, stored](const std::string &error) {
                        end_read(weak);
                        auto c = weak.lock();
                        if (!c)
                            return;
                        if (!error.empty())
                            refuse_query(*c, q, "reading the history: " + error);
                        else
                            c->send(Reply{q.id, queries_.jobs(*stored)});
                    });
        return;
    }
    if (q.what == "result" || q.what == "retry" || q.what == "log") {
        std::string prefix = q.arg.substr(0, q.arg.find('@'));
        bool hex = prefix.size() >= 4 && prefix.size() <= 64 &&
                   prefix.find_first_not_of("0123456789abcdef") == std::string::npos;
        if (hex && !jobs_.find_commit(prefix)) {
            if (!begin_read(conn, q))
                return;
            std::weak_ptr<Connection> weak = conn.shared_from_this();
            recall(prefix, [this, weak, q] {
                end_read(weak);
                if (auto c = weak.lock())
                    answer_query(*c, q);
            });
            return;
        }
    }
    answer_query(conn, q);
}

bool Dispatcher::begin_read(Connection &conn, const Query &q)
{
    PeerReads &reads = reads_[&conn];
    if (reads.in_flight < kReadsPerPeer) {
        reads.in_flight++;
        return true;
    }
    if (reads.waiting.size() < kWaitingPerPeer)
        reads.waiting.push_back(q); // asked again by end_read
    else
        refuse_query(conn, q, "busy: " + std::to_string(kReadsPerPeer + kWaitingPerPeer) +
                                  " queries of this connection wait for the database; "
                                  "ask again once they are answered");
    return false;
}

void Dispatcher::end_read(const std::weak_ptr<Connection> &conn)
{
    // A closed connection's count went with it (on_close).
    auto c = conn.lock();
    if (!c)
        return;
    auto it = reads_.find(c.get());
    if (it == reads_.end())
        return;
    it->second.in_flight--;
    if (it->second.waiting.empty()) {
        if (it->second.in_flight == 0)
            reads_.erase(it);
        return;
    }
    Query next = std::move(it->second.waiting.front());
    it->second.waiting.pop_front();
    on_query(*c, next);
}

void Dispatcher::answer_query(Connection &conn, const Query &q)
{
    if (q.what == "retry") {
        retry(conn, q);
        return;
    }
    if (q.what == "gc") {
        on_gc(conn, q);
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
