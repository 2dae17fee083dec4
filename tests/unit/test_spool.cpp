// The runner's spool, alone and inside a real Runner talking to a fake
// dispatcher over loopback: results survive torn writes (which are set
// aside, never delivered), are delivered once and removed after the ack,
// are sent before the first heartbeat, outlive a dispatcher outage; a job
// over its timeout is reported "timeout"; SIGTERM's stop drains or hands back.
#include <signal.h>

#include <string>
#include <vector>

#include <kiln/atomic_file.hpp>

#include "runner_fixture.hpp"
#include "spool.hpp"

using namespace kiln;
using namespace kiln::test;

namespace {

Result sample(uint64_t job_id, uint32_t attempt)
{
    Result r;
    r.id = 99;
    r.job_id = job_id;
    r.attempt = attempt;
    r.commit = std::string(40, 'a');
    r.outcome = KILN_FAILED;
    r.error = "1 test failed";
    r.tests = {{"t1", KILN_PASSED, 12, ""}, {"t2", KILN_FAILED, 3, "exit status 1"}};
    r.log = "some log\n";
    r.started_unix_ms = 1000;
    r.finished_unix_ms = 2000;
    return r;
}

// ---- the spool alone ----

void test_file_name(void **)
{
    assert_string_equal(S(spool_file_name(12, 3)), "job-12-3.result");
}

void test_round_trip(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    int saved = 0, save_status = -1;
    Spool spool(&f->loop, f->tmp.path() + "/spool");
    spool.save(sample(7, 2), [&](int status) {
        saved++;
        save_status = status;
    });
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(saved, 1);
    assert_int_equal(save_status, 0);
    assert_true(exists(f->tmp.path() + "/spool/job-7-2.result"));
    auto loaded = spool.load();
    assert_int_equal(loaded.size(), 1);
    const Result &r = std::get<Result>(loaded[0]);
    assert_int_equal(r.job_id, 7);
    assert_int_equal(r.attempt, 2);
    assert_string_equal(S(r.commit), S(std::string(40, 'a')));
    assert_int_equal(r.outcome, KILN_FAILED);
    assert_string_equal(S(r.error), "1 test failed");
    assert_int_equal(r.tests.size(), 2);
    assert_string_equal(S(r.tests[1].message), "exit status 1");
    assert_string_equal(S(r.log), "some log\n");
    assert_int_equal(r.finished_unix_ms, 2000);
}

// Truncated at many lengths, empty, extended, not a result, misnamed: each is
// refused with a reason, set aside as *.corrupt, and the good file still loads.
void test_torn_files(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    std::string dir = f->tmp.path() + "/spool";
    std::string good = encode_message(sample(1, 1));
    assert_int_equal(write_file_atomic(dir + "/job-1-1.result", good), 0);

    std::vector<std::string> bad;
    for (size_t len : {size_t(0), size_t(1), size_t(3), size_t(4), size_t(5), good.size() / 2,
                       good.size() - 1})
        bad.push_back(good.substr(0, len));
    bad.push_back(good + "x");
    bad.push_back(good + good);
    bad.push_back(encode_message(Heartbeat{1, {2}}));
    std::string garbled = good;
    garbled[6] = '\xc1'; // never valid msgpack
    bad.push_back(garbled);
    for (size_t i = 0; i < bad.size(); i++) {
        Delivery r;
        std::string error;
        assert_false(decode_spool_file(bad[i], r, error));
        assert_true(!error.empty());
        assert_int_equal(write_file_atomic(dir + "/" + spool_file_name(100 + i, 1), bad[i]), 0);
    }
    // Whole and valid, but under another job's name.
    assert_int_equal(write_file_atomic(dir + "/job-2-1.result", good), 0);

    Spool spool(&f->loop, dir);
    auto loaded = spool.load();
    assert_int_equal(loaded.size(), 1);
    assert_int_equal(delivery_job_id(loaded[0]), 1);
    for (size_t i = 0; i < bad.size(); i++) {
        std::string path = dir + "/" + spool_file_name(100 + i, 1);
        assert_false(exists(path));
        assert_true(exists(path + ".corrupt"));
    }
    assert_true(exists(dir + "/job-2-1.result.corrupt"));
    // Set aside for good: a second start neither loads nor renames them again.
    assert_int_equal(spool.load().size(), 1);
    assert_true(exists(dir + "/job-2-1.result.corrupt"));
}

void test_tmp_leftovers(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    std::string dir = f->tmp.path() + "/spool";
    std::string good = encode_message(sample(3, 1));
    assert_int_equal(write_file_atomic(dir + "/job-3-1.result.tmp-Ab12Cd", good.substr(0, 9)), 0);
    assert_int_equal(write_file_atomic(dir + "/job-4-1.result.tmp-Xy34Zw", good), 0);
    Spool spool(&f->loop, dir);
    assert_int_equal(spool.load().size(), 0);
    assert_false(exists(dir + "/job-3-1.result.tmp-Ab12Cd"));
    assert_false(exists(dir + "/job-4-1.result.tmp-Xy34Zw"));
}

void test_attempts_kept_apart(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    int saved = 0;
    Spool spool(&f->loop, f->tmp.path() + "/spool");
    Result a = sample(5, 1), b = sample(5, 2);
    b.outcome = KILN_PASSED;
    spool.save(a, [&](int st) { saved += st == 0; });
    spool.save(b, [&](int st) { saved += st == 0; });
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(saved, 2);
    auto loaded = spool.load();
    assert_int_equal(loaded.size(), 2);
    assert_int_equal(delivery_attempt(loaded[0]), 1);
    assert_int_equal(std::get<Result>(loaded[0]).outcome, KILN_FAILED);
    assert_int_equal(delivery_attempt(loaded[1]), 2);
    assert_int_equal(std::get<Result>(loaded[1]).outcome, KILN_PASSED);
    spool.remove(5, 1, false, [&](int st) { saved += st == 0; });
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(saved, 3);
    loaded = spool.load();
    assert_int_equal(loaded.size(), 1);
    assert_int_equal(delivery_attempt(loaded[0]), 2);
}


// ---- a Runner against a fake dispatcher (runner_fixture.hpp) ----

// A repository whose one test sleeps `seconds`, and a runner for it.
void start_runner(RunnerFixture *f, int seconds, const std::string &stop_timeout = "10s")
{
    f->listen();
    f->make_repo({{"t1", "#!/bin/sh\nsleep " + std::to_string(seconds) + "\n"}});
    f->start_runner("stop_timeout = \"" + stop_timeout + "\"\n");
}

Assign assign(RunnerFixture *f, uint64_t job_id, uint64_t timeout_ms = 60000)
{
    Assign a = f->assign(job_id);
    a.spec.timeout_ms = timeout_ms;
    return a;
}

// A result spooled by an earlier run: delivered after registering and
// before the first heartbeat, removed after the ack, never delivered again.
void test_restart_delivers_once(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    std::string path = f->tmp.path() + "/work/spool/job-7-1.result";
    assert_int_equal(write_file_atomic(path, encode_message(sample(7, 1))), 0);
    start_runner(f, 0);
    assert_true(f->run_until([&] { return !exists(path) && !f->all<Heartbeat>().empty(); }));
    auto results = f->all<Result>();
    assert_int_equal(results.size(), 1);
    assert_int_equal(results[0].job_id, 7);
    assert_true(f->index_of_first<Register>() < f->index_of_first<Result>());
    assert_true(f->index_of_first<Result>() < f->index_of_first<Heartbeat>());
    assert_int_equal(f->runner->unacknowledged(), 0);
    assert_int_equal(Spool(&f->loop, f->tmp.path() + "/work/spool").load().size(), 0);
    f->stop();
    assert_int_equal(f->all<Result>().size(), 1);
}

// The dispatcher goes away while the job runs: the job goes on, its result
// is spooled, and delivered (then unspooled) once the dispatcher is back.
void test_outage_during_job(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    start_runner(f, 1);
    f->connected();
    f->conn->send(assign(f, 3));
    f->wait_heartbeat_lists({3});
    f->down = true;
    f->conn->close("dispatcher killed");
    std::string path = f->tmp.path() + "/work/spool/job-3-1.result";
    assert_true(f->run_until([&] { return exists(path); }));
    assert_int_equal(f->runner->running(), 0);
    assert_int_equal(f->all<Result>().size(), 0);
    f->down = false;
    assert_true(f->run_until([&] { return !exists(path); }));
    auto results = f->all<Result>();
    assert_int_equal(results.size(), 1);
    assert_int_equal(results[0].outcome, KILN_PASSED);
    assert_int_equal(f->runner->unacknowledged(), 0);
    f->stop();
}

// Tests over the repo's timeout are killed and reported as "timeout", fast.
void test_job_timeout(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    start_runner(f, 60);
    f->connected();
    uint64_t t0 = uv_now(&f->loop);
    f->conn->send(assign(f, 4, 500));
    assert_true(f->run_until([&] { return !f->all<Result>().empty(); }));
    assert_true(uv_now(&f->loop) - t0 < 10000);
    auto r = f->all<Result>()[0];
    assert_int_equal(r.outcome, KILN_TIMEOUT);
    assert_int_equal(r.tests.at(0).outcome, KILN_TIMEOUT);
    f->stop();
}

// stop(): re-register with 0 slots, ignore new assignments, let the running
// job finish and its result be acked, then disconnect.
void test_stop_drains(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    start_runner(f, 1);
    f->connected();
    f->conn->send(assign(f, 5));
    assert_true(f->run_until([&] { return f->runner->running() == 1; }));
    f->runner->stop();
    assert_true(f->run_until([&] { return f->all<Register>().size() == 2; }));
    assert_int_equal(f->all<Register>()[1].slots, 0);
    f->conn->send(assign(f, 6)); // ignored: the dispatcher requeues it
    assert_true(f->run_until([&] { return f->runner->stopped(); }));
    auto results = f->all<Result>();
    assert_int_equal(results.size(), 1);
    assert_int_equal(results[0].job_id, 5);
    assert_int_equal(results[0].outcome, KILN_PASSED);
    assert_int_equal(f->runner->unacknowledged(), 0);
    assert_true(f->run_until([&] { return !f->conn; }));
    assert_false(exists(f->tmp.path() + "/work/spool/job-5-1.result"));
}

// stop() with a job that outlives stop_timeout: the job is cancelled (its
// process group killed), no result is spooled or sent, the runner disconnects.
void test_stop_deadline_hands_back(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    start_runner(f, 60, "300ms");
    f->connected();
    f->conn->send(assign(f, 8));
    f->wait_heartbeat_lists({8});
    f->runner->stop();
    assert_true(f->run_until([&] { return f->runner->stopped() && !f->conn; }, 5000));
    assert_true(f->run_until([&] { return f->runner->running() == 0; }, 10000));
    assert_int_equal(f->all<Result>().size(), 0);
    assert_int_equal(Spool(&f->loop, f->tmp.path() + "/work/spool").load().size(), 0);
}

} // namespace

int main(void)
{
    signal(SIGPIPE, SIG_IGN); // as the daemons do: a vanished peer is an error code
    const struct CMUnitTest tests[] = {
        RUNNER_FIXTURE_TEST(test_file_name),
        RUNNER_FIXTURE_TEST(test_round_trip),
        RUNNER_FIXTURE_TEST(test_torn_files),
        RUNNER_FIXTURE_TEST(test_tmp_leftovers),
        RUNNER_FIXTURE_TEST(test_attempts_kept_apart),
        RUNNER_FIXTURE_TEST(test_restart_delivers_once),
        RUNNER_FIXTURE_TEST(test_outage_during_job),
        RUNNER_FIXTURE_TEST(test_job_timeout),
        RUNNER_FIXTURE_TEST(test_stop_drains),
        RUNNER_FIXTURE_TEST(test_stop_deadline_hands_back),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
