// Shards: the planner balances by known durations and is deterministic,
// the job table splits a listed commit, retries a lost shard alone, merges
// every test exactly once, and superseding cancels queued and running work.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "job_table.hpp"
#include "shard_planner.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

// The job at the head of repository r's queue, 0 when none is queued (what
// the scheduler looks at first).
uint64_t head(const JobTable &t)
{
    auto it = t.queues().find("r");
    return it == t.queues().end() ? 0 : it->second.front();
}

std::vector<std::string> names(int n)
{
    std::vector<std::string> out;
    for (int i = 0; i < n; i++)
        out.push_back("test_" + std::to_string(100 + i));
    return out;
}

uint64_t load_of(const std::vector<std::string> &group, const std::map<std::string, uint64_t> &d)
{
    uint64_t sum = 0;
    for (const auto &t : group)
        sum += d.at(t);
    return sum;
}

void test_plan_balances_known_durations(void **)
{
    // 16 tests of 1 s on 4 shards: 4 s each, the ideal.
    std::map<std::string, uint64_t> d;
    for (const auto &t : names(16))
        d[t] = 1000;
    auto plan = plan_shards(names(16), d, 4);
    assert_int_equal(plan.size(), 4);
    for (const auto &g : plan)
        assert_int_equal(load_of(g, d), 4000);
    // One long test and many short ones: the long one alone, the rest spread.
    std::map<std::string, uint64_t> skew = {{"long", 9000}};
    std::vector<std::string> tests = {"long"};
    for (int i = 0; i < 9; i++) {
        tests.push_back("short" + std::to_string(i));
        skew[tests.back()] = 1000;
    }
    plan = plan_shards(tests, skew, 2);
    assert_int_equal(plan.size(), 2);
    assert_int_equal(load_of(plan[0], skew), 9000);
    assert_int_equal(load_of(plan[1], skew), 9000);
}

void test_plan_every_test_once_and_deterministic(void **)
{
    std::vector<std::string> tests = names(23);
    tests.push_back(tests[3]); // listed twice: planned once
    std::map<std::string, uint64_t> d = {{"test_105", 300}, {"test_110", 50}};
    auto plan = plan_shards(tests, d, 5);
    std::vector<std::string> shuffled(tests.rbegin(), tests.rend());
    assert_true(plan == plan_shards(shuffled, d, 5));
    std::multiset<std::string> seen;
    for (const auto &g : plan) {
        assert_false(g.empty());
        seen.insert(g.begin(), g.end());
    }
    assert_int_equal(seen.size(), 23);
    assert_int_equal(std::set<std::string>(seen.begin(), seen.end()).size(), 23);
    // Unknown tests spread evenly: shard sizes differ by at most one among them.
    size_t lo = 99, hi = 0;
    for (const auto &g : plan) {
        size_t unknown = std::count_if(g.begin(), g.end(), [&](const std::string &t) { return !d.count(t); });
        lo = std::min(lo, unknown);
        hi = std::max(hi, unknown);
    }
    assert_true(hi - lo <= 1);
    // Never more shards than tests, none for no tests.
    assert_int_equal(plan_shards(names(2), {}, 8).size(), 2);
    assert_true(plan_shards({}, {}, 4).empty());
}

void test_merge_keeps_every_test_once(void **)
{
    Result a, b;
    a.commit = b.commit = std::string(40, 'c');
    a.outcome = KILN_PASSED;
    b.outcome = KILN_FAILED;
    a.tests = {{"t1", KILN_PASSED, 10, ""}, {"t2", KILN_PASSED, 20, ""}};
    b.tests = {{"t3", KILN_FAILED, 30, "boom"}, {"t2", KILN_PASSED, 20, ""}};
    a.log = "log a";
    b.log = "log b\n";
    a.started_unix_ms = 100, a.finished_unix_ms = 200;
    b.started_unix_ms = 50, b.finished_unix_ms = 300;
    b.error = "";
    Result m = merge_shard_results({&a, &b}, {"r1", "r2"});
    assert_int_equal(m.outcome, KILN_FAILED);
    assert_int_equal(m.tests.size(), 3);
    assert_int_equal(m.started_unix_ms, 50);
    assert_int_equal(m.finished_unix_ms, 300);
    assert_non_null(strstr(m.log.c_str(), "==== shard 1 of 2 (runner r1) ====\nlog a\n"));
    assert_non_null(strstr(m.log.c_str(), "==== shard 2 of 2 (runner r2) ====\nlog b\n"));
    assert_int_equal(worse_outcome(KILN_FAILED, KILN_ERROR), KILN_ERROR);
    assert_int_equal(worse_outcome(KILN_TIMEOUT, KILN_FAILED), KILN_TIMEOUT);
    assert_int_equal(worse_outcome(KILN_PASSED, KILN_SKIPPED), KILN_PASSED);
}

JobSpec sharded(char fill, uint32_t shards)
{
    JobSpec s;
    s.repo = "r";
    s.url = "/srv/r";
    s.branch = "main";
    s.commit = std::string(40, fill);
    s.shards = shards;
    return s;
}

Result shard_result(const Job &job, kiln_outcome outcome)
{
    Result r;
    r.job_id = job.id;
    r.attempt = job.attempt;
    r.commit = job.spec.commit;
    r.outcome = outcome;
    for (const auto &t : job.tests)
        r.tests.push_back({t, outcome, 5, ""});
    return r;
}

