#include "observer_config.hpp"

#include <algorithm>
#include <cerrno>
#include <set>

#include <kiln/auth.hpp>

namespace kiln {

namespace {

// shards = N (1..kMaxShards) or "auto" (0 in the JobSpec: the dispatcher
// decides from the runners it has).  ConfigTable has no "integer or string" getter, so both
// typed getters are tried and the error says what either would accept.
uint32_t read_shards(const ConfigTable &t)
{
    const std::string expected = "expected an integer ≥ 1 or \"auto\"";
    std::string text, message;
    if (t.get_string("shards", text, message) == 0) {
        if (text == "auto")
            return 0;
        throw ConfigError(t.error_at("shards", expected + ", got \"" + text + "\""));
    }
    int64_t n = 0;
    int rc = t.get_int("shards", n, message);
    if (rc == -ENOENT)
        return 1;
    if (rc != 0) // another type: keep get_int's ", got <type>"
        throw ConfigError(t.error_at("shards", expected + message.substr(message.rfind(", got "))));
    if (n < 1)
        throw ConfigError(t.error_at("shards", expected + ", got " + std::to_string(n)));
    if (n > kMaxShards)
        throw ConfigError(t.error_at("shards", "at most " + std::to_string(kMaxShards) +
                                                   " shards, got " + std::to_string(n)));
    return static_cast<uint32_t>(n);
}

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
    // Checked here: the dispatcher would refuse a commit carrying a bad
    // label, and the observer would then retry it forever.
    for (const auto &label : t.strings("labels", {})) {
        if (!valid_name(label))
            throw ConfigError(t.error_at("labels", "'" + label +
                                                       "' is not a valid label (1-64 of letters, "
                                                       "digits, '.', '_', '-')"));
        if (std::find(r.labels.begin(), r.labels.end(), label) == r.labels.end())
            r.labels.push_back(label);
    }
    r.shards = read_shards(t);
    r.cancel_superseded = t.boolean("cancel_superseded", r.cancel_superseded);
    r.network = t.boolean("network", r.network);
    t.reject_unknown_keys();
    return r;
}

} // namespace

ObserverConfig ObserverConfig::from(const ConfigTable &root)
{
    ObserverConfig c;
    ConfigTable o = root.table("observer");
    c.dispatcher = o.string("dispatcher", c.dispatcher);
    c.secret = secret_from_config(o, "secret_file");
    c.state_dir = o.string("state_dir", c.state_dir);
    c.interval_ms = o.duration_ms("interval", c.interval_ms);
    c.max_backlog = static_cast<uint32_t>(o.integer("max_backlog", c.max_backlog, 1, 100000));
    c.dispatcher_timeout_ms = o.duration_ms("dispatcher_timeout", c.dispatcher_timeout_ms);
    c.ack_timeout_ms = o.duration_ms("ack_timeout", c.ack_timeout_ms);
    c.reconnect_max_ms = o.duration_ms("reconnect_max", c.reconnect_max_ms);
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
