// The runner's side of sharding and cancelling, with a real Runner, the real
// git and script plugins, and a fake dispatcher over loopback: an assign
// with `list` is answered by a TestList (spooled, resent until acked, also
// after a restart), a listing that fails or cannot be done says why, an
// assign naming tests runs only those, a Cancel kills the job and reports
// it "cancelled" (an unknown one is ignored, the connection kept), and two
// slots run two jobs at once.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <kiln/atomic_file.hpp>
#include <kiln/config.hpp>
#include <kiln/net.hpp>

#include "runner.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

struct State {
    std::string tmp, repo, commit;
    uv_loop_t loop;
    std::unique_ptr<Server> server;
    std::shared_ptr<Connection> conn;
    bool ack = true;          // ack results and test lists
    std::vector<Message> got; // from the runner, in order (hello excluded)
    std::unique_ptr<Runner> runner;
};

bool exists(const std::string &path)
{
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

void sh(const std::string &cmd)
{
    std::string full = "set -e; export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t "
                       "GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t; " + cmd + " >/dev/null 2>&1";
    assert_int_equal(std::system(full.c_str()), 0);
}

int setup(void **state)
{
    auto *s = new State;
    char tmpl[] = "/tmp/kiln-test-shards-XXXXXX";
    if (!mkdtemp(tmpl))
        return -1;
    s->tmp = tmpl;
    uv_loop_init(&s->loop);
    *state = s;
    return 0;
}

int teardown(void **state)
{
    auto *s = static_cast<State *>(*state);
    s->runner.reset();
    if (s->conn)
        s->conn->close("test over");
    s->conn.reset();
    s->server.reset();
    uv_run(&s->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&s->loop);
    std::system(("rm -rf " + s->tmp).c_str());
    delete s;
    return rc == 0 ? 0 : -1;
}

// The fake dispatcher: answers hello and register, acks results and test
// lists while `ack` holds, records everything else the runner sends.
void listen(State *s)
{
    s->server = std::make_unique<Server>(&s->loop, kDefaultMaxFrame);
    std::string error;
    int rc = s->server->listen("127.0.0.1:0", [s](std::shared_ptr<Connection> conn) {
        conn->start(
            [s](Connection &c, Message &&m) {
                if (auto *h = std::get_if<Hello>(&m))
                    return c.send(Hello{h->id, kProtocolVersion, "dispatcher", "fake", "", ""});
                if (auto *r = std::get_if<Register>(&m))
                    c.send(Ack{r->id, 0});
                if (auto *r = std::get_if<Result>(&m); r && s->ack)
                    c.send(Ack{r->id, r->job_id});
                if (auto *l = std::get_if<TestList>(&m); l && s->ack)
                    c.send(Ack{l->id, l->job_id});
                s->got.push_back(std::move(m));
            },
            [s](Connection &c, const std::string &) {
                if (s->conn.get() == &c)
                    s->conn.reset();
            });
        s->conn = conn;
    }, error);
    assert_int_equal(rc, 0);
}

// A repository whose tests/ holds t1 (sleeps `seconds`), t2 and t3 (pass),
// and a runner with `slots` for it.
void start_runner(State *s, int seconds, int slots = 1)
{
    s->repo = s->tmp + "/repo";
    std::string t = s->repo + "/tests/";
    sh("git init -q -b main " + s->repo + " && mkdir " + t + " && printf '#!/bin/sh\\nsleep " +
       std::to_string(seconds) + "\\n' > " + t + "t1 && printf '#!/bin/sh\\nexit 0\\n' > " + t +
       "t2 && cp " + t + "t2 " + t + "t3 && chmod +x " + t + "t1 " + t + "t2 " + t + "t3 && cd " +
       s->repo + " && git add -A && git commit -q -m t");
    FILE *f = popen(("git -C " + s->repo + " rev-parse HEAD").c_str(), "r");
    char buf[80] = "";
    assert_non_null(fgets(buf, sizeof buf, f));
    pclose(f);
    s->commit = std::string(buf, 40);
    std::string text = "[runner]\ndispatcher = \"127.0.0.1:" + std::to_string(s->server->port()) +
                       "\"\nname = \"r1\"\nwork_dir = \"" + s->tmp + "/work\"\nplugin_dir = \"" +
                       KILN_TEST_PLUGIN_DIR + "\"\nvcs = \"git\"\nexec = \"script\"\n"
                       "heartbeat_interval = \"100ms\"\nslots = " + std::to_string(slots) + "\n";
    s->runner = std::make_unique<Runner>(&s->loop,
                                         RunnerConfig::from(parse_config_string(text, "r.toml")));
    s->runner->start();
}

Assign assign(State *s, uint64_t job_id, bool list = false, std::vector<std::string> tests = {})
{
    Assign a;
    a.job_id = job_id;
    a.spec.repo = "example";
    a.spec.url = s->repo;
    a.spec.branch = "main";
    a.spec.commit = s->commit;
    a.spec.exec = "script";
    a.list = list;
    a.tests = std::move(tests);
    return a;
}

// Run the loop until `done` holds (true) or `ms` pass (false).
bool run_until(State *s, const std::function<bool()> &done, uint64_t ms = 20000)
{
    struct Poll {
        uv_timer_t timer;
        const std::function<bool()> *done;
        uint64_t left;
        bool ok = false;
    } poll{{}, &done, ms / 10};
    uv_timer_init(&s->loop, &poll.timer);
    poll.timer.data = &poll;
    uv_timer_start(&poll.timer, [](uv_timer_t *t) {
        auto *p = static_cast<Poll *>(t->data);
        p->ok = (*p->done)();
        if (p->ok || --p->left == 0)
            uv_stop(t->loop);
    }, 10, 10);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t *>(&poll.timer), nullptr);
    uv_run(&s->loop, UV_RUN_NOWAIT);
    return poll.ok;
}

