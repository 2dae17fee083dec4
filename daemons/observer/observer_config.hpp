#pragma once
// observer.toml, read into plain values.  See kiln.toml(5).
#include <cstdint>
#include <string>
#include <vector>

#include <kiln/config.hpp>
#include <kiln/messages.hpp>
#include <kiln/net.hpp>

namespace kiln {

struct WatchedRepo {
    std::string name;
    std::string url;
    std::vector<std::string> branches = {"main"};
    std::string vcs = "git";
    std::string exec = "unittest";
    bool every = true;      // mode = "every" (each new commit) or "latest"
    uint64_t timeout_ms = 600000;
    uint64_t interval_ms;   // from [observer] unless the repo sets its own
    // Copied into each commit's JobSpec for the dispatcher.
    std::vector<std::string> labels; // a runner must have every one (valid_name)
    uint32_t shards = 1;             // 1..kMaxShards, or 0 for "auto"
    bool cancel_superseded = false;  // a newer commit on a branch cancels the older one's jobs
    bool network = false;            // its tests may reach the network in a runner's sandbox
};

// More shards than this is a typo, not a plan: no suite is split that finely.
constexpr int64_t kMaxShards = 1000;

struct ObserverConfig {
    std::string dispatcher = "127.0.0.1:8888";
    std::string secret; // from secret_file: proves to the dispatcher who we are (auth.hpp)
    std::string state_dir = "/var/lib/kiln/observer";
    uint64_t interval_ms = 5000;
    uint32_t max_backlog = 100;
    uint64_t dispatcher_timeout_ms = 30000;
    uint64_t ack_timeout_ms = 30000; // 0: wait for acks forever
    uint64_t reconnect_max_ms = Backoff::kDefaultCapMs; // longest wait between reconnects
    size_t max_outbox = 10000;       // unacknowledged commits before polling pauses
    size_t max_frame = 16u << 20;
    std::vector<std::string> plugin_dirs;
    std::vector<WatchedRepo> repos;
    ConfigTable plugin_tables; // [plugin.NAME]

    static ObserverConfig from(const ConfigTable &root);
};

} // namespace kiln
