// The dispatcher's store: what is saved comes back after a reopen (the
// restart path), durable callbacks run in order once committed, a loop
// turn's changes share one transaction, a newer schema is refused.
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "dispatcher.hpp"
#include "store.hpp"
#include "store_fixture.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

using store_fixture::Fixture;
using store_fixture::setup;
using store_fixture::teardown;

Job make_job(uint64_t id, char fill)
{
    Job job;
    job.id = id;
    job.spec.repo = "example";
    job.spec.url = "/srv/git/example";
    job.spec.branch = "main";
    job.spec.commit = std::string(40, fill);
    job.created_unix_ms = 1000 + static_cast<int64_t>(id);
    return job;
}

void test_saved_jobs_come_back(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    {
        Store store(&f->loop, f->dir);
        store.open();
        Job queued = make_job(1, 'a');
        queued.spec.network = true; // schema 3
        Job assigned = make_job(2, 'b');
        assigned.state = JobState::assigned;
        assigned.attempt = 2;
        assigned.runner = "runner-1";
        Job done = make_job(3, 'c');
        done.state = JobState::done;
        done.attempt = 1;
        done.runner = "runner-2";
        done.reported = true;
        done.result.job_id = 3;
        done.result.attempt = 1;
        done.result.commit = done.spec.commit;
        done.result.outcome = KILN_FAILED;
        done.result.log = std::string("log with \0 byte", 15);
        done.result.tests.push_back({"t.T.test_x", KILN_FAILED, 12, "AssertionError"});
        for (const Job &j : {queued, assigned, done})
            store.save_job(j);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        assert_int_equal(store.backlog(), 0);
    }
    Store again(&f->loop, f->dir);
    again.open();
    std::vector<Job> jobs = again.load_jobs();
    assert_int_equal(jobs.size(), 3);
    assert_int_equal(jobs[0].state, JobState::queued);
    assert_string_equal(jobs[0].spec.commit.c_str(), std::string(40, 'a').c_str());
    assert_true(jobs[0].spec.network);
    assert_false(jobs[1].spec.network);
    assert_int_equal(jobs[1].state, JobState::assigned);
    assert_int_equal(jobs[1].attempt, 2);
    assert_string_equal(jobs[1].runner.c_str(), "runner-1");
    assert_int_equal(jobs[2].state, JobState::done);
    assert_true(jobs[2].reported);
    assert_int_equal(jobs[2].result.outcome, KILN_FAILED);
    assert_int_equal(jobs[2].result.log.size(), 15);
    assert_int_equal(jobs[2].result.tests.size(), 1);
    assert_string_equal(jobs[2].result.tests[0].message.c_str(), "AssertionError");
}

void test_later_saves_replace_earlier_ones(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    {
        Store store(&f->loop, f->dir);
        store.open();
        Job job = make_job(7, 'd');
        store.save_job(job);
        job.state = JobState::done;
        job.result.job_id = 7;
        job.result.attempt = 1;
        job.result.commit = job.spec.commit;
        job.result.outcome = KILN_PASSED;
        store.save_job(job);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        job.state = JobState::queued; // retried: the old result goes
        job.result = Result{};
        store.save_job(job);
        uv_run(&f->loop, UV_RUN_DEFAULT);
    }
    Store again(&f->loop, f->dir);
    again.open();
    std::vector<Job> jobs = again.load_jobs();
    assert_int_equal(jobs.size(), 1);
    assert_int_equal(jobs[0].state, JobState::queued);
    assert_true(jobs[0].result.commit.empty()); // no result
}

void test_durable_in_order_and_batched(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    Store store(&f->loop, f->dir);
    store.open();
    std::vector<int> order;
    for (int i = 0; i < 50; i++) {
        Job job = make_job(static_cast<uint64_t>(i + 1), 'e');
        job.spec.commit = std::string(38, 'e') + std::to_string(10 + i);
        store.save_job(job, [&order, i] { order.push_back(i); });
    }
    store.sync([&order] { order.push_back(-1); });
    assert_true(order.empty()); // nothing is durable before its batch commits
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(order.size(), 51);
    for (int i = 0; i < 50; i++)
        assert_int_equal(order[static_cast<size_t>(i)], i);
    assert_int_equal(order.back(), -1);
    // One loop turn's changes went in one transaction.
    assert_int_equal(store.batches_committed(), 1);
}

void test_newer_schema_is_refused(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    { Store store(&f->loop, f->dir); store.open(); }
    sqlite3 *db = nullptr;
    assert_int_equal(sqlite3_open((f->dir + "/dispatcher.db").c_str(), &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
    std::string message;
    try {
        Store store(&f->loop, f->dir);
        store.open();
    } catch (const StoreError &e) {
        message = e.what();
    }
    assert_non_null(strstr(message.c_str(), "dispatcher.db: schema version 99 is newer"));
}

void test_unusable_state_dir(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    std::string file = f->dir + "/plain-file";
    FILE *fp = fopen(file.c_str(), "w");
    fclose(fp);
    std::string message;
    try {
        Store store(&f->loop, file + "/state");
        store.open();
    } catch (const StoreError &e) {
        message = e.what();
    }
    assert_non_null(strstr(message.c_str(), "plain-file/state: cannot create"));
}

// Test durations have one owner: the store, which keeps them across a reopen.
void test_durations_come_back(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    {
        Store store(&f->loop, f->dir);
        store.open();
        TestOutcome a{"t.a", KILN_PASSED, 120, ""}, b{"t.b", KILN_FAILED, 30, ""};
        store.save_durations("example", {a, b});
        assert_int_equal(store.durations("example").at("t.a"), 120); // at once
        uv_run(&f->loop, UV_RUN_DEFAULT);
    }
    Store again(&f->loop, f->dir);
    again.open();
    assert_int_equal(again.durations("example").size(), 2);
    assert_int_equal(again.durations("example").at("t.b"), 30);
    assert_true(again.durations("other").empty());
}

// --check-config builds a Dispatcher and goes no further: building one
// must not create (or migrate) its database; start() opens it.
void test_dispatcher_opens_the_store_on_start(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    DispatcherConfig config;
    config.listen = "127.0.0.1:0";
    config.state_dir = f->dir + "/state";
    struct stat st;
    {
        Dispatcher dispatcher(&f->loop, config);
        assert_int_equal(stat(config.state_dir.c_str(), &st), -1);
        assert_true(dispatcher.start());
        assert_int_equal(stat((config.state_dir + "/dispatcher.db").c_str(), &st), 0);
        dispatcher.stop();
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    // A store that cannot be opened: start() says so (logged), no exception.
    std::string file = f->dir + "/plain-file";
    fclose(fopen(file.c_str(), "w"));
    config.state_dir = file + "/state";
    Dispatcher broken(&f->loop, config);
    assert_false(broken.start());
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_saved_jobs_come_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_later_saves_replace_earlier_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durable_in_order_and_batched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unusable_state_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durations_come_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispatcher_opens_the_store_on_start, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
