// Test isolation: environment scrubbing, the bwrap command line, and the
// checks the runner makes before it relies on either.
#include "sandbox.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <set>

namespace kiln {

const std::vector<std::string> kDefaultEnvAllow = {"PATH", "LANG", "LC_ALL", "TZ", "TERM"};

bool valid_env_name(const std::string &name)
{
    if (name.empty() || isdigit(static_cast<unsigned char>(name[0])))
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
}

std::vector<std::string> test_environment(const char *const *plugin_env,
                                          const char *const *runner_env,
                                          const std::vector<std::string> &allow,
                                          const std::string &home)
{
    std::set<std::string> inherited; // exact "NAME=value" entries of the runner
    if (plugin_env && runner_env)
        for (const char *const *e = runner_env; *e; e++)
            inherited.insert(*e);
    const char *const *base = plugin_env ? plugin_env : runner_env;
    std::vector<std::string> env;
    std::set<std::string> seen;
    for (const char *const *e = base; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || eq == *e)
            continue;
        std::string name(*e, eq);
        if (name == "HOME" || name == "TMPDIR")
            continue; // ours, below
        bool keep = std::find(allow.begin(), allow.end(), name) != allow.end() ||
                    (plugin_env && name.compare(0, 5, "KILN_") == 0 && !inherited.count(*e));
        if (keep && seen.insert(name).second)
            env.emplace_back(*e);
    }
    env.push_back("HOME=" + home);
    env.push_back("TMPDIR=/tmp");
    return env;
}

std::vector<std::string> bwrap_argv(const SandboxSpec &spec,
                                    const std::vector<std::string> &command)
{
    std::vector<std::string> a = {spec.bwrap, "--die-with-parent", "--unshare-all"};
    if (spec.network)
        a.push_back("--share-net");
    for (const char *s : {"--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev", "--proc",
                          "/proc", "--tmpfs", "/tmp"})
        a.push_back(s);
    // Order matters: bwrap applies these one after the other.  The tmpfs
    // first (bwrap makes the mount points of what follows in it), the binds
    // into it, and only then read-only (non-recursively: the binds keep
    // their own flags).
    for (const std::string &h : spec.hidden)
        a.insert(a.end(), {"--tmpfs", h});
    if (!spec.workspace.empty())
        a.insert(a.end(), {"--bind", spec.workspace, spec.workspace});
    for (const std::string &r : spec.read_only)
        a.insert(a.end(), {"--ro-bind", r, r});
    for (const std::string &f : spec.hidden_files)
        a.insert(a.end(), {"--ro-bind", "/dev/null", f});
    for (const std::string &h : spec.hidden)
        a.insert(a.end(), {"--remount-ro", h});
    if (!spec.cwd.empty())
        a.insert(a.end(), {"--chdir", spec.cwd});
    a.push_back("--");
    a.insert(a.end(), command.begin(), command.end());
    return a;
}

std::string normalize_path(const std::string &path)
{
    std::vector<std::string> parts;
    size_t i = 0;
    while (i <= path.size()) {
        size_t slash = path.find('/', i);
        if (slash == std::string::npos)
            slash = path.size();
        std::string part = path.substr(i, slash - i);
        if (part == "..") {
            if (!parts.empty())
                parts.pop_back();
        } else if (!part.empty() && part != ".") {
            parts.push_back(part);
        }
        i = slash + 1;
    }
    std::string out;
    for (const std::string &p : parts)
        out += "/" + p;
    return out.empty() ? "/" : out;
}

bool path_within(const std::string &path, const std::string &dir)
{
    if (path.empty() || path[0] != '/' || dir.empty() || dir[0] != '/')
        return false;
    std::string p = normalize_path(path), d = normalize_path(dir);
    return p == d || d == "/" || (p.size() > d.size() && p.compare(0, d.size(), d) == 0 &&
                                  p[d.size()] == '/');
}

