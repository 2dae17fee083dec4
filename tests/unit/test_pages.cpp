// The web pages, rendered without a server: everything a peer sent is
// escaped, failing tests come first with their messages, long lists and
// logs are cut so a page stays under 50 KB, and `/` costs the same with
// 100,000 jobs of history as with ten.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>

#include "http/html.hpp"
#include "http/page_script.hpp"
#include "http/pages.hpp"

#include "test.hpp" // last: cmocka's fail() macro breaks net.hpp

using namespace kiln;

namespace {

constexpr int64_t kNow = 1'800'000'000'000;

// A distinct commit id per job, distinct in its first 10 digits too.
std::string commit_id(uint64_t n)
{
    char buf[48];
    std::snprintf(buf, sizeof buf, "%016" PRIx64 "%024" PRIx64, n * 0x9E3779B97F4A7C15u, n);
    return buf;
}

Job job(uint64_t id, const std::string &repo, const std::string &branch, JobState state,
        kiln_outcome outcome = KILN_PASSED)
{
    Job j;
    j.id = id;
    j.spec.repo = repo;
    j.spec.branch = branch;
    j.spec.commit = commit_id(id);
    j.state = state;
    j.attempt = state == JobState::queued ? 0 : 1;
    j.created_unix_ms = kNow - 60'000;
    if (state != JobState::queued) {
        j.runner = "r1";
        j.assigned_unix_ms = kNow - 30'000;
    }
    if (state == JobState::done) {
        j.finished_unix_ms = kNow - 1000;
        j.result.job_id = id;
        j.result.commit = j.spec.commit;
        j.result.outcome = outcome;
        j.result.started_unix_ms = kNow - 30'000;
        j.result.finished_unix_ms = kNow - 1000;
    }
    return j;
}

TestOutcome test_outcome(const std::string &name, kiln_outcome outcome, const std::string &message)
{
    TestOutcome t;
    t.name = name;
    t.outcome = outcome;
    t.duration_ms = 12;
    t.message = message;
    return t;
}

bool contains(const std::string &haystack, const std::string &needle)
{
    return haystack.find(needle) != std::string::npos;
}

size_t count_of(const std::string &haystack, const std::string &needle)
{
    size_t n = 0;
    for (size_t at = haystack.find(needle); at != std::string::npos;
         at = haystack.find(needle, at + needle.size()))
        ++n;
    return n;
}

void test_escape(void **)
{
    assert_string_equal(S(html::escape("<a href='x'>&\"\x1b[0m\tok\n")),
                        "&lt;a href=&#39;x&#39;&gt;&amp;&quot;\xEF\xBF\xBD[0m\tok\n");
}

void test_escape_capped_never_cuts_a_character_or_an_entity(void **)
{
    std::string out;
    assert_false(html::escape_capped(out, "short", 10));
    assert_string_equal(S(out), "short");

    out.clear(); // é is 2 bytes: 3 of budget after "…" leaves room for one
    assert_true(html::escape_capped(out, "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", 6));
    assert_string_equal(S(out), "\xC3\xA9\xE2\x80\xA6");

    out.clear(); // "&lt;" is 4 bytes: never "&l"
    assert_true(html::escape_capped(out, "<<<<", 10));
    assert_string_equal(S(out), "&lt;\xE2\x80\xA6");
}

void test_escape_tail_keeps_whole_last_lines(void **)
{
    std::string log;
    for (int i = 0; i < 1000; ++i)
        log += "line " + std::to_string(i) + " <\n";
    std::string out;
    size_t left_out = html::escape_tail(out, log, 200);
    assert_true(left_out > 0);
    assert_true(out.size() <= 200);
    assert_true(out.rfind("line 999 &lt;\n") == out.size() - 14);
    assert_true(out.rfind("line ", 0) == 0); // starts at a line
    assert_string_equal(S(out), S(html::escape(log.substr(left_out))));

    out.clear();
    assert_int_equal(html::escape_tail(out, "all of it", 200), 0);
    assert_string_equal(S(out), "all of it");
}

// A branch, a test name and message, a log and a runner label that try to
// end the markup they are in.
void test_peer_text_is_escaped_on_every_page(void **)
{
    JobTable jobs;
    RunnerRegistry runners;
    Job j = job(1, "repo", "x\"><script>alert(1)</script>", JobState::done, KILN_FAILED);
    j.result.tests = {test_outcome("<img src=x onerror=alert(2)>", KILN_FAILED,
                                   "</pre><script>alert(3)</script>")};
    j.result.log = "</pre><script>alert(4)</script>\n";
    j.result.error = "<script>alert(5)</script>";
    jobs.restore(j);
    RunnerSlotInfo &r1 = runners.add("r1", nullptr, {}, kNow);
    r1.labels = {"<script>alert(6)</script>"};
    r1.paused = "<script>alert(8)</script>"; // a runner's state is its own text
    PageSources src{jobs, runners};
    BranchIndex index;

    std::string home = render_home(src, index, kNow), commit, runner;
    assert_true(render_commit(src, commit_id(1), kNow, commit));
    assert_true(render_runner(src, "r1", kNow, runner));
    std::string not_found = render_not_found("<script>alert(7)</script>");
    for (const std::string *page : {&home, &commit, &runner, &not_found}) {
        assert_false(contains(*page, "<script>alert"));
        assert_false(contains(*page, "<img"));
    }
    assert_true(contains(home, "x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_true(contains(commit, "&lt;img src=x onerror=alert(2)&gt;"));
    assert_true(contains(commit, "&lt;/pre&gt;&lt;script&gt;alert(3)"));
    assert_true(contains(commit, "&lt;/pre&gt;&lt;script&gt;alert(4)"));
    assert_true(contains(commit, "&lt;script&gt;alert(5)"));
    assert_true(contains(home, "&lt;script&gt;alert(6)"));
    assert_true(contains(runner, "&lt;script&gt;alert(6)"));
    assert_true(contains(not_found, "&lt;script&gt;alert(7)"));
    assert_true(contains(home, "paused: &lt;script&gt;alert(8)"));
    assert_true(contains(runner, "paused: &lt;script&gt;alert(8)"));
}

void test_failing_tests_first_with_their_messages(void **)
{
    JobTable jobs;
    RunnerRegistry runners;
    Job j = job(1, "repo", "main", JobState::done, KILN_FAILED);
    j.result.tests = {
        test_outcome("test_a_passes", KILN_PASSED, "message of a"),
        test_outcome("test_b_fails", KILN_FAILED, "AssertionError: b"),
        test_outcome("test_c_skipped", KILN_SKIPPED, "message of c"),
        test_outcome("test_d_errors", KILN_ERROR, "Traceback: d"),
        test_outcome("test_e_times_out", KILN_TIMEOUT, "killed after 60 s"),
    };
    jobs.restore(j);
    PageSources src{jobs, runners};
    std::string page;
    assert_true(render_commit(src, commit_id(1).substr(0, 8), kNow, page));

    size_t b = page.find("test_b_fails"), d = page.find("test_d_errors"),
           e = page.find("test_e_times_out"), a = page.find("test_a_passes"),
           c = page.find("test_c_skipped");
    assert_true(b < d && d < e && e < a && a < c);
    assert_true(page.find("Failing tests (3)") < b);
    assert_true(page.find("Other tests (2)") < a);
    assert_true(b < page.find("AssertionError: b") && page.find("AssertionError: b") < d);
    assert_true(contains(page, "Traceback: d"));
    assert_true(contains(page, "killed after 60 s"));
    assert_false(contains(page, "message of a")); // passing tests: names only
    assert_false(contains(page, "message of c"));
}

// The worst a peer can send: every list long, every text long and made of
// characters whose entities are longest.
void test_pages_stay_under_50_kb(void **)
{
    JobTable jobs;
    RunnerRegistry runners;
    std::string long_branch(200, '"'); // a valid branch name
    uint64_t id = 1;
    Job big = job(id++, "repo", long_branch, JobState::done, KILN_FAILED);
    for (int i = 0; i < 20000; ++i)
        big.result.tests.push_back(test_outcome(std::string(300, '<') + std::to_string(i),
                                                i % 2 ? KILN_FAILED : KILN_PASSED,
                                                std::string(4096, '"')));
    for (int i = 0; i < 100000; ++i)
        big.result.log += std::string(50, '&') + "\n";
    for (uint64_t c = 0; c < 300; ++c)
        big.children.push_back(1000000 + c);
    jobs.restore(big);
    for (uint64_t c = 0; c < 300; ++c) {
        Job shard = job(1000000 + c, "repo", long_branch, JobState::done);
        shard.spec.commit = big.spec.commit;
        shard.parent = big.id;
        shard.shard = static_cast<uint32_t>(c);
        shard.shards = 300;
        shard.runner = std::string(64, 'r');
        jobs.restore(shard);
    }
    for (int b = 0; b < 2000; ++b) // branches, each done, queued and running
        for (JobState state : {JobState::done, JobState::queued, JobState::assigned}) {
            Job j = job(id++, std::string(64, 'R'), long_branch + std::to_string(b), state);
            j.runner = "r" + std::to_string(b % 300);
            jobs.restore(j);
        }
    for (int r = 0; r < 300; ++r)
        runners.add("r" + std::to_string(r), nullptr, {}, kNow).labels = {std::string(200, '<')};

    // 200 report receivers, each with a long error.
    std::vector<ReceiverStatus> receivers(200);
    for (size_t i = 0; i < receivers.size(); i++) {
        receivers[i].receiver = "webhook#" + std::to_string(i + 1);
        receivers[i].pending = i;
        receivers[i].last_error = std::string(1000, '<');
    }
    PageSources src{jobs, runners, {}, [&] { return receivers; }};
    BranchIndex index;
    std::string home = render_home(src, index, kNow), commit, runner;
    assert_true(contains(home, "<td>webhook#1</td><td>0</td>"));
    assert_true(contains(home, " more"));
    assert_true(render_commit(src, big.spec.commit, kNow, commit));
    assert_true(render_runner(src, "r0", kNow, runner));
    std::printf("page weights: / %zu bytes, /commit %zu bytes, /runner %zu bytes, script %zu "
                "bytes\n",
                home.size(), commit.size(), runner.size(), kPageScript.size());
    for (const std::string *page : {&home, &commit, &runner})
        assert_true(page->size() + kPageScript.size() < kMaxPageBytes);

    // Each cut list says how much it left out, from its true length.
    size_t from = home.find("id=\"branches\""), to = home.find("</section>", from);
    size_t branch_rows = count_of(home.substr(from, to - from), "<td>RRRR");
    // 2000 branches, and the big commit's own.
    assert_true(contains(home, "and " + std::to_string(2001 - branch_rows) + " more"));
    size_t failing_rows = count_of(commit, "<tr><td colspan=\"3\"><pre>");
    assert_true(failing_rows >= 5);
    assert_true(contains(commit, "and " + std::to_string(10000 - failing_rows) + " more"));
    assert_true(contains(commit, "Failing tests (10000)"));
    assert_true(contains(commit, "bytes are not shown"));
    assert_true(contains(commit, "&amp;&amp;\n</pre>")); // the log's end is shown
}

// `/` with 100,000 jobs of history: the first page indexes them once; later
// pages look only at new jobs.  The budget is 20 ms (this is a Debug build).
void test_home_with_100000_jobs_is_fast(void **)
{
    JobTable jobs;
    RunnerRegistry runners;
    uint64_t id = 1;
    for (; id <= 100000; ++id) {
        Job j = job(id, "repo" + std::to_string(id % 40), "b" + std::to_string(id % 7),
                    JobState::done, id % 3 ? KILN_PASSED : KILN_FAILED);
        j.result.tests = {test_outcome("t", KILN_PASSED, "")};
        jobs.restore(j);
    }
    for (int r = 0; r < 20; ++r)
        runners.add("r" + std::to_string(r), nullptr, {}, kNow).slots = 4;
    for (int k = 0; k < 60; ++k, ++id) {
        Job j = job(id, "repo" + std::to_string(k % 40), "b1", JobState::assigned);
        j.runner = "r" + std::to_string(k % 20);
        jobs.restore(j);
    }
    for (int k = 0; k < 500; ++k, ++id)
        jobs.restore(job(id, "repo" + std::to_string(k % 40), "b2", JobState::queued));

    PageSources src{jobs, runners};
    BranchIndex index;
    using Clock = std::chrono::steady_clock;
    auto ms_since = [](Clock::time_point t) {
        return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    };
    auto t0 = Clock::now();
    std::string page = render_home(src, index, kNow);
    double cold = ms_since(t0);
    std::vector<double> warm;
    std::string newest;
    for (int i = 0; i < 30; ++i, ++id) {
        // A new commit on one branch between pages: the next page shows it.
        jobs.restore(job(id, "repo0", "b0", JobState::done, KILN_FAILED));
        newest = commit_id(id);
        auto t = Clock::now();
        page = render_home(src, index, kNow);
        warm.push_back(ms_since(t));
    }
    std::sort(warm.begin(), warm.end());
    std::printf("/ with %zu jobs: first %.2f ms (indexes the history), then p50 %.2f ms, "
                "max %.2f ms, %zu bytes\n",
                jobs.jobs().size(), cold, warm[warm.size() / 2], warm.back(), page.size());
    // The other pages: a commit through the job table's commit index
    // (find_commit), a runner's last results from the newest job back;
    // measured, not bounded here.
    std::string other;
    auto t1 = Clock::now();
    assert_true(render_commit(src, commit_id(5000), kNow, other));
    double commit_ms = ms_since(t1);
    auto t2 = Clock::now();
    assert_true(render_runner(src, "r1", kNow, other));
    std::printf("/commit/<id> %.2f ms, /runner/<name> %.2f ms\n", commit_ms, ms_since(t2));
    assert_true(warm[warm.size() / 2] < 20.0);
    assert_true(contains(page, newest.substr(0, 10)));
    assert_true(contains(page, " more</td>")); // 280 branches: the list is cut
    assert_true(page.size() < kMaxPageBytes);
}

void test_latest_outcome_per_branch_and_the_one_before(void **)
{
    JobTable jobs;
    RunnerRegistry runners;
    jobs.restore(job(1, "repo", "main", JobState::done, KILN_PASSED));
    jobs.restore(job(2, "repo", "main", JobState::done, KILN_FAILED));
    jobs.restore(job(3, "repo", "main", JobState::assigned));
    jobs.restore(job(4, "repo", "dev", JobState::done, KILN_PASSED));
    PageSources src{jobs, runners};
    BranchIndex index;
    std::string page = render_home(src, index, kNow);
    // main: running commit 3, the finished one before it failed (2); 1 is not shown.
    size_t main_row = page.find("<td>main</td>");
    assert_true(main_row != std::string::npos);
    std::string row = page.substr(main_row, page.find("</tr>", main_row) - main_row);
    assert_true(contains(row, commit_id(3).substr(0, 10)));
    assert_true(contains(row, "state running"));
    assert_true(contains(row, "state failed"));
    assert_true(contains(row, commit_id(2).substr(0, 10)));
    assert_false(contains(page, commit_id(1).substr(0, 10)));
    assert_true(contains(page, "<td>dev</td>"));
}

void test_unknown_commit_and_runner_are_not_found(void **)
{
    JobTable jobs;
    RunnerRegistry runners;
    jobs.restore(job(1, "repo", "main", JobState::done));
    PageSources src{jobs, runners};
    std::string page = "untouched";
    assert_false(render_commit(src, commit_id(2), kNow, page));
    assert_false(render_commit(src, "000", kNow, page)); // shorter than 4
    assert_false(render_commit(src, "../../etc/passwd", kNow, page));
    assert_false(render_runner(src, "nobody", kNow, page));
    assert_string_equal(S(page), "untouched");
    // A runner that is gone but has results still has its page.
    assert_true(render_runner(src, "r1", kNow, page));
    assert_true(contains(page, "not connected"));
    assert_true(contains(page, commit_id(1).substr(0, 10)));
}

// A running commit's page names the live log stream the script follows and
// shows the live tail it has; a finished one shows its log and no stream.
void test_running_commit_follows_its_live_log(void **)
{
    JobTable jobs;
    RunnerRegistry runners;
    Job j = job(1, "repo", "main", JobState::assigned);
    jobs.restore(j);
    // The dispatcher holds the tail from offset 100 on.
    PageSources src{jobs, runners, [](uint64_t id) {
                        return id == 1 ? LiveLogView{100, "line 1\nline 2\n"} : LiveLogView{};
                    }};
    std::string page;
    assert_true(render_commit(src, j.spec.commit, kNow, page));
    assert_true(contains(page, "data-follow=\"/api/v1/commits/" + j.spec.commit +
                                   "/log?follow=1\""));
    assert_true(contains(page, "data-offset=\"114\""));
    assert_true(contains(page, "The first 100 of 114 bytes are not shown."));
    assert_true(contains(page, ">line 1\nline 2\n</pre>"));
    assert_true(contains(page, "Tests are listed once the job is done"));

    JobTable done_jobs;
    Job d = job(1, "repo", "main", JobState::done);
    d.result.log = "all done\n";
    done_jobs.restore(d);
    PageSources done_src{done_jobs, runners};
    assert_true(render_commit(done_src, d.spec.commit, kNow, page));
    assert_false(contains(page, "data-follow"));
    assert_true(contains(page, ">all done\n</pre>"));
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_escape_capped_never_cuts_a_character_or_an_entity),
        cmocka_unit_test(test_escape_tail_keeps_whole_last_lines),
        cmocka_unit_test(test_peer_text_is_escaped_on_every_page),
        cmocka_unit_test(test_failing_tests_first_with_their_messages),
        cmocka_unit_test(test_pages_stay_under_50_kb),
        cmocka_unit_test(test_home_with_100000_jobs_is_fast),
        cmocka_unit_test(test_latest_outcome_per_branch_and_the_one_before),
        cmocka_unit_test(test_unknown_commit_and_runner_are_not_found),
        cmocka_unit_test(test_running_commit_follows_its_live_log),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
