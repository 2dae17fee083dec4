// The exec plugins `unittest` and `script`, loaded through the real loader
// and run against workspaces built in a temp dir: real python3, real shell
// scripts, the host's real spawner (the fixture: exec_plugin_fixture.hpp).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <string>
#include <vector>

#include "exec_plugin_fixture.hpp" // last: it includes cmocka

namespace {

using namespace exec_fixture;

// True once pid is gone (or a zombie nobody reaps in a container without
// init).  Polls for up to a second: the host reports the run once the pipes
// are closed, which a dying process does a moment before it is a zombie.
bool process_gone(pid_t pid)
{
    for (int i = 0; i < 100; i++) {
        if (kill(pid, 0) != 0)
            return errno == ESRCH;
        std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
        std::string pid_s, comm, state;
        stat >> pid_s >> comm >> state;
        if (state == "Z" || state == "X")
            return true;
        usleep(10000);
    }
    return false;
}

pid_t read_pid(const std::string &path)
{
    std::ifstream in(path);
    long pid = 0;
    in >> pid;
    return static_cast<pid_t>(pid);
}

const char kMixed[] = R"(import os, sys, time, unittest
class Mixed(unittest.TestCase):
    def test_pass(self):
        print("printed by test_pass")
        os.write(1, b"raw fd 1 write\n")
        time.sleep(0.2)
    def test_fail(self):
        """A docstring adds a line to -v output."""
        self.assertEqual(1, 2)
    def test_error(self):
        raise RuntimeError("boom")
    @unittest.skip("not today")
    def test_skip(self):
        pass
)";

void ut_run_mixed(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/test_mixed.py", kMixed);
    write_file(f->ws + "/tests/helper.py", "raise SystemExit('not a test module')\n");
    load(f, "unittest");
    run(f);
    assert_int_equal(f->outcome, KILN_FAILED);
    assert_int_equal(f->tests.size(), 4);
    const Test &pass = find(f, "test_mixed.Mixed.test_pass");
    assert_int_equal(pass.outcome, KILN_PASSED);
    assert_true(pass.duration_ms >= 150 && pass.duration_ms < 5000);
    const Test &failed = find(f, "test_mixed.Mixed.test_fail");
    assert_int_equal(failed.outcome, KILN_FAILED);
    assert_true(contains(failed.message, "AssertionError: 1 != 2"));
    const Test &err = find(f, "test_mixed.Mixed.test_error");
    assert_int_equal(err.outcome, KILN_ERROR);
    assert_true(contains(err.message, "RuntimeError: boom"));
    const Test &skip = find(f, "test_mixed.Mixed.test_skip");
    assert_int_equal(skip.outcome, KILN_SKIPPED);
    assert_true(contains(skip.message, "not today"));
    assert_true(contains(f->log, "test_pass (test_mixed.Mixed.test_pass) ... "));
    assert_true(contains(f->log, "printed by test_pass"));
    assert_true(contains(f->log, "raw fd 1 write"));
    assert_true(contains(f->log, "FAILED (failures=1, errors=1, skipped=1)"));
    close_loop(f);
}

void ut_list_and_only(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/test_mixed.py", kMixed);
    load(f, "unittest");
    list(f);
    assert_int_equal(f->status, 0);
    assert_int_equal(f->listed.size(), 4);
    assert_string_equal(S(f->listed[0]), "test_mixed.Mixed.test_error");
    assert_string_equal(S(f->listed[3]), "test_mixed.Mixed.test_skip");
    reset(f);
    run(f, "tests", 0, {"test_mixed.Mixed.test_pass", "test_mixed.Mixed.test_skip"});
    assert_int_equal(f->outcome, KILN_PASSED);
    assert_int_equal(f->tests.size(), 2);
    assert_int_equal(find(f, "test_mixed.Mixed.test_skip").outcome, KILN_SKIPPED);
    close_loop(f);
}

void ut_missing_and_empty(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    load(f, "unittest");
    run(f, "nope");
    assert_int_equal(f->outcome, KILN_ERROR);
    assert_string_equal(S(f->error), "tests directory 'nope' not found in workspace");
    f->calls = 0;
    run(f); // tests/ exists but holds nothing
    assert_int_equal(f->outcome, KILN_ERROR);
    assert_true(contains(f->error, "no tests found in 'tests'"));
    close_loop(f);
}

void ut_bad_python(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/test_mixed.py", kMixed);
    load(f, "unittest", "python = \"/nonexistent/python3\"\n");
    run(f);
    assert_int_equal(f->outcome, KILN_ERROR);
    assert_true(contains(f->error, "cannot run /nonexistent/python3"));
    close_loop(f);
}

