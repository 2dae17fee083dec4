// min_free on a real Runner against the fake dispatcher (runner_fixture.hpp):
// a runner whose work_dir has less free space than min_free registers with
// 0 slots and a `paused` reason naming the disk; SIGHUP's reload with a
// small min_free registers its slots again, on the same connection.  And
// the jobs assigned while the mirror sweep runs (on the thread pool, held
// busy here) wait for it: listed in the heartbeats, started after it, and
// answered "cancelled" when cancelled meanwhile.
#include <signal.h>

#include <atomic>
#include <string>
#include <thread>

#include <kiln/config.hpp>

#include "runner_config.hpp"
#include "runner_fixture.hpp"

using namespace kiln;
using namespace kiln::test;

namespace {

std::string config(RunnerFixture *f, const std::string &min_free)
{
    return "[runner]\ndispatcher = \"127.0.0.1:" + std::to_string(f->server->port()) +
           "\"\nname = \"r1\"\nwork_dir = \"" + f->work("") + "\"\nplugin_dir = \"" +
           KILN_TEST_PLUGIN_DIR + "\"\nvcs = \"git\"\nexec = \"script\"\n" +
           "heartbeat_interval = \"100ms\"\nslots = 3\nmin_free = " + min_free + "\n";
}

void test_pause_and_resume(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    f->listen();
    f->start_runner("slots = 3\nmin_free = \"1000T\"\n");
    auto last = [f] { return f->all<Register>().back(); };
    assert_true(f->run_until([&] {
        return !f->all<Register>().empty() && !last().paused.empty();
    }));
    Register paused = last();
    assert_int_equal(paused.slots, 0);
    assert_true(paused.paused.find("low disk: ") == 0);
    assert_true(paused.paused.find("min_free is 1000.0 TiB") != std::string::npos);
    assert_true(f->runner->status().find("paused (low disk") == 0);

    size_t before = f->all<Register>().size();
    f->runner->reload(RunnerConfig::from(parse_config_string(config(f, "1024"), "r.toml"),
                                         geteuid(), false));
    assert_true(f->run_until([&] { return f->all<Register>().size() > before; }));
    assert_int_equal(last().slots, 3);
    assert_string_equal(S(last().paused), "");
    assert_true(f->runner->status().find("paused") == std::string::npos);
    f->stop();
}

// Thread-pool work items that hold a pool thread until `release` is set.
struct Blocker {
    uv_work_t req;
    std::atomic<bool> *release;
};

void test_jobs_wait_for_the_mirror_sweep(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    f->listen();
    f->make_repo({{"t1", "#!/bin/sh\nexit 0\n"}});
    // Every pool thread busy: the sweep the runner starts at start-up stays
    // queued until they are released.
    std::atomic<bool> release{false};
    const char *size = getenv("UV_THREADPOOL_SIZE");
    int threads = size ? atoi(size) : 4;
    std::vector<Blocker> blockers(threads);
    for (Blocker &b : blockers) {
        b.release = &release;
        b.req.data = &b;
        uv_queue_work(
            &f->loop, &b.req,
            [](uv_work_t *req) noexcept {
                auto *blocker = static_cast<Blocker *>(req->data);
                while (!blocker->release->load())
                    std::this_thread::sleep_for(std::chrono::milliseconds(5));
            },
            [](uv_work_t *, int) noexcept {});
    }
    f->start_runner("min_free = 0\n");
    f->connected();
    f->conn->send(f->assign(41));
    f->conn->send(f->assign(42));
    f->wait_heartbeat_lists({41, 42}); // held, yet listed: not requeued
    f->spin(300);
    assert_int_equal(f->runner->running(), 0); // neither started
    f->conn->send(Cancel{42, 1});
    f->spin(100);
    assert_int_equal(f->runner->running(), 0);

    release = true; // the sweep runs, then job 41; 42's result leaves the spool
    assert_true(f->run_until([&] { return f->all<Result>().size() == 2; }));
    for (const Result &r : f->all<Result>()) {
        if (r.job_id == 42) {
            assert_int_equal(r.outcome, KILN_CANCELLED);
            assert_string_equal(S(r.error), "cancelled before it started");
        } else {
            assert_int_equal(r.job_id, 41);
            assert_int_equal(r.outcome, KILN_PASSED);
        }
    }
    f->stop();
}

} // namespace

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        RUNNER_FIXTURE_TEST(test_pause_and_resume),
        RUNNER_FIXTURE_TEST(test_jobs_wait_for_the_mirror_sweep),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