// Let the loop run for `ms`.
void spin(State *s, uint64_t ms)
{
    run_until(s, [] { return false; }, ms);
}

template <typename T> std::vector<T> all(const State *s)
{
    std::vector<T> out;
    for (const auto &m : s->got)
        if (auto *x = std::get_if<T>(&m))
            out.push_back(*x);
    return out;
}

// Connected, registered, heartbeating.
void connected(State *s)
{
    assert_true(run_until(s, [&] { return s->conn && !all<Heartbeat>(s).empty(); }));
}

void stop(State *s)
{
    s->runner->stop();
    assert_true(run_until(s, [&] { return s->runner->stopped(); }));
}

// ---- listing ----

// Listing sends a TestList, no Result; unacked it stays in the spool and is
// sent again on the next connection; acked, it leaves the spool.
void test_list_spooled_until_acked(void **state)
{
    auto *s = static_cast<State *>(*state);
    listen(s);
    start_runner(s, 0);
    connected(s);
    s->ack = false;
    s->conn->send(assign(s, 11, true));
    std::string path = s->tmp + "/work/spool/job-11-1.list";
    assert_true(run_until(s, [&] { return all<TestList>(s).size() == 1 && exists(path); }));
    TestList l = all<TestList>(s)[0];
    assert_int_equal(l.job_id, 11);
    assert_int_equal(l.attempt, 1);
    assert_string_equal(S(l.commit), S(s->commit));
    assert_string_equal(S(l.error), "");
    assert_true(l.tests == (std::vector<std::string>{"t1", "t2", "t3"}));
    assert_int_equal(all<Result>(s).size(), 0);
    assert_int_equal(s->runner->unacknowledged(), 1);
    // The dispatcher drops us; the list goes out again on the new connection.
    s->ack = true;
    s->conn->close("dispatcher restarted");
    assert_true(run_until(s, [&] { return all<TestList>(s).size() == 2 && !exists(path); }));
    assert_true(all<TestList>(s)[1].tests == l.tests);
    assert_int_equal(s->runner->unacknowledged(), 0);
    assert_int_equal(all<Result>(s).size(), 0);
    stop(s);
}

// A test list spooled by an earlier run is delivered after registering.
void test_list_from_spool_after_restart(void **state)
{
    auto *s = static_cast<State *>(*state);
    std::string path = s->tmp + "/work/spool/job-12-2.list";
    TestList l{99, 12, 2, std::string(40, 'b'), {"a", "b c"}, ""};
    assert_int_equal(write_file_atomic(path, encode_message(l)), 0);
    listen(s);
    start_runner(s, 0);
    assert_true(run_until(s, [&] { return !exists(path) && !all<TestList>(s).empty(); }));
    TestList got = all<TestList>(s)[0];
    assert_int_equal(got.job_id, 12);
    assert_int_equal(got.attempt, 2);
    assert_true(got.tests == l.tests);
    stop(s);
}

