#pragma once
// kiln-runner's logic: keeps a connection to the dispatcher (reconnecting
// with backoff), registers its slots, heartbeats, runs each assigned job in
// its own workspace (up to `slots` at once; the dispatcher counts them),
// lists the tests of a commit when the assign asks for it, cancels a job
// when the dispatcher says so, and holds each result or test list — in
// memory and in the spool on disk — until the dispatcher acks it, across
// reconnects and restarts.
#include <map>
#include <memory>
#include <string>

#include <uv.h>

#include <kiln/auth.hpp>
#include <kiln/net.hpp>
#include <kiln/plugin_loader.hpp>

#include "disk_guard.hpp"
#include "group_record.hpp"
#include "mirror_sweep.hpp"
#include "job_run.hpp"
#include "runner_config.hpp"
#include "spool.hpp"

namespace kiln {

class Runner {
  public:
    // Loads the vcs and exec plugins; throws PluginError or ConfigError.
    // Touches nothing on disk (so --check-config can build one).
    Runner(uv_loop_t *loop, RunnerConfig config);
    ~Runner();

    // Load the spool (blocking: call before the loop runs), then connect.
    void start();
    // Graceful stop: take no new job (re-register with 0 slots), let the
    // running ones finish and their results be acked, for up to
    // stop_timeout; then cancel what still runs (the dispatcher requeues it
    // when we disconnect) and disconnect.  The loop ends once the cancelled
    // jobs and pending disk writes are done.  Idempotent.
    void stop();

    // SIGHUP: take the new RunnerSettings (slots and labels are registered
    // again on the same connection); log each RunnerStartup key that changed
    // as needing a restart.  Running jobs and the connection are kept.
    void reload(RunnerConfig config);
    // One line for systemd's STATUS=: "idle", "running job 7", ...
    std::string status() const;

    // What the runner holds, for tests and logs.
    size_t running() const { return running_.size(); }
    size_t unacknowledged() const { return unacked_.size(); }
    bool stopped() const { return stopped_; }

  private:
    // A result or test list the dispatcher has not acked yet.
    struct Pending {
        Delivery what;
        bool ready = false; // its spool write is over: it may be sent
    };

    // The exec plugins' host->spawn (the tests): scrubbed environment,
    // test_user, bwrap.  -EPERM for a process outside every job's workspace.
    int spawn_test(const std::string &plugin, const kiln_spawn_request &req, kiln_spawn_cb cb,
                   void *arg, kiln_process **proc);
    // A test process the exec plugin started: its callback and argument, and
    // its pid, whose group is recorded until it ends.
    struct TestWatch {
        std::weak_ptr<Runner *> runner;
        kiln_spawn_cb cb;
        void *arg;
        pid_t pid;
        std::weak_ptr<LiveLog> log; // its job's live log, while the tests run
        RecordFilter stdout_filter;
        bool stdout_is_data; // a listing's stdout (ctest --show-only): not teed
    };
    static void on_test_ended(void *arg, int status, const kiln_spawn_result *res) noexcept;
    static void on_test_output(void *arg, int fd, const char *data, size_t len) noexcept;
    bool send_log_chunk(LogChunk &&chunk);
    void on_log_acked(uint64_t request_id, const Ack &ack);
    void configure_client();
    void apply_settings(const RunnerSettings &before);
    void prepare_isolation();
    void on_connected(Connection &conn);
    void on_dispatcher_hello(Connection &conn, const Hello &hello);
    void on_disconnected(const std::string &why);
    void on_message(Connection &conn, Message &&msg);
    void on_registered(Connection &conn);
    void on_assign(const Assign &assign);
    void on_cancel(const Cancel &cancel);
    void on_job_done(JobRun &run, Delivery &&what);
    void deliver(Delivery &&what);
    void on_spooled(uint64_t id, int status);
    void on_acked(uint64_t id);
    void send_register();
    void send_heartbeat();
    void reject(const Assign &assign, const std::string &why);
    void check_drained();
    void begin_stop();
    void finish_stop();
    void abort_stop();
    static void on_heartbeat_timer(uv_timer_t *timer) noexcept;
    static void on_stop_deadline(uv_timer_t *timer) noexcept;
    // ---- disk (runner_disk.cpp) ----
    void start_disk_care();
    void on_disk_state(const std::string &why);
    void sweep_mirrors_now();
    static void on_sweep_timer(uv_timer_t *t) noexcept;
    void on_swept(SweepOutcome &&outcome);

    uv_loop_t *loop_;
    RunnerConfig config_;
    std::map<std::string, std::unique_ptr<Plugin>> vcs_, exec_;
    Client client_;
    ClientHandshake handshake_;
    Spool spool_;
    GroupRecord groups_; // the test process groups running, in work_dir/groups
    uv_timer_t *heartbeat_timer_ = nullptr;
    uv_timer_t *stop_timer_ = nullptr;
    uint64_t next_request_id_ = 1;
    uint64_t register_id_ = 0;
    bool registered_ = false;
    bool stopping_ = false; // draining: no new jobs
    bool aborting_ = false; // the stop deadline passed: results of cancelled jobs are dropped
    bool stopped_ = false;  // disconnected for good
    std::map<uint64_t, std::unique_ptr<JobRun>> running_; // by job id
    std::map<uint64_t, Pending> unacked_;                 // by request id
    std::map<uint64_t, uint64_t> log_chunks_; // log chunks in flight: request id → job id
    bool old_dispatcher_ = false; // it refused a log message: send none until we restart
    std::vector<std::string> hidden_;       // covered in every sandbox (work_dir, /etc/kiln, /run)
    std::vector<std::string> hidden_files_; // the secret file, when outside those
    std::vector<std::string> net_read_only_; // bound back when a repo allows the network (DNS)
    // Shared with thread-pool callbacks so they can tell the Runner is gone.
    std::shared_ptr<Runner *> alive_;
    DiskGuard disk_;
    std::string paused_; // why we take no jobs (min_free); "" when we do
    uv_timer_t *sweep_timer_ = nullptr;
    bool sweeping_ = false; // a mirror sweep runs on the thread pool: no job starts
    std::vector<Assign> deferred_; // assigned during the sweep, started after it
};

} // namespace kiln
