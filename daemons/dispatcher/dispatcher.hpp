#pragma once
// kiln-dispatcher's logic: accepts observers, runners and kilnctl on one
// port, queues commits, assigns them to free runner slots, watches runner
// heartbeats, requeues the jobs of a lost runner, records results and hands
// them to the report plugins.
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <uv.h>

#include <kiln/net.hpp>
#include <kiln/plugin_loader.hpp>

#include "dispatcher_config.hpp"
#include "job_table.hpp"
#include "scheduler.hpp"
#include "store.hpp"

namespace kiln {

struct RunnerSlotInfo {
    std::string name;
    std::shared_ptr<Connection> conn;
    uint32_t slots = 1;
    std::vector<std::string> labels;
    int64_t connected_unix_ms = 0;
    uint64_t completed = 0;
    // Which jobs it holds is the JobTable's (held_by).  This is the part of
    // them it held before this connection (a dispatcher or runner restart),
    // not yet confirmed: those its first heartbeat does not list are requeued.
    std::set<uint64_t> adopted;
    bool awaiting_heartbeat = false;
};

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
    // nothing), then swap them in — the old set is unloaded once its reports
    // in flight are done — and apply heartbeat_interval, runner_timeout,
    // handshake_timeout, max_attempts, max_connections, max_peer_buffer,
    // max_queued_per_repo and the secrets (to what comes next).  listen,
    // state_dir and max_frame need a restart (logged).  Connections and jobs
    // are kept.
    void reload(DispatcherConfig config);
    // One line for systemd's STATUS=: "2 runners, 5 queued, 3 running".
    std::string status() const;

    // What kilnctl asks for, as one packed msgpack object.
    std::string query(const std::string &what, const std::string &arg, std::string &error) const;

  private:
    void on_accept(std::shared_ptr<Connection> conn);
    void on_message(Connection &conn, Message &&msg);
    void on_close(Connection &conn, const std::string &why);
    void on_hello(Connection &conn, const Hello &hello);
    void on_auth(Connection &conn, const Auth &auth);
    void authenticated(Connection &conn, const std::string &role, const std::string &name);
    void expire_handshakes();
    void on_commit(Connection &conn, const Commit &commit);
    // max_queued_per_repo: answer a commit with an error frame, keeping the
    // connection; true when refused.
    bool refuse_commit(Connection &conn, const Commit &commit);
    void on_register(Connection &conn, const Register &reg);
    void on_result(Connection &conn, const Result &result);
    void record_result(Connection &conn, const Result &result);
    void on_query(Connection &conn, const Query &query);
    void refuse_query(Connection &conn, const Query &query, const std::string &why);
    void on_heartbeat(Connection &conn, const Heartbeat &hb);
    void on_test_list(Connection &conn, const TestList &list);
    void split_job(Connection &conn, const TestList &list);
    void on_notify(Connection &conn, const Notify &notify);
    void supersede(const Job &newer);
    void cancel_job(uint64_t job_id, const std::string &why);
    // A job has ended (result recorded, or ended by the dispatcher): persist
    // it, and for a commit's job log and report it; for a shard, finish its
    // commit when it was the last.
    void job_ended(uint64_t job_id, Store::Durable durable = {});
    void retry(Connection &conn, const Query &query);
    void release(uint64_t job_id, const std::string &why);
    void save(uint64_t job_id, Store::Durable durable = {});
    bool load_store();
    void expire_orphans();
    void schedule();
    void assign(uint64_t job_id, const RunnerSlotInfo &runner);
    void lose_runner(const std::string &name, const std::string &why);
    void release_runner(const std::string &name, const std::string &why);
    void report(const Job &job);
    static void on_heartbeat_timer(uv_timer_t *timer) noexcept;
    // Work on one job: an exception fails that job (outcome error, with the
    // reason), never the daemon.
    void for_job(uint64_t job_id, const char *what, const std::function<void()> &work) noexcept;

    uv_loop_t *loop_;
    DispatcherConfig config_;
    Server server_;
    JobTable jobs_;
    Scheduler scheduler_;
    Store store_;
    // Runners that held jobs when the dispatcher last stopped: their jobs go
    // back to the queue restart_grace after the start unless they are back.
    std::set<std::string> orphans_;
    std::map<std::string, RunnerSlotInfo> runners_;
    std::set<std::shared_ptr<Connection>> connections_;
    // Per observer connection, the repositories one of whose commits was
    // refused (max_queued_per_repo): their later commits on that connection
    // are refused too, so none is queued ahead of an older refused one.
    std::map<const Connection *, std::set<std::string>> refused_repos_;
    // Peers that have not finished the hello exchange (handshake.cpp): the
    // deadline is absolute from the accept, so trickling bytes cannot hold a
    // connection open without authenticating.
    struct Handshake {
        int64_t deadline_ms = 0;
        std::string role, name;  // from its hello, once received
        std::string peer_nonce;  // its challenge to us
        std::string nonce;       // ours to it (empty: no hello yet)
    };
    std::map<const Connection *, Handshake> handshakes_;
    // The report plugins: one set, shared with the reports in flight, so a
    // reload can unload the old set once they are done (free_reporters).
    using Reporters = std::vector<std::unique_ptr<Plugin>>;
    std::shared_ptr<Reporters> reporters_ = std::make_shared<Reporters>();
    std::vector<std::shared_ptr<Reporters>> old_reporters_;
    void free_reporters();
    uv_timer_t *heartbeat_timer_ = nullptr;
    int64_t started_unix_ms_ = 0;
    bool stopping_ = false;
};

} // namespace kiln
