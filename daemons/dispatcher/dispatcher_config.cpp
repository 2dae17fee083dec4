#include "dispatcher_config.hpp"

#include <algorithm>
#include <map>

#include <kiln/auth.hpp>
#include <kiln/net.hpp>

#include "http/http_auth.hpp"

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
    c.restart_grace_ms = d.duration_ms("restart_grace", c.restart_grace_ms);
    c.max_attempts = static_cast<uint32_t>(d.integer("max_attempts", c.max_attempts, 1, 100));
    c.max_frame = static_cast<size_t>(d.integer("max_frame", c.max_frame, 4096, 1 << 30));
    c.max_peer_buffer = static_cast<size_t>(
        d.integer("max_peer_buffer", c.max_peer_buffer, 1 << 20, int64_t(1) << 34));
    if (c.max_peer_buffer < c.max_frame)
        throw ConfigError(d.error_at("max_peer_buffer", "must be at least max_frame"));
    c.max_connections =
        static_cast<size_t>(d.integer("max_connections", c.max_connections, 1, 1000000));
    c.max_queued_per_repo = static_cast<size_t>(
        d.integer("max_queued_per_repo", c.max_queued_per_repo, 1, 100000000));
    c.keep_finished =
        static_cast<size_t>(d.integer("keep_finished", c.keep_finished, 0, 1000000));
    c.secret = secret_from_config(d, "secret_file");
    c.runner_secret = secret_from_config(d, "runner_secret_file");
    c.observer_secret = secret_from_config(d, "observer_secret_file");
    // Off this host, anyone who can reach the port could have jobs run:
    // every role must authenticate (kilnctl's ctl role has only secret_file).
    std::string host, error;
    int port = 0;
    if (!split_host_port(c.listen, host, port, error))
        throw ConfigError(d.error_at("listen", error));
    if (!is_loopback_host(host) && c.secret.empty())
        throw ConfigError(d.error_at(
            "listen", "'" + c.listen +
                          "' is not a loopback address: set secret_file so that every peer "
                          "must authenticate"));
    c.plugin_dirs = d.strings("plugin_dir", {});
    c.report_retry_max_ms = d.duration_ms("report_retry_max", c.report_retry_max_ms);
    if (c.report_retry_max_ms < 1000)
        throw ConfigError(d.error_at("report_retry_max", "must be at least 1s (the first retry's wait)"));
    if (c.runner_timeout_ms <= c.heartbeat_interval_ms)
        throw ConfigError(d.error_at("runner_timeout", "must be longer than heartbeat_interval"));
    d.reject_unknown_keys();

    c.http = http_from(root.table("http"));
    c.reports = reports_from(root);
    c.webhooks = webhooks_from(root);
    c.retention = RetentionPolicy::from(root.table("retention"));
    root.reject_unknown_keys();
    return c;
}

HttpConfig DispatcherConfig::http_from(const ConfigTable &h)
{
    HttpConfig c;
    c.listen = h.string("listen", c.listen);
    c.auth_file = h.string("auth_file", "");
    c.is_public = h.boolean("public", false);
    c.max_header_bytes = static_cast<size_t>(
        h.integer("max_header_bytes", c.max_header_bytes, 1024, 256 * 1024));
    c.max_body_bytes =
        static_cast<size_t>(h.integer("max_body_bytes", c.max_body_bytes, 0, 1 << 30));
    c.max_connections =
        static_cast<size_t>(h.integer("max_connections", c.max_connections, 1, 1000000));
    c.request_timeout_ms = h.duration_ms("request_timeout", c.request_timeout_ms);
    c.base_url = h.string("base_url", "");
    while (!c.base_url.empty() && c.base_url.back() == '/')
        c.base_url.pop_back();
    if (!h.string("base_url", "").empty() && c.base_url.rfind("http://", 0) != 0 &&
        c.base_url.rfind("https://", 0) != 0)
        throw ConfigError(h.error_at("base_url", "must start with http:// or https:// (the "
                                                 "address people open the pages at)"));
    if (c.request_timeout_ms == 0)
        throw ConfigError(h.error_at("request_timeout", "must be more than 0"));
    c.max_stream_buffer = static_cast<size_t>(
        h.integer("max_stream_buffer", c.max_stream_buffer, 4096, int64_t(1) << 30));
    h.reject_unknown_keys();
    if (c.listen.empty())
        return c; // off
    if (!c.auth_file.empty()) {
        std::string accounts;
        try {
            accounts = read_secret_file(c.auth_file); // mode 600, like every secret file
        } catch (const std::exception &e) {
            throw ConfigError(h.error_at("auth_file", e.what()));
        }
        try {
            parse_auth_accounts(accounts);
        } catch (const std::exception &e) {
            throw ConfigError(h.error_at("auth_file", c.auth_file + ": " + e.what()));
        }
    }
    // Logs can hold secrets: off this host, only with accounts or on purpose.
    std::string host, error;
    int port = 0;
    if (!split_host_port(c.listen, host, port, error))
        throw ConfigError(h.error_at("listen", error));
    if (!is_loopback_host(host) && c.auth_file.empty() && !c.is_public)
        throw ConfigError(h.error_at(
            "listen", "'" + c.listen +
                          "' is not a loopback address: set auth_file (HTTP basic accounts), or "
                          "public = true to serve pages and logs to anyone who can reach it"));
    return c;
}

std::vector<ReportTable> DispatcherConfig::reports_from(const ConfigTable &root)
{
    std::vector<ReportTable> reports;
    std::map<std::string, int> seen; // tables per plugin so far
    for (const auto &table : root.tables("report")) {
        ReportTable r;
        r.config = table;
        r.plugin = table.required_string("plugin"); // the rest belongs to the plugin
        r.repos = table.strings("repos", {});
        int n = ++seen[r.plugin];
        r.identity = n == 1 ? r.plugin : r.plugin + "#" + std::to_string(n);
        reports.push_back(std::move(r));
    }
    return reports;
}

bool ReportTable::hears(const std::string &repo) const
{
    return repos.empty() || std::find(repos.begin(), repos.end(), repo) != repos.end();
}

const std::string &DispatcherSettings::secret_for(const std::string &role) const
{
    if (role == "runner" && !runner_secret.empty())
        return runner_secret;
    if (role == "observer" && !observer_secret.empty())
        return observer_secret;
    return secret;
}

} // namespace kiln
