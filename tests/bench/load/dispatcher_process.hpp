// The kiln-dispatcher a benchmark run starts: a throw-away state dir with its
// config, the process itself (stdout and stderr to a log file in that dir),
// the port it reports in that log, and how it is stopped.  The only process
// it ever signals is the one it started.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <uv.h>

namespace kiln::bench {

class DispatcherProcess {
  public:
    DispatcherProcess(uv_loop_t *loop, std::string program);
    DispatcherProcess(const DispatcherProcess &) = delete;
    DispatcherProcess &operator=(const DispatcherProcess &) = delete;

    // Called once the log names the port the dispatcher listens on.
    std::function<void(const std::string &address)> on_listening;
    // Called when it exits, or reports no port within 15 s.
    std::function<void(const std::string &why)> on_failure;

    // A temp dir under $TMPDIR with dispatcher.toml: listen on 127.0.0.1:0,
    // state in the dir, heartbeats every `hold_s` seconds and runner
    // timeouts of twice that (synthetic runners send none), no report
    // plugins unless the text of `extra_file` (if not empty) adds them.
    bool make_state_dir(long long hold_s, const std::string &extra_file = "");
    // Spawn it (argv, no shell) and watch its log for the port.
    bool start();
    // Stop watching the log; SIGTERM, then SIGKILL if it is up 10 s later.
    void stop();
    // Close the timers once it has exited; the loop then runs dry.
    void close_handles();
    // Remove the state dir and everything in it.
    void remove_state_dir();

    bool running() const { return running_; }
    int pid() const { return pid_; }
    int port() const { return port_; }
    const std::string &program() const { return program_; }
    const std::string &dir() const { return dir_; }
    const std::string &log_path() const { return log_path_; }
    uint64_t launched_ns() const { return t_launch_; }
    int64_t exit_status() const { return exit_status_; }
    int exit_signal() const { return exit_signal_; }

  private:
    static void on_exit(uv_process_t *, int64_t status, int signum) noexcept;
    static void on_poll_port(uv_timer_t *) noexcept;
    static void on_kill_timer(uv_timer_t *) noexcept;

    uv_loop_t *loop_;
    std::string program_;
    std::string dir_, log_path_, config_path_;
    uv_process_t process_{};
    uv_timer_t poll_timer_{};
    uv_timer_t kill_timer_{};
    bool timers_open_ = false;
    bool running_ = false;
    int pid_ = 0;
    int port_ = 0;
    uint64_t t_launch_ = 0;
    int64_t exit_status_ = 0;
    int exit_signal_ = 0;
};

} // namespace kiln::bench
