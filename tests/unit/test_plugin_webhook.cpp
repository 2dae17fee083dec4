// The webhook report plugin, loaded by the real loader, against the
// receiver fixture (tests/fixtures/http_receiver.py), which verifies
// X-Kiln-Signature-256 with the same secret (python's hmac) and checks the
// headers and the document's version.  Also: the document's fields for
// each event, `events` filtering (wants), a wrong secret refused (401 →
// rejected), report() for a host without events, a secret file others can
// read refused, and the secret never in the log.
#include "http_plugin_fixture.hpp"

namespace {

using namespace http_fixture;
using nlohmann::json;

const char kSecret[] = "kiln-webhook-secret-0123456789";

struct State : PluginTest {
    State() : PluginTest("kiln-test-webhook") {}
};

int setup(void **state)
{
    State *s = new State();
    *state = s;
    write_file(s->dir / "secret", std::string(kSecret) + "\n", 0600);
    write_file(s->dir / "receiver-secret", kSecret, 0600);
    return start_test(s, {"--secret-file", s->dir / "receiver-secret", "--hang-match", "/slow"});
}

int teardown(void **state) { return end_test(static_cast<State *>(*state), kSecret); }

std::string config(const State *s, const std::string &more = "", const std::string &path = "/hooks/kiln")
{
    return "plugin = \"webhook\"\nurl = \"" + s->receiver.base() + path + "\"\nsecret_file = \"" +
           (s->dir / "secret") + "\"\n" + more;
}

void load_ok(State *s, const std::string &cfg)
{
    s->plugin = load(&s->loop, "webhook", cfg, s->error);
    if (!s->plugin)
        fail_msg("load: %s", s->error.c_str());
}

const kiln_report_event_ops &events(State *s) { return *s->plugin->descriptor().events; }

Result deliver(State *s, Event &e)
{
    Result r;
    void *op = nullptr;
    assert_int_equal(events(s).event(s->plugin->self(), &e.ev, on_delivery, &r, &op), 0);
    assert_int_equal(r.calls, 0);
    assert_true(run_until(&s->loop, {&r}));
    return r;
}

void test_signed_documents(void **state)
{
    State *s = static_cast<State *>(*state);
    load_ok(s, config(s));
    Event queued(KILN_EVENT_QUEUED), finished(KILN_EVENT_FINISHED, KILN_FAILED);
    finished.ev.delivery_id = 9;
    assert_int_equal(deliver(s, queued).status, 0);
    Result r = deliver(s, finished);
    assert_int_equal(r.status, 0);
    assert_false(r.has_error);

    std::vector<json> got = s->receiver.requests();
    assert_int_equal(got.size(), 2);
    for (const json &q : got) {
        assert_int_equal(q["status"].get<int>(), 200);
        assert_true(q["signature_ok"].get<bool>()); // python's hmac agrees
        assert_true(q["problems"].empty());
        assert_string_equal(S(q["path"].get<std::string>()), "/hooks/kiln");
        assert_int_equal(q["headers"]["user-agent"].get<std::string>().rfind("kiln/", 0), 0);
    }
    json h = got[1]["headers"], d = got[1]["json"];
    assert_string_equal(S(h["x-kiln-event"].get<std::string>()), "finished");
    assert_string_equal(S(h["x-kiln-delivery"].get<std::string>()), "9");
    json want = json::parse(R"({
      "kiln_webhook": 1, "event": "finished", "delivery_id": 9,
      "repository": "example", "branch": "main",
      "commit": "0123456789abcdef0123456789abcdef01234567",
      "job_id": 42, "attempt": 1, "runner": "runner-1",
      "outcome": "failed", "previous_outcome": "passed", "error": null,
      "counts": {"passed": 212, "failed": 1, "error": 0, "skipped": 0, "timeout": 0, "cancelled": 0},
      "failing_tests": [{"name": "test_b.TestB.test_breaks", "outcome": "failed",
                         "message": "AssertionError: 1 != 2", "duration_ms": 1500}],
      "failing_tests_omitted": 0,
      "duration_ms": 41000,
      "event_at": "2023-11-14T22:14:01.000Z", "queued_at": "2023-11-14T22:13:19.000Z",
      "started_at": "2023-11-14T22:13:20.000Z", "finished_at": "2023-11-14T22:14:01.000Z",
      "url": "http://ci.example.org/commit/0123456789abcdef0123456789abcdef01234567"})");
    if (d != want)
        fail_msg("document: %s", d.dump().c_str());

    // Before the result: no outcome, counts, runner or times yet.
    json q = got[0]["json"];
    assert_string_equal(S(q["event"].get<std::string>()), "queued");
    assert_true(q["outcome"].is_null() && q["counts"].is_null() && q["runner"].is_null());
    assert_true(q["started_at"].is_null() && q["finished_at"].is_null() && q["duration_ms"].is_null());
    assert_true(q["failing_tests"].empty());
}