void test_split_run_retry_a_lost_shard_and_merge(void **)
{
    JobTable t;
    uint64_t id = t.add(sharded('a', 0), 1).first->id;
    assert_true(t.find(id)->listing());
    t.assign(id, "lister", 2);
    TestList list;
    list.job_id = id;
    list.attempt = 1;
    list.commit = std::string(40, 'a');
    list.tests = names(6);
    auto plan = plan_shards(list.tests, {}, 3);
    std::vector<uint64_t> children;
    assert_int_equal(t.split(list, "lister", plan, 3, children), JobTable::Verdict::recorded);
    assert_int_equal(children.size(), 3);
    assert_int_equal(t.find(id)->state, JobState::split);
    // The same list again is a duplicate and changes nothing.
    std::vector<uint64_t> again;
    assert_int_equal(t.split(list, "lister", plan, 4, again), JobTable::Verdict::duplicate);
    assert_int_equal(head(t), children[0]);
    t.assign(children[0], "r1", 5);
    t.assign(children[1], "r2", 5);
    t.assign(children[2], "r3", 5);
    // r2 is lost: only its shard goes back, and runs again elsewhere.
    assert_true(t.release_runner("r2", 3, 6).ended.empty());
    assert_int_equal(t.find(children[1])->state, JobState::queued);
    assert_int_equal(t.find(children[0])->state, JobState::assigned);
    t.assign(children[1], "r4", 7);
    assert_int_equal(t.find(children[1])->attempt, 2);
    assert_int_equal(t.record(shard_result(*t.find(children[0]), KILN_PASSED), "r1", 8),
                     JobTable::Verdict::recorded);
    assert_false(t.finish_if_complete(id, 8));
    assert_int_equal(t.record(shard_result(*t.find(children[2]), KILN_FAILED), "r3", 9),
                     JobTable::Verdict::recorded);
    assert_int_equal(t.record(shard_result(*t.find(children[1]), KILN_PASSED), "r4", 10),
                     JobTable::Verdict::recorded);
    assert_true(t.finish_if_complete(id, 10));
    const Job *parent = t.find(id);
    assert_int_equal(parent->state, JobState::done);
    assert_int_equal(parent->result.outcome, KILN_FAILED);
    std::multiset<std::string> seen;
    for (const auto &test : parent->result.tests)
        seen.insert(test.name);
    assert_int_equal(seen.size(), 6);
    assert_int_equal(std::set<std::string>(seen.begin(), seen.end()).size(), 6);
    assert_string_equal(parent->runner.c_str(), "r1,r4,r3");
    // Only the commit's job counts and is found by commit.
    assert_int_equal(t.count(JobState::done), 1);
    assert_int_equal(t.find_commit(std::string(40, 'a'))->id, id);
}

void test_too_few_tests_run_unsplit(void **)
{
    JobTable t;
    uint64_t id = t.add(sharded('b', 4), 1).first->id;
    t.assign(id, "lister", 2);
    TestList list;
    list.job_id = id;
    list.attempt = 1;
    list.commit = std::string(40, 'b');
    list.error = "plugin script cannot list tests";
    std::vector<uint64_t> children;
    assert_int_equal(t.split(list, "lister", {}, 3, children), JobTable::Verdict::recorded);
    assert_true(children.empty());
    const Job *job = t.find(id);
    assert_int_equal(job->state, JobState::queued);
    assert_false(job->listing()); // next time it runs, whole
    // A list from a runner that does not hold the job is stale.
    t.assign(id, "other", 4);
    assert_int_equal(t.split(list, "lister", {}, 5, children), JobTable::Verdict::stale);
}

void test_cancel_queued_running_and_split(void **)
{
    JobTable t;
    uint64_t queued = t.add(sharded('c', 1), 1).first->id;
    uint64_t running = t.add(sharded('d', 1), 2).first->id;
    t.assign(running, "r1", 3);
    // Queued: cancelled at once.
    assert_true(t.cancel(queued, "superseded by x", 4));
    assert_int_equal(t.find(queued)->state, JobState::done);
    assert_int_equal(t.find(queued)->result.outcome, KILN_CANCELLED);
    assert_string_equal(t.find(queued)->result.error.c_str(), "superseded by x");
    // Running: marked; its runner's "cancelled" result is recorded as usual...
    assert_false(t.cancel(running, "superseded by x", 5));
    assert_int_equal(t.find(running)->state, JobState::assigned);
    // ...or, if the runner is lost meanwhile, it ends cancelled instead of requeued.
    assert_int_equal(t.release_runner("r1", 3, 6).ended.size(), 1);
    assert_int_equal(t.find(running)->result.outcome, KILN_CANCELLED);
    assert_false(t.cancel(running, "again", 7)); // done: nothing to do
    // Split: queued shards end now, running ones are marked, then the commit merges.
    uint64_t split = t.add(sharded('e', 2), 8).first->id;
    t.assign(split, "lister", 9);
    TestList list;
    list.job_id = split;
    list.attempt = 1;
    list.commit = std::string(40, 'e');
    list.tests = names(4);
    std::vector<uint64_t> children;
    t.split(list, "lister", plan_shards(list.tests, {}, 2), 10, children);
    t.assign(children[0], "r2", 11);
    assert_false(t.cancel(split, "superseded", 12));
    assert_int_equal(t.find(children[1])->state, JobState::done);
    assert_true(t.find(children[0])->cancel_requested);
    Result r = shard_result(*t.find(children[0]), KILN_CANCELLED);
    assert_int_equal(t.record(r, "r2", 13), JobTable::Verdict::recorded);
    assert_true(t.finish_if_complete(split, 13));
    assert_int_equal(t.find(split)->result.outcome, KILN_CANCELLED);
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_balances_known_durations),
        cmocka_unit_test(test_plan_every_test_once_and_deterministic),
        cmocka_unit_test(test_merge_keeps_every_test_once),
        cmocka_unit_test(test_split_run_retry_a_lost_shard_and_merge),
        cmocka_unit_test(test_too_few_tests_run_unsplit),
        cmocka_unit_test(test_cancel_queued_running_and_split),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
