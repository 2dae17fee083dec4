#pragma once
// dispatcher.toml, read into plain values.  See kiln.toml(5).
#include <cstdint>
#include <string>
#include <vector>

#include <kiln/config.hpp>
#include <kiln/restart_keys.hpp>

#include "http/http_server.hpp"
#include "retention.hpp"
#include "webhook_config.hpp"

namespace kiln {

// One [[report]] table: a receiver of report events.  The dispatcher reads
// its routing keys; the plugin gets the table without them.
struct ReportTable {
    ConfigTable config;              // the whole table, for the plugin loader
    std::string plugin;              // `plugin`
    std::vector<std::string> repos;  // `repos`: events of these repositories; empty: all
    // "<plugin>" for the first table of a plugin, "<plugin>#N" for its Nth
    // (1-based): the receiver's name in the outbox, logs and kilnctl.
    // Reordering a plugin's tables renames them.
    std::string identity;

    bool hears(const std::string &repo) const;
};

// What a reload (SIGHUP) may change: the running dispatcher takes these by
// assignment.
struct DispatcherSettings {
    uint64_t heartbeat_interval_ms = 2000;
    uint64_t runner_timeout_ms = 10000;
    uint64_t handshake_timeout_ms = 10000;
    // After a start, how long the jobs a runner held stay with it before
    // they are requeued: longer than a runner's reconnect back-off (its cap,
    // reconnect_max, is 5 s by default), so a restart reruns nothing.
    uint64_t restart_grace_ms = 15000;
    uint32_t max_attempts = 3;
    size_t max_peer_buffer = 64u << 20; // bytes queued to one peer before it is dropped
    size_t max_connections = 1024;      // open connections; one more is closed at once
    size_t max_queued_per_repo = 10000; // queued jobs of a repository before its commits are refused
    size_t keep_finished = 100;         // newest finished commits kept in memory; older: on disk only
    // Keys of the secret files (empty: none).  A role without a secret of
    // its own uses `secret`; a role with none at all is not authenticated.
    std::string secret, runner_secret, observer_secret;
    std::vector<std::string> plugin_dirs;
    std::vector<ReportTable> reports; // [[report]] tables, each naming its plugin
    // A failed delivery is tried again after 1 s, doubling per failure up to this.
    uint64_t report_retry_max_ms = 60000;
    std::vector<WebhookConfig> webhooks; // [[webhook]] tables, their secrets read
    RetentionPolicy retention;           // [retention]: garbage collection (gc.hpp)

    // The key a peer of this role ("runner", "observer", "ctl") must prove.
    const std::string &secret_for(const std::string &role) const;
};

struct DispatcherConfig : DispatcherSettings {
    // These need a restart: a reload warns when they change (keys).
    std::string listen = "127.0.0.1:8888";
    std::string state_dir = "/var/lib/kiln/dispatcher";
    size_t max_frame = 16u << 20;
    HttpConfig http; // [http]: all of it needs a restart

    // The keys above by name, for reload's warnings (restart_keys.hpp).
    static auto keys()
    {
        using C = DispatcherConfig;
        return std::make_tuple(restart_key("listen", &C::listen),
                               restart_key("state_dir", &C::state_dir),
                               restart_key("max_frame", &C::max_frame),
                               restart_key("[http]", &C::http));
    }

    // Throws ConfigError naming file, line, column and key.
    static DispatcherConfig from(const ConfigTable &root);
    // [http] alone (dispatcher_config.cpp).
    static HttpConfig http_from(const ConfigTable &http);
    // The [[report]] tables, their routing keys read and identities given.
    static std::vector<ReportTable> reports_from(const ConfigTable &root);
};

} // namespace kiln
