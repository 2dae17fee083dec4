#pragma once
// dispatcher.toml, read into plain values.  See kiln.toml(5).
#include <cstdint>
#include <string>
#include <vector>

#include <kiln/config.hpp>

namespace kiln {

struct DispatcherConfig {
    std::string listen = "127.0.0.1:8888";
    std::string state_dir = "/var/lib/kiln/dispatcher";
    uint64_t heartbeat_interval_ms = 2000;
    uint64_t runner_timeout_ms = 10000;
    uint64_t handshake_timeout_ms = 10000;
    uint32_t max_attempts = 3;
    size_t max_frame = 16u << 20;
    size_t max_peer_buffer = 64u << 20; // bytes queued to one peer before it is dropped
    size_t max_connections = 1024;      // open connections; one more is closed at once
    size_t max_queued_per_repo = 10000; // queued jobs of a repository before its commits are refused
    // Keys of the secret files (empty: none).  A role without a secret of
    // its own uses `secret`; a role with none at all is not authenticated.
    std::string secret, runner_secret, observer_secret;
    std::vector<std::string> plugin_dirs;
    std::vector<ConfigTable> reports; // [[report]] tables, each naming its plugin

    // The key a peer of this role ("runner", "observer", "ctl") must prove.
    const std::string &secret_for(const std::string &role) const;

    // Throws ConfigError naming file, line, column and key.
    static DispatcherConfig from(const ConfigTable &root);
};

} // namespace kiln
