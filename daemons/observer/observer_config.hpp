#pragma once
// observer.toml, read into plain values.  See kiln.toml(5).
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <kiln/config.hpp>
#include <kiln/messages.hpp>
#include <kiln/net.hpp>
#include <kiln/restart_keys.hpp>

namespace kiln {

// One [[repo]]: where and how to watch it, and the job every new commit of
// it becomes.
struct WatchedRepo {
    // The template of each commit's JobSpec: everything but branch and
    // commit, which enqueue fills in (job.repo is the repository's name).
    JobSpec job;
    std::vector<std::string> branches = {"main"};
    bool every = true;    // mode = "every" (each new commit) or "latest"
    uint64_t interval_ms; // from [observer] unless the repo sets its own
};

// More shards than this is a typo, not a plan: no suite is split that finely.
constexpr int64_t kMaxShards = 1000;

// What only a restart changes: on SIGHUP a change is logged and the running
// value kept (restart_keys.hpp).
struct ObserverStartup {
    std::string dispatcher = "127.0.0.1:8888";
    std::string state_dir = "/var/lib/kiln/observer";
    size_t max_frame = 16u << 20;

    static auto keys()
    {
        return std::make_tuple(restart_key("dispatcher", &ObserverStartup::dispatcher),
                               restart_key("state_dir", &ObserverStartup::state_dir),
                               restart_key("max_frame", &ObserverStartup::max_frame));
    }
};

// What a reload replaces as a whole.
struct ObserverSettings {
    std::string secret; // from secret_file: proves to the dispatcher who we are (auth.hpp)
    uint64_t interval_ms = 5000;
    uint32_t max_backlog = 100;
    uint64_t dispatcher_timeout_ms = 30000;
    uint64_t ack_timeout_ms = 30000; // 0: wait for acks forever
    uint64_t reconnect_max_ms = Backoff::kDefaultCapMs; // longest wait between reconnects
    size_t max_outbox = 10000;       // unacknowledged commits before polling pauses
    // Searched for vcs plugins not loaded yet; a loaded one stays as it is.
    std::vector<std::string> plugin_dirs;
    std::vector<WatchedRepo> repos;
    ConfigTable plugin_tables; // [plugin.NAME]
};

struct ObserverConfig {
    ObserverStartup startup;
    ObserverSettings settings;

    static ObserverConfig from(const ConfigTable &root);
};

} // namespace kiln
