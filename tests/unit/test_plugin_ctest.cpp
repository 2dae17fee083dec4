// The exec plugin `ctest`, loaded through the real loader and run against
// small CMake projects written into a temp workspace: real cmake, ctest and
// a C compiler, the host's real spawner.  Each test runs the loop until the
// plugin's callback fires (a 60 s guard fails it otherwise) and ends with
// uv_loop_close() == 0.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include <kiln/config.hpp>
#include <kiln/plugin_loader.hpp>

#include "test.hpp" // last: cmocka's macros (fail, ...) clash with <fstream>

namespace {

struct Test {
    std::string name;
    int outcome;
    uint64_t duration_ms;
    std::string message;
};

struct Fixture {
    uv_loop_t loop{};
    uv_timer_t guard{}, canceller{};
    bool guard_fired = false;
    std::string ws;
    std::unique_ptr<kiln::Plugin> plugin;
    void *op = nullptr;
    int calls = 0;
    int outcome = -1, status = 0;
    std::string log, error;
    std::vector<Test> tests;
    std::vector<std::string> listed;
};

// The suite most tests run: passing, failing with output, slow, skipped,
// over its own TIMEOUT, with no program, built from C, and names that are
// regex syntax to ctest.
const char kSuite[] = R"(cmake_minimum_required(VERSION 3.19)
project(suite C)
enable_testing()
add_executable(prog prog.c)
add_test(NAME built COMMAND prog)
add_test(NAME pass COMMAND sh -c "exit 0")
add_test(NAME fail COMMAND sh -c "echo 'went <wrong> & \"badly\"'; exit 1")
add_test(NAME slow COMMAND sh -c "sleep 0.3")
add_test(NAME skip COMMAND sh -c "exit 77")
set_tests_properties(skip PROPERTIES SKIP_RETURN_CODE 77)
add_test(NAME hang COMMAND sh -c "sleep 10")
set_tests_properties(hang PROPERTIES TIMEOUT 0.5)
add_test(NAME missing COMMAND /nonexistent/program)
add_test(NAME "a.b" COMMAND sh -c "exit 0")
add_test(NAME "aXb" COMMAND sh -c "exit 1")
)";

void write_file(const std::string &path, const std::string &text)
{
    std::ofstream(path) << text;
}

int setup(void **state)
{
    auto *f = new Fixture;
    char tmpl[] = "/tmp/kiln-ctest-XXXXXX";
    if (!mkdtemp(tmpl) || uv_loop_init(&f->loop) != 0)
        return -1;
    f->ws = tmpl;
    mkdir((f->ws + "/tests").c_str(), 0755);
    uv_timer_init(&f->loop, &f->guard);
    uv_timer_init(&f->loop, &f->canceller);
    f->guard.data = f->canceller.data = f;
    uv_unref(reinterpret_cast<uv_handle_t *>(&f->guard)); // never keeps the loop alive
    *state = f;
    return 0;
}

int teardown(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    std::string cmd = "rm -rf '" + f->ws + "'";
    if (system(cmd.c_str()) != 0)
        return -1;
    delete f;
    return 0;
}

