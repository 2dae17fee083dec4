// The junit report plugin, loaded by the real loader, its ops called as the
// dispatcher calls them.  Its XML is checked by real JUnit consumers:
// xmllint --schema against Jenkins' junit-10.xsd (tests/fixtures), and
// python3-junitparser reading counts, names, times and messages back, also
// for hostile test output (invalid UTF-8, control characters, "]]>",
// markup, U+FFFF, a 3 MiB message and log).
#include "report_plugin_fixture.hpp"

namespace {

const char kCommit[] = "0123456789abcdef0123456789abcdef01234567";
const std::string kSchema = std::string(KILN_TEST_FIXTURE_DIR) + "/junit-10.xsd";

std::string results(ReportPluginState *s) { return s->tmp / "results/junit"; }

void load_junit(ReportPluginState *s)
{
    s->plugin = load_report_plugin(s, "junit", "dir = \"" + results(s) + "/\"\n");
    if (!s->plugin)
        fail_msg("junit: %s", s->error.c_str());
}

// The file, well-formed and valid against the schema, then `checks` (python
// statements over xml, a junitparser.JUnitXml, and cases, name -> TestCase).
void check_xml(ReportPluginState *s, const std::string &checks)
{
    std::string path = results(s) + "/" + kCommit + ".xml";
    run({"xmllint", "--noout", path});
    run({"xmllint", "--noout", "--schema", kSchema, path});
    std::string script = s->tmp / "check.py";
    std::ofstream(script) << "import sys, junitparser\n"
                             "xml = junitparser.JUnitXml.fromfile(sys.argv[1])\n"
                             "suites = list(xml)\n"
                             "assert len(suites) == 1, suites\n"
                             "suite = suites[0]\n"
                             "cases = {(c.classname, c.name): c for c in suite}\n"
                          << checks << "\n";
    // junitparser is Debian's (python3-junitparser): the system python has it.
    run({std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3", script, path});
}

const kiln_test_result kTests[] = {
    {"test_mod.TestX.test_ok", KILN_PASSED, 12, nullptr},
    {"test_mod.TestX.test_sum", KILN_FAILED, 1300, "AssertionError: 1 != 2\nwhile adding"},
    {"pkg.test_io.TestY.test_disk", KILN_ERROR, 5, "OSError: disk on fire"},
    {"test_y (test_mod.TestZ)", KILN_SKIPPED, 0, "not today"},
    {"test_hang.TestH.test_forever", KILN_TIMEOUT, 60000, nullptr},
    {"check-build.sh", KILN_PASSED, 40, nullptr},
};

void test_event_writes_valid_junit(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_junit(s);
    assert_true(wants(s, KILN_EVENT_FINISHED));
    assert_false(wants(s, KILN_EVENT_QUEUED) || wants(s, KILN_EVENT_STARTED) ||
                 wants(s, KILN_EVENT_FAILING));
    Result r(kCommit, KILN_FAILED, kTests, 6);
    r.ev.url = "http://127.0.0.1:8080/commit/0123456789ab";
    const char log[] = "running 6 tests\nok\n";
    r.rep.log = log;
    r.rep.log_len = sizeof log - 1;
    assert_int_equal(send_event(s, r.ev), 0);
    assert_int_equal(s->calls, 0); // never from inside the start call
    wait_callback(s);
    assert_int_equal(s->status, 0);
    check_xml(s, R"PY(
from junitparser import Failure, Error, Skipped
assert (suite.name, suite.tests, suite.failures, suite.errors, suite.skipped) == ("example", 6, 1, 2, 1), suite
assert suite.time == 41.5 and suite.hostname == "runner-1", (suite.time, suite.hostname)
assert suite.timestamp == "2023-11-14T22:13:20", suite.timestamp
props = {p.name: p.value for p in suite.properties()}
assert props["kiln.commit"] == "0123456789abcdef0123456789abcdef01234567", props
assert (props["kiln.branch"], props["kiln.outcome"], props["kiln.url"]) == ("main", "failed", "http://127.0.0.1:8080/commit/0123456789ab"), props
assert sorted(cases) == sorted([("test_mod.TestX", "test_ok"), ("test_mod.TestX", "test_sum"),
    ("pkg.test_io.TestY", "test_disk"), ("test_mod.TestZ", "test_y"),
    ("test_hang.TestH", "test_forever"), ("example", "check-build.sh")]), sorted(cases)
ok = cases[("test_mod.TestX", "test_ok")]
assert ok.is_passed and ok.time == 0.012, (ok.result, ok.time)
(f,) = cases[("test_mod.TestX", "test_sum")].result
assert isinstance(f, Failure) and f.message == "AssertionError: 1 != 2", f.message
assert f.text == "AssertionError: 1 != 2\nwhile adding" and f.type == "failed", f.text
assert cases[("test_mod.TestX", "test_sum")].time == 1.3
(e,) = cases[("pkg.test_io.TestY", "test_disk")].result
assert isinstance(e, Error) and e.message == "OSError: disk on fire", e.message
(t,) = cases[("test_hang.TestH", "test_forever")].result
assert isinstance(t, Error) and (t.type, t.message) == ("timeout", "timed out"), (t.type, t.message)
(k,) = cases[("test_mod.TestZ", "test_y")].result
assert isinstance(k, Skipped) and k.message == "not today", k.message
out = suite._elem.find("system-out").text  # junitparser 2.8 has no accessor
assert out == "running 6 tests\nok\n", out
)PY");
    // A newer attempt replaces the file; no temp file is left behind.
    Result again(kCommit, KILN_PASSED, kTests, 1);
    again.rep.attempt = 2;
    assert_int_equal(send_event(s, again.ev), 0);
    wait_callback(s);
    assert_int_equal(s->status, 0);
    check_xml(s, "assert (suite.tests, suite.failures) == (1, 0), suite\n"
                 "assert {p.name: p.value for p in suite.properties()}['kiln.attempt'] == '2'");
    auto files = std::filesystem::directory_iterator(results(s));
    assert_int_equal(std::distance(begin(files), end(files)), 1);
}

// Whatever the tests print, the document stays well-formed and valid.
void test_hostile_output(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_junit(s);
    std::string huge(3 << 20, 'x');
    huge.replace(0, 3, "]]>");
    // (A message is a C string; only the log can hold a NUL.)
    const std::string evil = "bad \xff\xfe utf8, \x01\x1b[31m ctl, ]]> <tag a=\"b\">&amp; 'q'\r\n"
                             "non-char \xef\xbf\xbf caf\xc3\xa9";
    const kiln_test_result tests[] = {
        {"test_evil.TestE.test_\x01<name>&\"\xff", KILN_FAILED, 1, evil.c_str()},
        {"test_evil.TestE.test_huge", KILN_ERROR, 2, huge.c_str()},
    };
    Result r(kCommit, KILN_FAILED, tests, 2);
    std::string log = evil + std::string("\0\n", 2) + huge;
    r.rep.log = log.data();
    r.rep.log_len = log.size();
    assert_int_equal(send_event(s, r.ev), 0);
    wait_callback(s);
    assert_int_equal(s->status, 0);
    check_xml(s, R"PY(
R = "\ufffd"
evil = ("bad " + R + R + " utf8, " + R + R + "[31m ctl, ]]> <tag a=\"b\">&amp; 'q'\r\n"
        "non-char " + R + " caf\u00e9")
name = ("test_evil.TestE", "test_" + R + "<name>&\"" + R)
assert name in cases, sorted(cases)
(f,) = cases[name].result
assert f.text == evil, repr(f.text)
assert f.message == evil.split("\n")[0], repr(f.message)
(e,) = cases[("test_evil.TestE", "test_huge")].result
assert 64 * 1024 <= len(e.text) < 65 * 1024 and e.text.startswith("]]>xxx"), len(e.text)
assert "more bytes left out" in e.text
out = suite._elem.find("system-out").text  # junitparser 2.8 has no accessor
assert out.startswith(evil + R + "\n]]>xxx") and out.endswith("xxx"), out[:200]
assert "bytes of the log left out" in out and 1024 * 1024 <= len(out) < 1024 * 1024 + 200, len(out)
)PY");
}

// From an older host (report()), and a job that ran no test: one testcase
// says why, or a JUnit reader would show the commit as green.
void test_report_op_and_job_error(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_junit(s);
    Result r(kCommit, KILN_ERROR, nullptr, 0);
    r.rep.error = "runner lost 3 times\nlast: runner-1 went silent";
    assert_int_equal(send_report(s, r.rep), 0);
    wait_callback(s);
    assert_int_equal(s->status, 0);
    check_xml(s, R"PY(
assert (suite.tests, suite.errors) == (1, 1), suite
(e,) = cases[("kiln.job", "run")].result
assert e.message == "runner lost 3 times" and e.text.endswith("went silent"), (e.message, e.text)
assert {p.name: p.value for p in suite.properties()}["kiln.error"] == "runner lost 3 times"
)PY");
}

// unittest's messages are tracebacks: the headline is the exception line
// after the last frame, not "Traceback (most recent call last):".
void test_traceback_headline(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_junit(s);
    const char chained[] = "Traceback (most recent call last):\n"
                           "  File \"t.py\", line 3, in test_a\n"
                           "    d[1]\n"
                           "KeyError: 1\n\n"
                           "During handling of the above exception, another exception occurred:\n\n"
                           "Traceback (most recent call last):\n"
                           "  File \"t.py\", line 5, in test_a\n"
                           "    self.assertEqual([1], [2])\n"
                           "    ~~~~~~~~~~~~~~~~^^^^^^^^^^\n"
                           "AssertionError: Lists differ: [1] != [2]\n\n"
                           "First differing element 0:\n1\n2\n";
    const kiln_test_result tests[] = {
        {"t.T.test_a", KILN_FAILED, 1, chained},
        {"t.T.test_b", KILN_ERROR, 1, "Traceback (most recent call last):\n  File \"t.py\""},
    };
    Result r(kCommit, KILN_FAILED, tests, 2);
    assert_int_equal(send_event(s, r.ev), 0);
    wait_callback(s);
    assert_int_equal(s->status, 0);
    check_xml(s, R"PY(
(f,) = cases[("t.T", "test_a")].result
assert f.message == "AssertionError: Lists differ: [1] != [2]", f.message
assert f.text.startswith("Traceback") and f.text.endswith("2\n"), f.text
(e,) = cases[("t.T", "test_b")].result
assert e.message == "Traceback (most recent call last):", e.message  # no exception line
)PY");
}

void test_bad_commit_rejected(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_junit(s);
    Result r("../../etc/passwd", KILN_FAILED, kTests, 6);
    assert_int_equal(send_event(s, r.ev), 0);
    wait_callback(s);
    assert_int_equal(s->status, -EINVAL);
    assert_int_equal(s->rejected, 1);
    assert_int_equal(send_report(s, r.rep), -EINVAL);
    assert_false(std::filesystem::exists(results(s)));
}

void test_unwritable_dir_is_temporary(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    s->plugin = load_report_plugin(s, "junit", "dir = \"/proc/kiln-no-such-dir\"\n");
    assert_non_null(s->plugin.get());
    Result r(kCommit, KILN_FAILED, kTests, 6);
    assert_int_equal(send_event(s, r.ev), 0);
    wait_callback(s);
    assert_true(s->status < 0);
    assert_int_equal(s->rejected, 0);
    assert_true(s->error.find("mkdir /proc/kiln-no-such-dir: ") == 0);
}

void test_cancel(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_junit(s);
    Result r(kCommit, KILN_FAILED, kTests, 6);
    void *op = nullptr;
    assert_int_equal(send_event(s, r.ev, &op), 0);
    s->plugin->cancel(op);
    assert_int_equal(s->calls, 0);
    wait_callback(s);
    assert_int_equal(s->status, -ECANCELED);
}

void test_config_refused(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    assert_null(load_report_plugin(s, "junit", "plugin = \"junit\"\n").get()); // dir: required
    assert_null(load_report_plugin(s, "junit", "dir = \"\"\n").get());
    assert_null(load_report_plugin(s, "junit", "dir = \"/tmp\"\ncolour = \"red\"\n").get());
    assert_true(s->error.find("colour") != std::string::npos);
}

} // namespace

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_event_writes_valid_junit, report_plugin_setup,
                                        report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_output, report_plugin_setup,
                                        report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_report_op_and_job_error, report_plugin_setup,
                                        report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_traceback_headline, report_plugin_setup,
                                        report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_bad_commit_rejected, report_plugin_setup,
                                        report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_dir_is_temporary, report_plugin_setup,
                                        report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_cancel, report_plugin_setup, report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_config_refused, report_plugin_setup,
                                        report_plugin_teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