void test_wrong_secret_rejected(void **state)
{
    State *s = static_cast<State *>(*state);
    write_file(s->dir / "secret", "another-secret\n", 0600);
    load_ok(s, config(s));
    Event e(KILN_EVENT_STARTED);
    Result r = deliver(s, e);
    assert_true(r.status < 0);
    assert_int_equal(r.rejected, 1);
    assert_string_equal(S(r.error), "HTTP 401: {\"message\": \"signature does not match\"}");
    assert_false(s->receiver.requests().at(0)["signature_ok"].get<bool>());
}

void test_events_filter(void **state)
{
    State *s = static_cast<State *>(*state);
    load_ok(s, config(s, "events = [\"queued\", \"finished\"]\n"));
    const kiln_report_event_ops &ops = events(s);
    assert_non_null(ops.wants);
    void *self = s->plugin->self();
    assert_int_equal(ops.wants(self, KILN_EVENT_QUEUED), 1);
    assert_int_equal(ops.wants(self, KILN_EVENT_STARTED), 0);
    assert_int_equal(ops.wants(self, KILN_EVENT_FAILING), 0);
    assert_int_equal(ops.wants(self, KILN_EVENT_FINISHED), 1);
    assert_int_equal(ops.wants(self, 99), 0);

    load_ok(s, config(s)); // default: all
    for (int k = KILN_EVENT_QUEUED; k <= KILN_EVENT_FINISHED; k++)
        assert_int_equal(events(s).wants(s->plugin->self(), k), 1);

    load_ok(s, config(s, "events = \"started\"\n"));
    // A host without events asks report() for every result: nothing sent.
    Event e(KILN_EVENT_FINISHED, KILN_PASSED);
    Result r;
    assert_int_equal(s->plugin->report().report(s->plugin->self(), &e.rep, on_done, &r, nullptr), 0);
    assert_int_equal(r.calls, 0);
    assert_true(run_until(&s->loop, {&r}));
    assert_int_equal(r.status, 0);
    assert_true(s->receiver.requests().empty());
}

void test_report_op(void **state)
{
    State *s = static_cast<State *>(*state);
    load_ok(s, config(s));
    Event e(KILN_EVENT_FINISHED, KILN_FAILED);
    Result r;
    assert_int_equal(s->plugin->report().report(s->plugin->self(), &e.rep, on_done, &r, nullptr), 0);
    assert_true(run_until(&s->loop, {&r}));
    assert_int_equal(r.status, 0);
    json q = s->receiver.requests().at(0);
    assert_true(q["signature_ok"].get<bool>());
    assert_string_equal(S(q["json"]["outcome"].get<std::string>()), "failed");
    assert_int_equal(q["json"]["counts"]["failed"].get<int>(), 1);
    assert_int_equal(q["json"]["delivery_id"].get<int>(), 0);
}

void test_slow_receiver_and_cancel(void **state)
{
    State *s = static_cast<State *>(*state);
    load_ok(s, config(s, "timeout = \"500ms\"\n", "/slow"));
    Event e(KILN_EVENT_QUEUED);
    uint64_t t0 = now_ms();
    Result r = deliver(s, e);
    assert_int_equal(r.status, -ETIMEDOUT);
    assert_int_equal(r.rejected, 0);
    assert_in_range(now_ms() - t0, 400, 2500);

    Result c;
    void *op = nullptr;
    assert_int_equal(events(s).event(s->plugin->self(), &e.ev, on_delivery, &c, &op), 0);
    s->plugin->cancel(op);
    assert_int_equal(c.calls, 0);
    assert_true(run_until(&s->loop, {&c}, 2000));
    assert_int_equal(c.status, -ECANCELED);
}

void test_config_refused(void **state)
{
    State *s = static_cast<State *>(*state);
    write_file(s->dir / "open-secret", kSecret, 0644);
    expect_refused(s, "webhook", {
        {"url = \"http://127.0.0.1:1/\"\nsecret_file = \"" + (s->dir / "open-secret") + "\"\n",
         "secret_file: " + (s->dir / "open-secret") + ": mode 644"},
        {"events = \"finished\"\n", "url: required"},
        {"url = \"127.0.0.1:8080\"\n", "url: not an http"},
        {"url = \"http://127.0.0.1:1/\"\nevents = \"finished, exploded\"\n",
         "events: unknown event \"exploded\""},
        {"url = \"http://127.0.0.1:1/\"\nevents = \", \"\n", "events: names no event"},
        {"url = \"http://127.0.0.1:1/\"\nevents = [\"finished\", 4]\n", "events[1]: expected a string"},
        {"url = \"http://127.0.0.1:1/\"\nca_file = \"/nonexistent/ca.pem\"\n", "ca_file: /nonexistent/ca.pem"},
    });
}

} // namespace

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signed_documents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_secret_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_op, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_receiver_and_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
