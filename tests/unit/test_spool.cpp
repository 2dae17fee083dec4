// The runner's spool, alone and inside a real Runner talking to a fake
// dispatcher over loopback: results survive torn writes (which are set
// aside, never delivered), are delivered once and removed after the ack,
// are sent before the first heartbeat, outlive a dispatcher outage; a job
// over its timeout is reported "timeout"; SIGTERM's stop drains or hands back.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <kiln/atomic_file.hpp>
#include <kiln/config.hpp>
#include <kiln/net.hpp>

#include "runner.hpp"
#include "spool.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

struct State {
    std::string tmp, repo, commit;
    uv_loop_t loop;
    // The fake dispatcher.
    std::unique_ptr<Server> server;
    std::shared_ptr<Connection> conn;
    bool down = false;        // accept, then hang up at once
    bool ack_results = true;
    std::vector<Message> got; // from the runner, in order (hello excluded)
    std::unique_ptr<Runner> runner;
    int saved = 0, save_status = -1;
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

Result sample(uint64_t job_id, uint32_t attempt)
{
    Result r;
    r.id = 99;
    r.job_id = job_id;
    r.attempt = attempt;
    r.commit = std::string(40, 'a');
    r.outcome = KILN_FAILED;
    r.error = "1 test failed";
    r.tests = {{"t1", KILN_PASSED, 12, ""}, {"t2", KILN_FAILED, 3, "exit status 1"}};
    r.log = "some log\n";
    r.started_unix_ms = 1000;
    r.finished_unix_ms = 2000;
    return r;
}

int setup(void **state)
{
    auto *s = new State;
    char tmpl[] = "/tmp/kiln-test-spool-XXXXXX";
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

// ---- the spool alone ----

void test_file_name(void **)
{
    assert_string_equal(S(spool_file_name(12, 3)), "job-12-3.result");
}

void test_round_trip(void **state)
{
    auto *s = static_cast<State *>(*state);
    Spool spool(&s->loop, s->tmp + "/spool");
    spool.save(sample(7, 2), [s](int status) {
        s->saved++;
        s->save_status = status;
    });
    uv_run(&s->loop, UV_RUN_DEFAULT);
    assert_int_equal(s->saved, 1);
    assert_int_equal(s->save_status, 0);
    assert_true(exists(s->tmp + "/spool/job-7-2.result"));
    auto loaded = spool.load();
    assert_int_equal(loaded.size(), 1);
    const Result &r = std::get<Result>(loaded[0]);
    assert_int_equal(r.job_id, 7);
    assert_int_equal(r.attempt, 2);
    assert_string_equal(S(r.commit), S(std::string(40, 'a')));
    assert_int_equal(r.outcome, KILN_FAILED);
    assert_string_equal(S(r.error), "1 test failed");
    assert_int_equal(r.tests.size(), 2);
    assert_string_equal(S(r.tests[1].message), "exit status 1");
    assert_string_equal(S(r.log), "some log\n");
    assert_int_equal(r.finished_unix_ms, 2000);
}

// Truncated at many lengths, empty, extended, not a result, misnamed: each is
// refused with a reason, set aside as *.corrupt, and the good file still loads.
void test_torn_files(void **state)
{
    auto *s = static_cast<State *>(*state);
    std::string dir = s->tmp + "/spool";
    std::string good = encode_message(sample(1, 1));
    assert_int_equal(write_file_atomic(dir + "/job-1-1.result", good), 0);

    std::vector<std::string> bad;
    for (size_t len : {size_t(0), size_t(1), size_t(3), size_t(4), size_t(5), good.size() / 2,
                       good.size() - 1})
        bad.push_back(good.substr(0, len));
    bad.push_back(good + "x");
    bad.push_back(good + good);
    bad.push_back(encode_message(Heartbeat{1, {2}}));
    std::string garbled = good;
    garbled[6] = '\xc1'; // never valid msgpack
    bad.push_back(garbled);
    for (size_t i = 0; i < bad.size(); i++) {
        Delivery r;
        std::string error;
        assert_false(decode_spool_file(bad[i], r, error));
        assert_true(!error.empty());
        assert_int_equal(write_file_atomic(dir + "/" + spool_file_name(100 + i, 1), bad[i]), 0);
    }
    // Whole and valid, but under another job's name.
    assert_int_equal(write_file_atomic(dir + "/job-2-1.result", good), 0);

    Spool spool(&s->loop, dir);
    auto loaded = spool.load();
    assert_int_equal(loaded.size(), 1);
    assert_int_equal(delivery_job_id(loaded[0]), 1);
    for (size_t i = 0; i < bad.size(); i++) {
        std::string path = dir + "/" + spool_file_name(100 + i, 1);
        assert_false(exists(path));
        assert_true(exists(path + ".corrupt"));
    }
    assert_true(exists(dir + "/job-2-1.result.corrupt"));
    // Set aside for good: a second start neither loads nor renames them again.
    assert_int_equal(spool.load().size(), 1);
    assert_true(exists(dir + "/job-2-1.result.corrupt"));
}

void test_tmp_leftovers(void **state)
{
    auto *s = static_cast<State *>(*state);
    std::string dir = s->tmp + "/spool";
    std::string good = encode_message(sample(3, 1));
    assert_int_equal(write_file_atomic(dir + "/job-3-1.result.tmp-Ab12Cd", good.substr(0, 9)), 0);
    assert_int_equal(write_file_atomic(dir + "/job-4-1.result.tmp-Xy34Zw", good), 0);
    Spool spool(&s->loop, dir);
    assert_int_equal(spool.load().size(), 0);
    assert_false(exists(dir + "/job-3-1.result.tmp-Ab12Cd"));
    assert_false(exists(dir + "/job-4-1.result.tmp-Xy34Zw"));
}

void test_attempts_kept_apart(void **state)
{
    auto *s = static_cast<State *>(*state);
    Spool spool(&s->loop, s->tmp + "/spool");
    Result a = sample(5, 1), b = sample(5, 2);
    b.outcome = KILN_PASSED;
    spool.save(a, [s](int st) { s->saved += st == 0; });
    spool.save(b, [s](int st) { s->saved += st == 0; });
    uv_run(&s->loop, UV_RUN_DEFAULT);
    assert_int_equal(s->saved, 2);
    auto loaded = spool.load();
    assert_int_equal(loaded.size(), 2);
    assert_int_equal(delivery_attempt(loaded[0]), 1);
    assert_int_equal(std::get<Result>(loaded[0]).outcome, KILN_FAILED);
    assert_int_equal(delivery_attempt(loaded[1]), 2);
    assert_int_equal(std::get<Result>(loaded[1]).outcome, KILN_PASSED);
    spool.remove(5, 1, false, [s](int st) { s->saved += st == 0; });
    uv_run(&s->loop, UV_RUN_DEFAULT);
    assert_int_equal(s->saved, 3);
    loaded = spool.load();
    assert_int_equal(loaded.size(), 1);
    assert_int_equal(delivery_attempt(loaded[0]), 2);
}


// ---- a Runner against a fake dispatcher ----

// The fake dispatcher answers hello and register, acks results (unless told
// not to) and records everything the runner sends after its hello.
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
                if (auto *r = std::get_if<Result>(&m); r && s->ack_results)
                    c.send(Ack{r->id, r->job_id});
                s->got.push_back(std::move(m));
            },
            [s](Connection &c, const std::string &) {
                if (s->conn.get() == &c)
                    s->conn.reset();
            });
        if (s->down)
            conn->close("dispatcher down");
        else
            s->conn = conn;
    }, error);
    assert_int_equal(rc, 0);
}

