// The email report plugin, loaded by the real loader, its ops called as the
// dispatcher calls them, mailing through tests/fixtures/fake_sendmail.py (a
// sendmail -t -oi stand-in that records each message).  Python's email
// package reads every message back: recipients, headers, subject, body.
// cmocka's fail() macro breaks <ios>: test.hpp includes the streams first.
#include "report_plugin_fixture.hpp"

#include <signal.h>

#include <cstdlib>

namespace {

const char kCommit[] = "0123456789abcdef0123456789abcdef01234567";
const char kCommit2[] = "89abcdef0123456789abcdef0123456789abcdef";
const std::string kSendmail = std::string(KILN_TEST_FIXTURE_DIR) + "/fake_sendmail.py";

const kiln_test_result kTests[] = {
    {"test_mod.TestX.test_ok", KILN_PASSED, 12, nullptr},
    {"test_mod.TestX.test_sum", KILN_FAILED, 300, "AssertionError: 1 != 2\nwhile adding"},
    {"test_mod.TestY.test_io", KILN_ERROR, 5, "OSError: disk on fire"},
};

std::string mail_dir(ReportPluginState *s) { return s->tmp / "mail"; }

// The plugin, mailing through the fixture with `extra` keys.
void load_email(ReportPluginState *s, const std::string &extra = "")
{
    s->plugin = load_report_plugin(
        s, "email",
        "sendmail = \"" + kSendmail + "\"\nto = [\"dev@example.org\", \"ops@example.org\"]\n"
        "from = \"ci@example.org\"\ntimeout = \"20s\"\n" + extra);
    if (!s->plugin)
        fail_msg("email: %s", s->error.c_str());
}

int setup(void **state)
{
    report_plugin_setup(state);
    auto *s = static_cast<ReportPluginState *>(*state);
    std::filesystem::create_directory(mail_dir(s));
    setenv("FAKE_SENDMAIL_DIR", mail_dir(s).c_str(), 1);
    unsetenv("FAKE_SENDMAIL_EXIT");
    unsetenv("FAKE_SENDMAIL_HANG");
    signal(SIGPIPE, SIG_IGN); // as the daemons do: a sendmail that quit is an error code
    return 0;
}

size_t mails(ReportPluginState *s)
{
    size_t n = 0;
    for (const auto &e : std::filesystem::directory_iterator(mail_dir(s)))
        n += e.path().extension() == ".eml";
    return n;
}

// Deliver `ev` and expect success; returns how many mails it sent.
size_t deliver(ReportPluginState *s, const kiln_report_event &ev)
{
    size_t before = mails(s);
    assert_int_equal(send_event(s, ev), 0);
    assert_int_equal(s->calls, 0); // never from inside the start call
    wait_callback(s);
    if (s->status != 0)
        fail_msg("delivery failed: %d %s", s->status, s->error.c_str());
    return mails(s) - before;
}

// Mail N read back by python3's email package, checked by `checks` (python
// statements over msg, raw, body, subject, meta).
void check_mail(ReportPluginState *s, int n, const std::string &checks)
{
    std::string script = s->tmp / "check.py";
    std::ofstream(script) << "import email, email.policy, email.utils, json, sys\n"
                             "raw = open(sys.argv[1], 'rb').read()\n"
                             "msg = email.message_from_bytes(raw, policy=email.policy.default)\n"
                             "meta = json.load(open(sys.argv[2]))\n"
                             "body = msg.get_content()\n"
                             "subject = str(msg['Subject'])\n"
                          << checks << "\n";
    std::string base = mail_dir(s) + "/" + std::to_string(n);
    run({"python3", script, base + ".eml", base + ".json"});
}

void test_broken_branch_mail(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_email(s);
    assert_true(wants(s, KILN_EVENT_FINISHED));
    assert_false(wants(s, KILN_EVENT_QUEUED) || wants(s, KILN_EVENT_STARTED) ||
                 wants(s, KILN_EVENT_FAILING));
    Result r(kCommit, KILN_FAILED, kTests, 3);
    r.ev.previous_outcome = KILN_PASSED;
    r.ev.url = "http://127.0.0.1:8080/commit/0123456789ab";
    assert_int_equal(deliver(s, r.ev), 1);
    check_mail(s, 0, R"PY(
assert meta == {"args": ["-t", "-oi"], "recipients": ["dev@example.org", "ops@example.org"]}, meta
assert subject == "[kiln] example main broken by 01234567: 1 failed, 1 error", subject
assert msg["From"] == "ci@example.org"
assert email.utils.parsedate_to_datetime(msg["Date"]).utcoffset().total_seconds() == 0
assert msg["Message-ID"].startswith("<kiln.0123456789abcdef.42.1@"), msg["Message-ID"]
assert msg["MIME-Version"] == "1.0" and msg["Auto-Submitted"] == "auto-generated"
assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
assert msg["Content-Transfer-Encoding"] == "quoted-printable"
assert msg["X-Kiln-Commit"] == "0123456789abcdef0123456789abcdef01234567", msg["X-Kiln-Commit"]
assert (msg["X-Kiln-Repository"], msg["X-Kiln-Branch"], msg["X-Kiln-Outcome"]) == ("example", "main", "failed")
for text in ("Commit:     0123456789abcdef0123456789abcdef01234567",
             "Outcome:    failed (before: passed)",
             "Tests:      1 passed, 1 failed, 1 error",
             "Duration:   41.5 s", "Runner:     runner-1",
             "Details:    http://127.0.0.1:8080/commit/0123456789ab",
             "Failing tests (2):",
             "  test_mod.TestX.test_sum: failed in 0.3 s\n      AssertionError: 1 != 2\n      while adding\n",
             "  test_mod.TestY.test_io: error in 0.0 s\n      OSError: disk on fire\n"):
    assert text in body, (text, body)
assert "test_ok" not in body, body
sys.stderr.write(raw.decode())
assert b"\r" not in raw and max(len(l) for l in raw.split(b"\n")) <= 78, raw
)PY");
}

// Mode "change" (the default): mail when the branch broke or was fixed,
// silence while it stays as it was.
void test_change_mode(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_email(s);
    struct {
        int previous, outcome;
        size_t mails;
        const char *subject;
    } cases[] = {
        {KILN_PASSED, KILN_FAILED, 1, "broken by"},
        {KILN_OUTCOME_NONE, KILN_FAILED, 1, "broken by"},
        {KILN_PASSED, KILN_ERROR, 1, "broken by"},
        {KILN_FAILED, KILN_PASSED, 1, "fixed by"},
        {KILN_ERROR, KILN_PASSED, 1, "fixed by"},
        {KILN_FAILED, KILN_FAILED, 0, nullptr},  // still failing
        {KILN_PASSED, KILN_PASSED, 0, nullptr},  // still passing
        {KILN_OUTCOME_NONE, KILN_PASSED, 0, nullptr},
        {KILN_PASSED, KILN_CANCELLED, 0, nullptr},
    };
    for (const auto &c : cases) {
        Result r(kCommit, c.outcome, kTests, c.outcome == KILN_PASSED ? 1 : 3);
        r.ev.previous_outcome = c.previous;
        size_t before = mails(s);
        assert_int_equal(deliver(s, r.ev), c.mails);
        if (c.subject)
            check_mail(s, int(before), "assert '" + std::string(c.subject) + "' in subject, subject");
    }
    check_mail(s, 3, "assert subject == '[kiln] example main fixed by 01234567: 1 passed', subject\n"
                     "assert 'Outcome:    passed (before: failed)' in body and 'Failing' not in body");
}

void test_failing_and_all_modes(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_email(s, "mode = \"failing\"\n");
    Result failed(kCommit, KILN_FAILED, kTests, 3), passed(kCommit2, KILN_PASSED, kTests, 1);
    failed.ev.previous_outcome = KILN_FAILED;
    passed.ev.previous_outcome = KILN_PASSED;
    assert_int_equal(deliver(s, failed.ev), 1);
    check_mail(s, 0, "assert 'still failing at 01234567' in subject, subject");
    assert_int_equal(deliver(s, passed.ev), 0);

    load_email(s, "mode = \"all\"\n");
    assert_int_equal(deliver(s, passed.ev), 1);
    check_mail(s, 1, "assert subject == '[kiln] example main passed at 89abcdef: 1 passed', subject");
    assert_int_equal(deliver(s, failed.ev), 1);
}

// Data with line breaks never makes a header of its own; text that is not
// ASCII travels as RFC 2047 encoded words and reads back the same.
void test_header_injection_neutralised(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_email(s);
    const kiln_test_result hostile[] = {
        {"test_a\nBcc: name@evil.example", KILN_FAILED, 1, "boom\r\nBcc: x@evil.example\x1b[31m\xff"},
    };
    Result r(kCommit, KILN_FAILED, hostile, 1);
    r.rep.repo = "r\r\nBcc: victim@evil.example";
    r.rep.branch = "caf\xc3\xa9\nX-Evil: 1 \xe2\x9c\x93 \xff";
    assert_int_equal(deliver(s, r.ev), 1);
    check_mail(s, 0, R"PY(
assert meta["recipients"] == ["dev@example.org", "ops@example.org"], meta
assert msg["Bcc"] is None and msg["X-Evil"] is None, msg.keys()
head = raw.split(b"\n\n", 1)[0]
assert not any(l.startswith((b"Bcc", b"X-Evil")) for l in head.split(b"\n")), head
assert all(l[:1] in b" \t" or b":" in l for l in head.split(b"\n")), head
assert subject.startswith("[kiln] r  Bcc: victim@evil.example caf\u00e9 X-Evil: 1 \u2713 \ufffd broken by"), subject
assert str(msg["X-Kiln-Branch"]) == "caf\u00e9 X-Evil: 1 \u2713 \ufffd", msg["X-Kiln-Branch"]
assert "  test_a Bcc: name@evil.example: failed" in body, body
sys.stderr.write(raw.decode())
assert "boom\n      Bcc: x@evil.example\ufffd[31m\ufffd" in body, body
)PY");
}

// A sendmail that refuses: a temporary failure (the host retries) with the
// first line of its stderr.
void test_sendmail_failure_is_temporary(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_email(s);
    setenv("FAKE_SENDMAIL_EXIT", "75", 1);
    Result r(kCommit, KILN_FAILED, kTests, 3);
    assert_int_equal(send_event(s, r.ev), 0);
    wait_callback(s);
    assert_true(s->status < 0);
    assert_int_equal(s->rejected, 0);
    assert_string_equal(S(s->error), S(kSendmail + " exited with status 75: fake sendmail: queue full"));
    assert_int_equal(mails(s), 0);
}

void test_sendmail_missing(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    s->plugin = load_report_plugin(s, "email", "sendmail = \"/nonexistent/sendmail\"\n"
                                               "to = \"dev@example.org\"\n");
    assert_non_null(s->plugin.get());
    Result r(kCommit, KILN_FAILED, kTests, 3);
    assert_int_equal(send_event(s, r.ev), 0);
    wait_callback(s);
    assert_int_equal(s->status, -ENOENT);
    assert_int_equal(s->rejected, 0);
    assert_true(s->error.find("cannot run /nonexistent/sendmail: no such file or directory") == 0);
}

bool gone(pid_t pid)
{
    if (kill(pid, 0) != 0)
        return true;
    std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    size_t paren = stat.rfind(')');
    return paren != std::string::npos && stat.compare(paren + 2, 1, "Z") == 0; // unreaped
}

// A sendmail that hangs is killed, with what it started, at the timeout.
void test_timeout_kills_the_group(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    s->plugin = load_report_plugin(s, "email", "sendmail = \"" + kSendmail +
                                                   "\"\nto = \"dev@example.org\"\ntimeout = \"1500ms\"\n");
    assert_non_null(s->plugin.get());
    setenv("FAKE_SENDMAIL_HANG", "1", 1);
    Result r(kCommit, KILN_FAILED, kTests, 3);
    uint64_t start = uv_hrtime();
    assert_int_equal(send_event(s, r.ev), 0);
    wait_callback(s, 10000);
    uint64_t took_ms = (uv_hrtime() - start) / 1000000;
    assert_int_equal(s->status, -ETIMEDOUT);
    assert_true(took_ms >= 1400 && took_ms < 5000);
    pid_t child = std::atoi(read_file(mail_dir(s) + "/child.pid").c_str());
    assert_true(child > 0);
    for (int i = 0; i < 100 && !gone(child); i++)
        usleep(20000);
    assert_true(gone(child));
}

void test_cancel(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_email(s);
    setenv("FAKE_SENDMAIL_HANG", "1", 1);
    Result r(kCommit, KILN_FAILED, kTests, 3);
    void *op = nullptr;
    assert_int_equal(send_event(s, r.ev, &op), 0);
    s->plugin->cancel(op);
    assert_int_equal(s->calls, 0);
    wait_callback(s, 10000);
    assert_int_equal(s->status, -ECANCELED);
}

// An older host calls report(): the plugin remembers each branch's last
// outcome itself, so "change" still mails only on a change.
void test_report_op_for_older_hosts(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_email(s);
    Result a(kCommit, KILN_FAILED, kTests, 3), b(kCommit2, KILN_FAILED, kTests, 3);
    Result c("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", KILN_PASSED, kTests, 1);
    const size_t expect[] = {1, 1, 0, 1}; // broke, the same result again, still failing, fixed
    const kiln_report *reps[] = {&a.rep, &a.rep, &b.rep, &c.rep};
    for (int i = 0; i < 4; i++) {
        size_t before = mails(s);
        assert_int_equal(send_report(s, *reps[i]), 0);
        wait_callback(s);
        assert_int_equal(s->status, 0);
        assert_int_equal(mails(s) - before, expect[i]);
    }
    check_mail(s, 2, "assert 'fixed by aaaaaaaa' in subject, subject");
}

void test_bad_commit_rejected(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    load_email(s);
    Result r("../../etc/passwd", KILN_FAILED, kTests, 3);
    assert_int_equal(send_event(s, r.ev), 0);
    wait_callback(s);
    assert_int_equal(s->status, -EINVAL);
    assert_int_equal(s->rejected, 1);
    assert_int_equal(mails(s), 0);
}

void test_config_refused(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    const char *bad[] = {
        "sendmail = \"/bin/true\"\n", // to: required
        "to = \"not-an-address\"\n",
        "to = \"dev@example.org, \"\n",
        "to = \"-oQ/tmp@example.org\"\n",
        "to = [\"dev@example.org\", 7]\n",
        "to = [\"dev@example.org, ops@example.org\", \"a@example.org\"]\n",
        "to = \"dev@example.org\"\nfrom = \"a@b\\nBcc: c@d\"\n",
        "to = \"dev@example.org\"\nmode = \"sometimes\"\n",
        "to = \"dev@example.org\"\ntimeout = \"0s\"\n",
        "to = \"dev@example.org\"\nauthor = true\n", // not supported: unknown
    };
    for (const char *config : bad)
        if (load_report_plugin(s, "email", config))
            fail_msg("accepted: %s", config);
    assert_non_null(load_report_plugin(s, "email", "to = \"a@example.org\"\n").get());
}

} // namespace

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_broken_branch_mail, setup, report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_change_mode, setup, report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_failing_and_all_modes, setup, report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_header_injection_neutralised, setup,
                                        report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_sendmail_failure_is_temporary, setup,
                                        report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_sendmail_missing, setup, report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_kills_the_group, setup, report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_report_op_for_older_hosts, setup,
                                        report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_bad_commit_rejected, setup, report_plugin_teardown),
        cmocka_unit_test_setup_teardown(test_config_refused, setup, report_plugin_teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
