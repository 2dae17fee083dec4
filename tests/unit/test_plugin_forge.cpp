// The forge report plugin, loaded by the real loader, against the receiver
// fixture (tests/fixtures/http_receiver.py) that checks requests the way
// GitHub, Gitea and GitLab do: paths, auth and media-type headers, JSON
// fields and state names.  Also: a refusal (401) is rejected with the
// body's first bytes, 5xx and 429 are temporary (Retry-After honoured), a
// receiver that never answers is bounded by `timeout` while another
// request completes, a token file others can read is refused, and the
// token never appears in the log (checked after every test).
#include "http_plugin_fixture.hpp"

namespace {

using namespace http_fixture;
using nlohmann::json;

const char kToken[] = "ghp_kilnTestToken0123456789";
const char kHang[] = "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"; // the receiver never answers it

struct State : PluginTest {
    State() : PluginTest("kiln-test-forge") {}
};

int setup(void **state)
{
    State *s = new State();
    *state = s;
    write_file(s->dir / "token", std::string(kToken) + "\n", 0600);
    return start_test(s, {"--token", kToken, "--hang-match", kHang});
}

int teardown(void **state) { return end_test(static_cast<State *>(*state), kToken); }

std::string config(const State *s, const std::string &forge, const std::string &repository,
                   const std::string &api_path, const std::string &more = "")
{
    return "plugin = \"forge\"\nforge = \"" + forge + "\"\nrepository = \"" + repository +
           "\"\napi_url = \"" + s->receiver.base() + api_path + "\"\ntoken_file = \"" +
           (s->dir / "token") + "\"\n" + more;
}

void load_ok(State *s, const std::string &cfg)
{
    s->plugin = load(&s->loop, "forge", cfg, s->error);
    if (!s->plugin)
        fail_msg("load: %s", s->error.c_str());
    assert_non_null(s->plugin->descriptor().events);
}

int send(State *s, Event &e, Result &r, void **op = nullptr)
{
    void *o = nullptr;
    return s->plugin->descriptor().events->event(s->plugin->self(), &e.ev, on_delivery, &r,
                                                 op ? op : &o);
}

// Sends one event, waits for its delivery (bounded); the result.
Result deliver(State *s, int kind, int outcome = KILN_OUTCOME_NONE, const char *commit = kCommit)
{
    Event e(kind, outcome, commit);
    Result r;
    assert_int_equal(send(s, e, r), 0);
    assert_int_equal(r.calls, 0); // never from inside the call
    assert_true(run_until(&s->loop, {&r}));
    assert_int_equal(r.calls, 1);
    return r;
}

struct Case {
    int kind, outcome;
    const char *state, *description;
};

const Case kGitHubCases[] = {
    {KILN_EVENT_QUEUED, KILN_OUTCOME_NONE, "pending", "queued"},
    {KILN_EVENT_STARTED, KILN_OUTCOME_NONE, "pending", "running on runner-1"},
    {KILN_EVENT_FAILING, KILN_FAILED, "failure", "1 failed so far on runner-1"},
    {KILN_EVENT_FINISHED, KILN_PASSED, "success", "212 passed in 41 s"},
    {KILN_EVENT_FINISHED, KILN_FAILED, "failure", "212 passed, 1 failed in 41 s"},
    {KILN_EVENT_FINISHED, KILN_ERROR, "error", "error: could not clone; 212 passed in 41 s"},
    {KILN_EVENT_FINISHED, KILN_TIMEOUT, "error", "timeout; 212 passed in 41 s"},
    {KILN_EVENT_FINISHED, KILN_CANCELLED, "error", "cancelled; 212 passed in 41 s"},
};

const Case kGitLabCases[] = {
    {KILN_EVENT_QUEUED, KILN_OUTCOME_NONE, "pending", "queued"},
    {KILN_EVENT_STARTED, KILN_OUTCOME_NONE, "running", "running on runner-1"},
    {KILN_EVENT_FAILING, KILN_FAILED, "running", "1 failed so far on runner-1"},
    {KILN_EVENT_FINISHED, KILN_PASSED, "success", "212 passed in 41 s"},
    {KILN_EVENT_FINISHED, KILN_FAILED, "failed", "212 passed, 1 failed in 41 s"},
    {KILN_EVENT_FINISHED, KILN_ERROR, "failed", "error: could not clone; 212 passed in 41 s"},
    {KILN_EVENT_FINISHED, KILN_TIMEOUT, "failed", "timeout; 212 passed in 41 s"},
    {KILN_EVENT_FINISHED, KILN_CANCELLED, "canceled", "cancelled; 212 passed in 41 s"},
};

// Every case delivered, and the receiver saw each as the forge expects.
template <size_t N>
void check_cases(State *s, const Case (&cases)[N], const std::string &path, const char *name_key)
{
    for (const Case &c : cases) {
        Result r = deliver(s, c.kind, c.outcome);
        if (r.status != 0)
            fail_msg("%s: %d %s", c.description, r.status, r.error.c_str());
        assert_false(r.has_error);
    }
    std::vector<json> got = s->receiver.requests();
    assert_int_equal(got.size(), N);
    for (size_t i = 0; i < N; i++) {
        const json &q = got[i];
        assert_string_equal(S(q["path"].get<std::string>()), S(path));
        assert_int_equal(q["status"].get<int>(), 201);
        assert_true(q["problems"].empty()); // no unknown field either
        assert_string_equal(S(q["headers"]["content-type"].get<std::string>()), "application/json");
        assert_int_equal(q["headers"]["user-agent"].get<std::string>().rfind("kiln/", 0), 0);
        const json &b = q["json"];
        assert_string_equal(S(b["state"].get<std::string>()), cases[i].state);
        assert_string_equal(S(b["description"].get<std::string>()), cases[i].description);
        assert_string_equal(S(b[name_key].get<std::string>()), "kiln");
        assert_string_equal(S(b["target_url"].get<std::string>()),
                            S(std::string("http://ci.example.org/commit/") + kCommit));
        assert_int_equal(b.size(), 4);
    }
}

void test_github(void **state)
{
    State *s = static_cast<State *>(*state);
    load_ok(s, config(s, "github", "octo-org/kiln.demo", ""));
    check_cases(s, kGitHubCases, std::string("/repos/octo-org/kiln.demo/statuses/") + kCommit, "context");
    json h = s->receiver.requests()[0]["headers"];
    assert_string_equal(S(h["authorization"].get<std::string>()), S(std::string("Bearer ") + kToken));
    assert_string_equal(S(h["accept"].get<std::string>()), "application/vnd.github+json");
    assert_string_equal(S(h["x-github-api-version"].get<std::string>()), "2022-11-28");
}

void test_gitea(void **state)
{
    State *s = static_cast<State *>(*state);
    load_ok(s, config(s, "gitea", "octo/demo", "/api/v1/", "context = \"ci/kiln\"\n"));
    Result r = deliver(s, KILN_EVENT_FINISHED, KILN_FAILED);
    assert_int_equal(r.status, 0);
    json q = s->receiver.requests().at(0);
    assert_string_equal(S(q["path"].get<std::string>()),
                        S(std::string("/api/v1/repos/octo/demo/statuses/") + kCommit));
    assert_string_equal(S(q["headers"]["authorization"].get<std::string>()),
                        S(std::string("token ") + kToken));
    assert_string_equal(S(q["headers"]["accept"].get<std::string>()), "application/json");
    assert_true(q["problems"].empty());
    assert_string_equal(S(q["json"]["state"].get<std::string>()), "failure");
    assert_string_equal(S(q["json"]["context"].get<std::string>()), "ci/kiln");
}

void test_gitlab(void **state)
{
    State *s = static_cast<State *>(*state);
    load_ok(s, config(s, "gitlab", "group/sub/demo", "/api/v4"));
    check_cases(s, kGitLabCases, std::string("/api/v4/projects/group%2Fsub%2Fdemo/statuses/") + kCommit,
                "name");
    json q = s->receiver.requests()[0];
    assert_string_equal(S(q["project"].get<std::string>()), "group/sub/demo");
    assert_string_equal(S(q["headers"]["private-token"].get<std::string>()), kToken);
    assert_true(q["headers"].find("authorization") == q["headers"].end());
    assert_true(q["json"].find("context") == q["json"].end());

    load_ok(s, config(s, "gitlab", "1234", "/api/v4")); // a project id
    assert_int_equal(deliver(s, KILN_EVENT_QUEUED).status, 0);
    assert_string_equal(S(s->receiver.requests().back()["path"].get<std::string>()),
                        S(std::string("/api/v4/projects/1234/statuses/") + kCommit));
}

void test_refusals_are_rejected(void **state)
{
    State *s = static_cast<State *>(*state);
    write_file(s->dir / "token", "not-the-token\n", 0600);
    load_ok(s, config(s, "github", "octo/demo", ""));
    Result r = deliver(s, KILN_EVENT_QUEUED);
    assert_true(r.status < 0);
    assert_int_equal(r.rejected, 1);
    assert_int_equal(r.error.rfind("HTTP 401: {\"message\": \"Bad credentials\"", 0), 0);

    load_ok(s, config(s, "gitlab", "group/demo", "/api/v4"));
    r = deliver(s, KILN_EVENT_QUEUED);
    assert_int_equal(r.rejected, 1);
    assert_string_equal(S(r.error), "HTTP 401: {\"message\": \"401 Unauthorized\"}");
    assert_int_equal(s->receiver.requests().size(), 2);
}

void test_temporary_failures(void **state)
{
    State *s = static_cast<State *>(*state);
    s->receiver.stop();
    assert_true(s->receiver.start(s->dir.path(), {"--token", kToken, "--script",
                                                  "500,429:7,503:date:5,429,close,close"}));
    load_ok(s, config(s, "github", "octo/demo", ""));
    Result r = deliver(s, KILN_EVENT_QUEUED); // 500
    assert_int_equal(r.status, -EAGAIN);
    assert_int_equal(r.rejected, 0);
    assert_int_equal(r.retry_after_ms, 0);
    assert_int_equal(r.error.rfind("HTTP 500: ", 0), 0);
    r = deliver(s, KILN_EVENT_QUEUED); // 429, Retry-After: 7
    assert_int_equal(r.status, -EAGAIN);
    assert_int_equal(r.rejected, 0);
    assert_int_equal(r.retry_after_ms, 7000);
    r = deliver(s, KILN_EVENT_QUEUED); // 503, Retry-After: <date 5 s ahead>
    assert_int_equal(r.status, -EAGAIN);
    assert_in_range(r.retry_after_ms, 3000, 6000);
    r = deliver(s, KILN_EVENT_QUEUED); // 429 without Retry-After: the host's back-off
    assert_int_equal(r.status, -EAGAIN);
    assert_int_equal(r.retry_after_ms, 0);
    // Connection closed, no answer: curl tries once more on a new connection
    // when a reused one dies (the second close), then gives up.
    r = deliver(s, KILN_EVENT_QUEUED);
    assert_true(r.status < 0);
    assert_int_equal(r.rejected, 0);
    assert_int_equal(deliver(s, KILN_EVENT_QUEUED).status, 0); // script done: served again

    s->receiver.stop(); // nobody listens on the port any more
    r = deliver(s, KILN_EVENT_QUEUED);
    assert_int_equal(r.status, -ECONNREFUSED);
    assert_int_equal(r.rejected, 0);
}

void test_silent_receiver_bounded(void **state)
{
    State *s = static_cast<State *>(*state);
    load_ok(s, config(s, "github", "octo/demo", "", "timeout = \"1s\"\n"));
    Event hung(KILN_EVENT_QUEUED, KILN_OUTCOME_NONE, kHang), fine(KILN_EVENT_QUEUED);
    Result rh, rf;
    uint64_t t0 = now_ms();
    assert_int_equal(send(s, hung, rh), 0);
    assert_int_equal(send(s, fine, rf), 0);
    assert_true(run_until(&s->loop, {&rf}));
    assert_int_equal(rf.status, 0); // delivered while the other one waits
    assert_int_equal(rh.calls, 0);
    assert_true(run_until(&s->loop, {&rh}, 5000));
    uint64_t took = now_ms() - t0;
    assert_int_equal(rh.status, -ETIMEDOUT);
    assert_int_equal(rh.rejected, 0);
    assert_in_range(took, 900, 3000);
}

void test_cancel(void **state)
{
    State *s = static_cast<State *>(*state);
    load_ok(s, config(s, "github", "octo/demo", ""));
    Event hung(KILN_EVENT_QUEUED, KILN_OUTCOME_NONE, kHang);
    Result r;
    void *op = nullptr;
    assert_int_equal(send(s, hung, r, &op), 0);
    assert_non_null(op);
    for (int i = 0; i < 20; i++) // let the request reach the receiver
        uv_run(&s->loop, UV_RUN_NOWAIT);
    s->plugin->cancel(op);
    assert_int_equal(r.calls, 0);
    assert_true(run_until(&s->loop, {&r}, 2000));
    assert_int_equal(r.status, -ECANCELED);
    s->plugin->cancel(op); // finished: ignored
}

// report(), as a host without events calls it: the final status.
void test_report_op(void **state)
{
    State *s = static_cast<State *>(*state);
    load_ok(s, config(s, "github", "octo/demo", ""));
    Event e(KILN_EVENT_FINISHED, KILN_FAILED);
    Result r;
    void *op = nullptr;
    assert_int_equal(s->plugin->report().report(s->plugin->self(), &e.rep, on_done, &r, &op), 0);
    assert_true(run_until(&s->loop, {&r}));
    assert_int_equal(r.status, 0);
    json b = s->receiver.requests().at(0)["json"];
    assert_string_equal(S(b["state"].get<std::string>()), "failure");
    assert_string_equal(S(b["description"].get<std::string>()), "1 failed in 41 s");
    assert_true(b.find("target_url") == b.end());
}

void test_config_refused(void **state)
{
    State *s = static_cast<State *>(*state);
    write_file(s->dir / "open-token", std::string(kToken) + "\n", 0644);
    expect_refused(s, "forge", {
        {"token_file = \"" + (s->dir / "open-token") + "\"\nforge = \"github\"\nrepository = \"o/r\"\n",
         "token_file: " + (s->dir / "open-token") + ": mode 644"},
        {"repository = \"o/r\"\n", "forge: required"},
        {"forge = \"bitbucket\"\nrepository = \"o/r\"\n", "forge: must be"},
        {"forge = \"github\"\nrepository = \"o/r/x\"\n", "repository: expected OWNER/NAME"},
        {"forge = \"gitea\"\nrepository = \"o/r\"\n", "api_url: required for gitea"},
        {"forge = \"github\"\nrepository = \"o/r\"\napi_url = \"ftp://x\"\n", "api_url: not an http"},
        {"forge = \"github\"\nrepository = \"o/r\"\ntimeout = \"0s\"\n", "timeout: must be above 0"},
        {"forge = \"github\"\nrepository = \"o/r\"\n", "token_file: required"},
        {"forge = \"github\"\nrepository = \"o/r\"\ntoken_file = \"/nonexistent/t\"\n",
         "token_file: /nonexistent/t: No such file"},
    });
}

} // namespace

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_github, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gitea, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gitlab, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_are_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_temporary_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_receiver_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_op, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
