// runner.toml's split into what SIGHUP changes (RunnerSettings) and what
// needs a restart (RunnerStartup), the reconnect_max key, and reload() on a
// real Runner against the fake dispatcher (runner_fixture.hpp): new slots
// and labels registered again on the same connection, restart-only keys
// kept at their running values.
#include <signal.h>

#include <cstring>
#include <string>
#include <vector>

#include <kiln/config.hpp>

#include "runner_config.hpp"
#include "runner_fixture.hpp"

using namespace kiln;
using namespace kiln::test;

namespace {

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

// Every restart-only key is named when it changes; the settings are not.
void test_changed_keys(void **)
{
    RunnerConfig a = parse("name = \"a\"\n");
    RunnerConfig b = parse("name = \"b\"\ndispatcher = \"127.0.0.1:9\"\nwork_dir = \"/srv/w\"\n"
                           "plugin_dir = [\"/p\"]\nvcs = []\nexec = [\"script\"]\n"
                           "max_frame = 33554432\nslots = 4\nlabels = [\"x\"]\n"
                           "heartbeat_interval = \"1s\"\nreconnect_max = \"1s\"\n"
                           "env_allow = [\"PATH\"]\nkeep_workspaces = true\n");
    std::vector<std::string> keys;
    for (const char *k : a.changed_keys(b))
        keys.push_back(k);
    assert_true(keys == (std::vector<std::string>{"dispatcher", "name", "work_dir", "plugin_dir",
                                                  "vcs", "exec", "max_frame"}));
    assert_int_equal(a.changed_keys(parse("name = \"a\"\nslots = 9\n")).size(), 0);
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
    f->runner->reload(RunnerConfig::from(parse_config_string(text, "r.toml"), geteuid(), false));
    assert_true(f->run_until([&] { return f->all<Register>().size() == 2; }));
    Register r = f->all<Register>()[1];
    assert_string_equal(S(r.name), "r1");
    assert_int_equal(r.slots, 3);
    assert_true(r.labels == std::vector<std::string>{"big"});
    assert_ptr_equal(f->conn.get(), first);
    assert_non_null(strstr(f->runner->status().c_str(), "0/3 slot(s)"));
    f->stop();
}

} // namespace

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reconnect_max),
        cmocka_unit_test(test_changed_keys),
        RUNNER_FIXTURE_TEST(test_reload),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
