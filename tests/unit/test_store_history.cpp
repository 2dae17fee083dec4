// History on disk (issue 13): a store with many finished commits gives back
// only the live jobs at start-up, the per-branch facts, the next job id; its
// reads off the loop find an old commit by prefix and tell which commits it
// knows; the JobTable lets finished commits go and still counts them.
#include <sqlite3.h>

#include <string>
#include <vector>

#include "job_table.hpp"
#include "store.hpp"
#include "store_fixture.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

using store_fixture::Fixture;
using store_fixture::setup;
using store_fixture::teardown;

// Commit ids: 40 hex digits, all different in their first 12.
std::string commit_of(uint64_t id)
{
    char buf[13];
    snprintf(buf, sizeof buf, "%012llx", static_cast<unsigned long long>(id * 7919));
    return buf + std::string(28, 'c');
}

Job make_job(uint64_t id, JobState state, kiln_outcome outcome = KILN_PASSED)
{
    Job job;
    job.id = id;
    job.spec.repo = "example";
    job.spec.url = "/srv/git/example";
    job.spec.branch = id % 2 ? "main" : "dev";
    job.spec.commit = commit_of(id);
    job.state = state;
    if (state == JobState::done) {
        job.attempt = 1;
        job.runner = "runner-1";
        job.reported = true;
        job.result.job_id = id;
        job.result.attempt = 1;
        job.result.commit = job.spec.commit;
        job.result.outcome = outcome;
        job.result.log = "log of " + std::to_string(id);
    }
    return job;
}

constexpr uint64_t kFinished = 2000;

// 2,000 finished commits (every 10th failed), then 3 live jobs and a
// finished one not yet reported.
void fill(Fixture *f)
{
    Store store(&f->loop, f->dir);
    store.open();
    for (uint64_t id = 1; id <= kFinished; id++)
        store.save_job(make_job(id, JobState::done, id % 10 ? KILN_PASSED : KILN_FAILED));
    store.save_job(make_job(kFinished + 1, JobState::queued));
    Job assigned = make_job(kFinished + 2, JobState::assigned);
    assigned.attempt = 1;
    assigned.runner = "runner-1";
    store.save_job(assigned);
    Job unreported = make_job(kFinished + 3, JobState::done);
    unreported.reported = false;
    store.save_job(unreported);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(store.backlog(), 0);
}

void test_start_up_loads_only_live_jobs(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    fill(f);
    Store store(&f->loop, f->dir);
    store.open();
    std::vector<Job> live = store.load_live_jobs();
    assert_int_equal(live.size(), 3);
    assert_int_equal(live[0].id, kFinished + 1);
    assert_int_equal(live[1].state, JobState::assigned);
    assert_int_equal(live[2].id, kFinished + 3);
    assert_false(live[2].reported);
    assert_int_equal(store.last_job_id(), kFinished + 3);

    uint64_t done = 0, failed = 0, newest_main = 0;
    for (const auto &f : store.load_finished()) {
        done += f.count;
        failed += f.outcome == KILN_FAILED ? f.count : 0;
        if (f.branch == "main")
            newest_main = std::max(newest_main, f.newest);
    }
    assert_int_equal(done, kFinished + 1); // the unreported one is finished too
    assert_int_equal(failed, kFinished / 10);
    assert_int_equal(newest_main, kFinished + 3);

    // As the dispatcher does it: facts, then the live jobs.
    JobTable jobs;
    for (const auto &f : store.load_finished())
        jobs.restore_finished(f.repo, f.branch, f.outcome, f.count, f.newest);
    for (Job &job : live)
        jobs.restore(std::move(job));
    jobs.reserve_ids(store.last_job_id());
    assert_int_equal(jobs.jobs().size(), 3);
    assert_int_equal(jobs.stored().at("example").done, kFinished); // + 1 in the table
    assert_int_equal(jobs.stored().at("example").passed, kFinished - kFinished / 10);
    JobSpec next;
    next.repo = "example";
    next.branch = "main";
    next.commit = std::string(40, 'e');
    assert_int_equal(jobs.add(next, 0).first->id, kFinished + 4); // ids never reused
    // Job 1999 (main) was passed, 2000 (dev) failed: each branch its own.
    Job probe = make_job(kFinished + 10, JobState::queued);
    assert_int_equal(jobs.previous_outcome(probe), KILN_FAILED); // dev: 2000
    probe.spec.branch = "main";
    assert_int_equal(jobs.previous_outcome(probe), KILN_PASSED); // main: 2003
}

void test_reads_off_the_loop_find_old_commits(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    fill(f);
    Store store(&f->loop, f->dir);
    store.open();
    std::vector<Job> found;
    std::vector<uint64_t> known;
    std::string commit_10 = commit_of(10);
    std::vector<std::pair<std::string, std::string>> keys = {
        {"example", commit_of(10)}, {"example", std::string(40, 'f')}, {"other", commit_of(10)}};
    int answers = 0;
    store.read([&](sqlite3 *db) { found = Store::read_commit_jobs(db, commit_10.substr(0, 12)); },
               [&](const std::string &error) {
                   assert_true(error.empty());
                   answers++;
               });
    store.read([&](sqlite3 *db) { known = Store::read_known(db, keys); },
               [&](const std::string &error) {
                   assert_true(error.empty());
                   answers++;
               });
    // A read that fails says why, on the loop.
    store.read([](sqlite3 *) { throw StoreError("no such table"); },
               [&](const std::string &error) {
                   assert_true(error.find("no such table") != std::string::npos);
                   answers++;
               });
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(answers, 3);
    assert_int_equal(found.size(), 1);
    assert_int_equal(found[0].id, 10);
    assert_int_equal(found[0].state, JobState::done);
    assert_int_equal(found[0].result.outcome, KILN_FAILED);
    assert_string_equal(found[0].result.log.c_str(), "log of 10");
    assert_int_equal(known.size(), 3);
    assert_int_equal(known[0], 10);
    assert_int_equal(known[1], 0);
    assert_int_equal(known[2], 0);
}

void test_job_table_lets_finished_commits_go(void **state)
{
    (void)state;
    JobTable jobs;
    JobSpec spec;
    spec.repo = "example";
    spec.branch = "main";
    spec.commit = std::string(40, 'a');
    uint64_t id = jobs.add(spec, 0).first->id;
    assert_false(jobs.evict(id)); // queued: live
    jobs.assign(id, "runner-1", 1);
    Result r;
    r.job_id = id;
    r.attempt = 1;
    r.commit = spec.commit;
    r.outcome = KILN_FAILED;
    assert_int_equal(jobs.record(r, "runner-1", 2), JobTable::Verdict::recorded);
    assert_true(jobs.evict(id));
    assert_null(jobs.find(id));
    assert_null(jobs.find_commit("aaaa"));
    assert_int_equal(jobs.stored().at("example").done, 1);
    assert_int_equal(jobs.stored().at("example").passed, 0);
    // Its branch still remembers it.
    spec.commit = std::string(40, 'b');
    const Job *next = jobs.add(spec, 3).first;
    assert_int_equal(jobs.previous_outcome(*next), KILN_FAILED);
    // Read back (kilnctl result): counted in the table again, not twice.
    Job back = make_job(id, JobState::done, KILN_FAILED);
    back.spec.commit = std::string(40, 'a');
    jobs.restore(back);
    assert_non_null(jobs.find_commit("aaaa"));
    assert_int_equal(jobs.stored().at("example").done, 0);
    assert_true(jobs.retry(id));
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_up_loads_only_live_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_off_the_loop_find_old_commits, setup, teardown),
        cmocka_unit_test(test_job_table_lets_finished_commits_go),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
