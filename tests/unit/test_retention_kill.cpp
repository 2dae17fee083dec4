// Garbage collection SIGKILLed half-way: a child process runs GC batches on
// the database and kills itself (SIGKILL, nothing flushed, no destructor)
// inside its third batch, after the deletes and before COMMIT.  The
// database is consistent (integrity_check, foreign keys), the first two
// batches are done, the third is not, nothing the policy keeps is gone, and
// every remaining result still reads; a later run finishes the work.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "retention_fixture.hpp"
#include "store_fixture.hpp"

using namespace kiln;
using namespace retention_fixture;
using store_fixture::Fixture;
using store_fixture::setup;
using store_fixture::teardown;

namespace {

const int64_t kNow = 1'800'000'000'000;

// Branch main: 1..40 old (deletable but the newest 5), 41 queued (live).
std::vector<Job> history()
{
    std::vector<Job> jobs;
    for (uint64_t id = 1; id <= 40; id++)
        jobs.push_back(job(id, "a", "main", kNow - 40 * kDay, true, JobState::done,
                           std::string(20000, static_cast<char>('a' + id % 26))));
    jobs.push_back(job(41, "a", "main", 0, false, JobState::queued));
    return jobs;
}

RetentionPolicy policy()
{
    RetentionPolicy p;
    p.max_age_ms = 30 * kDay;
    p.keep_per_branch = 5;
    p.max_log_bytes = 4096;
    p.batch = 4;
    return p;
}

// The child: batches until the third, which dies before its COMMIT.
[[noreturn]] void gc_then_die(const std::string &dir)
{
    sqlite3 *db = open_gc_connection(dir + "/dispatcher.db");
    int batch = 0;
    for (;;) {
        batch++;
        gc_batch(db, policy(), kNow, [batch] {
            if (batch == 3)
                raise(SIGKILL);
        });
    }
}

void test_sigkill_in_the_middle_of_gc(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write(f->dir, history());
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        gc_then_die(f->dir);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);

    assert_string_equal(pragma(f->dir, "PRAGMA integrity_check").c_str(), "ok");
    assert_string_equal(pragma(f->dir, "PRAGMA foreign_key_check").c_str(), "");
    // Two batches of 4 committed: jobs 1..8 gone, the third batch's 9..12 not.
    auto jobs = load(f->dir);
    std::set<uint64_t> left = ids(jobs);
    assert_int_equal(left.size(), 41 - 8);
    for (uint64_t id = 1; id <= 8; id++)
        assert_int_equal(left.count(id), 0);
    for (uint64_t id = 9; id <= 41; id++)
        assert_int_equal(left.count(id), 1);
    // Every result left reads whole (nothing of the dead batch's cuts stayed).
    for (const Job &j : jobs)
        if (j.state == JobState::done)
            assert_int_equal(j.result.log.size(), 20000);

    // The next run finishes: the newest 5 kept (their logs whole), the live one too.
    collect_all(f->dir, policy(), kNow);
    jobs = load(f->dir);
    assert_true(ids(jobs) == (std::set<uint64_t>{36, 37, 38, 39, 40, 41}));
    for (const Job &j : jobs)
        if (j.state == JobState::done)
            assert_int_equal(j.result.log.size(), 20000);
    assert_string_equal(pragma(f->dir, "PRAGMA integrity_check").c_str(), "ok");
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigkill_in_the_middle_of_gc, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