// A repository whose one test sleeps `seconds`, and a runner for it.
void start_runner(State *s, int seconds, const std::string &stop_timeout = "10s")
{
    s->repo = s->tmp + "/repo";
    sh("git init -q -b main " + s->repo + " && mkdir " + s->repo + "/tests && printf '#!/bin/sh\\n"
       "sleep " + std::to_string(seconds) + "\\n' > " + s->repo + "/tests/t1 && chmod +x " +
       s->repo + "/tests/t1 && cd " + s->repo + " && git add -A && git commit -q -m t");
    FILE *f = popen(("git -C " + s->repo + " rev-parse HEAD").c_str(), "r");
    char buf[80] = "";
    assert_non_null(fgets(buf, sizeof buf, f));
    pclose(f);
    s->commit = std::string(buf, 40);
    std::string text = "[runner]\ndispatcher = \"127.0.0.1:" + std::to_string(s->server->port()) +
                       "\"\nname = \"r1\"\nwork_dir = \"" + s->tmp + "/work\"\nplugin_dir = \"" +
                       KILN_TEST_PLUGIN_DIR + "\"\nvcs = \"git\"\nexec = \"script\"\n"
                       "heartbeat_interval = \"100ms\"\nstop_timeout = \"" + stop_timeout + "\"\n";
    s->runner = std::make_unique<Runner>(&s->loop,
                                         RunnerConfig::from(parse_config_string(text, "r.toml")));
    s->runner->start();
}

