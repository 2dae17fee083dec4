// The daemons' config mapping: defaults, cross-key checks with file, line
// and key in the message, and the runner's log bound.
#include <cstring>

#include "dispatcher_config.hpp"
#include "job_run.hpp"
#include "observer_config.hpp"
#include "runner_config.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

// The ConfigError text of reading `text` with T::from, or "" when it is fine.
template <typename T> std::string error_of(const std::string &text)
{
    try {
        T::from(parse_config_string(text, "x.toml"));
        return "";
    } catch (const ConfigError &e) {
        return e.what();
    }
}

void test_dispatcher_defaults(void **)
{
    DispatcherConfig c = DispatcherConfig::from(parse_config_string("", "x.toml"));
    assert_string_equal(c.listen.c_str(), "127.0.0.1:8888");
    assert_int_equal(c.heartbeat_interval_ms, 2000);
    assert_int_equal(c.runner_timeout_ms, 10000);
    assert_int_equal(c.max_attempts, 3);
    assert_int_equal(c.max_connections, 1024);
    assert_int_equal(c.max_queued_per_repo, 10000);
    assert_true(c.reports.empty());
}

void test_dispatcher_errors(void **)
{
    assert_string_equal(
        S(error_of<DispatcherConfig>("[dispatcher]\nheartbeat_interval = \"5s\"\n"
                                     "runner_timeout = \"2s\"\n")),
        "x.toml:3:18: dispatcher.runner_timeout: must be longer than heartbeat_interval");
    assert_string_equal(S(error_of<DispatcherConfig>("[dispatcher]\nlisen = \"x\"\n")),
                        "x.toml:2:1: dispatcher.lisen: unknown key");
    assert_non_null(strstr(S(error_of<DispatcherConfig>("[[report]]\ndir = \"/x\"\n")),
                           "report[0].plugin"));
    assert_string_equal(S(error_of<DispatcherConfig>("[dispatcher]\nmax_frame = 33554432\n"
                                                     "max_peer_buffer = 16777216\n")),
                        "x.toml:3:19: dispatcher.max_peer_buffer: must be at least max_frame");
    assert_string_equal(S(error_of<DispatcherConfig>("[dispatcher]\nmax_connections = 0\n")),
                        "x.toml:2:19: dispatcher.max_connections: expected an integer from 1 "
                        "to 1000000, got 0");
    assert_non_null(strstr(S(error_of<DispatcherConfig>("[dispatcher]\nmax_queued_per_repo = "
                                                        "\"many\"\n")),
                           "dispatcher.max_queued_per_repo: expected an integer"));
}

// [[report]] routing keys, receiver identities, report_retry_max, base_url.
void test_dispatcher_reports(void **)
{
    DispatcherConfig c = DispatcherConfig::from(parse_config_string(
        "[dispatcher]\nreport_retry_max = \"5m\"\n[http]\nbase_url = \"https://ci.example.com/\"\n"
        "[[report]]\nplugin = \"forge\"\nrepos = [\"a\", \"b\"]\n"
        "[[report]]\nplugin = \"files\"\n[[report]]\nplugin = \"forge\"\n",
        "x.toml"));
    assert_int_equal(c.report_retry_max_ms, 300000);
    assert_string_equal(c.http.base_url.c_str(), "https://ci.example.com");
    assert_int_equal(c.reports.size(), 3);
    assert_string_equal(c.reports[0].identity.c_str(), "forge");
    assert_string_equal(c.reports[1].identity.c_str(), "files");
    assert_string_equal(c.reports[2].identity.c_str(), "forge#2");
    assert_true(c.reports[0].hears("b") && !c.reports[0].hears("c"));
    assert_true(c.reports[1].hears("c")); // no repos: every repository

    DispatcherConfig d = DispatcherConfig::from(parse_config_string("", "x.toml"));
    assert_int_equal(d.report_retry_max_ms, 60000);
    assert_true(d.http.base_url.empty());

    assert_string_equal(S(error_of<DispatcherConfig>("[dispatcher]\nreport_retry_max = \"10ms\"\n")),
                        "x.toml:2:20: dispatcher.report_retry_max: must be at least 1s (the first "
                        "retry's wait)");
    assert_non_null(strstr(S(error_of<DispatcherConfig>("[http]\nbase_url = \"ci.example.com\"\n")),
                           "http.base_url: must start with http:// or https://"));
    assert_non_null(strstr(
        S(error_of<DispatcherConfig>("[[report]]\nplugin = \"files\"\nrepos = [1]\n")),
        "report[0].repos"));
}

