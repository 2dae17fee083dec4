#include "runner_config.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <kiln/auth.hpp>
#include <kiln/messages.hpp>

#include "byte_size.hpp"

namespace kiln {

namespace {

// sandbox, test_user, env_allow.  Everything that could stop them working
// is checked here, where the error can name its key, and so before a job
// runs: a runner that cannot isolate its tests as configured must refuse to
// start rather than run them less isolated.
void read_isolation(const ConfigTable &r, RunnerConfig &c, uid_t euid, bool probe)
{
    std::string sandbox = r.string("sandbox", "none");
    if (sandbox != "none" && sandbox != "bwrap")
        throw ConfigError(r.error_at("sandbox", "expected \"none\" or \"bwrap\", got \"" +
                                                    sandbox + "\""));
    c.env_allow = r.strings("env_allow", c.env_allow);
    for (const std::string &name : c.env_allow) {
        if (!valid_env_name(name))
            throw ConfigError(r.error_at("env_allow", "'" + name +
                                                          "' is not an environment variable name"));
        if (name == "HOME" || name == "TMPDIR")
            throw ConfigError(r.error_at("env_allow", name + " is set by kiln-runner for each "
                                                             "test (the workspace, /tmp)"));
    }

    SpawnUser user{0, 0};
    c.test_user = r.string("test_user", "");
    if (!c.test_user.empty()) {
        errno = 0;
        const struct passwd *pw = getpwnam(c.test_user.c_str());
        if (!pw)
            throw ConfigError(r.error_at("test_user", "no user '" + c.test_user + "'" +
                                                          (errno ? std::string(": ") +
                                                                       strerror(errno)
                                                                 : "")));
        if (pw->pw_uid == 0)
            throw ConfigError(r.error_at("test_user", "'" + c.test_user +
                                                          "' is root; name an unprivileged user"));
        if (euid != 0)
            throw ConfigError(r.error_at(
                "test_user", "running tests as '" + c.test_user +
                                 "' needs kiln-runner to run as root (to switch to that user "
                                 "and hand it the workspace); it runs as uid " +
                                 std::to_string(euid)));
        c.test_uid = pw->pw_uid;
        c.test_gid = pw->pw_gid;
        user = {c.test_uid, c.test_gid};
        // work_dir itself is opened to it at start-up (Runner::start); the
        // directories above it are the operator's.
        std::string parent = normalize_path(c.work_dir + "/..");
        std::string why = search_denied(parent, c.test_uid, c.test_gid);
        if (!why.empty())
            throw ConfigError(r.error_at("test_user", "'" + c.test_user +
                                                          "' cannot reach work_dir " +
                                                          c.work_dir + ": " + why));
    }

    if (sandbox == "bwrap") {
        if (c.work_dir.empty() || c.work_dir[0] != '/')
            throw ConfigError(r.error_at("work_dir", "must be an absolute path with sandbox = "
                                                     "\"bwrap\""));
        const char *path = getenv("PATH");
        c.bwrap = find_program("bwrap", path);
        if (c.bwrap.empty())
            throw ConfigError(r.error_at(
                "sandbox", "\"bwrap\": no bwrap executable in PATH (" +
                               std::string(path ? path : "unset") +
                               "); install bubblewrap (Debian: apt-get install bubblewrap)"));
        std::string why = probe ? probe_bwrap(c.bwrap, c.test_user.empty() ? nullptr : &user)
                                : std::string();
        if (!why.empty())
            throw ConfigError(r.error_at(
                "sandbox", "\"bwrap\": " + c.bwrap + " cannot make a sandbox here" +
                               (c.test_user.empty() ? "" : " as user '" + c.test_user + "'") +
                               " (are unprivileged user namespaces disabled?): " + why));
        c.sandbox = true;
    }
}

} // namespace

RunnerConfig RunnerConfig::from(const ConfigTable &root, uid_t euid, bool probe_sandbox)
{
    RunnerConfig c;
    ConfigTable r = root.table("runner");
    c.dispatcher = r.string("dispatcher", c.dispatcher);
    c.secret = secret_from_config(r, "secret_file");
    c.secret_file = r.optional_string("secret_file").value_or("");
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
    // Under 250 ms means 250 ms: the Client's backoff clamps it.
    c.reconnect_max_ms = r.duration_ms("reconnect_max", c.reconnect_max_ms);
    c.keep_workspaces = r.boolean("keep_workspaces", c.keep_workspaces);
    c.min_free = config_byte_size(r, "min_free", c.min_free);
    c.mirror_keep_days =
        static_cast<uint32_t>(r.integer("mirror_keep_days", c.mirror_keep_days, 0, 36500));
    c.max_frame = static_cast<size_t>(r.integer("max_frame", c.max_frame, 4096, 1 << 30));
    c.max_log = static_cast<size_t>(r.integer("max_log", c.max_log, 1024, 64 << 20));
    if (c.max_log + (1u << 20) > c.max_frame)
        throw ConfigError(r.error_at("max_log", "must leave 1 MiB of max_frame for the rest of "
                                                "a result"));
    read_isolation(r, c, euid, probe_sandbox);
    r.reject_unknown_keys();
    c.plugin_tables = root.table("plugin");
    root.reject_unknown_keys();
    return c;
}

} // namespace kiln
