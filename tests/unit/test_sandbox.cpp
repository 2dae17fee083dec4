// Test isolation on a runner: the bwrap argv and the scrubbed environment
// as built (pure functions), the path helpers, the runner.toml keys
// (sandbox, test_user, env_allow) and the observer's repo key network with
// their errors; then, where bubblewrap and user namespaces work, the real
// thing: a timeout and a cancel kill everything in the sandbox (even what
// left the process group), bwrap adds nothing to the environment, and a
// test user keeps no supplementary group.  Those print why when skipped.
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <string>
#include <vector>

#include <kiln/spawn.hpp>

#include "observer_config.hpp"
#include "runner_config.hpp"
#include "sandbox.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

using Strings = std::vector<std::string>;

std::string joined(const Strings &v)
{
    std::string s;
    for (const std::string &x : v)
        s += (s.empty() ? "" : " ") + x;
    return s;
}

// ---- the bwrap command line ----

void test_bwrap_argv(void **)
{
    SandboxSpec spec;
    spec.bwrap = "/usr/bin/bwrap";
    spec.workspace = "/w/workspaces/job-1-1";
    spec.cwd = "/w/workspaces/job-1-1";
    spec.hidden = {"/w", "/etc/kiln"};
    spec.read_only = {"/w/cache/git/x.git/objects"};
    spec.hidden_files = {"/srv/keys/runner.secret"};
    assert_string_equal(
        S(joined(bwrap_argv(spec, {"python3", "-c", "print(1)"}))),
        "/usr/bin/bwrap --die-with-parent --unshare-all --cap-drop ALL --ro-bind / / "
        "--dev /dev --proc /proc --tmpfs /tmp --tmpfs /w --tmpfs /etc/kiln "
        "--bind /w/workspaces/job-1-1 /w/workspaces/job-1-1 "
        "--ro-bind /w/cache/git/x.git/objects /w/cache/git/x.git/objects "
        "--ro-bind /dev/null /srv/keys/runner.secret "
        "--remount-ro /w --remount-ro /etc/kiln --chdir /w/workspaces/job-1-1 "
        "-- python3 -c print(1)");
    // The network only when the repository allows it; the command is never
    // parsed as options (after "--"), whatever it looks like.
    spec.network = true;
    Strings a = bwrap_argv(spec, {"--help", "x y"});
    assert_string_equal(a[3].c_str(), "--share-net");
    assert_string_equal(a[a.size() - 3].c_str(), "--");
    assert_string_equal(a[a.size() - 2].c_str(), "--help");
    assert_string_equal(a.back().c_str(), "x y");
    // No values of the environment on the command line (/proc/PID/cmdline
    // is world-readable): bwrap passes its own, scrubbed, environment on.
    for (const std::string &s : a)
        assert_true(s != "--setenv" && s != "--clearenv" && s != "--new-session");
    // A probe: no workspace, no chdir.
    SandboxSpec probe;
    assert_string_equal(S(joined(bwrap_argv(probe, {"true"}))),
                        "bwrap --die-with-parent --unshare-all --cap-drop ALL --ro-bind / / "
                        "--dev /dev --proc /proc --tmpfs /tmp -- true");
}

// ---- the environment ----