void close_loop(Fixture *f)
{
    f->plugin.reset();
    uv_close(reinterpret_cast<uv_handle_t *>(&f->guard), nullptr);
    uv_close(reinterpret_cast<uv_handle_t *>(&f->canceller), nullptr);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

void load(Fixture *f, const std::string &toml = "")
{
    try {
        kiln::ConfigTable config = toml.empty() ? kiln::ConfigTable()
                                                : kiln::parse_config_string(toml, "test.toml");
        f->plugin = kiln::load_plugin(&f->loop, {KILN_TEST_PLUGIN_DIR}, "ctest", KILN_PLUGIN_EXEC,
                                      config, "kiln-test");
    } catch (const std::exception &e) {
        fail_msg("load ctest: %s", e.what());
    }
}

void suite(Fixture *f)
{
    write_file(f->ws + "/tests/CMakeLists.txt", kSuite);
    write_file(f->ws + "/tests/prog.c", "int main(void) { return 0; }\n");
}

void on_run(void *arg, const kiln_exec_result *res)
{
    auto *f = static_cast<Fixture *>(arg);
    f->calls++;
    f->outcome = res->outcome;
    f->log.assign(res->log, res->log_len);
    f->error = res->error ? res->error : "";
    for (size_t i = 0; i < res->n_tests; i++) {
        const kiln_test_result &t = res->tests[i];
        f->tests.push_back({t.name, t.outcome, t.duration_ms, t.message ? t.message : ""});
    }
}

void on_list(void *arg, int status, const char *error, const char *const *tests, size_t n)
{
    auto *f = static_cast<Fixture *>(arg);
    f->calls++;
    f->status = status;
    f->error = error ? error : "";
    for (size_t i = 0; i < n; i++)
        f->listed.emplace_back(tests[i]);
}

uint64_t wait_done(Fixture *f)
{
    uint64_t t0 = uv_hrtime();
    uv_timer_start(&f->guard, [](uv_timer_t *t) {
        static_cast<Fixture *>(t->data)->guard_fired = true;
        uv_stop(t->loop);
    }, 60000, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&f->guard);
    assert_false(f->guard_fired);
    assert_int_equal(f->calls, 1);
    return (uv_hrtime() - t0) / 1000000;
}

uint64_t run(Fixture *f, uint64_t timeout_ms = 0, std::vector<const char *> only = {})
{
    kiln_exec_request req{f->ws.c_str(), "tests", timeout_ms, only.empty() ? nullptr : only.data(),
                          only.size()};
    assert_int_equal(f->plugin->exec().run(f->plugin->self(), &req, on_run, f, &f->op), 0);
    assert_int_equal(f->calls, 0); // never from inside the start call
    return wait_done(f);
}

void list(Fixture *f)
{
    kiln_exec_request req{f->ws.c_str(), "tests", 0, nullptr, 0};
    assert_int_equal(f->plugin->exec().list(f->plugin->self(), &req, on_list, f, &f->op), 0);
    assert_int_equal(f->calls, 0);
    wait_done(f);
}

const Test &find(Fixture *f, const std::string &name)
{
    for (const Test &t : f->tests)
        if (t.name == name)
            return t;
    fail_msg("no result for %s", name.c_str());
    abort();
}

bool contains(const std::string &s, const std::string &part)
{
    return s.find(part) != std::string::npos;
}

// ---- tests ----

void test_run_suite(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    suite(f);
    load(f);
    run(f);
    assert_int_equal(f->outcome, KILN_FAILED);
    assert_int_equal(f->tests.size(), 9);
    assert_int_equal(find(f, "built").outcome, KILN_PASSED); // the build step ran
    assert_int_equal(find(f, "pass").outcome, KILN_PASSED);
    assert_int_equal(find(f, "a.b").outcome, KILN_PASSED);
    const Test &failed = find(f, "fail");
    assert_int_equal(failed.outcome, KILN_FAILED);
    assert_true(contains(failed.message, "went <wrong> & \"badly\"")); // unescaped
    const Test &slow = find(f, "slow");
    assert_int_equal(slow.outcome, KILN_PASSED);
    assert_true(slow.duration_ms >= 250 && slow.duration_ms < 5000);
    assert_true(find(f, "pass").duration_ms < 2000);
    assert_int_equal(find(f, "skip").outcome, KILN_SKIPPED);
    const Test &hang = find(f, "hang");
    assert_int_equal(hang.outcome, KILN_TIMEOUT);
    assert_true(hang.duration_ms >= 400 && hang.duration_ms < 5000);
    const Test &missing = find(f, "missing");
    assert_int_equal(missing.outcome, KILN_ERROR);
    assert_true(contains(missing.message, "/nonexistent/program"));
    assert_true(contains(f->log, "== cmake configure =="));
    assert_true(contains(f->log, "== cmake --build =="));
    assert_true(contains(f->log, "== ctest =="));
    close_loop(f);
}

void test_list(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    suite(f);
    load(f);
    list(f);
    assert_int_equal(f->status, 0);
    std::vector<std::string> want = {"built", "pass", "fail", "slow", "skip",
                                     "hang", "missing", "a.b", "aXb"};
    assert_true(f->listed == want);
    close_loop(f);
}

// `only`: exactly the names given ("a.b" is not a pattern that also
// matches "aXb"); a name that is not a test is an error of its own.
void test_only(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    suite(f);
    load(f);
    run(f, 0, {"a.b", "pass", "no such test"});
    assert_int_equal(f->tests.size(), 3);
    assert_int_equal(find(f, "a.b").outcome, KILN_PASSED);
    assert_int_equal(find(f, "pass").outcome, KILN_PASSED);
    const Test &unknown = find(f, "no such test");
    assert_int_equal(unknown.outcome, KILN_ERROR);
    assert_int_equal(f->outcome, KILN_FAILED);
    close_loop(f);
}

// Names none of which is a test: no ctest run, each reported as an error.
void test_only_unknown(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    suite(f);
    load(f);
    run(f, 0, {"nope", "neither"});
    assert_int_equal(f->outcome, KILN_FAILED);
    assert_int_equal(f->tests.size(), 2);
    assert_int_equal(find(f, "nope").outcome, KILN_ERROR);
    assert_false(contains(f->log, "== ctest =="));
    close_loop(f);
}

// A big shard: 599 long names, which as one `-R '^(...)$'` pattern would
// exceed what ctest compiles (it then silently matches nothing).
void test_only_many(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    const std::string stem = "a_rather_long_test_name_that_makes_a_regular_expression_large_";
    write_file(f->ws + "/tests/CMakeLists.txt",
               "cmake_minimum_required(VERSION 3.19)\nproject(x NONE)\nenable_testing()\n"
               "foreach(i RANGE 1 600)\n  add_test(NAME " + stem + "${i} COMMAND true)\n"
               "endforeach()\n");
    std::vector<std::string> names;
    for (int i = 2; i <= 600; i++)
        names.push_back(stem + std::to_string(i));
    std::vector<const char *> only;
    for (const std::string &n : names)
        only.push_back(n.c_str());
    load(f);
    run(f, 0, only);
    assert_int_equal(f->outcome, KILN_PASSED);
    assert_int_equal(f->tests.size(), 599);
    for (const Test &t : f->tests)
        assert_int_equal(t.outcome, KILN_PASSED);
    assert_false(contains(f->log, "#1: " + stem + "1 "));
    close_loop(f);
}

void test_no_tests_dir(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    rmdir((f->ws + "/tests").c_str());
    load(f);
    run(f);
    assert_int_equal(f->outcome, KILN_ERROR);
    assert_string_equal(S(f->error), "tests directory 'tests' not found in workspace");
    f->calls = 0;
    list(f);
    assert_true(f->status < 0);
    assert_string_equal(S(f->error), "tests directory 'tests' not found in workspace");
    close_loop(f);
}

void test_no_cmakelists(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    load(f);
    run(f);
    assert_int_equal(f->outcome, KILN_ERROR);
    assert_true(contains(f->error, "has no CMakeLists.txt"));
    close_loop(f);
}

// No cmake on this host: the plugin loaded all the same, the run says why.
void test_no_cmake(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    suite(f);
    load(f);
    std::string path = getenv("PATH") ? getenv("PATH") : "";
    setenv("PATH", f->ws.c_str(), 1); // holds no cmake
    run(f);
    setenv("PATH", path.c_str(), 1);
    assert_int_equal(f->outcome, KILN_ERROR);
    assert_true(contains(f->error, "cannot run cmake"));
    close_loop(f);
}

void test_configure_fails(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/CMakeLists.txt", "cmake_minimum_required(VERSION 3.19)\n"
                                                "project(x NONE)\nmessage(FATAL_ERROR \"nope\")\n");
    load(f);
    list(f);
    assert_true(f->status < 0);
    assert_true(contains(f->error, "cmake configure of 'tests' failed"));
    assert_true(contains(f->error, "nope")); // the dispatcher sees why
    close_loop(f);
}

