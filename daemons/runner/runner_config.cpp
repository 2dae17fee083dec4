#include "runner_config.hpp"

#include <unistd.h>

#include <kiln/messages.hpp>

namespace kiln {

RunnerConfig RunnerConfig::from(const ConfigTable &root)
{
    RunnerConfig c;
    ConfigTable r = root.table("runner");
    c.dispatcher = r.string("dispatcher", c.dispatcher);
    char host[256] = "runner";
    gethostname(host, sizeof host - 1);
    c.name = r.string("name", host);
    if (!valid_name(c.name))
        throw ConfigError(r.error_at("name", "'" + c.name +
                                                 "' is not a valid runner name (1-64 of "
                                                 "letters, digits, '.', '_', '-')"));
    c.slots = static_cast<uint32_t>(r.integer("slots", c.slots, 1, 256));
    c.labels = r.strings("labels", {});
    c.work_dir = r.string("work_dir", c.work_dir);
    c.plugin_dirs = r.strings("plugin_dir", {});
    c.vcs_plugins = r.strings("vcs", c.vcs_plugins);
    c.exec_plugins = r.strings("exec", c.exec_plugins);
    c.heartbeat_interval_ms = r.duration_ms("heartbeat_interval", c.heartbeat_interval_ms);
    c.dispatcher_timeout_ms = r.duration_ms("dispatcher_timeout", c.dispatcher_timeout_ms);
    c.stop_timeout_ms = r.duration_ms("stop_timeout", c.stop_timeout_ms);
    c.keep_workspaces = r.boolean("keep_workspaces", c.keep_workspaces);
    c.max_frame = static_cast<size_t>(r.integer("max_frame", c.max_frame, 4096, 1 << 30));
    c.max_log = static_cast<size_t>(r.integer("max_log", c.max_log, 1024, 64 << 20));
    if (c.max_log + (1u << 20) > c.max_frame)
        throw ConfigError(r.error_at("max_log", "must leave 1 MiB of max_frame for the rest of "
                                                "a result"));
    r.reject_unknown_keys();
    c.plugin_tables = root.table("plugin");
    root.reject_unknown_keys();
    return c;
}

} // namespace kiln