Assign assign(State *s, uint64_t job_id, uint64_t timeout_ms = 60000)
{
    Assign a;
    a.job_id = job_id;
    a.spec.repo = "example";
    a.spec.url = s->repo;
    a.spec.branch = "main";
    a.spec.commit = s->commit;
    a.spec.exec = "script";
    a.spec.timeout_ms = timeout_ms;
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

template <typename T> std::vector<T> all(const State *s)
{
    std::vector<T> out;
    for (const auto &m : s->got)
        if (auto *x = std::get_if<T>(&m))
            out.push_back(*x);
    return out;
}

template <typename T> size_t index_of_first(const State *s)
{
    for (size_t i = 0; i < s->got.size(); i++)
        if (std::holds_alternative<T>(s->got[i]))
            return i;
    return s->got.size();
}

// A result spooled by an earlier run: delivered after registering and
// before the first heartbeat, removed after the ack, never delivered again.
void test_restart_delivers_once(void **state)
{
    auto *s = static_cast<State *>(*state);
    std::string path = s->tmp + "/work/spool/job-7-1.result";
    assert_int_equal(write_file_atomic(path, encode_message(sample(7, 1))), 0);
    listen(s);
    start_runner(s, 0);
    assert_true(run_until(s, [&] { return !exists(path) && !all<Heartbeat>(s).empty(); }));
    auto results = all<Result>(s);
    assert_int_equal(results.size(), 1);
    assert_int_equal(results[0].job_id, 7);
    assert_true(index_of_first<Register>(s) < index_of_first<Result>(s));
    assert_true(index_of_first<Result>(s) < index_of_first<Heartbeat>(s));
    assert_int_equal(s->runner->unacknowledged(), 0);
    assert_int_equal(Spool(&s->loop, s->tmp + "/work/spool").load().size(), 0);
    s->runner->stop();
    assert_true(run_until(s, [&] { return s->runner->stopped(); }));
    assert_int_equal(all<Result>(s).size(), 1);
}

// The dispatcher goes away while the job runs: the job goes on, its result
// is spooled, and delivered (then unspooled) once the dispatcher is back.
void test_outage_during_job(void **state)
{
    auto *s = static_cast<State *>(*state);
    listen(s);
    start_runner(s, 1);
    assert_true(run_until(s, [&] { return s->conn && !all<Heartbeat>(s).empty(); }));
    s->conn->send(assign(s, 3));
    assert_true(run_until(s, [&] {
        auto hbs = all<Heartbeat>(s);
        return !hbs.empty() && hbs.back().jobs == std::vector<uint64_t>{3};
    }));
    s->down = true;
    s->conn->close("dispatcher killed");
    std::string path = s->tmp + "/work/spool/job-3-1.result";
    assert_true(run_until(s, [&] { return exists(path); }));
    assert_int_equal(s->runner->running(), 0);
    assert_int_equal(all<Result>(s).size(), 0);
    s->down = false;
    assert_true(run_until(s, [&] { return !exists(path); }));
    auto results = all<Result>(s);
    assert_int_equal(results.size(), 1);
    assert_int_equal(results[0].outcome, KILN_PASSED);
    assert_int_equal(s->runner->unacknowledged(), 0);
    s->runner->stop();
    assert_true(run_until(s, [&] { return s->runner->stopped(); }));
}

// Tests over the repo's timeout are killed and reported as "timeout", fast.
void test_job_timeout(void **state)
{
    auto *s = static_cast<State *>(*state);
    listen(s);
    start_runner(s, 60);
    assert_true(run_until(s, [&] { return s->conn && !all<Heartbeat>(s).empty(); }));
    uint64_t t0 = uv_now(&s->loop);
    s->conn->send(assign(s, 4, 500));
    assert_true(run_until(s, [&] { return !all<Result>(s).empty(); }));
    assert_true(uv_now(&s->loop) - t0 < 10000);
    auto r = all<Result>(s)[0];
    assert_int_equal(r.outcome, KILN_TIMEOUT);
    assert_int_equal(r.tests.at(0).outcome, KILN_TIMEOUT);
    s->runner->stop();
    assert_true(run_until(s, [&] { return s->runner->stopped(); }));
}

// stop(): re-register with 0 slots, ignore new assignments, let the running
// job finish and its result be acked, then disconnect.
void test_stop_drains(void **state)
{
    auto *s = static_cast<State *>(*state);
    listen(s);
    start_runner(s, 1);
    assert_true(run_until(s, [&] { return s->conn && !all<Heartbeat>(s).empty(); }));
    s->conn->send(assign(s, 5));
    assert_true(run_until(s, [&] { return s->runner->running() == 1; }));
    s->runner->stop();
    assert_true(run_until(s, [&] { return all<Register>(s).size() == 2; }));
    assert_int_equal(all<Register>(s)[1].slots, 0);
    s->conn->send(assign(s, 6)); // ignored: the dispatcher requeues it
    assert_true(run_until(s, [&] { return s->runner->stopped(); }));
    auto results = all<Result>(s);
    assert_int_equal(results.size(), 1);
    assert_int_equal(results[0].job_id, 5);
    assert_int_equal(results[0].outcome, KILN_PASSED);
    assert_int_equal(s->runner->unacknowledged(), 0);
    assert_true(run_until(s, [&] { return !s->conn; }));
    assert_false(exists(s->tmp + "/work/spool/job-5-1.result"));
}

// stop() with a job that outlives stop_timeout: the job is cancelled (its
// process group killed), no result is spooled or sent, the runner disconnects.
void test_stop_deadline_hands_back(void **state)
{
    auto *s = static_cast<State *>(*state);
    listen(s);
    start_runner(s, 60, "300ms");
    assert_true(run_until(s, [&] { return s->conn && !all<Heartbeat>(s).empty(); }));
    s->conn->send(assign(s, 8));
    assert_true(run_until(s, [&] {
        auto hbs = all<Heartbeat>(s);
        return !hbs.empty() && hbs.back().jobs == std::vector<uint64_t>{8};
    }));
    s->runner->stop();
    assert_true(run_until(s, [&] { return s->runner->stopped() && !s->conn; }, 5000));
    assert_true(run_until(s, [&] { return s->runner->running() == 0; }, 10000));
    assert_int_equal(all<Result>(s).size(), 0);
    assert_int_equal(Spool(&s->loop, s->tmp + "/work/spool").load().size(), 0);
}

} // namespace

int main(void)
{
    signal(SIGPIPE, SIG_IGN); // as the daemons do: a vanished peer is an error code
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_file_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tmp_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attempts_kept_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_delivers_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage_during_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_deadline_hands_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
