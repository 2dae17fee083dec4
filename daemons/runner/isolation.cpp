// kiln-runner: what a test process gets (sandbox.hpp): the isolation set up
// at start, and the spawns of the exec plugins, scrubbed, sandboxed and run
// as test_user as runner.toml says.
#include "runner.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include <kiln/atomic_file.hpp>
#include <kiln/log.hpp>
#include <kiln/spawn.hpp>

#include "sandbox.hpp"

extern char **environ;

namespace kiln {

// Blocking, like the rest of start(): before the loop runs.
void Runner::prepare_isolation()
{
    if (config_.sandbox) {
        // Hidden: other jobs' workspaces, the spool and the mirrors; the
        // secret files; the host daemons' sockets (a unix socket on a
        // read-only file system still connects: /run/docker.sock is root).
        hidden_.clear();
        for (const std::string &p : {config_.work_dir, std::string("/etc/kiln"),
                                     std::string("/run")})
            if (access(p.c_str(), F_OK) == 0 || path_within(p, "/tmp"))
                hidden_.push_back(normalize_path(p));
        // The secret proves to the dispatcher that we are its runner: no
        // test may read it, wherever the operator put it.
        char real[PATH_MAX];
        hidden_files_.clear();
        if (!config_.secret_file.empty() && realpath(config_.secret_file.c_str(), real) &&
            std::none_of(hidden_.begin(), hidden_.end(),
                         [&](const std::string &dir) { return path_within(real, dir); }))
            hidden_files_.push_back(real);
        // With the network, name resolution may need systemd-resolved's
        // stub file (/etc/resolv.conf links to it).
        if (access("/run/systemd/resolve", F_OK) == 0)
            net_read_only_ = {"/run/systemd/resolve"};
        log_notice("runner %s: tests run in bubblewrap (%s)%s%s", config_.name.c_str(),
                   config_.bwrap.c_str(), config_.test_user.empty() ? "" : " as user ",
                   config_.test_user.c_str());
    } else if (!config_.test_user.empty()) {
        log_notice("runner %s: tests run as user %s", config_.name.c_str(),
                   config_.test_user.c_str());
    }
    if (config_.test_user.empty())
        return;
    // test_user must get through work_dir to its workspace, and to the
    // mirrors its checkout borrows objects from (git alternates): search
    // permission only, no listing.  The spool stays closed.
    std::vector<std::string> dirs = {config_.work_dir, config_.work_dir + "/workspaces",
                                     config_.work_dir + "/cache"};
    for (const std::string &vcs : config_.vcs_plugins)
        dirs.push_back(config_.work_dir + "/cache/" + vcs);
    for (const std::string &dir : dirs) {
        struct stat st;
        int rc = make_dirs(dir);
        if (rc == 0 && stat(dir.c_str(), &st) != 0)
            rc = -errno;
        if (rc == 0 && (st.st_mode & 011) != 011 &&
            chmod(dir.c_str(), (st.st_mode & 07777) | 011) != 0)
            rc = -errno;
        if (rc != 0)
            log_warning("%s: cannot open it to test_user %s: %s", dir.c_str(),
                        config_.test_user.c_str(), uv_strerror(rc));
    }
}

int Runner::spawn_test(const std::string &plugin, const kiln_spawn_request &req, kiln_spawn_cb cb,
                       void *arg, kiln_process **proc)
{
    if (!req.argv || !req.argv[0])
        return -EINVAL;
    // Which job: the one whose workspace the process starts in (every exec
    // plugin starts its programs there or below).
    const JobRun *job = nullptr;
    for (const auto &entry : running_)
        if (req.cwd && path_within(req.cwd, entry.second->workspace()))
            job = entry.second.get();
    if (!job) {
        log_err("plugin %s: refused to start %s in %s: not in the workspace of a running job",
                plugin.c_str(), req.argv[0], req.cwd ? req.cwd : "the runner's directory");
        return -EPERM;
    }
    std::vector<std::string> env =
        test_environment(req.env, environ, config_.env_allow, job->workspace());
    std::vector<std::string> argv;
    for (const char *const *a = req.argv; *a; a++)
        argv.emplace_back(*a);
    if (config_.sandbox) {
        SandboxSpec spec;
        spec.bwrap = config_.bwrap;
        spec.workspace = job->workspace();
        spec.cwd = normalize_path(req.cwd);
        spec.hidden = hidden_;
        spec.hidden_files = hidden_files_;
        spec.read_only = job->read_only();
        spec.network = job->network();
        if (spec.network)
            spec.read_only.insert(spec.read_only.end(), net_read_only_.begin(),
                                  net_read_only_.end());
        argv = bwrap_argv(spec, argv);
    }
    std::vector<const char *> c_argv, c_env;
    for (const std::string &a : argv)
        c_argv.push_back(a.c_str());
    c_argv.push_back(nullptr);
    for (const std::string &e : env)
        c_env.push_back(e.c_str());
    c_env.push_back(nullptr);
    kiln_spawn_request r = req;
    r.argv = c_argv.data();
    r.env = c_env.data();
    SpawnUser as{config_.test_uid, config_.test_gid};
    bool as_user = !config_.test_user.empty();
    // The group is recorded while it runs (group_record.hpp): a runner
    // started after this one crashed kills it.  The plugin's callback is
    // wrapped to drop the record first.
    auto *watch = new TestWatch{alive_, cb, arg, 0, job->live_log(), {}, false};
    // `ctest --show-only=json-v1` (the ctest plugin picking a shard's
    // tests) writes data on stdout, not output: its stderr alone is log.
    for (const char *const *a = req.argv; *a; a++)
        if (std::strncmp(*a, "--show-only", 11) == 0)
            watch->stdout_is_data = true;
    // The output is also streamed to the dispatcher as it comes (live_log.hpp).
    SpawnTee tee{on_test_output, watch};
    kiln_process *started = nullptr;
    int rc = spawn_process(loop_, &r, on_test_ended, watch, &started, as_user ? &as : nullptr,
                           job->live_log() ? &tee : nullptr);
    if (rc != 0) {
        delete watch;
        return rc;
    }
    watch->pid = process_pid(started);
    groups_.add(watch->pid, as_user ? config_.test_uid : geteuid());
    if (proc)
        *proc = started;
    return 0;
}

void Runner::on_test_ended(void *arg, int status, const kiln_spawn_result *res) noexcept
{
    std::unique_ptr<TestWatch> watch(static_cast<TestWatch *>(arg));
    if (auto alive = watch->runner.lock(); alive && *alive)
        guarded("test ended", [&] { (*alive)->groups_.remove(watch->pid); });
    watch->cb(watch->arg, status, res);
}

void Runner::on_test_output(void *arg, int fd, const char *data, size_t len) noexcept
{
    auto *watch = static_cast<TestWatch *>(arg);
    auto log = watch->log.lock();
    if (!log)
        return;
    guarded("live log", [&] {
        if (fd == 1 && watch->stdout_is_data)
            return;
        if (fd == 1)
            watch->stdout_filter.feed(data, len, [&](std::string_view s) { log->append(s); });
        else
            log->append(std::string_view(data, len));
    });
}

} // namespace kiln
