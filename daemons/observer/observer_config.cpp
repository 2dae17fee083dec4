// observer.toml into ObserverConfig: [observer], [[repo]], [plugin.NAME].
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
    JobSpec &job = r.job;
    job.repo = t.required_string("name");
    if (!valid_name(job.repo))
        throw ConfigError(t.error_at("name", "'" + job.repo +
                                                 "' is not a valid name (1-64 of letters, "
                                                 "digits, '.', '_', '-')"));
    job.url = t.required_string("url");
    r.branches = t.strings("branches", r.branches);
    if (r.branches.empty())
        throw ConfigError(t.error_at("branches", "at least one branch is needed"));
    for (const auto &b : r.branches)
        if (!valid_branch(b))
            throw ConfigError(t.error_at("branches", "'" + b + "' is not a valid branch name"));
    job.vcs = t.string("vcs", job.vcs);
    job.exec = t.string("exec", job.exec);
    std::string mode = t.string("mode", "every");
    if (mode != "every" && mode != "latest")
        throw ConfigError(t.error_at("mode", "expected \"every\" or \"latest\", got \"" + mode + "\""));
    r.every = mode == "every";
    job.timeout_ms = t.duration_ms("timeout", job.timeout_ms);
    r.interval_ms = t.duration_ms("interval", default_interval);
    // Checked here: the dispatcher would refuse a commit carrying a bad
    // label, and the observer would then retry it forever.
    for (const auto &label : t.strings("labels", {})) {
        if (!valid_name(label))
            throw ConfigError(t.error_at("labels", "'" + label +
                                                       "' is not a valid label (1-64 of letters, "
                                                       "digits, '.', '_', '-')"));
        if (std::find(job.labels.begin(), job.labels.end(), label) == job.labels.end())
            job.labels.push_back(label);
    }
    job.shards = read_shards(t);
    job.cancel_superseded = t.boolean("cancel_superseded", job.cancel_superseded);
    job.network = t.boolean("network", job.network);
    t.reject_unknown_keys();
    return r;
}

} // namespace

ObserverConfig ObserverConfig::from(const ConfigTable &root)
{
    ObserverConfig c;
    ObserverStartup &st = c.startup;
    ObserverSettings &set = c.settings;
    ConfigTable o = root.table("observer");
    st.dispatcher = o.string("dispatcher", st.dispatcher);
    set.secret = secret_from_config(o, "secret_file");
    st.state_dir = o.string("state_dir", st.state_dir);
    set.interval_ms = o.duration_ms("interval", set.interval_ms);
    set.max_backlog = static_cast<uint32_t>(o.integer("max_backlog", set.max_backlog, 1, 100000));
    set.dispatcher_timeout_ms = o.duration_ms("dispatcher_timeout", set.dispatcher_timeout_ms);
    set.ack_timeout_ms = o.duration_ms("ack_timeout", set.ack_timeout_ms);
    set.reconnect_max_ms = o.duration_ms("reconnect_max", set.reconnect_max_ms);
    set.max_outbox = static_cast<size_t>(o.integer("max_outbox", set.max_outbox, 1, 10000000));
    st.max_frame = static_cast<size_t>(o.integer("max_frame", st.max_frame, 4096, 1 << 30));
    set.plugin_dirs = o.strings("plugin_dir", {});
    o.reject_unknown_keys();

    std::set<std::string> names;
    for (const auto &t : root.tables("repo")) {
        set.repos.push_back(read_repo(t, set.interval_ms));
        const std::string &name = set.repos.back().job.repo;
        if (!names.insert(name).second)
            throw ConfigError(t.error_at("name", "repository '" + name + "' is defined twice"));
    }
    set.plugin_tables = root.table("plugin");
    root.reject_unknown_keys();
    return c;
}

} // namespace kiln