// A listing that cannot work answers with a TestList carrying the reason:
// no tests directory in the commit, an exec plugin not loaded here.
void test_list_errors(void **state)
{
    auto *s = static_cast<State *>(*state);
    listen(s);
    start_runner(s, 0);
    connected(s);
    sh("cd " + s->repo + " && git rm -q -r tests && git commit -q -m gone");
    FILE *f = popen(("git -C " + s->repo + " rev-parse HEAD").c_str(), "r");
    char buf[80] = "";
    assert_non_null(fgets(buf, sizeof buf, f));
    pclose(f);
    Assign a = assign(s, 13, true);
    a.spec.commit = std::string(buf, 40);
    s->conn->send(a);
    Assign b = assign(s, 14, true);
    b.spec.exec = "unittest";
    s->conn->send(b);
    assert_true(run_until(s, [&] { return all<TestList>(s).size() == 2; }));
    for (const TestList &l : all<TestList>(s)) {
        assert_int_equal(l.tests.size(), 0);
        if (l.job_id == 13)
            assert_non_null(strstr(l.error.c_str(), "tests directory 'tests' not found"));
        else
            assert_non_null(strstr(l.error.c_str(), "no exec plugin 'unittest'"));
    }
    assert_int_equal(all<Result>(s).size(), 0);
    stop(s);
}

// ---- running a shard, cancelling ----

void test_only_named_tests(void **state)
{
    auto *s = static_cast<State *>(*state);
    listen(s);
    start_runner(s, 30); // t1 would take 30 s: it must not run
    connected(s);
    s->conn->send(assign(s, 21, false, {"t3", "t2"}));
    assert_true(run_until(s, [&] { return !all<Result>(s).empty(); }, 10000));
    Result r = all<Result>(s)[0];
    assert_int_equal(r.outcome, KILN_PASSED);
    assert_int_equal(r.tests.size(), 2);
    assert_string_equal(S(r.tests[0].name), "t2");
    assert_string_equal(S(r.tests[1].name), "t3");
    stop(s);
}

// Cancel of the running attempt: killed at once, reported "cancelled",
// spooled and acked.  Cancels of other jobs or attempts change nothing and
// keep the connection.
void test_cancel(void **state)
{
    auto *s = static_cast<State *>(*state);
    listen(s);
    start_runner(s, 60);
    connected(s);
    s->conn->send(assign(s, 31));
    assert_true(run_until(s, [&] {
        auto hbs = all<Heartbeat>(s);
        return !hbs.empty() && hbs.back().jobs == std::vector<uint64_t>{31};
    }));
    // Let the test itself start: the cancel must kill a running process.
    spin(s, 500);
    Connection *before = s->conn.get();
    s->conn->send(Cancel{99, 1}); // not ours
    s->conn->send(Cancel{31, 2}); // another attempt
    spin(s, 300);
    assert_int_equal(s->runner->running(), 1);
    assert_ptr_equal(s->conn.get(), before);
    uint64_t t0 = uv_now(&s->loop);
    s->conn->send(Cancel{31, 1});
    assert_true(run_until(s, [&] { return !all<Result>(s).empty(); }, 10000));
    assert_true(uv_now(&s->loop) - t0 < 5000);
    Result r = all<Result>(s)[0];
    assert_int_equal(r.job_id, 31);
    assert_int_equal(r.outcome, KILN_CANCELLED);
    assert_true(run_until(s, [&] { return s->runner->unacknowledged() == 0; }));
    assert_false(exists(s->tmp + "/work/spool/job-31-1.result"));
    assert_ptr_equal(s->conn.get(), before);
    assert_int_equal(all<Register>(s).size(), 1);
    stop(s);
}

// Two slots: two jobs run at the same time, each in its own workspace.
void test_two_slots_run_together(void **state)
{
    auto *s = static_cast<State *>(*state);
    listen(s);
    start_runner(s, 1, 2);
    connected(s);
    s->conn->send(assign(s, 41, false, {"t1"}));
    s->conn->send(assign(s, 42, false, {"t1"}));
    size_t most = 0;
    assert_true(run_until(s, [&] {
        most = std::max(most, s->runner->running());
        return all<Result>(s).size() == 2;
    }));
    assert_int_equal(most, 2);
    auto rs = all<Result>(s);
    for (const Result &r : rs)
        assert_int_equal(r.outcome, KILN_PASSED);
    // Each ran for at least its 1 s sleep, and they overlapped.
    assert_true(rs[0].started_unix_ms < rs[1].finished_unix_ms);
    assert_true(rs[1].started_unix_ms < rs[0].finished_unix_ms);
    stop(s);
}

} // namespace

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_spooled_until_acked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_from_spool_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_only_named_tests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_slots_run_together, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
