#pragma once
// Test isolation on a runner (runner.toml: sandbox, test_user, env_allow;
// kiln-runner(8), SANDBOX): what a test process sees of the environment,
// of the file system and of the network.  The argv and environment builders
// are pure functions, so that they are tested without running anything.
//
// The spawns of the exec plugins (they run and list the tests) go through
// these; the vcs plugins' do not: git must fetch, and runs no repository
// code.
#include <sys/types.h>

#include <string>
#include <vector>

#include <kiln/spawn.hpp>

namespace kiln {

// The variables a test gets from the runner's environment when runner.toml
// sets no env_allow: enough to find programs and to keep the locale and time
// zone of the host.
extern const std::vector<std::string> kDefaultEnvAllow;

// [A-Za-z_][A-Za-z0-9_]*: what env_allow may name.
bool valid_env_name(const std::string &name);

// The environment of a test process, "NAME=value" strings:
//  - from the plugin's request environment (`plugin_env`) or, when the
//    plugin passed none (NULL: inherit), from the runner's (`runner_env`),
//    the variables named in `allow`;
//  - KILN_* variables the plugin set itself, that is those in plugin_env
//    that are not, with the same value, in runner_env (a KILN_* variable
//    the runner merely inherited is scrubbed like any other);
//  - HOME = `home` and TMPDIR = /tmp, whatever the above said: nothing of
//    the runner's own home leaks in, and /tmp is the sandbox's private one.
// Everything else is dropped.  The first of duplicate names wins, as getenv
// would have it.
std::vector<std::string> test_environment(const char *const *plugin_env,
                                          const char *const *runner_env,
                                          const std::vector<std::string> &allow,
                                          const std::string &home);

// What one sandboxed test process may see.  Paths are absolute.
struct SandboxSpec {
    std::string bwrap = "bwrap"; // the executable
    std::string workspace;       // bound writable; "" for none (a probe)
    std::string cwd;             // where the command starts; "" for bwrap's default
    // Covered by an empty tmpfs that is then made read-only: the runner's
    // work_dir (other jobs' workspaces, the spool, the mirrors), /etc/kiln
    // (secret files), /run (host daemons' sockets).  Each must exist on the
    // host unless it is under /tmp.
    std::vector<std::string> hidden;
    // Files outside those directories covered by an empty read-only file
    // (/dev/null): the runner's secret_file wherever it lives.
    std::vector<std::string> hidden_files;
    // Bound read-only after the hiding, so that what the checkout needs
    // from a hidden place is there again (git alternates into the mirror).
    std::vector<std::string> read_only;
    bool network = false; // keep the host's network namespace
};

// The bwrap argv running `command` inside the sandbox `spec` describes:
//   --die-with-parent: killing bwrap (a timeout, a cancel) kills the
//     sandbox's pid 1, and the kernel then kills every process in the pid
//     namespace, setsid() or double fork notwithstanding;
//   --unshare-all (pid, net, ipc, uts, cgroup, user) [--share-net];
//   --cap-drop ALL: root in the sandbox has no capabilities, not even in
//     its own user namespace;
//   --ro-bind / /, a fresh /dev and /proc, a private tmpfs /tmp;
//   the hidden paths covered, the workspace bound writable, the read-only
//   paths bound back, the hidden tmpfs made read-only;
//   --chdir cwd, then "--" and the command.
// No --new-session: the test must stay in the process group the runner
// kills (spawn.cpp: kill(-pgid)); it has no controlling terminal to abuse
// (the runner starts it with setsid() and no tty), which is what
// --new-session guards against.  No --setenv either: values in bwrap's argv
// would be readable by every local user in /proc/PID/cmdline; bwrap passes
// its own environment, already scrubbed, to the command instead.
std::vector<std::string> bwrap_argv(const SandboxSpec &spec,
                                    const std::vector<std::string> &command);

// The object directories a git alternates file (objects/info/alternates)
// lists, absolute and lexically normalised; relative entries are relative
// to `objects_dir`.  Comments and blank lines are skipped.
std::vector<std::string> parse_alternates(const std::string &text, const std::string &objects_dir);

// `path` with "." and ".." components and repeated slashes resolved by text.
std::string normalize_path(const std::string &path);

// True when `path` is `dir` or below it, by text, after normalize_path().
bool path_within(const std::string &path, const std::string &dir);

// "" when uid/gid (no supplementary groups: libuv drops them) may search
// every existing directory from / down to `path`; otherwise which one
// stops it and why.  Components that do not exist yet are not judged.
std::string search_denied(const std::string &path, uid_t uid, gid_t gid);

// The first executable `name` in the colon-separated `path_env` (or the
// default search path when NULL); `name` itself when it has a slash and is
// executable; "" when none.
std::string find_program(const std::string &name, const char *path_env);

// Start bwrap once, as `as` when set, with a sandbox like a test's (no
// workspace) running `true`: "" when that works, else what went wrong (bwrap's
// own message: no user namespaces, ...).  Blocks for at most a few seconds
// on a loop of its own: for start-up only.
std::string probe_bwrap(const std::string &bwrap, const SpawnUser *as);

} // namespace kiln
