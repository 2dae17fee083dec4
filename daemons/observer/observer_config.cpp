#include "observer_config.hpp"

#include <set>

namespace kiln {

namespace {

WatchedRepo read_repo(const ConfigTable &t, uint64_t default_interval)
{
    WatchedRepo r;
    r.name = t.required_string("name");
    if (!valid_name(r.name))
        throw ConfigError(t.error_at("name", "'" + r.name +
                                                 "' is not a valid name (1-64 of letters, "
                                                 "digits, '.', '_', '-')"));
    r.url = t.required_string("url");
    r.branches = t.strings("branches", r.branches);
    if (r.branches.empty())
        throw ConfigError(t.error_at("branches", "at least one branch is needed"));
    for (const auto &b : r.branches)
        if (!valid_branch(b))
            throw ConfigError(t.error_at("branches", "'" + b + "' is not a valid branch name"));
    r.vcs = t.string("vcs", r.vcs);
    r.exec = t.string("exec", r.exec);
    std::string mode = t.string("mode", "every");
    if (mode != "every" && mode != "latest")
        throw ConfigError(t.error_at("mode", "expected \"every\" or \"latest\", got \"" + mode + "\""));
    r.every = mode == "every";
    r.timeout_ms = t.duration_ms("timeout", r.timeout_ms);
    r.interval_ms = t.duration_ms("interval", default_interval);
    t.reject_unknown_keys();
    return r;
}

} // namespace

ObserverConfig ObserverConfig::from(const ConfigTable &root)
{
    ObserverConfig c;
    ConfigTable o = root.table("observer");
    c.dispatcher = o.string("dispatcher", c.dispatcher);
    c.state_dir = o.string("state_dir", c.state_dir);
    c.interval_ms = o.duration_ms("interval", c.interval_ms);
    c.max_backlog = static_cast<uint32_t>(o.integer("max_backlog", c.max_backlog, 1, 100000));
    c.dispatcher_timeout_ms = o.duration_ms("dispatcher_timeout", c.dispatcher_timeout_ms);
    c.ack_timeout_ms = o.duration_ms("ack_timeout", c.ack_timeout_ms);
    c.max_outbox = static_cast<size_t>(o.integer("max_outbox", c.max_outbox, 1, 10000000));
    c.max_frame = static_cast<size_t>(o.integer("max_frame", c.max_frame, 4096, 1 << 30));
    c.plugin_dirs = o.strings("plugin_dir", {});
    o.reject_unknown_keys();

    std::set<std::string> names;
    for (const auto &t : root.tables("repo")) {
        c.repos.push_back(read_repo(t, c.interval_ms));
        if (!names.insert(c.repos.back().name).second)
            throw ConfigError(t.error_at("name", "repository '" + c.repos.back().name +
                                                     "' is defined twice"));
    }
    c.plugin_tables = root.table("plugin");
    root.reject_unknown_keys();
    return c;
}

} // namespace kiln
