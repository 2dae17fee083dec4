#pragma once
// kiln-dispatcher's logic: accepts observers, runners and kilnctl on one
// port, queues commits, assigns them to free runner slots, watches runner
// heartbeats, requeues the jobs of a lost runner, records results and hands
// them to the report plugins.
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <uv.h>

#include <kiln/net.hpp>

#include "commit_intake.hpp"
#include "counters.hpp"
#include "deliveries.hpp"
#include "gc.hpp"
#include "dispatcher_config.hpp"
#include "handshakes.hpp"
#include "http/events.hpp"
#include "http/http_server.hpp"
#include "job_table.hpp"
#include "live_logs.hpp"
#include "queries.hpp"
#include "reporter.hpp"
#include "runner_registry.hpp"
#include "scheduler.hpp"
#include "store.hpp"

namespace kiln {

class Dispatcher {
  public:
    // Loads the report plugins; throws PluginError or ConfigError.  Touches
    // nothing on disk (--check-config).
    Dispatcher(uv_loop_t *loop, DispatcherConfig config);
    ~Dispatcher();

    // Open the store and load its jobs, listen; false (logged) when the
    // store cannot be opened or the address cannot be bound.
    bool start();
    // Stop accepting, close every connection; the loop then ends.
    void stop();

    // SIGHUP: load the new report plugins (throws PluginError, changing
    // nothing), then swap them in — the old set is unloaded once its
    // deliveries in flight are done — and take every DispatcherSettings value (to what
    // comes next: open connections and queued jobs are kept).  listen,
    // state_dir and max_frame need a restart (a warning each).
    void reload(DispatcherConfig config);
    // One line for systemd's STATUS=: "2 runners, 5 queued, 3 running".
    std::string status() const;

    // What kilnctl asks for, as one packed msgpack object (see Queries).
    std::string query(const std::string &what, const std::string &arg, std::string &error) const
    {
        return what == "log" ? live_logs_.answer(arg, error) : queries_.answer(what, arg, error);
    }

    // The dispatcher's parts, read-only, for the HTTP handlers (pages, API,
    // metrics) that the routes in dispatcher_http.cpp add.
    const JobTable &jobs() const { return jobs_; }
    const RunnerRegistry &runners() const { return runners_; }
    const Store &store() const { return store_; }
    const DispatcherConfig &config() const { return config_; }
    // Server-sent events of job state changes (/api/v1/events, the pages).
    EventHub &events() { return events_; }
    // The running jobs' log tails (for a page's log, a metric of their memory).
    const LiveLogs &live_logs() const { return live_logs_; }
    // The report receivers' outbox and deliveries (kilnctl reports, pages, metrics).
    const Deliveries &deliveries() const { return deliveries_; }
    // The HTTP server's port (0 when [http] listen is "").
    int http_port() const { return http_.port(); }

  private:
    // dispatcher.cpp — the loop: connections, message routing, timers.
    bool load_store();
    void on_accept(std::shared_ptr<Connection> conn);
    void on_message(Connection &conn, Message &&msg);
    void on_close(Connection &conn, const std::string &why);
    void on_query(Connection &conn, const Query &query);
    void refuse_query(Connection &conn, const Query &query, const std::string &why);
    // gc_query.cpp — kilnctl gc [--dry-run]: answered when the run (or plan) ends.
    void on_gc(Connection &conn, const Query &query);
    void answer_query(Connection &conn, const Query &query);
    // A peer may have kReadsPerPeer queries reading the store at once; the
    // next kWaitingPerPeer wait (in order), more are refused: a peer that
    // floods queries without reading the answers costs no more than that
    // before max_peer_buffer drops it.  False: not now (waiting or refused).
    static constexpr size_t kReadsPerPeer = 4, kWaitingPerPeer = 256;
    bool begin_read(Connection &conn, const Query &query);
    void end_read(const std::weak_ptr<Connection> &conn);
    struct PeerReads {
        size_t in_flight = 0;
        std::deque<Query> waiting;
    };
    std::map<const Connection *, PeerReads> reads_;
    void on_notify(Connection &conn, const Notify &notify);
    // Send `notify` to every connected observer; how many got it.
    size_t relay_notify(const Notify &notify);
    // Open connections by role ("" before the handshake ends), for /metrics.
    std::map<std::string, size_t> connections_by_role() const;
    static void on_heartbeat_timer(uv_timer_t *timer) noexcept;
    // Work on one job: an exception fails that job (outcome error, with the
    // reason), never the daemon.
    void for_job(uint64_t job_id, const char *what, const std::function<void()> &work) noexcept;

