// Garbage collection from the loop's side (gc.hpp): the timer's first run
// deletes what the policy says and has the JobTable forget it after the
// batch commits, batch after batch; kilnctl gc's request gets the totals;
// a dry run answers without deleting; without a limit a run does nothing;
// stop() lets the loop end.
#include <kiln/daemon.hpp>

#include "gc.hpp"
#include "job_table.hpp"
#include "retention_fixture.hpp"
#include "store_fixture.hpp"

using namespace kiln;
using namespace retention_fixture;
using store_fixture::Fixture;
using store_fixture::setup;
using store_fixture::teardown;

namespace {

// 30 old results on one branch, all deletable but the newest 2 (and 31, live).
std::vector<Job> history(int64_t now)
{
    std::vector<Job> jobs;
    for (uint64_t id = 1; id <= 30; id++)
        jobs.push_back(job(id, "a", "main", now - 40 * kDay));
    jobs.push_back(job(31, "a", "main", 0, false, JobState::queued));
    return jobs;
}

RetentionPolicy policy()
{
    RetentionPolicy p;
    p.max_age_ms = 30 * kDay;
    p.keep_per_branch = 2;
    p.batch = 4;
    return p;
}

struct Run {
    JobTable table;
    std::vector<size_t> forgotten; // ids per batch
    int answers = 0;
    GcTally tally;
    std::string error;
};

void test_the_first_run_deletes_and_forgets(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    auto jobs = history(unix_ms());
    write(f->dir, jobs);
    Run run;
    for (const Job &j : jobs)
        run.table.restore(j);
    {
        Gc gc(&f->loop, [&run](const std::vector<uint64_t> &ids) {
            run.forgotten.push_back(ids.size());
            run.table.forget(ids);
        });
        gc.start(f->dir + "/dispatcher.db", policy(), 10);
        // GC's timer does not keep a loop alive (a stopping dispatcher's
        // loop must end): a ticking timer of ours stands for the daemon.
        uv_timer_t tick;
        uv_timer_init(&f->loop, &tick);
        uv_timer_start(&tick, [](uv_timer_t *) {}, 5, 5);
        // Until the timer's run has forgotten all 28 (bounded: 20 s).
        uint64_t deadline = uv_now(&f->loop) + 20000;
        while (run.table.jobs().size() > 3 && uv_now(&f->loop) < deadline) {
            uv_run(&f->loop, UV_RUN_ONCE);
            uv_update_time(&f->loop);
        }
        uv_close(reinterpret_cast<uv_handle_t *>(&tick), nullptr);
        assert_int_equal(run.table.jobs().size(), 3);
        assert_true(run.forgotten.size() >= 7); // 4 per batch
        assert_non_null(run.table.find(29));
        assert_non_null(run.table.find(30));
        assert_non_null(run.table.find(31));

        // kilnctl gc: nothing left; a dry run alike.
        gc.request(false, [&run](const GcTally &t, const std::string &e) {
            run.answers++, run.tally = t, run.error = e;
        });
        gc.request(true, [&run](const GcTally &t, const std::string &e) {
            run.answers++, run.tally.add(t), run.error += e;
        });
        while (run.answers < 2 && uv_now(&f->loop) < deadline) {
            uv_run(&f->loop, UV_RUN_ONCE);
            uv_update_time(&f->loop);
        }
        assert_int_equal(run.answers, 2);
        assert_string_equal(run.error.c_str(), "");
        assert_int_equal(run.tally.jobs, 0);
        gc.stop();
        uv_run(&f->loop, UV_RUN_DEFAULT); // ends: nothing keeps it alive
    }
    assert_true(ids(load(f->dir)) == (std::set<uint64_t>{29, 30, 31}));
}

void test_a_request_deletes_and_a_dry_run_does_not(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write(f->dir, history(unix_ms()));
    Run run;
    Gc gc(&f->loop, [&run](const std::vector<uint64_t> &ids) { run.forgotten.push_back(ids.size()); });
    RetentionPolicy none;
    gc.start(f->dir + "/dispatcher.db", none, 10); // no limit: no timer
    auto answer = [&run](const GcTally &t, const std::string &e) {
        run.answers++, run.tally = t, run.error = e;
    };
    gc.request(false, answer);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(run.answers, 1);
    assert_int_equal(run.tally.jobs, 0);

    gc.set_policy(policy());
    gc.request(true, answer);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(run.answers, 2);
    assert_int_equal(run.tally.jobs, 28);
    assert_int_equal(run.tally.branches["a main"].jobs, 28);
    assert_true(run.forgotten.empty());
    assert_int_equal(load(f->dir).size(), 31);

    gc.request(false, answer);
    gc.stop(); // the run in flight finishes its batch and stops there
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(run.answers, 3);
    assert_int_equal(run.tally.jobs, 4); // one batch
    assert_int_equal(load(f->dir).size(), 27);
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_the_first_run_deletes_and_forgets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_request_deletes_and_a_dry_run_does_not, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