void test_empty_project(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/CMakeLists.txt", "cmake_minimum_required(VERSION 3.19)\n"
                                                "project(x NONE)\nenable_testing()\n");
    load(f);
    run(f);
    assert_int_equal(f->outcome, KILN_ERROR);
    assert_true(contains(f->error, "no tests"));
    close_loop(f);
}

// The whole run's budget covers configure, build and tests.
void test_run_timeout(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/CMakeLists.txt", "cmake_minimum_required(VERSION 3.19)\n"
                                                "project(x NONE)\nenable_testing()\n"
                                                "add_test(NAME long COMMAND sleep 30)\n");
    load(f);
    uint64_t ms = run(f, 2000);
    assert_int_equal(f->outcome, KILN_TIMEOUT);
    assert_true(contains(f->error, "timed out after 2000 ms"));
    assert_true(ms < 10000);
    close_loop(f);
}

void test_cancel(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/CMakeLists.txt", "cmake_minimum_required(VERSION 3.19)\n"
                                                "project(x NONE)\nenable_testing()\n"
                                                "add_test(NAME long COMMAND sleep 30)\n");
    load(f);
    uv_timer_start(&f->canceller, [](uv_timer_t *t) {
        auto *fx = static_cast<Fixture *>(t->data);
        fx->plugin->cancel(fx->op);
    }, 1500, 0);
    uint64_t ms = run(f);
    assert_int_equal(f->outcome, KILN_CANCELLED);
    assert_true(ms < 10000);
    close_loop(f);
}

void test_bad_config(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    kiln::ConfigTable config = kiln::parse_config_string("cmake = \"\"\n", "test.toml");
    bool refused = false;
    try {
        f->plugin = kiln::load_plugin(&f->loop, {KILN_TEST_PLUGIN_DIR}, "ctest", KILN_PLUGIN_EXEC,
                                      config, "kiln-test");
    } catch (const std::exception &) {
        refused = true;
    }
    assert_true(refused);
    close_loop(f);
}

} // namespace

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_run_suite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_only_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_only_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_tests_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_cmakelists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_cmake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_configure_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_project, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