void ut_timeout_kills_group(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/test_slow.py", R"(import subprocess, unittest
class Slow(unittest.TestCase):
    def test_quick(self):
        pass
    def test_sleep(self):
        child = subprocess.Popen(["sleep", "30"])
        open("child.pid", "w").write(str(child.pid))
        child.wait()
)");
    load(f, "unittest");
    uint64_t took = run(f, "tests", 1000);
    assert_true(took < 5000);
    assert_int_equal(f->outcome, KILN_TIMEOUT);
    assert_int_equal(find(f, "test_slow.Slow.test_quick").outcome, KILN_PASSED);
    assert_int_equal(find(f, "test_slow.Slow.test_sleep").outcome, KILN_TIMEOUT);
    pid_t child = read_pid(f->ws + "/child.pid");
    assert_true(child > 0);
    assert_true(process_gone(child));
    close_loop(f);
}

// Starts a run of tests that sleep, cancels it after `delay_ms`.
void run_and_cancel(Fixture *f, uint64_t delay_ms)
{
    cancel_after(f, delay_ms);
    uint64_t took = run(f);
    assert_true(took < 5000);
    assert_int_equal(f->outcome, KILN_CANCELLED);
}

void ut_cancel(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/test_slow.py",
               "import time, unittest\nclass Slow(unittest.TestCase):\n"
               "    def test_sleep(self):\n        time.sleep(30)\n");
    load(f, "unittest");
    run_and_cancel(f, 1500); // python3 takes ~0.3 s to reach the first test here
    assert_int_equal(find(f, "test_slow.Slow.test_sleep").outcome, KILN_CANCELLED);
    close_loop(f);
}

// Sharding a real-world suite (tests/fixtures/shard_suite): doctests added
// by load_tests (whose ids name the function or class itself), a duplicated
// id, subtests, generated and FunctionTestCase tests, class and module
// fixtures, a failing setUpClass and setUpModule, and a module that cannot
// be imported.  Three
// shards report together exactly what one whole run does; before shards
// discovered the suite, each one failed with "cannot load tests".
void ut_shards_match_whole_run(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    copy_fixture(f, "shard_suite");
    load(f, "unittest");
    std::vector<Test> whole = assert_shards_match_whole_run(f, 3);
    f->tests = whole; // the suite is what it means to be
    assert_int_equal(whole.size(), 23);
    assert_int_equal(find(f, "seqlib.views.SequenceView").outcome, KILN_PASSED);
    assert_int_equal(find(f, "seqlib.views.last").outcome, KILN_FAILED);
    assert_int_equal(find(f, "param_3").outcome, KILN_FAILED);
    assert_int_equal(find(f, "param_4").outcome, KILN_PASSED);
    assert_int_equal(find(f, "tests.test_broken").outcome, KILN_ERROR);
    assert_int_equal(find(f, "setUpClass (tests.test_views.BrokenFixture)").outcome, KILN_ERROR);
    assert_int_equal(find(f, "setUpModule (tests.test_module_fixture)").outcome, KILN_ERROR);
    assert_int_equal(find(f, "tests.test_views.SubTests.test_even").outcome, KILN_FAILED);
    assert_int_equal(find(f, "tests.test_views.Generated.test_gen_2").outcome, KILN_FAILED);
    assert_int_equal(find(f, "tests.test_views.ClassFixture.test_b").outcome, KILN_PASSED);
    assert_int_equal(find(f, "tests.test_params.ModuleFixture.test_module_fixture_ran").outcome,
                     KILN_PASSED);
    assert_int_equal(std::count_if(whole.begin(), whole.end(), [](const Test &t) {
                         return t.name == "tests.test_views.Twice.test_twice";
                     }), 2);
    close_loop(f);
}

// A shard's id that its own discovery does not find (a test whose id
// changes between runs) is reported as an error, not dropped.
void ut_shard_unknown_id(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/test_mixed.py", kMixed);
    load(f, "unittest");
    run(f, "tests", 0, {"test_mixed.Mixed.test_pass", "test_mixed.Mixed.test_gone"});
    assert_int_equal(f->outcome, KILN_FAILED);
    assert_int_equal(f->tests.size(), 2);
    assert_int_equal(find(f, "test_mixed.Mixed.test_pass").outcome, KILN_PASSED);
    const Test &gone = find(f, "test_mixed.Mixed.test_gone");
    assert_int_equal(gone.outcome, KILN_ERROR);
    assert_true(contains(gone.message, "not found when this shard discovered"));
    close_loop(f);
}

// script: pass, fail, skip (77), a signal, and files that are not tests.
void make_scripts(Fixture *f)
{
    std::string t = f->ws + "/tests/";
    write_file(t + "pass.sh", "#!/bin/sh\necho hello from pass\nsleep 0.2\n", 0755);
    write_file(t + "fail.sh", "#!/bin/sh\necho oops >&2\nexit 3\n", 0755);
    write_file(t + "skip.sh", "#!/bin/sh\nexit 77\n", 0755);
    write_file(t + "signal.sh", "#!/bin/sh\nkill -9 $$\n", 0755);
    write_file(t + "data.txt", "not executable\n", 0644);
    write_file(t + ".hidden.sh", "#!/bin/sh\nexit 1\n", 0755);
    mkdir((t + "subdir").c_str(), 0755);
}

