// The exec plugin `ctest`, loaded through the real loader and run against
// small CMake projects written into a temp workspace: real cmake, ctest and
// a C compiler, the host's real spawner (the fixture: exec_plugin_fixture.hpp).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "exec_plugin_fixture.hpp" // last: it includes cmocka

namespace {

using namespace exec_fixture;

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

void suite(Fixture *f)
{
    write_file(f->ws + "/tests/CMakeLists.txt", kSuite);
    write_file(f->ws + "/tests/prog.c", "int main(void) { return 0; }\n");
}

// ---- tests ----

void test_run_suite(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    suite(f);
    load(f, "ctest");
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
    load(f, "ctest");
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
    load(f, "ctest");
    run(f, "tests", 0, {"a.b", "pass", "no such test"});
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
    load(f, "ctest");
    run(f, "tests", 0, {"nope", "neither"});
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
    load(f, "ctest");
    run(f, "tests", 0, only);
    assert_int_equal(f->outcome, KILN_PASSED);
    assert_int_equal(f->tests.size(), 599);
    for (const Test &t : f->tests)
        assert_int_equal(t.outcome, KILN_PASSED);
    assert_false(contains(f->log, "#1: " + stem + "1 "));
    close_loop(f);
}

// Sharding a suite with what ctest adds to a selection or runs twice: a
// fixture's setup and cleanup tests (ctest runs them with any test that
// requires the fixture, so several shards run them), a name two directories
// both add_test() (a whole run runs both; picking tests by number ran only
// the first), and a disabled test.  Three shards report together exactly what
// one whole run does.
void test_shards_match_whole_run(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/CMakeLists.txt", R"(cmake_minimum_required(VERSION 3.19)
project(shards NONE)
enable_testing()
add_test(NAME db_setup COMMAND sh -c "exit 0")
set_tests_properties(db_setup PROPERTIES FIXTURES_SETUP db)
add_test(NAME db_cleanup COMMAND sh -c "exit 0")
set_tests_properties(db_cleanup PROPERTIES FIXTURES_CLEANUP db)
foreach(i RANGE 1 4)
  add_test(NAME uses_db_${i} COMMAND sh -c "test ${i} -ne 3")
  set_tests_properties(uses_db_${i} PROPERTIES FIXTURES_REQUIRED db)
endforeach()
add_test(NAME off COMMAND sh -c "exit 1")
set_tests_properties(off PROPERTIES DISABLED TRUE)
add_test(NAME twice COMMAND sh -c "exit 0")
add_subdirectory(sub)
)");
    mkdir((f->ws + "/tests/sub").c_str(), 0755);
    write_file(f->ws + "/tests/sub/CMakeLists.txt", "add_test(NAME twice COMMAND sh -c \"exit 1\")\n");
    load(f, "ctest");
    std::vector<Test> whole = assert_shards_match_whole_run(f, 3);
    assert_int_equal(whole.size(), 9);
    f->tests = whole;
    assert_int_equal(find(f, "uses_db_3").outcome, KILN_FAILED);
    assert_int_equal(find(f, "db_setup").outcome, KILN_PASSED);
    close_loop(f);
}

void test_no_tests_dir(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    rmdir((f->ws + "/tests").c_str());
    load(f, "ctest");
    run(f);
    assert_int_equal(f->outcome, KILN_ERROR);
    assert_string_equal(S(f->error), "tests directory 'tests' not found in workspace");
    reset(f);
    list(f);
    assert_true(f->status < 0);
    assert_string_equal(S(f->error), "tests directory 'tests' not found in workspace");
    close_loop(f);
}

void test_no_cmakelists(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    load(f, "ctest");
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
    load(f, "ctest");
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
    load(f, "ctest");
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
    load(f, "ctest");
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
    load(f, "ctest");
    uint64_t ms = run(f, "tests", 2000);
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
    load(f, "ctest");
    cancel_after(f, 1500);
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
        cmocka_unit_test_setup_teardown(test_shards_match_whole_run, setup, teardown),
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
