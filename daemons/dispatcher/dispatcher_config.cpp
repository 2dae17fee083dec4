#include "dispatcher_config.hpp"

namespace kiln {

DispatcherConfig DispatcherConfig::from(const ConfigTable &root)
{
    DispatcherConfig c;
    ConfigTable d = root.table("dispatcher");
    c.listen = d.string("listen", c.listen);
    c.state_dir = d.string("state_dir", c.state_dir);
    c.heartbeat_interval_ms = d.duration_ms("heartbeat_interval", c.heartbeat_interval_ms);
    c.runner_timeout_ms = d.duration_ms("runner_timeout", c.runner_timeout_ms);
    c.handshake_timeout_ms = d.duration_ms("handshake_timeout", c.handshake_timeout_ms);
    c.max_attempts = static_cast<uint32_t>(d.integer("max_attempts", c.max_attempts, 1, 100));
    c.max_frame = static_cast<size_t>(d.integer("max_frame", c.max_frame, 4096, 1 << 30));
    c.max_peer_buffer = static_cast<size_t>(
        d.integer("max_peer_buffer", c.max_peer_buffer, 1 << 20, int64_t(1) << 34));
    if (c.max_peer_buffer < c.max_frame)
        throw ConfigError(d.error_at("max_peer_buffer", "must be at least max_frame"));
    c.plugin_dirs = d.strings("plugin_dir", {});
    if (c.runner_timeout_ms <= c.heartbeat_interval_ms)
        throw ConfigError(d.error_at("runner_timeout", "must be longer than heartbeat_interval"));
    d.reject_unknown_keys();

    c.reports = root.tables("report");
    for (const auto &report : c.reports)
        report.required_string("plugin"); // the rest of the table belongs to the plugin
    root.reject_unknown_keys();
    return c;
}

} // namespace kiln