void sc_run_mixed(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    make_scripts(f);
    load(f, "script");
    run(f);
    assert_int_equal(f->outcome, KILN_FAILED);
    assert_int_equal(f->tests.size(), 4);
    assert_string_equal(S(f->tests[0].name), "fail.sh"); // sorted by name
    assert_int_equal(f->tests[0].outcome, KILN_FAILED);
    assert_string_equal(S(f->tests[0].message), "exit status 3");
    assert_string_equal(S(f->tests[1].name), "pass.sh");
    assert_int_equal(f->tests[1].outcome, KILN_PASSED);
    assert_true(f->tests[1].duration_ms >= 150 && f->tests[1].duration_ms < 5000);
    assert_string_equal(S(f->tests[2].name), "signal.sh");
    assert_string_equal(S(f->tests[2].message), "killed by signal 9");
    assert_string_equal(S(f->tests[3].name), "skip.sh");
    assert_int_equal(f->tests[3].outcome, KILN_SKIPPED);
    assert_true(contains(f->log, "== pass.sh ==\nhello from pass\n"));
    assert_true(contains(f->log, "== fail.sh ==\noops\n"));
    close_loop(f);
}

void sc_list_and_only(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    make_scripts(f);
    load(f, "script");
    list(f);
    assert_int_equal(f->status, 0);
    assert_int_equal(f->listed.size(), 4);
    assert_string_equal(S(f->listed[1]), "pass.sh");
    f->calls = 0;
    run(f, "tests", 0, {"skip.sh", "pass.sh"});
    assert_int_equal(f->outcome, KILN_PASSED);
    assert_int_equal(f->tests.size(), 2);
    f->calls = 0;
    f->tests.clear();
    run(f, "tests", 0, {"pass.sh", "gone.sh"});
    assert_int_equal(f->outcome, KILN_FAILED);
    assert_int_equal(find(f, "gone.sh").outcome, KILN_ERROR);
    close_loop(f);
}

void sc_shards_match_whole_run(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    make_scripts(f);
    load(f, "script");
    assert_int_equal(assert_shards_match_whole_run(f, 3).size(), 4);
    close_loop(f);
}

void sc_missing_and_empty(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/data.txt", "not executable\n", 0644);
    load(f, "script");
    run(f, "nope");
    assert_int_equal(f->outcome, KILN_ERROR);
    assert_string_equal(S(f->error), "tests directory 'nope' not found in workspace");
    f->calls = 0;
    run(f);
    assert_int_equal(f->outcome, KILN_ERROR);
    assert_string_equal(S(f->error), "no executable tests in 'tests'");
    close_loop(f);
}

void sc_timeout_kills_group(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    std::string t = f->ws + "/tests/";
    write_file(t + "a.sh", "#!/bin/sh\nexit 0\n", 0755);
    write_file(t + "b.sh", "#!/bin/sh\nsleep 30 &\necho $! > child.pid\nwait\n", 0755);
    write_file(t + "c.sh", "#!/bin/sh\nexit 0\n", 0755);
    load(f, "script");
    uint64_t took = run(f, "tests", 1000);
    assert_true(took < 5000);
    assert_int_equal(f->outcome, KILN_TIMEOUT);
    assert_int_equal(f->tests.size(), 2); // c.sh never started
    assert_int_equal(find(f, "a.sh").outcome, KILN_PASSED);
    assert_int_equal(find(f, "b.sh").outcome, KILN_TIMEOUT);
    assert_true(contains(f->error, "1 test(s) not run"));
    pid_t child = read_pid(f->ws + "/child.pid");
    assert_true(child > 0);
    assert_true(process_gone(child));
    close_loop(f);
}

void sc_cancel(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write_file(f->ws + "/tests/slow.sh", "#!/bin/sh\nsleep 30\n", 0755);
    load(f, "script", "parallel = 2\n");
    run_and_cancel(f, 300);
    assert_int_equal(find(f, "slow.sh").outcome, KILN_CANCELLED);
    close_loop(f);
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ut_run_mixed, setup, teardown),
        cmocka_unit_test_setup_teardown(ut_list_and_only, setup, teardown),
        cmocka_unit_test_setup_teardown(ut_missing_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(ut_bad_python, setup, teardown),
        cmocka_unit_test_setup_teardown(ut_timeout_kills_group, setup, teardown),
        cmocka_unit_test_setup_teardown(ut_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(ut_shards_match_whole_run, setup, teardown),
        cmocka_unit_test_setup_teardown(ut_shard_unknown_id, setup, teardown),
        cmocka_unit_test_setup_teardown(sc_run_mixed, setup, teardown),
        cmocka_unit_test_setup_teardown(sc_list_and_only, setup, teardown),
        cmocka_unit_test_setup_teardown(sc_shards_match_whole_run, setup, teardown),
        cmocka_unit_test_setup_teardown(sc_missing_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(sc_timeout_kills_group, setup, teardown),
        cmocka_unit_test_setup_teardown(sc_cancel, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
