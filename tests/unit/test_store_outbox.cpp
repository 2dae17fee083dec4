// The store's report outbox (schema 4): rows saved with their job commit in
// the same transaction and come back with every field; updates and deletes;
// ids never reused; a schema-3 database is migrated, and a dispatcher
// started on it queues the FINISHED events of its unreported results.
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "dispatcher.hpp"
#include "store.hpp"
#include "store_sql.hpp"
#include "store_fixture.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

using store_fixture::Fixture;
using store_fixture::setup;
using store_fixture::teardown;

Job make_job(uint64_t id, char fill, JobState state = JobState::queued)
{
    Job job;
    job.id = id;
    job.spec.repo = "example";
    job.spec.url = "/srv/git/example";
    job.spec.branch = "main";
    job.spec.commit = std::string(40, fill);
    job.spec.vcs = "git";
    job.spec.exec = "unittest";
    job.state = state;
    job.created_unix_ms = 1000;
    if (state == JobState::done) {
        job.attempt = 1;
        job.runner = "runner-1";
        job.result.job_id = id;
        job.result.attempt = 1;
        job.result.commit = job.spec.commit;
        job.result.outcome = KILN_FAILED;
    }
    return job;
}

OutboxRow make_row(Store &store, uint64_t job_id, const std::string &receiver, int kind)
{
    OutboxRow row;
    row.id = store.next_delivery_id();
    row.receiver = receiver;
    row.job_id = job_id;
    row.attempt = 2;
    row.kind = kind;
    row.event_unix_ms = 1234;
    return row;
}

void test_rows_come_back_with_their_job(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    uint64_t first = 0;
    {
        Store store(&f->loop, f->dir);
        store.open();
        OutboxRow queued = make_row(store, 1, "forge", KILN_EVENT_QUEUED);
        OutboxRow second = make_row(store, 1, "forge#2", KILN_EVENT_QUEUED);
        first = queued.id;
        assert_int_equal(second.id, first + 1);
        bool durable = false;
        store.save_job(make_job(1, 'a'), {queued, second}, [&] { durable = true; });
        uv_run(&f->loop, UV_RUN_DEFAULT);
        assert_true(durable);
        assert_int_equal(store.batches_committed(), 1); // the job and its rows together

        second.retries = 3;
        second.next_attempt_unix_ms = 99999;
        second.rejected = true;
        second.last_error = "HTTP 401";
        store.update_delivery(second);
        uv_run(&f->loop, UV_RUN_DEFAULT);
    }
    Store store(&f->loop, f->dir);
    store.open();
    auto rows = store.load_deliveries();
    assert_int_equal(rows.size(), 2);
    assert_int_equal(rows[0].id, first);
    assert_string_equal(rows[0].receiver.c_str(), "forge");
    assert_int_equal(rows[0].job_id, 1);
    assert_int_equal(rows[0].attempt, 2);
    assert_int_equal(rows[0].kind, KILN_EVENT_QUEUED);
    assert_int_equal(rows[0].event_unix_ms, 1234);
    assert_false(rows[0].rejected);
    assert_int_equal(rows[1].retries, 3);
    assert_int_equal(rows[1].next_attempt_unix_ms, 99999);
    assert_true(rows[1].rejected);
    assert_string_equal(rows[1].last_error.c_str(), "HTTP 401");

    // Deleted rows are gone, and their ids are never handed out again.
    store.delete_delivery(rows[0].id);
    store.delete_delivery(rows[1].id);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(store.load_deliveries().empty());
    Store again(&f->loop, f->dir);
    again.open();
    assert_true(again.next_delivery_id() > rows[1].id);
}

// A database of the previous schema (3) is migrated; a finished commit it
// never reported gets its FINISHED row when a dispatcher with a receiver
// starts on it, and that row is delivered.
void test_schema_3_is_migrated_and_unreported_results_queued(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    std::string state_dir = f->dir + "/state";
    std::filesystem::create_directories(state_dir);
    {
        sqlite3 *db = nullptr;
        assert_int_equal(sqlite3_open((state_dir + "/dispatcher.db").c_str(), &db), SQLITE_OK);
        for (int v = 0; v < 3; v++)
            sql::exec(db, sql::migration(v));
        sql::exec(db, "PRAGMA user_version = 3");
        // write_job writes today's columns: schema 5's outcome is added for
        // it and dropped again, so the file is schema 3's.
        sql::exec(db, "ALTER TABLE jobs ADD COLUMN outcome TEXT NOT NULL DEFAULT ''");
        {
            Store::Prepared prepared;
            prepared.db = db;
            sql::write_job(prepared, make_job(1, 'a', JobState::done)); // reported = 0
            Job reported = make_job(2, 'b', JobState::done);
            reported.reported = true;
            sql::write_job(prepared, reported);
        }
        sql::exec(db, "ALTER TABLE jobs DROP COLUMN outcome");
        sqlite3_close(db);
    }
    DispatcherConfig config;
    config.listen = "127.0.0.1:0";
    config.state_dir = state_dir;
    config.http.listen = "";
    config.plugin_dirs = {KILN_TEST_FIXTURE_DIR};
    config.reports = DispatcherConfig::reports_from(
        parse_config_string("[[report]]\nplugin = \"event_fixture\"\n", "d.toml"));
    {
        Dispatcher dispatcher(&f->loop, config);
        assert_true(dispatcher.start());
        uv_timer_t tick;
        uv_timer_init(&f->loop, &tick);
        uv_timer_start(&tick, [](uv_timer_t *) {}, 5, 5);
        uint64_t deadline = uv_now(&f->loop) + 5000;
        auto delivered = [&] {
            auto s = dispatcher.deliveries().status(0);
            return !s.empty() && s[0].delivered == 1 && s[0].pending == 0;
        };
        while (!delivered() && uv_now(&f->loop) < deadline)
            uv_run(&f->loop, UV_RUN_ONCE);
        assert_true(delivered());
        assert_true(dispatcher.jobs().find(1)->reported);
        dispatcher.stop();
        uv_close(reinterpret_cast<uv_handle_t *>(&tick), nullptr);
        uv_run(&f->loop, UV_RUN_DEFAULT);
    }
    sqlite3 *db = nullptr;
    assert_int_equal(sqlite3_open((state_dir + "/dispatcher.db").c_str(), &db), SQLITE_OK);
    auto integer = [db](const char *sql) {
        sqlite3_stmt *q = nullptr;
        int value = -1;
        if (sqlite3_prepare_v2(db, sql, -1, &q, nullptr) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
            value = sqlite3_column_int(q, 0);
        sqlite3_finalize(q);
        return value;
    };
    int version = integer("PRAGMA user_version");
    int reported = integer("SELECT reported FROM jobs WHERE id = 1");
    sqlite3_close(db);
    assert_int_equal(version, kStoreSchemaVersion);
    assert_int_equal(reported, 1);
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rows_come_back_with_their_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_3_is_migrated_and_unreported_results_queued,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
