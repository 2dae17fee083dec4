// The files report plugin, loaded by the real loader: it writes
// DIR/<commit>.json (valid JSON, checked with python3's parser, escaping
// included) and DIR/<commit>.log, atomically, off the loop.  python3 runs
// by argv (run() in test.hpp).  Each test ends with uv_loop_close() == 0
// (in teardown).
// cmocka defines a fail() macro that breaks <ios>: the streams come first.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include "test.hpp"

#include <kiln/config.hpp>
#include <kiln/plugin_loader.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>

namespace {

const char kCommit[] = "0123456789abcdef0123456789abcdef01234567";

struct State {
    std::string tmp, dir;
    uv_loop_t loop;
    std::unique_ptr<kiln::Plugin> plugin;
    int calls = 0, status = 1;
    std::string error;
};

std::unique_ptr<kiln::Plugin> load(State *s, const std::string &config)
{
    try {
        return kiln::load_plugin(&s->loop, {KILN_TEST_PLUGIN_DIR}, "files", KILN_PLUGIN_REPORT,
                                 kiln::parse_config_string(config, "test.toml"), "kiln-test");
    } catch (const std::exception &e) {
        s->error = e.what();
        return nullptr;
    }
}

void on_done(void *arg, int status, const char *error)
{
    State *s = static_cast<State *>(arg);
    s->calls++;
    s->status = status;
    s->error = error ? error : "";
}

// Run the loop until the callback, at most 20 s.
void wait_done(State *s)
{
    uv_timer_t guard;
    bool expired = false;
    uv_timer_init(&s->loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, [](uv_timer_t *t) { *static_cast<bool *>(t->data) = true; }, 20000, 0);
    while (s->calls == 0 && !expired)
        uv_run(&s->loop, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t *>(&guard), nullptr);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    assert_false(expired);
    assert_int_equal(s->calls, 1);
}

// A report whose test names and messages need every kind of escaping.
const kiln_test_result kTests[] = {
    {"test_quote \"x\" back\\slash", KILN_PASSED, 12, nullptr},
    {"line\nbreak\ttab\x01" "ctl caf\xc3\xa9 bad\xff", KILN_FAILED, 3400,
     "AssertionError: 1 != 2\n  at \"file.py\", line 3\r\n\x1f"},
};
const char kLog[] = "first line\nsecond\0binary\n";

int start_report(State *s, const char *commit, uint32_t attempt, void **op = nullptr)
{
    kiln_report rep = {};
    rep.repo = "https://example.org/r.git";
    rep.branch = "main";
    rep.commit = commit;
    rep.outcome = KILN_FAILED;
    rep.runner = "runner-1";
    rep.job_id = 42;
    rep.attempt = attempt;
    rep.started_unix_ms = 1700000000123;
    rep.finished_unix_ms = 1700000005123;
    rep.tests = kTests;
    rep.n_tests = 2;
    rep.log = kLog;
    rep.log_len = sizeof kLog - 1;
    rep.error = nullptr;
    s->calls = 0;
    void *o = nullptr;
    return s->plugin->report().report(s->plugin->self(), &rep, on_done, s, op ? op : &o);
}

int setup(void **state)
{
    State *s = new State();
    char tmpl[] = "/tmp/kiln-test-files-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    s->tmp = tmpl;
    s->dir = s->tmp + "/results/sub"; // created by the plugin, mkdir -p
    assert_int_equal(uv_loop_init(&s->loop), 0);
    s->plugin = load(s, "plugin = \"files\"\ndir = \"" + s->dir + "\"\n");
    *state = s;
    return s->plugin ? 0 : -1;
}

int teardown(void **state)
{
    State *s = static_cast<State *>(*state);
    s->plugin.reset();
    uv_run(&s->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&s->loop);
    std::error_code ec;
    std::filesystem::remove_all(s->tmp, ec);
    delete s;
    assert_int_equal(rc, 0);
    return 0;
}

void test_report_writes_json_and_log(void **state)
{
    State *s = static_cast<State *>(*state);
    assert_int_equal(start_report(s, kCommit, 1), 0);
    assert_int_equal(s->calls, 0); // never from inside the start call
    wait_done(s);
    assert_int_equal(s->status, 0);

    std::string base = s->dir + "/" + kCommit;
    std::string log = read_file(base + ".log");
    assert_int_equal(log.size(), sizeof kLog - 1);
    assert_memory_equal(log.data(), kLog, sizeof kLog - 1);

    std::string json = read_file(base + ".json");
    assert_true(json.find("\"outcome\": \"failed\"") != std::string::npos);
    assert_true(json.find("\"started\": \"2023-11-14T22:13:20.123Z\"") != std::string::npos);
    assert_true(json.find("\"duration_ms\": 5000") != std::string::npos);
    assert_true(json.find("\"error\": null") != std::string::npos);
    assert_true(json.find("test_quote \\\"x\\\" back\\\\slash") != std::string::npos);
    assert_true(json.find("line\\nbreak\\ttab\\u0001ctl caf\xc3\xa9 bad\xef\xbf\xbd") !=
                std::string::npos);

    // python3's parser decides validity, and reads every field back.
    std::string check = s->tmp + "/check.py";
    std::ofstream(check) << R"PY(import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
assert d["commit"] == sys.argv[2], d
assert (d["repo"], d["branch"], d["runner"]) == ("https://example.org/r.git", "main", "runner-1")
assert (d["job_id"], d["attempt"], d["outcome"]) == (42, int(sys.argv[3]), "failed")
assert (d["started_unix_ms"], d["finished_unix_ms"]) == (1700000000123, 1700000005123)
assert d["finished"] == "2023-11-14T22:13:25.123Z" and d["log"] == sys.argv[2] + ".log"
t = d["tests"]
assert t[0] == {"name": 'test_quote "x" back\\slash', "outcome": "passed",
                "duration_ms": 12, "message": None}, t[0]
assert t[1]["name"] == "line\nbreak\ttab\x01ctl caf\u00e9 bad\ufffd", t[1]
assert t[1]["message"] == 'AssertionError: 1 != 2\n  at "file.py", line 3\r\n\x1f', t[1]
assert t[1]["outcome"] == "failed" and t[1]["duration_ms"] == 3400
)PY";
    run({"python3", check, base + ".json", kCommit, "1"});

