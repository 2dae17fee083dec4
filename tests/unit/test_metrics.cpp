// /metrics rendering: each family the issue asks for carries the values of
// the parts it is read from, label values are escaped, and the whole text
// parses with a real Prometheus parser (python3-prometheus-client).
// The Kiln headers first: cmocka.h defines a fail() macro.
#include "counters.hpp"
#include "http/metrics.hpp"
#include "job_spec_fixture.hpp"

#include "test.hpp"

using namespace kiln;

namespace {

bool has_line(const std::string &text, const std::string &line)
{
    return text.find("\n" + line + "\n") != std::string::npos ||
           text.compare(0, line.size() + 1, line + "\n") == 0;
}

// Two repositories: "a" with two queued (created at 1 s and 3 s), "b" with
// one finished (assigned at 10 s, failed at 25 s) and one held by runner r1.
struct Scene {
    JobTable jobs;
    RunnerRegistry runners;
    Counters counters;
    Scene()
    {
        jobs.add(spec("a", '1'), 1000);
        jobs.add(spec("a", '2'), 3000);
        uint64_t done = jobs.add(spec("b", '3'), 5000).first->id;
        jobs.assign(done, "r1", 10000);
        Result r;
        r.job_id = done;
        r.attempt = 1;
        r.commit = std::string(40, '3');
        r.outcome = KILN_FAILED;
        jobs.record(r, "r1", 25000);
        counters.job_finished(*jobs.find(done));
        uint64_t held = jobs.add(spec("b", '4'), 6000).first->id;
        jobs.assign(held, "r1", 11000);
        runners.add("r1", nullptr, {}, 9000).slots = 4;
        counters.runner_released(/*silent=*/true, 2);  // idled out: timeout
        counters.runner_released(/*silent=*/false, 1); // connection reset by peer
        counters.runner_lost(true); // silent: a missed heartbeat
        counters.runner_lost(false);
    }
    std::string render()
    {
        // Two receivers: files with one event waiting, 5 delivered and 2
        // failed attempts; a second forge table that refused one.
        ReceiverStatus files, forge;
        files.receiver = files.plugin = "files";
        files.pending = 1;
        files.delivered = 5;
        files.failed = 2;
        forge.receiver = "forge#2";
        forge.plugin = "forge";
        forge.refused = 1;
        return render_metrics(
            {jobs, runners, counters, {{"runner", 1}, {"ctl", 2}, {"", 3}}, {files, forge}}, 61000);
    }
};

void test_families_carry_the_parts_values(void **)
{
    Scene s;
    std::string text = s.render();
    assert_true(has_line(text, "kiln_jobs_queued{repo=\"a\"} 2"));
    assert_true(has_line(text, "kiln_jobs_queued{repo=\"b\"} 0") ||
                text.find("kiln_jobs_queued{repo=\"b\"}") == std::string::npos);
    assert_true(has_line(text, "kiln_oldest_queued_job_age_seconds{repo=\"a\"} 60"));
    assert_true(has_line(text, "kiln_runners_connected 1"));
    assert_true(has_line(text, "kiln_runner_slots{runner=\"r1\"} 4"));
    assert_true(has_line(text, "kiln_runner_slots_busy{runner=\"r1\"} 1"));
    assert_true(has_line(text, "kiln_jobs_finished_total{repo=\"b\",outcome=\"failed\"} 1"));
    // 15 s: not in the 10 s bucket, in the 30 s one and all above.
    assert_true(has_line(text, "kiln_job_duration_seconds_bucket{repo=\"b\",le=\"10\"} 0"));
    assert_true(has_line(text, "kiln_job_duration_seconds_bucket{repo=\"b\",le=\"30\"} 1"));
    assert_true(has_line(text, "kiln_job_duration_seconds_bucket{repo=\"b\",le=\"+Inf\"} 1"));
    assert_true(has_line(text, "kiln_job_duration_seconds_sum{repo=\"b\"} 15"));
    assert_true(has_line(text, "kiln_job_reruns_total{reason=\"timeout\"} 2"));
    assert_true(has_line(text, "kiln_job_reruns_total{reason=\"runner_lost\"} 1"));
    assert_true(has_line(text, "kiln_job_reruns_total{reason=\"retry\"} 0"));
    assert_true(has_line(text, "kiln_heartbeats_missed_total 1"));
    assert_true(has_line(text, "kiln_connections{role=\"observer\"} 0"));
    assert_true(has_line(text, "kiln_connections{role=\"ctl\"} 2"));
    assert_true(has_line(text, "kiln_connections{role=\"handshake\"} 3"));
    assert_true(has_line(text, "kiln_report_backlog{receiver=\"files\"} 1"));
    assert_true(has_line(text, "kiln_report_backlog{receiver=\"forge#2\"} 0"));
    assert_true(
        has_line(text, "kiln_report_deliveries_total{receiver=\"files\",result=\"delivered\"} 5"));
    assert_true(
        has_line(text, "kiln_report_deliveries_total{receiver=\"files\",result=\"failed\"} 2"));
    assert_true(has_line(
        text, "kiln_report_deliveries_total{receiver=\"forge#2\",result=\"rejected\"} 1"));
}

void test_label_values_are_escaped(void **)
{
    Scene s;
    s.jobs.add(spec("we\"ird\\repo\nname", '5'), 2000);
    std::string text = s.render();
    assert_non_null(std::strstr(text.c_str(), "kiln_jobs_queued{repo=\"we\\\"ird\\\\repo\\nname\"} 1"));
}

// The real parser reads every family back with the values written.
void test_a_real_parser_reads_it(void **)
{
    Scene s;
    s.jobs.add(spec("quote\"d", '6'), 2000);
    TempDir dir;
    assert_false(dir.path().empty());
    std::ofstream(dir / "metrics.txt") << s.render();
    const char *check = R"(
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
want = ['kiln_jobs_queued', 'kiln_oldest_queued_job_age_seconds', 'kiln_runners_connected',
        'kiln_runner_slots', 'kiln_runner_slots_busy', 'kiln_jobs_finished', 'kiln_job_duration_seconds',
        'kiln_job_reruns', 'kiln_heartbeats_missed', 'kiln_connections', 'kiln_report_backlog',
        'kiln_report_deliveries']
missing = [w for w in want if w not in fams]
assert not missing, missing
assert fams['kiln_job_duration_seconds'].type == 'histogram'
q = {s.labels['repo']: s.value for s in fams['kiln_jobs_queued'].samples}
assert q['quote"d'] == 1 and q['a'] == 2, q
print('ok')
)";
    // Debian's interpreter: python3-prometheus-client is installed for it
    // (a python3 earlier in PATH, e.g. pyenv's, would not see the package).
    assert_string_equal(S(run({"/usr/bin/python3", "-c", check, dir / "metrics.txt"})), "ok");
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families_carry_the_parts_values),
        cmocka_unit_test(test_label_values_are_escaped),
        cmocka_unit_test(test_a_real_parser_reads_it),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
