// The runner's side of sharding and cancelling, with a real Runner, the real
// git and script plugins, and a fake dispatcher over loopback: an assign
// with `list` is answered by a TestList (spooled, resent until acked, also
// after a restart), a listing that fails or cannot be done says why, an
// assign naming tests runs only those, a Cancel kills the job and reports
// it "cancelled" (an unknown one is ignored, the connection kept), and two
// slots run two jobs at once.
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include <kiln/atomic_file.hpp>

#include "runner_fixture.hpp"

using namespace kiln;
using namespace kiln::test;

namespace {

// A repository whose tests/ holds t1 (sleeps `seconds`), t2 and t3 (pass),
// and a runner with `slots` for it, connected.
void start_runner(RunnerFixture *f, int seconds, int slots = 1)
{
    f->listen();
    std::string pass = "#!/bin/sh\nexit 0\n";
    f->make_repo({{"t1", "#!/bin/sh\nsleep " + std::to_string(seconds) + "\n"},
                  {"t2", pass},
                  {"t3", pass}});
    f->start_runner("slots = " + std::to_string(slots) + "\n");
}

Assign assign(RunnerFixture *f, uint64_t job_id, bool list = false,
              std::vector<std::string> tests = {})
{
    Assign a = f->assign(job_id);
    a.list = list;
    a.tests = std::move(tests);
    return a;
}

// ---- listing ----

// Listing sends a TestList, no Result; unacked it stays in the spool and is
// sent again on the next connection; acked, it leaves the spool.
void test_list_spooled_until_acked(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    start_runner(f, 0);
    f->connected();
    f->ack = false;
    f->conn->send(assign(f, 11, true));
    std::string path = f->tmp.path() + "/work/spool/job-11-1.list";
    assert_true(f->run_until([&] { return f->all<TestList>().size() == 1 && exists(path); }));
    TestList l = f->all<TestList>()[0];
    assert_int_equal(l.job_id, 11);
    assert_int_equal(l.attempt, 1);
    assert_string_equal(S(l.commit), S(f->commit));
    assert_string_equal(S(l.error), "");
    assert_true(l.tests == (std::vector<std::string>{"t1", "t2", "t3"}));
    assert_int_equal(f->all<Result>().size(), 0);
    assert_int_equal(f->runner->unacknowledged(), 1);
    // The dispatcher drops us; the list goes out again on the new connection.
    f->ack = true;
    f->conn->close("dispatcher restarted");
    assert_true(f->run_until([&] { return f->all<TestList>().size() == 2 && !exists(path); }));
    assert_true(f->all<TestList>()[1].tests == l.tests);
    assert_int_equal(f->runner->unacknowledged(), 0);
    assert_int_equal(f->all<Result>().size(), 0);
    f->stop();
}

// A test list spooled by an earlier run is delivered after registering.
void test_list_from_spool_after_restart(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    std::string path = f->tmp.path() + "/work/spool/job-12-2.list";
    TestList l{99, 12, 2, std::string(40, 'b'), {"a", "b c"}, ""};
    assert_int_equal(write_file_atomic(path, encode_message(l)), 0);
    start_runner(f, 0);
    assert_true(f->run_until([&] { return !exists(path) && !f->all<TestList>().empty(); }));
    TestList got = f->all<TestList>()[0];
    assert_int_equal(got.job_id, 12);
    assert_int_equal(got.attempt, 2);
    assert_true(got.tests == l.tests);
    f->stop();
}

// A listing that cannot work answers with a TestList carrying the reason:
// no tests directory in the commit, an exec plugin not loaded here.
void test_list_errors(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    start_runner(f, 0);
    f->connected();
    f->git({"rm", "-q", "-r", "tests"});
    f->git({"commit", "-q", "-m", "gone"});
    Assign a = assign(f, 13, true);
    a.spec.commit = f->git({"rev-parse", "HEAD"});
    f->conn->send(a);
    Assign b = assign(f, 14, true);
    b.spec.exec = "unittest";
    f->conn->send(b);
    assert_true(f->run_until([&] { return f->all<TestList>().size() == 2; }));
    for (const TestList &l : f->all<TestList>()) {
        assert_int_equal(l.tests.size(), 0);
        if (l.job_id == 13)
            assert_non_null(strstr(l.error.c_str(), "tests directory 'tests' not found"));
        else
            assert_non_null(strstr(l.error.c_str(), "no exec plugin 'unittest'"));
    }
    assert_int_equal(f->all<Result>().size(), 0);
    f->stop();
}

// ---- running a shard, cancelling ----

void test_only_named_tests(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    start_runner(f, 30); // t1 would take 30 s: it must not run
    f->connected();
    f->conn->send(assign(f, 21, false, {"t3", "t2"}));
    assert_true(f->run_until([&] { return !f->all<Result>().empty(); }, 10000));
    Result r = f->all<Result>()[0];
    assert_int_equal(r.outcome, KILN_PASSED);
    assert_int_equal(r.tests.size(), 2);
    assert_string_equal(S(r.tests[0].name), "t2");
    assert_string_equal(S(r.tests[1].name), "t3");
    f->stop();
}

// Cancel of the running attempt: killed at once, reported "cancelled",
// spooled and acked.  Cancels of other jobs or attempts change nothing and
// keep the connection.
void test_cancel(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    start_runner(f, 60);
    f->connected();
    f->conn->send(assign(f, 31));
    f->wait_heartbeat_lists({31});
    // Let the test itself start: the cancel must kill a running process.
    f->spin(500);
    Connection *before = f->conn.get();
    f->conn->send(Cancel{99, 1}); // not ours
    f->conn->send(Cancel{31, 2}); // another attempt
    f->spin(300);
    assert_int_equal(f->runner->running(), 1);
    assert_ptr_equal(f->conn.get(), before);
    uint64_t t0 = uv_now(&f->loop);
    f->conn->send(Cancel{31, 1});
    assert_true(f->run_until([&] { return !f->all<Result>().empty(); }, 10000));
    assert_true(uv_now(&f->loop) - t0 < 5000);
    Result r = f->all<Result>()[0];
    assert_int_equal(r.job_id, 31);
    assert_int_equal(r.outcome, KILN_CANCELLED);
    assert_true(f->run_until([&] { return f->runner->unacknowledged() == 0; }));
    assert_false(exists(f->tmp.path() + "/work/spool/job-31-1.result"));
    assert_ptr_equal(f->conn.get(), before);
    assert_int_equal(f->all<Register>().size(), 1);
    f->stop();
}

// Two slots: two jobs run at the same time, each in its own workspace.
void test_two_slots_run_together(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    start_runner(f, 1, 2);
    f->connected();
    f->conn->send(assign(f, 41, false, {"t1"}));
    f->conn->send(assign(f, 42, false, {"t1"}));
    size_t most = 0;
    assert_true(f->run_until([&] {
        most = std::max(most, f->runner->running());
        return f->all<Result>().size() == 2;
    }));
    assert_int_equal(most, 2);
    auto rs = f->all<Result>();
    for (const Result &r : rs)
        assert_int_equal(r.outcome, KILN_PASSED);
    // Each ran for at least its 1 s sleep, and they overlapped.
    assert_true(rs[0].started_unix_ms < rs[1].finished_unix_ms);
    assert_true(rs[1].started_unix_ms < rs[0].finished_unix_ms);
    f->stop();
}

} // namespace

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        RUNNER_FIXTURE_TEST(test_list_spooled_until_acked),
        RUNNER_FIXTURE_TEST(test_list_from_spool_after_restart),
        RUNNER_FIXTURE_TEST(test_list_errors),
        RUNNER_FIXTURE_TEST(test_only_named_tests),
        RUNNER_FIXTURE_TEST(test_cancel),
        RUNNER_FIXTURE_TEST(test_two_slots_run_together),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