std::vector<std::string> parse_alternates(const std::string &text, const std::string &objects_dir)
{
    std::vector<std::string> dirs;
    size_t i = 0;
    while (i < text.size()) {
        size_t nl = text.find('\n', i);
        if (nl == std::string::npos)
            nl = text.size();
        std::string line = text.substr(i, nl - i);
        i = nl + 1;
        while (!line.empty() && isspace(static_cast<unsigned char>(line.back())))
            line.pop_back();
        if (line.size() >= 2 && line.front() == '"' && line.back() == '"')
            line = line.substr(1, line.size() - 2); // git quotes odd paths; ours are plain
        if (line.empty() || line[0] == '#')
            continue;
        dirs.push_back(normalize_path(line[0] == '/' ? line : objects_dir + "/" + line));
    }
    return dirs;
}

std::string search_denied(const std::string &path, uid_t uid, gid_t gid)
{
    std::string p = normalize_path(path), prefix;
    size_t i = 0;
    while (true) {
        prefix = p.substr(0, i == 0 ? 1 : i);
        struct stat st;
        if (stat(prefix.c_str(), &st) != 0)
            return ""; // made later, by the runner
        if (S_ISDIR(st.st_mode)) {
            mode_t bit = uid == st.st_uid ? S_IXUSR : gid == st.st_gid ? S_IXGRP : S_IXOTH;
            if (uid != 0 && !(st.st_mode & bit)) {
                char mode[8];
                snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
                return prefix + " (mode " + mode + ", owner " + std::to_string(st.st_uid) + ":" +
                       std::to_string(st.st_gid) + ") is not searchable by it";
            }
        }
        if (i >= p.size())
            return "";
        i = p.find('/', i + 1);
        if (i == std::string::npos)
            i = p.size();
    }
}

std::string find_program(const std::string &name, const char *path_env)
{
    if (name.find('/') != std::string::npos)
        return access(name.c_str(), X_OK) == 0 ? name : "";
    std::string path = path_env ? path_env : "/usr/local/bin:/usr/bin:/bin";
    size_t i = 0;
    while (i <= path.size()) {
        size_t colon = path.find(':', i);
        if (colon == std::string::npos)
            colon = path.size();
        std::string dir = path.substr(i, colon - i);
        i = colon + 1;
        if (dir.empty() || dir[0] != '/')
            continue; // a relative PATH entry would depend on the daemon's cwd
        std::string candidate = dir + "/" + name;
        struct stat st;
        if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            access(candidate.c_str(), X_OK) == 0)
            return candidate;
    }
    return "";
}

std::string probe_bwrap(const std::string &bwrap, const SpawnUser *as)
{
    SandboxSpec spec;
    spec.bwrap = bwrap;
    std::vector<std::string> argv = bwrap_argv(spec, {"true"});
    std::vector<const char *> args;
    for (const std::string &s : argv)
        args.push_back(s.c_str());
    args.push_back(nullptr);
    const char *env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", nullptr};
    kiln_spawn_request req{};
    req.argv = args.data();
    req.env = env;
    req.cwd = "/";
    req.timeout_ms = 10000;

    struct Outcome {
        bool done = false;
        std::string error;
    } outcome;
    uv_loop_t loop;
    uv_loop_init(&loop);
    auto cb = [](void *arg, int, const kiln_spawn_result *res) noexcept {
        auto *o = static_cast<Outcome *>(arg);
        o->done = true;
        if (res->exit_status == 0 && !res->term_signal)
            return;
        std::string err(res->err, res->err_len);
        while (!err.empty() && isspace(static_cast<unsigned char>(err.back())))
            err.pop_back();
        o->error = res->timed_out ? "timed out"
                   : !err.empty() ? err
                   : res->term_signal ? "killed by signal " + std::to_string(res->term_signal)
                                      : "exit status " + std::to_string(res->exit_status);
    };
    int rc = spawn_process(&loop, &req, cb, &outcome, nullptr, as);
    if (rc != 0)
        outcome.error = std::string("cannot run it: ") + uv_strerror(rc);
    uv_run(&loop, UV_RUN_DEFAULT); // until the process and its handles are closed
    uv_loop_close(&loop);
    return outcome.error;
}

} // namespace kiln