void test_environment_is_scrubbed(void **)
{
    const char *runner[] = {"PATH=/usr/bin:/bin", "KILN_IT_SECRET=hunter2", "HOME=/root",
                            "LANG=C.UTF-8",       "TMPDIR=/var/tmp",        "AWS_SECRET=x",
                            "PATH=/second",       "NOTIFY_SOCKET=/run/n",   nullptr};
    // The plugin passed none (inherit): the allowed ones of the runner's.
    assert_string_equal(
        S(joined(test_environment(nullptr, runner, kDefaultEnvAllow, "/w/job-1-1"))),
        "PATH=/usr/bin:/bin LANG=C.UTF-8 HOME=/w/job-1-1 TMPDIR=/tmp");
    // The plugin built one from ours and added KILN_ variables: those stay,
    // the inherited KILN_IT_SECRET goes, and so does a KILN_ name the
    // plugin left at the runner's value.
    const char *plugin[] = {"PATH=/usr/bin:/bin", "KILN_IT_SECRET=hunter2", "KILN_SHARD=2",
                            "LANG=C.UTF-8",       "HOME=/root",             "FOO=bar",
                            nullptr};
    assert_string_equal(S(joined(test_environment(plugin, runner, {"PATH", "FOO"}, "/w/j"))),
                        "PATH=/usr/bin:/bin KILN_SHARD=2 FOO=bar HOME=/w/j TMPDIR=/tmp");
    // Nothing allowed: only what Kiln sets.
    assert_string_equal(S(joined(test_environment(nullptr, runner, {}, "/w"))),
                        "HOME=/w TMPDIR=/tmp");
    assert_true(valid_env_name("LC_ALL") && valid_env_name("_x1"));
    assert_false(valid_env_name("") || valid_env_name("1X") || valid_env_name("A-B") ||
                 valid_env_name("A=B"));
}

// ---- paths ----

void test_paths(void **)
{
    assert_string_equal(normalize_path("/a//b/./c/../d/").c_str(), "/a/b/d");
    assert_string_equal(normalize_path("/../..").c_str(), "/");
    assert_true(path_within("/w/job-1-1", "/w/job-1-1"));
    assert_true(path_within("/w/job-1-1/tests/", "/w/job-1-1"));
    assert_false(path_within("/w/job-1-10", "/w/job-1-1"));
    assert_false(path_within("/w/job-1-1/../job-2-1", "/w/job-1-1"));
    assert_false(path_within("relative", "/w"));
    assert_true(path_within("/anything", "/"));

    std::string text = "# a comment\n/w/cache/git/x.git/objects\n\n../../other/objects  \n"
                       "\"/quoted/objects\"\n";
    assert_string_equal(S(joined(parse_alternates(text, "/w/job/.git/objects"))),
                        "/w/cache/git/x.git/objects /w/job/other/objects /quoted/objects");
    assert_true(parse_alternates("", "/x").empty());

    assert_string_equal(find_program("sh", "relative:/nonexistent:/bin:/usr/bin").c_str(),
                        "/bin/sh");
    assert_string_equal(find_program("no-such-program-kiln", "/bin:/usr/bin").c_str(), "");
    assert_string_equal(find_program("/bin/sh", nullptr).c_str(), "/bin/sh");
}