void test_observer_repos(void **)
{
    ObserverConfig c = ObserverConfig::from(parse_config_string(
        "[observer]\ninterval = \"2s\"\n[[repo]]\nname = \"a\"\nurl = \"/srv/a\"\n"
        "[[repo]]\nname = \"b\"\nurl = \"/srv/b\"\nmode = \"latest\"\ninterval = \"1m\"\n"
        "branches = [\"main\", \"release\"]\n",
        "x.toml"));
    assert_int_equal(c.settings.repos.size(), 2);
    assert_true(c.settings.repos[0].every);
    assert_int_equal(c.settings.repos[0].interval_ms, 2000);
    assert_false(c.settings.repos[1].every);
    assert_int_equal(c.settings.repos[1].interval_ms, 60000);
    assert_int_equal(c.settings.repos[1].branches.size(), 2);
    // Defaults of the job-spec keys.
    assert_true(c.settings.repos[0].job.labels.empty());
    assert_int_equal(c.settings.repos[0].job.shards, 1);
    assert_false(c.settings.repos[0].job.cancel_superseded);
}

void test_observer_job_spec_keys(void **)
{
    ObserverConfig c = ObserverConfig::from(parse_config_string(
        "[[repo]]\nname = \"a\"\nurl = \"/a\"\nlabels = [\"gpu\", \"linux\", \"gpu\"]\n"
        "shards = 4\ncancel_superseded = true\n"
        "[[repo]]\nname = \"b\"\nurl = \"/b\"\nshards = \"auto\"\nlabels = \"arm64\"\n",
        "x.toml"));
    assert_int_equal(c.settings.repos[0].job.labels.size(), 2); // the duplicate "gpu" once
    assert_string_equal(c.settings.repos[0].job.labels[1].c_str(), "linux");
    assert_int_equal(c.settings.repos[0].job.shards, 4);
    assert_true(c.settings.repos[0].job.cancel_superseded);
    assert_int_equal(c.settings.repos[1].job.shards, 0); // "auto"
    assert_int_equal(c.settings.repos[1].job.labels.size(), 1);
}

void test_observer_job_spec_errors(void **)
{
    const std::string repo = "[[repo]]\nname = \"a\"\nurl = \"/a\"\n";
    assert_string_equal(S(error_of<ObserverConfig>(repo + "shards = \"many\"\n")),
                        "x.toml:4:10: repo[0].shards: expected an integer \u2265 1 or \"auto\", "
                        "got \"many\"");
    assert_string_equal(S(error_of<ObserverConfig>(repo + "shards = 0\n")),
                        "x.toml:4:10: repo[0].shards: expected an integer \u2265 1 or \"auto\", "
                        "got 0");
    assert_string_equal(S(error_of<ObserverConfig>(repo + "shards = 1.5\n")),
                        "x.toml:4:10: repo[0].shards: expected an integer \u2265 1 or \"auto\", "
                        "got float");
    assert_non_null(strstr(S(error_of<ObserverConfig>(repo + "shards = 100000\n")),
                           "repo[0].shards: at most 1000 shards, got 100000"));
    assert_non_null(strstr(S(error_of<ObserverConfig>(repo + "labels = [\"a b\"]\n")),
                           "x.toml:4:10: repo[0].labels: 'a b' is not a valid label"));
    assert_non_null(strstr(S(error_of<ObserverConfig>(repo + "labels = [1]\n")),
                           "repo[0].labels[0]: expected a string, got integer"));
    assert_non_null(strstr(S(error_of<ObserverConfig>(repo + "cancel_superseded = \"yes\"\n")),
                           "x.toml:4:21: repo[0].cancel_superseded: expected true or false"));
}

