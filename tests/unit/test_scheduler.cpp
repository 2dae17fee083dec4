// Scheduling: repositories take turns, labels decide who may take a job,
// the least busy matching runner gets it, a full or draining runner none.
#include <map>
#include <string>
#include <vector>

#include "scheduler.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

JobSpec spec(const std::string &repo, int n, std::vector<std::string> labels = {})
{
    JobSpec s;
    s.repo = repo;
    s.url = "/srv/" + repo;
    s.branch = "main";
    std::string hex = std::to_string(1000000 + n);
    s.commit = std::string(40 - hex.size(), 'a') + hex;
    s.labels = std::move(labels);
    return s;
}

// Run the scheduler to exhaustion like the dispatcher does; returns
// job id → runner name.
std::map<uint64_t, std::string> drain(JobTable &t, Scheduler &s, std::vector<Scheduler::Runner> &r)
{
    std::map<uint64_t, std::string> out;
    while (auto pick = s.next(t, r)) {
        t.assign(pick->job_id, r[pick->runner].name, 0);
        r[pick->runner].busy++;
        out[pick->job_id] = r[pick->runner].name;
    }
    return out;
}

const std::vector<std::string> kNone;

void test_busy_repository_does_not_starve_another(void **)
{
    JobTable t;
    std::vector<uint64_t> busy, quiet;
    for (int i = 0; i < 10; i++)
        busy.push_back(t.add(spec("busy", i), i).first->id);
    for (int i = 0; i < 2; i++)
        quiet.push_back(t.add(spec("quiet", 100 + i), 100 + i).first->id);
    Scheduler s;
    // Four slots for twelve jobs: the quiet repository's two must be among the
    // first four, though all of busy's came first.
    std::vector<Scheduler::Runner> r = {{"r1", 2, 0, &kNone}, {"r2", 2, 0, &kNone}};
    auto got = drain(t, s, r);
    assert_int_equal(got.size(), 4);
    assert_true(got.count(quiet[0]) && got.count(quiet[1]));
    assert_true(got.count(busy[0]) && got.count(busy[1])); // oldest of busy first
}

void test_oldest_first_within_a_repository(void **)
{
    JobTable t;
    uint64_t a = t.add(spec("r", 1), 1).first->id;
    t.add(spec("r", 2), 2);
    Scheduler s;
    std::vector<Scheduler::Runner> r = {{"r1", 1, 0, &kNone}};
    auto pick = s.next(t, r);
    assert_true(pick.has_value());
    assert_int_equal(pick->job_id, a);
}

void test_labels_decide_the_runner(void **)
{
    JobTable t;
    uint64_t gpu = t.add(spec("r", 1, {"gpu"}), 1).first->id;
    uint64_t any = t.add(spec("r", 2), 2).first->id;
    uint64_t arm = t.add(spec("r", 3, {"arm", "big"}), 3).first->id;
    std::vector<std::string> gpu_labels = {"linux", "gpu"}, arm_labels = {"arm"};
    Scheduler s;
    std::vector<Scheduler::Runner> r = {{"plain", 1, 0, &kNone},
                                        {"gpu-box", 1, 0, &gpu_labels},
                                        {"arm-box", 1, 0, &arm_labels}};
    auto got = drain(t, s, r);
    assert_string_equal(got[gpu].c_str(), "gpu-box");
    assert_true(got.count(any));
    // Nobody has both "arm" and "big": it waits, and does not block the others.
    assert_false(got.count(arm));
    assert_int_equal(t.find(arm)->state, JobState::queued);
    assert_true(labels_match({}, kNone));
    assert_false(labels_match({"x"}, kNone));
}

void test_least_busy_runner_and_full_or_draining_ones(void **)
{
    JobTable t;
    for (int i = 0; i < 3; i++)
        t.add(spec("r", i), i);
    Scheduler s;
    std::vector<Scheduler::Runner> r = {{"big", 4, 3, &kNone},     // 1 of 4 free
                                        {"small", 1, 0, &kNone},   // idle
                                        {"full", 2, 2, &kNone},    // no room
                                        {"draining", 0, 0, &kNone}};
    auto first = s.next(t, r);
    assert_true(first.has_value());
    assert_string_equal(r[first->runner].name.c_str(), "small");
    auto got = drain(t, s, r);
    for (const auto &[id, name] : got)
        assert_true(name == "small" || name == "big");
    assert_int_equal(got.size(), 2); // one slot each was left
}

void test_nothing_to_do(void **)
{
    JobTable t;
    Scheduler s;
    std::vector<Scheduler::Runner> r = {{"r1", 1, 0, &kNone}};
    assert_false(s.next(t, r).has_value());
    t.add(spec("r", 1), 1);
    std::vector<Scheduler::Runner> none;
    assert_false(s.next(t, none).has_value());
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test(test_busy_repository_does_not_starve_another),
        cmocka_unit_test(test_oldest_first_within_a_repository),
        cmocka_unit_test(test_labels_decide_the_runner),
        cmocka_unit_test(test_least_busy_runner_and_full_or_draining_ones),
        cmocka_unit_test(test_nothing_to_do),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