struct TempDir {
    std::string path;
    TempDir()
    {
        char tmpl[] = "/tmp/kiln-sandbox-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir()
    {
        chmod(path.c_str(), 0700);
        std::string sub = path + "/work";
        rmdir(sub.c_str());
        rmdir(path.c_str());
    }
};

void test_search_denied(void **)
{
    TempDir t;
    chmod(t.path.c_str(), 0700);
    std::string work = t.path + "/work/deeper"; // not there yet: not judged
    std::string why = search_denied(work, 65534, 65534);
    chmod(t.path.c_str(), 0711);
    std::string fine = search_denied(work, 65534, 65534);
    assert_non_null(strstr(why.c_str(), (t.path + " (mode 0700").c_str()));
    assert_non_null(strstr(why.c_str(), "is not searchable by it"));
    assert_string_equal(fine.c_str(), "");
    assert_string_equal(search_denied("/", 65534, 65534).c_str(), "");
}

// ---- runner.toml and observer.toml ----

std::string runner_error(const std::string &text, uid_t euid = 0)
{
    try {
        RunnerConfig::from(parse_config_string(text, "x.toml"), euid);
        return "";
    } catch (const ConfigError &e) {
        return e.what();
    }
}

void test_runner_defaults(void **)
{
    RunnerConfig c = RunnerConfig::from(parse_config_string("", "x.toml"));
    assert_false(c.sandbox);
    assert_true(c.test_user.empty());
    assert_string_equal(S(joined(c.env_allow)), "PATH LANG LC_ALL TZ TERM");
    c = RunnerConfig::from(parse_config_string("[runner]\nenv_allow = [\"PATH\", \"CI_TOKEN\"]\n"
                                               "sandbox = \"none\"\n",
                                               "x.toml"));
    assert_string_equal(S(joined(c.env_allow)), "PATH CI_TOKEN");
}

void test_runner_errors(void **)
{
    assert_string_equal(S(runner_error("[runner]\nsandbox = \"docker\"\n")),
                        "x.toml:2:11: runner.sandbox: expected \"none\" or \"bwrap\", got "
                        "\"docker\"");
    assert_string_equal(S(runner_error("[runner]\nsandbox = true\n")),
                        "x.toml:2:11: runner.sandbox: expected a string, got boolean");
    assert_string_equal(S(runner_error("[runner]\nenv_allow = [\"PATH\", \"A-B\"]\n")),
                        "x.toml:2:13: runner.env_allow: 'A-B' is not an environment variable "
                        "name");
    assert_non_null(strstr(S(runner_error("[runner]\nenv_allow = [\"HOME\"]\n")),
                           "x.toml:2:13: runner.env_allow: HOME is set by kiln-runner"));
    assert_string_equal(S(runner_error("[runner]\ntest_user = \"no-such-user-kiln\"\n")),
                        "x.toml:2:13: runner.test_user: no user 'no-such-user-kiln'");
    assert_non_null(strstr(S(runner_error("[runner]\ntest_user = \"root\"\n")),
                           "runner.test_user: 'root' is root; name an unprivileged user"));
    if (getpwnam("nobody")) {
        // Switching users needs root: said, with the uid we run as.
        assert_non_null(strstr(S(runner_error("[runner]\ntest_user = \"nobody\"\n", 1000)),
                               "x.toml:2:13: runner.test_user: running tests as 'nobody' needs "
                               "kiln-runner to run as root"));
        assert_non_null(strstr(S(runner_error("[runner]\ntest_user = \"nobody\"\n", 1000)),
                               "it runs as uid 1000"));
        // A work_dir the user cannot reach is refused, naming the culprit.
        TempDir t;
        chmod(t.path.c_str(), 0700);
        std::string conf = "[runner]\ntest_user = \"nobody\"\nwork_dir = \"" + t.path +
                           "/work\"\n";
        std::string closed = runner_error(conf);
        chmod(t.path.c_str(), 0755);
        std::string open = runner_error(conf);
        assert_non_null(strstr(closed.c_str(), "runner.test_user: 'nobody' cannot reach work_dir"));
        assert_non_null(strstr(closed.c_str(), (t.path + " (mode 0700").c_str()));
        assert_string_equal(open.c_str(), "");
        RunnerConfig c = RunnerConfig::from(parse_config_string(conf, "x.toml"), 0);
        assert_int_equal(c.test_uid, getpwnam("nobody")->pw_uid);
    }
    // sandbox = "bwrap" without a bwrap in PATH: refuses, saying so.
    std::string saved = getenv("PATH") ? getenv("PATH") : "";
    setenv("PATH", "/nonexistent-kiln", 1);
    std::string none = runner_error("[runner]\nsandbox = \"bwrap\"\n");
    setenv("PATH", saved.c_str(), 1);
    assert_string_equal(S(none), "x.toml:2:11: runner.sandbox: \"bwrap\": no bwrap executable in "
                                 "PATH (/nonexistent-kiln); install bubblewrap (Debian: apt-get "
                                 "install bubblewrap)");
    assert_non_null(strstr(S(runner_error("[runner]\nsandbox = \"bwrap\"\nwork_dir = \"rel\"\n")),
                           "x.toml:3:12: runner.work_dir: must be an absolute path"));
}

void test_observer_network_key(void **)
{
    const std::string repo = "[[repo]]\nname = \"a\"\nurl = \"/a\"\n";
    ObserverConfig c = ObserverConfig::from(parse_config_string(repo, "x.toml"));
    assert_false(c.settings.repos[0].job.network);
    c = ObserverConfig::from(parse_config_string(repo + "network = true\n", "x.toml"));
    assert_true(c.settings.repos[0].job.network);
    std::string err;
    try {
        ObserverConfig::from(parse_config_string(repo + "network = \"yes\"\n", "x.toml"));
    } catch (const ConfigError &e) {
        err = e.what();
    }
    assert_non_null(strstr(err.c_str(), "x.toml:4:11: repo[0].network: expected true or false"));
}

// ---- the real thing, where it can run ----

struct Outcome {
    int calls = 0;
    int64_t exit_status = -1;
    int timed_out = 0, cancelled = 0;
    std::string out, err;
};

void record(void *arg, int, const kiln_spawn_result *res)
{
    auto *o = static_cast<Outcome *>(arg);
    o->calls++;
    if (!res)
        return;
    o->exit_status = res->exit_status;
    o->timed_out = res->timed_out;
    o->cancelled = res->cancelled;
    o->out.assign(res->out, res->out_len);
    o->err.assign(res->err, res->err_len);
}

// Run argv (with env) on a fresh loop; cancel after cancel_ms when set.
Outcome run(const Strings &argv, const Strings &env, uint64_t timeout_ms, uint64_t cancel_ms = 0,
            const SpawnUser *as = nullptr)
{
    std::vector<const char *> a, e;
    for (const std::string &s : argv)
        a.push_back(s.c_str());
    a.push_back(nullptr);
    for (const std::string &s : env)
        e.push_back(s.c_str());
    e.push_back(nullptr);
    uv_loop_t loop;
    uv_loop_init(&loop);
    Outcome o;
    kiln_spawn_request req{};
    req.argv = a.data();
    req.env = e.data();
    req.cwd = "/";
    req.timeout_ms = timeout_ms;
    kiln_process *proc = nullptr;
    assert_int_equal(spawn_process(&loop, &req, record, &o, &proc, as), 0);
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    timer.data = proc;
    if (cancel_ms)
        uv_timer_start(&timer, [](uv_timer_t *t) {
            kill_process(static_cast<kiln_process *>(t->data));
        }, cancel_ms, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t *>(&timer), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(o.calls, 1);
    return o;
}

// The bwrap to use, or "" after printing why the live tests are skipped.
std::string live_bwrap()
{
    std::string bwrap = find_program("bwrap", getenv("PATH"));
    std::string why = bwrap.empty() ? "no bwrap in PATH" : probe_bwrap(bwrap, nullptr);
    if (!why.empty()) {
        print_message("skipped: bubblewrap cannot make a sandbox here: %s\n", why.c_str());
        return "";
    }
    return bwrap;
}

// Processes whose command line is exactly argv (by /proc, from any pid
// namespace); with `kill`, SIGKILL them.
int count_processes(const Strings &argv, bool kill = false)
{
    std::string want;
    for (const std::string &s : argv)
        want += s + '\0';
    int n = 0;
    DIR *d = opendir("/proc");
    while (struct dirent *ent = d ? readdir(d) : nullptr) {
        if (!isdigit(static_cast<unsigned char>(ent->d_name[0])))
            continue;
        std::string path = std::string("/proc/") + ent->d_name + "/cmdline", got;
        if (FILE *f = fopen(path.c_str(), "re")) {
            char buf[256];
            size_t k;
            while ((k = fread(buf, 1, sizeof buf, f)) > 0)
                got.append(buf, k);
            fclose(f);
        }
        if (got == want) {
            n++;
            if (kill)
                ::kill(atoi(ent->d_name), SIGKILL);
        }
    }
    if (d)
        closedir(d);
    return n;
}

void kill_all(const Strings &argv) { count_processes(argv, true); }

// Wait up to 3 s for the processes to be gone (the kernel tears a pid
// namespace down asynchronously); their number then.
int wait_gone(const Strings &argv)
{
    for (int i = 0; i < 60 && count_processes(argv) > 0; i++)
        usleep(50 * 1000);
    return count_processes(argv);
}

void kills_everything(uint64_t timeout_ms, uint64_t cancel_ms)
{
    std::string bwrap = live_bwrap();
    if (bwrap.empty())
        skip();
    // A sleep in the test's process group and one that left it with
    // setsid: outside a sandbox the second would survive (kiln-runner(8),
    // the limits); in one, the pid namespace ends with bwrap.
    std::string seconds = std::to_string(60 + getpid() % 300) + (timeout_ms ? ".1" : ".2");
    Strings sleeper = {"sleep", seconds};
    SandboxSpec spec;
    spec.bwrap = bwrap;
    // (Their output goes elsewhere, or a survivor would hold the pipes and
    // the run with them.)
    std::string sleep = "sleep " + seconds + " >/dev/null 2>&1";
    Strings argv = bwrap_argv(spec, {"sh", "-c", sleep + " & setsid " + sleep +
                                                     " & sleep 0.1; echo started; wait"});
    Outcome o = run(argv, {"PATH=/usr/bin:/bin"}, timeout_ms, cancel_ms);
    int left = wait_gone(sleeper);
    if (left)
        kill_all(sleeper); // ours: do not leave them behind when failing
    assert_string_equal(o.out.c_str(), "started\n");
    assert_int_equal(o.timed_out, timeout_ms ? 1 : 0);
    assert_int_equal(o.cancelled, cancel_ms ? 1 : 0);
    assert_int_equal(left, 0);
}

void test_timeout_kills_the_sandbox(void **) { kills_everything(800, 0); }
void test_cancel_kills_the_sandbox(void **) { kills_everything(0, 800); }

void test_bwrap_adds_no_environment(void **)
{
    std::string bwrap = live_bwrap();
    if (bwrap.empty())
        skip();
    const char *runner[] = {"PATH=/usr/bin:/bin", "KILN_IT_SECRET=1", nullptr};
    Strings env = test_environment(nullptr, runner, kDefaultEnvAllow, "/");
    SandboxSpec spec;
    spec.bwrap = bwrap;
    Outcome o = run(bwrap_argv(spec, {"env"}), env, 10000);
    assert_int_equal(o.exit_status, 0);
    // Only bwrap's PWD (its --chdir, "/" by default) is added.
    assert_string_equal(o.out.c_str(), "PATH=/usr/bin:/bin\nHOME=/\nTMPDIR=/tmp\nPWD=/\n");
}

void test_test_user_has_no_other_groups(void **)
{
    const struct passwd *pw = getpwnam("nobody");
    if (geteuid() != 0 || !pw) {
        print_message("skipped: needs root and a user 'nobody'\n");
        skip();
    }
    SpawnUser as{pw->pw_uid, pw->pw_gid};
    std::string ids = std::to_string(pw->pw_uid) + "\n" + std::to_string(pw->pw_gid) + "\n" +
                      std::to_string(pw->pw_gid) + "\n";
    Outcome o = run({"sh", "-c", "id -u; id -g; id -G"}, {"PATH=/usr/bin:/bin"}, 10000, 0, &as);
    assert_string_equal(o.out.c_str(), ids.c_str()); // setgroups(0, NULL): no root group left
    std::string bwrap = live_bwrap();
    if (bwrap.empty() || !probe_bwrap(bwrap, &as).empty())
        return; // the part above still counts
    SandboxSpec spec;
    spec.bwrap = bwrap;
    o = run(bwrap_argv(spec, {"sh", "-c", "id -u; id -g; id -G"}), {"PATH=/usr/bin:/bin"}, 10000,
            0, &as);
    assert_string_equal(o.out.c_str(), ids.c_str());
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test(test_bwrap_argv),
        cmocka_unit_test(test_environment_is_scrubbed),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_search_denied),
        cmocka_unit_test(test_runner_defaults),
        cmocka_unit_test(test_runner_errors),
        cmocka_unit_test(test_observer_network_key),
        cmocka_unit_test(test_timeout_kills_the_sandbox),
        cmocka_unit_test(test_cancel_kills_the_sandbox),
        cmocka_unit_test(test_bwrap_adds_no_environment),
        cmocka_unit_test(test_test_user_has_no_other_groups),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
