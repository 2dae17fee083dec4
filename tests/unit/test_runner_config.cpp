// runner.toml's split into what SIGHUP changes (RunnerSettings) and what
// needs a restart (RunnerStartup), and the reconnect_max key: reload() on a
// real Runner against the fake dispatcher (runner_fixture.hpp) registers new
// slots and labels on the same connection, and names each restart-only key
// that changed (kept at its running value) in the log.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <kiln/config.hpp>

#include "runner_config.hpp"
#include "runner_fixture.hpp"

using namespace kiln;
using namespace kiln::test;

namespace {

// What `fn` writes to stderr (the log), through a temporary file.
std::string stderr_of(const std::function<void()> &fn)
{
    std::string path = std::string(P_tmpdir) + "/kiln-test-stderr-XXXXXX";
    int fd = mkstemp(path.data());
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    std::string text;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);)
        text += line + "\n";
    unlink(path.c_str());
    return text;
}

RunnerConfig parse(const std::string &runner_lines)
{
    return RunnerConfig::from(parse_config_string("[runner]\n" + runner_lines, "r.toml"), 1000,
                              false);
}

std::string error_of(const std::string &runner_lines)
{
    try {
        parse(runner_lines);
    } catch (const ConfigError &e) {
        return e.what();
    }
    return "";
}

void test_reconnect_max(void **)
{
    assert_int_equal(parse("").reconnect_max_ms, 5000);
    assert_int_equal(parse("reconnect_max = \"1s\"\n").reconnect_max_ms, 1000);
    assert_int_equal(parse("reconnect_max = \"2m\"\n").reconnect_max_ms, 120000);
    std::string e = error_of("reconnect_max = \"soon\"\n");
    assert_non_null(strstr(e.c_str(), "r.toml:2"));
    assert_non_null(strstr(e.c_str(), "reconnect_max"));
}

// reload(): the new slots and labels go to the dispatcher on the same
// connection, under the running name (a new name needs a restart).
void test_reload(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    f->listen();
    f->make_repo({{"t1", "#!/bin/sh\nexit 0\n"}});
    f->start_runner();
    f->connected();
    Connection *first = f->conn.get();
    std::string text = "[runner]\ndispatcher = \"127.0.0.1:" +
                       std::to_string(f->server->port()) + "\"\nname = \"renamed\"\nwork_dir = \"" +
                       f->work("") + "\"\nplugin_dir = \"" + KILN_TEST_PLUGIN_DIR +
                       "\"\nvcs = \"git\"\nexec = \"script\"\nslots = 3\nlabels = [\"big\"]\n"
                       "reconnect_max = \"1s\"\n";
    std::string log = stderr_of([&] {
        f->runner->reload(
            RunnerConfig::from(parse_config_string(text, "r.toml"), geteuid(), false));
    });
    assert_true(f->run_until([&] { return f->all<Register>().size() == 2; }));
    Register r = f->all<Register>()[1];
    assert_string_equal(S(r.name), "r1");
    assert_int_equal(r.slots, 3);
    assert_true(r.labels == std::vector<std::string>{"big"});
    assert_ptr_equal(f->conn.get(), first);
    assert_non_null(strstr(f->runner->status().c_str(), "0/3 slot(s)"));
    // One warning for the restart-only key that changed, none for the rest.
    assert_non_null(strstr(log.c_str(), "reload: name changed: needs a restart"));
    assert_null(strstr(log.c_str(), "slots changed"));
    assert_null(strstr(log.c_str(), "dispatcher changed"));
    f->stop();
}

// Each restart-only key that changes is named by reload(), and the runner
// keeps its running value; the settings change without a word.
void test_reload_warns_restart_keys(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    f->listen();
    f->make_repo({{"t1", "#!/bin/sh\nexit 0\n"}});
    f->start_runner();
    f->connected();
    std::string text = "[runner]\ndispatcher = \"127.0.0.1:9\"\nname = \"b\"\nwork_dir = \"" +
                       (f->tmp / "elsewhere") + "\"\nplugin_dir = [\"" + KILN_TEST_PLUGIN_DIR +
                       "\", \"/nowhere\"]\nvcs = [\"git\", \"svn\"]\n"
                       "exec = [\"script\", \"unittest\"]\n"
                       "max_frame = 33554432\nslots = 4\nlabels = [\"x\"]\n"
                       "heartbeat_interval = \"1s\"\nreconnect_max = \"1s\"\n"
                       "env_allow = [\"PATH\"]\nkeep_workspaces = true\n"
                       "min_free = \"1K\"\nmirror_keep_days = 5\n";
    std::string log = stderr_of([&] {
        f->runner->reload(
            RunnerConfig::from(parse_config_string(text, "r.toml"), geteuid(), false));
    });
    for (const char *key : {"dispatcher", "name", "work_dir", "plugin_dir", "vcs", "exec",
                            "max_frame"})
        if (!strstr(log.c_str(), ("reload: " + std::string(key) +
                                  " changed: needs a restart").c_str()))
            fail_msg("no restart warning for %s in:\n%s", key, log.c_str());
    for (const char *key : {"slots", "labels", "heartbeat_interval", "reconnect_max",
                            "env_allow", "keep_workspaces", "min_free", "mirror_keep_days"})
        if (strstr(log.c_str(), (std::string(key) + " changed").c_str()))
            fail_msg("a restart warning for %s in:\n%s", key, log.c_str());
    // Still connected to the running dispatcher, under the running name.
    assert_true(f->run_until([&] { return f->all<Register>().size() == 2; }));
    assert_string_equal(S(f->all<Register>()[1].name), "r1");
    assert_int_equal(f->all<Register>()[1].slots, 4);
    f->stop();
}

} // namespace

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reconnect_max),
        RUNNER_FIXTURE_TEST(test_reload),
        RUNNER_FIXTURE_TEST(test_reload_warns_restart_keys),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