    // A newer attempt replaces the file; no temp file is left behind.
    assert_int_equal(start_report(s, kCommit, 2), 0);
    wait_done(s);
    assert_int_equal(s->status, 0);
    run({"python3", check, base + ".json", kCommit, "2"});
    auto files = std::filesystem::directory_iterator(s->dir);
    assert_int_equal(std::distance(begin(files), end(files)), 2);
}

void test_bad_commit_refused(void **state)
{
    State *s = static_cast<State *>(*state);
    assert_int_equal(start_report(s, "../../etc/passwd", 1), -EINVAL);
    assert_int_equal(start_report(s, "", 1), -EINVAL);
    assert_int_equal(start_report(s, "abc/def", 1), -EINVAL);
    assert_int_equal(s->calls, 0);
}

void test_cancel(void **state)
{
    State *s = static_cast<State *>(*state);
    void *op = nullptr;
    assert_int_equal(start_report(s, kCommit, 1, &op), 0);
    s->plugin->cancel(op);
    assert_int_equal(s->calls, 0);
    wait_done(s);
    assert_int_equal(s->status, -ECANCELED);
}

// max_age: the first report deletes result files last written longer ago
// than that; newer results and files of other names stay.
void test_max_age_prunes_old_results(void **state)
{
    State *s = static_cast<State *>(*state);
    s->plugin = load(s, "dir = \"" + s->dir + "\"\nmax_age = \"1h\"\n");
    assert_non_null(s->plugin.get());
    std::filesystem::create_directories(s->dir);
    const std::string old_id(40, 'a'), young_id(40, 'b');
    auto old = std::filesystem::file_time_type::clock::now() - std::chrono::hours(2);
    for (const std::string &name : {old_id + ".json", old_id + ".log", young_id + ".json",
                                    std::string("notes.txt")}) {
        std::ofstream(s->dir + "/" + name) << "x";
        if (name != young_id + ".json")
            std::filesystem::last_write_time(s->dir + "/" + name, old);
    }
    assert_int_equal(start_report(s, kCommit, 1), 0);
    wait_done(s);
    assert_int_equal(s->status, 0);
    assert_false(std::filesystem::exists(s->dir + "/" + old_id + ".json"));
    assert_false(std::filesystem::exists(s->dir + "/" + old_id + ".log"));
    assert_true(std::filesystem::exists(s->dir + "/" + young_id + ".json"));
    assert_true(std::filesystem::exists(s->dir + "/notes.txt"));
    assert_true(std::filesystem::exists(s->dir + "/" + kCommit + ".json"));
}

void test_unwritable_dir_and_config(void **state)
{
    State *s = static_cast<State *>(*state);
    s->plugin = load(s, "dir = \"/proc/kiln-no-such-dir\"\n");
    assert_non_null(s->plugin.get());
    assert_int_equal(start_report(s, kCommit, 1), 0);
    wait_done(s);
    assert_true(s->status < 0);
    assert_true(s->error.find("mkdir /proc/kiln-no-such-dir: ") == 0);

    s->plugin = load(s, "plugin = \"files\"\n"); // dir is required
    assert_null(s->plugin.get());
    s->plugin = load(s, "dir = \"/tmp\"\ncolour = \"red\"\n"); // unknown key
    assert_null(s->plugin.get());
    assert_true(s->error.find("colour") != std::string::npos);
}

} // namespace

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_report_writes_json_and_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_commit_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_dir_and_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_age_prunes_old_results, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
