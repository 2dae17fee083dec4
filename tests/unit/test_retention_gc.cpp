// Retention: exactly the results the policy names are deleted (the newest
// keep_per_branch of each branch, live jobs, unreported ones and ones with
// outbox rows kept), shards go with their commit, logs beyond
// keep_per_branch are cut to head and tail once, a dry run changes
// nothing, JobTable::forget drops done jobs only, and the database file
// shrinks after a large deletion.
#include <sys/stat.h>

#include <random>

#include "job_table.hpp"
#include "retention.hpp"
#include "retention_fixture.hpp"
#include "store_fixture.hpp"

using namespace kiln;
using namespace retention_fixture;
using store_fixture::Fixture;
using store_fixture::setup;
using store_fixture::teardown;

namespace {

const int64_t kNow = 1'800'000'000'000;

// Repo "a" main: 1..6 old; 7 old but not reported; 8 queued (live).  Repo
// "a" dev: 9 old.  Repo "b" main: 10 old with a pending delivery, 11 old,
// 12 old split into shards 13 and 14, 15 recent.  16 queued: the highest id.
std::vector<Job> history()
{
    std::vector<Job> jobs;
    for (uint64_t id = 1; id <= 6; id++)
        jobs.push_back(job(id, "a", "main", kNow - 40 * kDay));
    jobs.push_back(job(7, "a", "main", kNow - 40 * kDay, false));
    jobs.push_back(job(8, "a", "main", 0, false, JobState::queued));
    jobs.push_back(job(9, "a", "dev", kNow - 40 * kDay));
    jobs.push_back(job(10, "b", "main", kNow - 40 * kDay));
    jobs.push_back(job(11, "b", "main", kNow - 40 * kDay));
    Job split = job(12, "b", "main", kNow - 40 * kDay);
    split.spec.shards = 2;
    jobs.push_back(split);
    for (uint64_t s = 13; s <= 14; s++) {
        Job shard = job(s, "b", "main", kNow - 40 * kDay);
        shard.parent = 12;
        shard.shard = static_cast<uint32_t>(s - 13);
        shard.shards = 2;
        shard.spec.commit = split.spec.commit;
        jobs.push_back(shard);
    }
    jobs.push_back(job(15, "b", "main", kNow - kDay));
    jobs.push_back(job(16, "b", "main", 0, false, JobState::queued));
    return jobs;
}

std::vector<OutboxRow> pending_for(uint64_t job_id)
{
    OutboxRow row;
    row.receiver = "files";
    row.job_id = job_id;
    row.attempt = 1;
    row.kind = 3;
    return {row};
}

RetentionPolicy policy(uint64_t max_age_ms, uint32_t keep, uint64_t max_log = 0, uint32_t batch = 500)
{
    RetentionPolicy p;
    p.max_age_ms = max_age_ms;
    p.keep_per_branch = keep;
    p.max_log_bytes = max_log;
    p.batch = batch;
    return p;
}

void test_exactly_what_the_policy_says_is_deleted(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write(f->dir, history(), pending_for(10));
    // Dry first: the same answer, nothing deleted.
    sqlite3 *db = open_gc_connection(f->dir + "/dispatcher.db");
    GcTally plan = gc_plan(db, policy(30 * kDay, 2), kNow);
    sqlite3_close(db);
    assert_int_equal(ids(load(f->dir)).size(), 16);

    int batches = 0;
    GcTally done = collect_all(f->dir, policy(30 * kDay, 2, 0, 2), kNow, &batches);
    // a/main done, newest first: 7 (unreported, kept), 6 — kept by
    // keep_per_branch = 2 — then 5..1, deleted.  a/dev: 9 is its newest.
    // b/main: 15, 12 kept; 11 deleted; 10 kept by its pending delivery.
    std::set<uint64_t> want = {6, 7, 8, 9, 10, 12, 13, 14, 15, 16};
    assert_true(ids(load(f->dir)) == want);
    assert_int_equal(done.jobs, 6);
    assert_int_equal(plan.jobs, 6);
    assert_int_equal(done.branches["a main"].jobs, 5);
    assert_int_equal(plan.branches["b main"].jobs, 1);
    assert_true(batches >= 3); // 2 per batch
    assert_true(done.stored_bytes > 0);
}

void test_shards_go_with_their_commit_and_are_forgotten(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write(f->dir, history(), pending_for(10));
    sqlite3 *db = open_gc_connection(f->dir + "/dispatcher.db");
    GcBatch b = gc_batch(db, policy(30 * kDay, 0), kNow);
    sqlite3_close(db);
    // keep 0: every old reported one without outbox rows; 15 is too young.
    std::set<uint64_t> want = {7, 8, 10, 15, 16};
    assert_true(ids(load(f->dir)) == want);
    std::set<uint64_t> deleted(b.deleted.begin(), b.deleted.end());
    assert_true(deleted == (std::set<uint64_t>{1, 2, 3, 4, 5, 6, 9, 11, 12, 13, 14}));
    assert_int_equal(b.tally.shards, 2);
    assert_string_equal(pragma(f->dir, "PRAGMA integrity_check").c_str(), "ok");
    assert_string_equal(pragma(f->dir, "PRAGMA foreign_key_check").c_str(), "");

    // The JobTable forgets them: done ones only, an absent id is no matter.
    JobTable table;
    for (const Job &j : history())
        table.restore(j);
    std::vector<uint64_t> forget(b.deleted);
    forget.push_back(8);   // live: stays
    forget.push_back(999); // absent
    table.forget(forget);
    assert_null(table.find(12));
    assert_null(table.find(13));
    assert_non_null(table.find(8));
    assert_non_null(table.find(15));
    assert_null(table.find_commit(job(11, "b", "main", 0).spec.commit));
    assert_non_null(table.find_commit(job(15, "b", "main", 0).spec.commit));
    table.forget(forget); // twice: a no-op
}

void test_no_age_limit_deletes_nothing(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write(f->dir, history());
    GcTally t = collect_all(f->dir, policy(0, 0), kNow);
    assert_int_equal(t.jobs, 0);
    assert_int_equal(ids(load(f->dir)).size(), 16);
}

void test_cut_log_keeps_head_and_tail(void **)
{
    std::string log(100000, 'x');
    log.replace(0, 5, "HEAD:");
    log.replace(log.size() - 5, 5, ":TAIL");
    std::string cut = log;
    uint64_t n = cut_log(cut, 2000);
    assert_true(cut.size() <= 2000);
    assert_true(cut.size() > 1900);
    assert_int_equal(cut.rfind("HEAD:", 0), 0);
    assert_string_equal(S(cut.substr(cut.size() - 5)), ":TAIL");
    assert_true(cut.find("[... kiln retention: " + std::to_string(n) + " bytes cut ...]") !=
                std::string::npos);
    assert_true(log.size() - n < 2000); // what was kept of the original: head and tail
    std::string small = "short";
    assert_int_equal(cut_log(small, 2000), 0);
    assert_string_equal(small.c_str(), "short");
}

void test_logs_beyond_keep_per_branch_are_cut_once(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    std::string big(50000, 'y');
    std::vector<Job> jobs;
    for (uint64_t id = 1; id <= 4; id++)
        jobs.push_back(job(id, "a", "main", kNow - kDay, true, JobState::done, big));
    jobs.push_back(job(5, "a", "main", 0, false, JobState::queued));
    write(f->dir, jobs);
    GcTally t = collect_all(f->dir, policy(0, 2, 4096), kNow);
    assert_int_equal(t.jobs, 0);
    assert_int_equal(t.logs_cut, 2);
    auto after = load(f->dir);
    assert_int_equal(after.size(), 5);
    assert_true(after[0].result.log.size() <= 4096);
    assert_true(after[1].result.log.size() <= 4096);
    assert_true(after[0].result.log.find("kiln retention") != std::string::npos);
    assert_int_equal(after[2].result.log.size(), big.size()); // the newest two whole
    assert_int_equal(after[3].result.log.size(), big.size());
    // Again: nothing left to cut, nothing rewritten.
    GcTally again = collect_all(f->dir, policy(0, 2, 4096), kNow);
    assert_int_equal(again.logs_cut, 0);
    // A lower limit cuts them again.
    GcTally lower = collect_all(f->dir, policy(0, 2, 2048), kNow);
    assert_int_equal(lower.logs_cut, 2);
}

off_t file_size(const std::string &path)
{
    struct stat st {};
    return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

void test_the_file_shrinks_after_a_large_deletion(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    std::mt19937 random(42); // incompressible logs: the file holds them as they are
    std::vector<Job> jobs;
    for (uint64_t id = 1; id <= 200; id++) {
        std::string log(100000, '\0');
        for (char &c : log)
            c = static_cast<char>(random());
        jobs.push_back(job(id, "a", "main", kNow - 40 * kDay, true, JobState::done, log));
    }
    write(f->dir, jobs);
    assert_string_equal(pragma(f->dir, "PRAGMA auto_vacuum").c_str(), "2");
    off_t before = file_size(f->dir + "/dispatcher.db");
    assert_true(before > 20'000'000);
    GcTally t = collect_all(f->dir, policy(30 * kDay, 1, 0, 50), kNow);
    assert_int_equal(t.jobs, 199);
    pragma(f->dir, "PRAGMA wal_checkpoint(TRUNCATE)");
    off_t after = file_size(f->dir + "/dispatcher.db");
    print_message("database %lld bytes before, %lld after GC\n", static_cast<long long>(before),
                  static_cast<long long>(after));
    assert_true(after < before / 10);
}

void test_an_old_database_is_switched_to_incremental_vacuum(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write(f->dir, {job(1, "a", "main", kNow)});
    sqlite3 *db = nullptr;
    sqlite3_open((f->dir + "/dispatcher.db").c_str(), &db);
    // One connection: the mode set only holds until that connection's VACUUM.
    assert_int_equal(sqlite3_exec(db, "PRAGMA auto_vacuum = NONE; VACUUM", nullptr, nullptr, nullptr),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_string_equal(pragma(f->dir, "PRAGMA auto_vacuum").c_str(), "0");
    assert_int_equal(load(f->dir).size(), 1); // opening switches it
    assert_string_equal(pragma(f->dir, "PRAGMA auto_vacuum").c_str(), "2");
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exactly_what_the_policy_says_is_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shards_go_with_their_commit_and_are_forgotten, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_age_limit_deletes_nothing, setup, teardown),
        cmocka_unit_test(test_cut_log_keeps_head_and_tail),
        cmocka_unit_test_setup_teardown(test_logs_beyond_keep_per_branch_are_cut_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_file_shrinks_after_a_large_deletion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_old_database_is_switched_to_incremental_vacuum, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