void test_observer_errors(void **)
{
    assert_string_equal(
        S(error_of<ObserverConfig>("[[repo]]\nname = \"a\"\nurl = \"/a\"\nmode = \"some\"\n")),
        "x.toml:4:8: repo[0].mode: expected \"every\" or \"latest\", got \"some\"");
    assert_non_null(strstr(S(error_of<ObserverConfig>("[[repo]]\nname = \"../a\"\nurl = \"/a\"\n")),
                           "repo[0].name: '../a' is not a valid name"));
    assert_non_null(strstr(S(error_of<ObserverConfig>(
                               "[[repo]]\nname = \"a\"\nurl = \"/a\"\n[[repo]]\nname = \"a\"\nurl = \"/b\"\n")),
                           "repo[1].name: repository 'a' is defined twice"));
    assert_non_null(strstr(S(error_of<ObserverConfig>(
                               "[[repo]]\nname = \"a\"\nurl = \"/a\"\nbranches = [\"-x\"]\n")),
                           "repo[0].branches: '-x' is not a valid branch name"));
}

void test_runner_errors(void **)
{
    assert_string_equal(S(error_of<RunnerConfig>("[runner]\nslots = \"two\"\n")),
                        "x.toml:2:9: runner.slots: expected an integer from 1 to 256, got string");
    assert_non_null(strstr(S(error_of<RunnerConfig>("[runner]\nmax_log = 16777216\n")),
                           "runner.max_log: must leave 1 MiB of max_frame"));
}

void test_log_bound_keeps_head_and_tail(void **)
{
    std::string log = std::string(1000, 'h') + std::string(8000, 'm') + std::string(1000, 't');
    std::string cut = JobRun::bounded_log(log.data(), log.size(), 2000);
    assert_true(cut.size() < 2100);
    assert_int_equal(cut.compare(0, 500, std::string(500, 'h')), 0);
    assert_int_equal(cut.compare(cut.size() - 1000, 1000, std::string(1000, 't')), 0);
    assert_non_null(strstr(cut.c_str(), "[kiln: 8000 bytes of log dropped]"));
    assert_string_equal(JobRun::bounded_log("short", 5, 2000).c_str(), "short");
}

} // namespace

// A reload compares what needs a restart key by key: one warning per
// changed key, none for what a reload may change.
void test_observer_restart_keys(void **)
{
    const std::string base = "[observer]\ndispatcher = \"127.0.0.1:1\"\ninterval = \"2s\"\n";
    ObserverConfig running = ObserverConfig::from(parse_config_string(base, "x.toml"));
    ObserverConfig same = ObserverConfig::from(
        parse_config_string(base + "max_outbox = 5\nreconnect_max = \"30s\"\n", "x.toml"));
    assert_int_equal(warn_needs_restart(running.startup, same.startup), 0);
    assert_int_equal(same.settings.reconnect_max_ms, 30000);
    assert_int_equal(running.settings.reconnect_max_ms, 5000);
    ObserverConfig moved = ObserverConfig::from(parse_config_string(
        "[observer]\ndispatcher = \"127.0.0.1:2\"\nstate_dir = \"/elsewhere\"\n", "x.toml"));
    assert_int_equal(warn_needs_restart(running.startup, moved.startup), 2);
}

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatcher_defaults),
        cmocka_unit_test(test_dispatcher_errors),
        cmocka_unit_test(test_dispatcher_reports),
        cmocka_unit_test(test_observer_repos),
        cmocka_unit_test(test_observer_errors),
        cmocka_unit_test(test_observer_job_spec_keys),
        cmocka_unit_test(test_observer_job_spec_errors),
        cmocka_unit_test(test_observer_restart_keys),
        cmocka_unit_test(test_runner_errors),
        cmocka_unit_test(test_log_bound_keeps_head_and_tail),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
