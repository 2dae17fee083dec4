#pragma once
// runner.toml, read into plain values.  See kiln.toml(5).
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include <kiln/config.hpp>
#include <kiln/restart_keys.hpp>

#include "sandbox.hpp"

namespace kiln {

// What SIGHUP changes in a running runner (Runner::reload assigns it whole):
// read again whenever it is used, or applied by reload itself (the
// heartbeat timer, the idle timeout, a new registration for slots and labels).
struct RunnerSettings {
    // From secret_file: proves to the dispatcher who we are (auth.hpp).  A
    // new secret in the same file is taken; a new file needs a restart.
    std::string secret;
    uint32_t slots = 1;
    std::vector<std::string> labels;
    uint64_t heartbeat_interval_ms = 2000;
    uint64_t dispatcher_timeout_ms = 10000;
    uint64_t stop_timeout_ms = 30000; // SIGTERM: time for running jobs to finish and be acked
    // After the connection drops: the longest wait between two attempts to
    // reconnect (the first comes within 250 ms, the waits grow up to this;
    // under 250 ms means 250 ms).
    uint64_t reconnect_max_ms = 5000;
    bool keep_workspaces = false;
    // Below this many bytes free on work_dir's file system the runner takes
    // no jobs (re-registers with 0 slots and says why); 0: never.
    uint64_t min_free = 256ull << 20;
    uint64_t disk_check_ms = 10000; // how often free space is looked at (not a key)
    // Mirrors (work_dir/cache/VCS/*) unused this long are removed; 0: kept.
    uint32_t mirror_keep_days = 30;
    size_t max_log = 4u << 20; // log bytes sent per job; the middle is dropped beyond
    std::vector<std::string> env_allow = kDefaultEnvAllow; // passed on from our environment
};

// What only a restart changes: who the runner is and where it connects, its
// directories and plugins, and the isolation prepared at start-up.
struct RunnerStartup {
    std::string dispatcher = "127.0.0.1:8888";
    std::string secret_file; // hidden from sandboxed tests
    std::string name;        // default: the host name
    std::string work_dir = "/var/lib/kiln/runner";
    std::vector<std::string> plugin_dirs;
    std::vector<std::string> vcs_plugins = {"git"};
    // ctest loads without cmake installed; its jobs then fail saying so.
    std::vector<std::string> exec_plugins = {"unittest", "script", "ctest"};
    size_t max_frame = 16u << 20;
    ConfigTable plugin_tables; // [plugin.NAME] tables, each handed to that plugin at load
    // How tests are isolated (sandbox.hpp; kiln-runner(8), SANDBOX).
    bool sandbox = false;  // sandbox = "bwrap": each test process runs in bubblewrap
    std::string bwrap;     // its executable, found in PATH when the config is read
    std::string test_user; // "": tests run as the runner's own user
    uid_t test_uid = 0;    // test_user's ids (getpwnam), when it is set
    gid_t test_gid = 0;

    // These by key, for reload's warnings (restart_keys.hpp).  [plugin.NAME]
    // tables are not compared.  sandbox and test_user are checked and
    // prepared at start-up (bwrap probed, work_dir opened to the user).
    static auto keys()
    {
        using S = RunnerStartup;
        return std::make_tuple(
            restart_key("dispatcher", &S::dispatcher), restart_key("secret_file", &S::secret_file),
            restart_key("name", &S::name), restart_key("work_dir", &S::work_dir),
            restart_key("plugin_dir", &S::plugin_dirs), restart_key("vcs", &S::vcs_plugins),
            restart_key("exec", &S::exec_plugins), restart_key("max_frame", &S::max_frame),
            restart_key("sandbox", &S::sandbox), restart_key("test_user", &S::test_user));
    }
};

// runner.toml's [runner] (and the [plugin.NAME] tables).
struct RunnerConfig : RunnerStartup, RunnerSettings {
    // `euid`: the user the runner runs as (test_user needs root); a
    // parameter for the tests.  `probe_sandbox`: with sandbox = "bwrap",
    // start bwrap once to see that it works (blocking, some milliseconds):
    // at start-up and --check-config, not on SIGHUP, which runs on the loop
    // and cannot change the sandbox anyway (it needs a restart).
    static RunnerConfig from(const ConfigTable &root, uid_t euid = geteuid(),
                             bool probe_sandbox = true);
};

} // namespace kiln
