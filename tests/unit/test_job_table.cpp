// The dispatcher's job rules: one job per commit, queue order, attempts,
// and which results count — first, duplicate, stale (late from a runner
// that lost the job), unknown.
#include "test.hpp"

#include <cstring>

#include "job_spec_fixture.hpp"
#include "job_table.hpp"

using namespace kiln;

namespace {

// The job at the head of repository r's queue, 0 when none is queued (what
// the scheduler looks at first).
uint64_t head(const JobTable &t)
{
    auto it = t.queues().find("r");
    return it == t.queues().end() ? 0 : it->second.front();
}

Result result_for(const Job &job, kiln_outcome outcome = KILN_PASSED)
{
    Result r;
    r.job_id = job.id;
    r.attempt = job.attempt;
    r.commit = job.spec.commit;
    r.outcome = outcome;
    return r;
}

void test_same_commit_is_one_job(void **)
{
    JobTable t;
    auto [first, is_new] = t.add(spec("a", '1'), 10);
    assert_true(is_new);
    auto [again, again_new] = t.add(spec("a", '1'), 20);
    assert_false(again_new);
    assert_int_equal(again->id, first->id);
    // The same commit in another repository is another job.
    auto [other, other_new] = t.add(spec("b", '1'), 30);
    assert_true(other_new);
    assert_int_not_equal(other->id, first->id);
    assert_int_equal(t.count(JobState::queued), 2);
}

void test_queue_order_and_assignment(void **)
{
    JobTable t;
    uint64_t a = t.add(spec("r", 'a'), 1).first->id;
    uint64_t b = t.add(spec("r", 'b'), 2).first->id;
    assert_int_equal(head(t), a);
    t.assign(a, "runner-1", 5);
    const Job *job = t.find(a);
    assert_int_equal(job->state, JobState::assigned);
    assert_int_equal(job->attempt, 1);
    assert_string_equal(job->runner.c_str(), "runner-1");
    assert_int_equal(head(t), b);
    t.assign(b, "runner-2", 6);
    assert_int_equal(head(t), 0);
}

void test_result_recorded_once(void **)
{
    JobTable t;
    uint64_t id = t.add(spec("r", 'a'), 1).first->id;
    t.assign(id, "runner-1", 2);
    Result r = result_for(*t.find(id), KILN_FAILED);
    assert_int_equal(t.record(r, "runner-1", 3), JobTable::Verdict::recorded);
    assert_int_equal(t.find(id)->state, JobState::done);
    assert_int_equal(t.find(id)->result.outcome, KILN_FAILED);
    // The runner did not see the ack and sends it again.
    r.outcome = KILN_PASSED;
    assert_int_equal(t.record(r, "runner-1", 4), JobTable::Verdict::duplicate);
    assert_int_equal(t.find(id)->result.outcome, KILN_FAILED);
}

void test_lost_runner_requeues_at_the_front(void **)
{
    JobTable t;
    uint64_t a = t.add(spec("r", 'a'), 1).first->id;
    t.assign(a, "runner-1", 2);
    uint64_t b = t.add(spec("r", 'b'), 3).first->id;
    auto released = t.release_runner("runner-1", 3, 4);
    assert_true(released.ended.empty());
    assert_int_equal(released.requeued.size(), 1);
    assert_true(t.held_by("runner-1").empty());
    assert_int_equal(t.find(a)->state, JobState::queued);
    assert_int_equal(head(t), a); // ahead of b, which came later
    (void)b;
    t.assign(a, "runner-2", 5);
    assert_int_equal(t.find(a)->attempt, 2);
}

void test_late_result_of_a_lost_runner_is_stale(void **)
{
    JobTable t;
    uint64_t id = t.add(spec("r", 'a'), 1).first->id;
    t.assign(id, "runner-1", 2);
    Result late = result_for(*t.find(id));
    t.release_runner("runner-1", 3, 3);
    t.assign(id, "runner-2", 4);
    assert_int_equal(t.record(late, "runner-1", 5), JobTable::Verdict::stale);
    assert_int_equal(t.find(id)->state, JobState::assigned);
    Result good = result_for(*t.find(id));
    assert_int_equal(t.record(good, "runner-2", 6), JobTable::Verdict::recorded);
    // Once done, the old attempt stays stale.
    assert_int_equal(t.record(late, "runner-1", 7), JobTable::Verdict::stale);
}

void test_result_while_queued_is_stale(void **)
{
    JobTable t;
    uint64_t id = t.add(spec("r", 'a'), 1).first->id;
    t.assign(id, "runner-1", 2);
    Result late = result_for(*t.find(id));
    t.release_runner("runner-1", 3, 3);
    assert_int_equal(t.record(late, "runner-1", 4), JobTable::Verdict::stale);
    assert_int_equal(t.find(id)->state, JobState::queued);
}

void test_max_attempts_gives_an_error_result(void **)
{
    JobTable t;
    uint64_t id = t.add(spec("r", 'a'), 1).first->id;
    for (int attempt = 1; attempt <= 2; attempt++) {
        t.assign(id, "runner-x", attempt);
        assert_true(t.release_runner("runner-x", 2, attempt).ended.size() == size_t(attempt == 2));
    }
    const Job *job = t.find(id);
    assert_int_equal(job->state, JobState::done);
    assert_int_equal(job->result.outcome, KILN_ERROR);
    assert_non_null(strstr(job->result.error.c_str(), "attempt 2 of 2"));
    assert_int_equal(head(t), 0);
}

void test_result_for_another_commit_is_stale(void **)
{
    // A result held across a dispatcher restart can name a job id that now
    // belongs to another commit: never record it for that one.
    JobTable t;
    uint64_t id = t.add(spec("r", 'a'), 1).first->id;
    t.assign(id, "runner-1", 2);
    Result r = result_for(*t.find(id));
    r.commit = std::string(40, 'f');
    assert_int_equal(t.record(r, "runner-1", 3), JobTable::Verdict::stale);
    assert_int_equal(t.find(id)->state, JobState::assigned);
}

void test_retry_starts_a_new_round(void **)
{
    JobTable t;
    uint64_t id = t.add(spec("r", 'a'), 1).first->id;
    assert_false(t.retry(id)); // queued: nothing to retry
    t.assign(id, "runner-1", 2);
    assert_false(t.retry(id)); // running: not yet
    Result first = result_for(*t.find(id), KILN_FAILED);
    assert_int_equal(t.record(first, "runner-1", 3), JobTable::Verdict::recorded);
    t.set_reported(id);
    assert_true(t.retry(id));
    const Job *job = t.find(id);
    assert_int_equal(job->state, JobState::queued);
    assert_false(job->reported);
    assert_true(job->result.commit.empty()); // no result
    assert_int_equal(head(t), id);
    // The old attempt's result, sent again late, does not count for the new round.
    assert_int_equal(t.record(first, "runner-1", 4), JobTable::Verdict::stale);
    // The new round has max_attempts of its own.
    t.assign(id, "runner-2", 5);
    assert_int_equal(t.find(id)->attempt, 2);
    assert_true(t.release_job(id, 1, 6));
    assert_int_equal(t.find(id)->state, JobState::done); // 1 attempt of 1 in this round
    assert_non_null(strstr(t.find(id)->result.error.c_str(), "attempt 1 of 1"));
}

void test_release_only_assigned(void **)
{
    JobTable t;
    uint64_t id = t.add(spec("r", 'a'), 1).first->id;
    assert_false(t.release_job(id, 3, 2)); // queued stays queued, once in the queue
    assert_int_equal(t.find(id)->state, JobState::queued);
    t.assign(id, "runner-1", 3);
    assert_int_equal(head(t), 0);
    assert_false(t.release_job(id, 3, 4));
    assert_int_equal(head(t), id);
    assert_false(t.release_job(99, 3, 5)); // unknown
}

void test_restore_rebuilds_queue_and_ids(void **)
{
    JobTable t;
    Job queued;
    queued.id = 5;
    queued.spec = spec("r", 'a');
    Job done = queued;
    done.id = 9;
    done.spec = spec("r", 'b');
    done.state = JobState::done;
    done.attempt = 1;
    done.result.outcome = KILN_PASSED;
    t.restore(queued);
    t.restore(done);
    assert_int_equal(head(t), 5);
    // Known commits are not queued again; new ones get ids after the highest.
    assert_false(t.add(spec("r", 'b'), 1).second);
    assert_int_equal(t.add(spec("r", 'c'), 1).first->id, 10);
}

void test_unknown_job(void **)
{
    JobTable t;
    Result r;
    r.job_id = 99;
    assert_int_equal(t.record(r, "runner-1", 1), JobTable::Verdict::unknown);
}

void test_find_commit_by_prefix(void **)
{
    JobTable t;
    JobSpec s1 = spec("r", 'a');
    s1.commit = "abcd" + std::string(36, '0');
    JobSpec s2 = spec("r", 'a');
    s2.commit = "abce" + std::string(36, '0');
    t.add(s1, 1);
    t.add(s2, 2);
    assert_string_equal(t.find_commit("abcd")->spec.commit.c_str(), s1.commit.c_str());
    assert_null(t.find_commit("abc"));  // too short
    assert_null(t.find_commit("ffff")); // unknown
    JobSpec s3 = s1;
    s3.repo = "other";
    t.add(s3, 3);
    assert_string_equal(t.find_commit("abcd")->spec.repo.c_str(), "other"); // the newest
    assert_null(t.find_commit("abc0")); // between the two: none
    assert_string_equal(t.find_commit(s2.commit)->spec.commit.c_str(), s2.commit.c_str());

    // Jobs put back at start-up are found the same way; a shard is never
    // the commit's job.
    JobTable u;
    for (uint64_t id : {1, 2, 3}) {
        Job job = *t.find(id);
        u.restore(job);
    }
    Job shard = *t.find(1);
    shard.id = 4;
    shard.parent = 1;
    u.restore(shard);
    assert_int_equal(u.find_commit("abcd")->id, 3);
    assert_int_equal(u.find_commit(s1.commit.substr(0, 10))->id, 3);
    assert_int_equal(u.find_commit("abce")->id, 2);
    assert_null(u.find_commit("abc0"));
}

// max_queued_per_repo: a new commit is admitted while its repository has
// fewer queued jobs than the limit; a known one always (it is only acked
// again); other repositories are not affected; a job leaving the queue
// makes room.
void test_admission_per_repository(void **)
{
    using A = JobTable::Admission;
    JobTable t;
    assert_int_equal(t.queued("r"), 0);
    assert_int_equal(t.admit(spec("r", '1'), 2), A::admitted);
    uint64_t first = t.add(spec("r", '1'), 1).first->id;
    assert_int_equal(t.admit(spec("r", '2'), 2), A::admitted);
    t.add(spec("r", '2'), 2);
    assert_int_equal(t.queued("r"), 2);
    assert_int_equal(t.admit(spec("r", '3'), 2), A::refused);
    assert_int_equal(t.admit(spec("r", '1'), 2), A::known);  // resent: acked, not refused
    assert_int_equal(t.admit(spec("r", '3'), 3), A::admitted); // a higher limit (reload)
    assert_int_equal(t.admit(spec("other", '3'), 2), A::admitted);
    t.add(spec("other", '3'), 3);
    assert_int_equal(t.queued("other"), 1);

    t.assign(first, "runner-1", 4); // running, not queued
    assert_int_equal(t.queued("r"), 1);
    assert_int_equal(t.admit(spec("r", '3'), 2), A::admitted);
    assert_int_equal(t.admit(spec("r", '1'), 2), A::known); // assigned: still known
    // A lost runner's job goes back to the queue: it counts again, even
    // above the limit (it was admitted once).
    t.add(spec("r", '3'), 5);
    t.release_runner("runner-1", 3, 6);
    assert_int_equal(t.queued("r"), 3);
    assert_int_equal(t.admit(spec("r", '4'), 2), A::refused);
    assert_int_equal(t.count(JobState::queued), 4);
}

// held_by is the one record of what a runner holds: it follows every way a
// job enters or leaves `assigned`, and a restored table rebuilds it.
void test_held_by_follows_the_jobs(void **)
{
    JobTable t;
    uint64_t a = t.add(spec("r", 'a'), 1).first->id;
    uint64_t b = t.add(spec("r", 'b'), 1).first->id;
    uint64_t c = t.add(spec("r", 'c'), 1).first->id;
    assert_true(t.held_by("runner-1").empty());
    t.assign(a, "runner-1", 2);
    t.assign(b, "runner-1", 2);
    t.assign(c, "runner-2", 2);
    assert_int_equal(t.held_by("runner-1").size(), 2);
    assert_int_equal(t.held_by("runner-2").count(c), 1);
    assert_int_equal(t.record(result_for(*t.find(a)), "runner-1", 3), JobTable::Verdict::recorded);
    assert_int_equal(t.held_by("runner-1").size(), 1);
    assert_int_equal(t.held_by("runner-1").count(b), 1);
    // A stale result (another runner's) changes nothing.
    t.record(result_for(*t.find(c)), "runner-1", 3);
    assert_int_equal(t.held_by("runner-2").size(), 1);
    assert_false(t.release_job(b, 3, 4));
    assert_true(t.held_by("runner-1").empty());
    assert_false(t.cancel(c, "superseded", 5)); // running: marked, still held
    assert_int_equal(t.held_by("runner-2").size(), 1);
    assert_int_equal(t.release_runner("runner-2", 3, 6).ended.size(), 1); // ends cancelled
    assert_true(t.held_by("runner-2").empty());

    JobTable restored;
    Job held;
    held.id = 7;
    held.spec = spec("r", 'd');
    held.state = JobState::assigned;
    held.attempt = 1;
    held.runner = "runner-3";
    restored.restore(held);
    assert_int_equal(restored.held_by("runner-3").count(7), 1);
    assert_int_equal(restored.release_runner("runner-3", 3, 8).requeued.size(), 1);
    assert_true(restored.held_by("runner-3").empty());
}

// What the dispatcher does when working on a job throws: the job ends with
// outcome error and the reason, whatever state it was in; a done job stays.
void test_end_in_error(void **)
{
    JobTable t;
    uint64_t queued = t.add(spec("r", 'a'), 1).first->id;
    uint64_t running = t.add(spec("r", 'b'), 1).first->id;
    t.assign(running, "runner-1", 2);
    assert_true(t.end_in_error(queued, "dispatcher: assigning: boom", 3));
    assert_int_equal(head(t), 0); // out of the queue
    assert_int_equal(t.find(queued)->state, JobState::done);
    assert_int_equal(t.find(queued)->result.outcome, KILN_ERROR);
    assert_string_equal(t.find(queued)->result.error.c_str(), "dispatcher: assigning: boom");
    assert_true(t.end_in_error(running, "dispatcher: reporting: boom", 4));
    assert_true(t.held_by("runner-1").empty());
    assert_false(t.end_in_error(running, "again", 5)); // done: unchanged
    assert_string_equal(t.find(running)->result.error.c_str(), "dispatcher: reporting: boom");
    assert_false(t.end_in_error(99, "unknown", 6));
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test(test_same_commit_is_one_job),
        cmocka_unit_test(test_queue_order_and_assignment),
        cmocka_unit_test(test_result_recorded_once),
        cmocka_unit_test(test_lost_runner_requeues_at_the_front),
        cmocka_unit_test(test_late_result_of_a_lost_runner_is_stale),
        cmocka_unit_test(test_result_while_queued_is_stale),
        cmocka_unit_test(test_max_attempts_gives_an_error_result),
        cmocka_unit_test(test_result_for_another_commit_is_stale),
        cmocka_unit_test(test_retry_starts_a_new_round),
        cmocka_unit_test(test_release_only_assigned),
        cmocka_unit_test(test_restore_rebuilds_queue_and_ids),
        cmocka_unit_test(test_unknown_job),
        cmocka_unit_test(test_find_commit_by_prefix),
        cmocka_unit_test(test_admission_per_repository),
        cmocka_unit_test(test_held_by_follows_the_jobs),
        cmocka_unit_test(test_end_in_error),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
