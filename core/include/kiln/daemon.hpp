#pragma once
// What every daemon's main() shares: the command line (--help, --version,
// -c/--config, --check-config, -v), reading the config with errors that end
// start-up, SIGINT/SIGTERM hooked to a graceful stop, and closing the loop.
#include <functional>
#include <string>

#include <uv.h>

#include <kiln/config.hpp>

namespace kiln {

struct DaemonInfo {
    const char *name;    // "kiln-runner"
    const char *summary; // one line for --help
    const char *config;  // file name under the config dir: "runner.toml"
};

struct DaemonOptions {
    std::string config_path;
    bool check_config = false;
    bool verbose = false;
};

// Parse argv.  --help and --version print and exit 0; a usage error prints
// why and exits 2.
DaemonOptions parse_daemon_args(int argc, char **argv, const DaemonInfo &info);

// Load the config file and hand its root table to `apply`, which reads it
// (throwing ConfigError, PluginError or another std::exception on anything
// wrong).  Errors are
// printed as "NAME: why" and false returned, so main() can exit 1.
bool load_daemon_config(const DaemonOptions &opts, const DaemonInfo &info,
                        const std::function<void(const ConfigTable &)> &apply);

// SIGINT and SIGTERM call on_stop (a second signal stops at once); SIGPIPE
// is ignored so a vanished peer is an error code, not a death.
class StopSignals {
  public:
    StopSignals(uv_loop_t *loop, std::function<void(int signum)> on_stop);
    ~StopSignals();
    StopSignals(const StopSignals &) = delete;
    StopSignals &operator=(const StopSignals &) = delete;

  private:
    static void on_signal(uv_signal_t *, int) noexcept;
    uv_signal_t *sigint_, *sigterm_;
    std::function<void(int)> on_stop_;
    int received_ = 0;
};

// Run the loop with SIGINT/SIGTERM calling `stop`, until the daemon has
// released everything that keeps the loop alive.
void run_until_stopped(uv_loop_t *loop, const std::function<void()> &stop);

// What a daemon does under a service manager (see run_service).
struct ServiceHooks {
    std::function<void()> stop;                 // SIGINT/SIGTERM: begin a graceful stop
    std::function<void()> reload;               // SIGHUP; empty: SIGHUP is logged and ignored
    std::function<std::string()> status;        // one line for STATUS=; may be empty
};

// run_until_stopped, plus systemd's side (kiln/systemd.hpp): READY=1 with
// the first status on entry (call it once the daemon serves), STATUS= when
// the status line changes (checked every second), WATCHDOG=1 at half of
// WATCHDOG_USEC when the unit sets WatchdogSec, STOPPING=1 when a stop
// signal arrives, and SIGHUP calling hooks.reload.  None of these handles
// keeps the loop alive.
void run_service(uv_loop_t *loop, const ServiceHooks &hooks);

// SIGHUP's half of load_daemon_config: read the config again (the same way,
// drop-ins included) and hand it to `apply`, which must change nothing
// unless it succeeds.  On an error (printed as load_daemon_config does,
// naming file and line) the daemon keeps its running config; false.
bool reload_daemon_config(const DaemonOptions &opts, const DaemonInfo &info,
                          const std::function<void(const ConfigTable &)> &apply);

// On SIGHUP: a setting that only takes effect at start-up changed.  Logs
// "reload: KEY changed: needs a restart; keeping the running value" and
// returns `changed`.  restart_keys.hpp runs it over a whole struct.
bool warn_needs_restart(const char *key, bool changed);

// Run the loop until nothing is left, closing stray handles, then close it.
// Returns uv_loop_close's result (0 when everything was released).
int drain_and_close_loop(uv_loop_t *loop);

// Wall clock in Unix milliseconds.
int64_t unix_ms();

} // namespace kiln