    // results.cpp — a job from commit to report.
    void on_commit(Connection &conn, const Commit &commit);
    // After the intake's read: `stored_id` is the commit's job in the store
    // (0: none), acknowledged without a second job.
    void admit_commit(Connection &conn, const Commit &commit, uint64_t stored_id);
    void on_result(Connection &conn, const Result &result);
    void record_result(Connection &conn, const Result &result);
    // A job has ended (result recorded, or ended by the dispatcher): persist
    // it, and for a commit's job log it and raise FINISHED; for a shard,
    // finish its commit when it was the last.
    void job_ended(uint64_t job_id, Store::Durable durable = {});
    void retry(Connection &conn, const Query &query);
    void save(uint64_t job_id, Store::Durable durable = {});

    // report_events.cpp — report events raised with the job change that
    // causes them.  Persist the job with the outbox rows of event `kind`
    // (a commit's job only; a shard raises none) in one batch; the rows are
    // delivered once it is durable, then `durable` runs.
    void save_event(uint64_t job_id, int kind, Store::Durable durable = {});
    // Start-up: the stored outbox back into the engine; finished commits of
    // an older database that were never reported get their FINISHED rows.
    void restore_reports();

    // history.cpp — finished commits leave memory; the store answers for them.
    // A commit's job is done and its report queued: it may leave memory.
    void retire(uint64_t job_id);
    void trim_finished();
    void evict_delivered();
    // Read the finished commits with this id prefix back from the store into
    // the table (off the loop), then run `then` on the loop, found or not.
    void recall(const std::string &prefix, std::function<void()> then);
    void intake_next();

    // runners.cpp — runners registering, taking jobs, lost and found again.
    void on_register(Connection &conn, const Register &reg);
    void on_heartbeat(Connection &conn, const Heartbeat &hb);
    void schedule();
    void assign(uint64_t job_id, const RunnerSlotInfo &runner);
    // `silent`: its connection idled out (runner_timeout), for the metrics.
    void lose_runner(const std::string &name, const std::string &why, bool silent = false);
    void release_runner(const std::string &name, const std::string &why, bool silent = false);
    void release(uint64_t job_id, const std::string &why);
    void expire_orphans();

    // dispatcher_http.cpp — the HTTP routes; job state changes as events.
    void add_http_routes();
    bool start_http();
    void publish_job(const char *event, const Job &job);

    // sharding.cpp — test lists split into shards; superseded commits cancelled.
    void on_test_list(Connection &conn, const TestList &list);
    void split_job(Connection &conn, const TestList &list);
    void supersede(const Job &newer);
    void cancel_job(uint64_t job_id, const std::string &why);

    // The parts, each the one owner of its state (see each header).
    uv_loop_t *loop_;
    DispatcherConfig config_;  // the settings a reload assigns; restart-only keys
    Server server_;            // the listening socket
    JobTable jobs_;            // every job, its state, queue and runner (held_by)
    Scheduler scheduler_;      // whose turn it is among repositories
    Store store_;              // the database; test durations
    RunnerRegistry runners_;   // registered runners; those expected back
    std::set<std::shared_ptr<Connection>> connections_; // every open connection
    CommitIntake intake_;      // repositories refused per observer connection
    Handshakes handshakes_{config_}; // peers that have not finished hello/auth
    Reporter reporter_{loop_}; // report receivers and their plugins, old sets until unused
    Deliveries deliveries_{loop_, reporter_, store_, jobs_}; // the outbox, per receiver
    uv_timer_t *heartbeat_timer_ = nullptr;
    int64_t started_unix_ms_ = 0; // restart_grace counts from here
    bool stopping_ = false;
    Counters counters_;        // what /metrics counts since the start (counters.hpp)
    Queries queries_{config_, jobs_, runners_, store_, deliveries_, started_unix_ms_};
    LiveLogs live_logs_{jobs_}; // running jobs' output for followers (live_logs.hpp)
    HttpServer http_{loop_, config_.http}; // [http]; routes added in the constructor
    EventHub events_;                      // subscribers of /api/v1/events
    uint64_t last_keepalive_ms_ = 0;
    // [retention]: batches on the thread pool; what they delete leaves jobs_ too.
    Gc gc_{loop_, [this](const std::vector<uint64_t> &ids) { jobs_.forget(ids); }};
    // History (history.cpp).  The newest finished commits stay in memory
    // (keep_finished: pages, kilnctl result just after a run); older ones leave it.
    std::deque<uint64_t> finished_;           // finished commits in memory, oldest first
    std::set<uint64_t> awaiting_delivery_;    // past keep_finished, reports still to go
    struct PendingCommit {
        std::weak_ptr<Connection> conn;
        Commit commit;
    };
    std::deque<PendingCommit> intake_queue_; // commits waiting for the intake's read
    bool intake_reading_ = false;
};

} // namespace kiln
