#pragma once
// kiln-runner's logic: keeps a connection to the dispatcher (reconnecting
// with backoff), registers its slots, heartbeats, runs each assigned job in
// its own workspace, and holds each result until the dispatcher acks it —
// across reconnects.
#include <map>
#include <memory>
#include <string>

#include <uv.h>

#include <kiln/net.hpp>
#include <kiln/plugin_loader.hpp>

#include "job_run.hpp"
#include "runner_config.hpp"

namespace kiln {

class Runner {
  public:
    // Loads the vcs and exec plugins; throws PluginError or ConfigError.
    Runner(uv_loop_t *loop, RunnerConfig config);
    ~Runner();

    void start();
    // Cancel running jobs, disconnect; the loop then ends.
    void stop();

  private:
    void on_connected(Connection &conn);
    void on_message(Connection &conn, Message &&msg);
    void on_assign(const Assign &assign);
    void on_job_done(JobRun &run, Result &&result);
    void send_pending_results();
    void reject(const Assign &assign, const std::string &why);
    static void on_heartbeat_timer(uv_timer_t *timer);

    uv_loop_t *loop_;
    RunnerConfig config_;
    std::map<std::string, std::unique_ptr<Plugin>> vcs_, exec_;
    Client client_;
    uv_timer_t *heartbeat_timer_ = nullptr;
    uint64_t next_request_id_ = 1;
    uint64_t register_id_ = 0;
    bool registered_ = false;
    bool stopping_ = false;
    std::map<uint64_t, std::unique_ptr<JobRun>> running_; // by job id
    std::map<uint64_t, Result> unacked_;                  // by request id
};

} // namespace kiln
