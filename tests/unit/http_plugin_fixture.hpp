#pragma once
// What the forge and webhook plugin tests share: the HTTP receiver fixture
// (tests/fixtures/http_receiver.py) run as a process by argv, with bounded
// waits and stopped by its PID; the daemon's stderr captured to a file (to
// check what was logged); a plugin loaded by the real loader; one report
// event and a loop run until its delivery callback, bounded.
#include "test.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <memory>

#include <nlohmann/json.hpp>

#include <kiln/config.hpp>
#include <kiln/plugin_loader.hpp>

namespace http_fixture {

inline void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, nullptr);
}

// The receiver, started with argv and stopped by its PID.
struct Receiver {
    pid_t pid = -1;
    int port = 0;
    std::string port_file, record;

    // Starts it with `extra` arguments; false when it does not listen
    // within 10 s.
    bool start(const std::string &dir, const std::vector<std::string> &extra)
    {
        port_file = dir + "/receiver.port";
        record = dir + "/receiver.jsonl";
        unlink(port_file.c_str()); // a restart: wait for the new one
        unlink(record.c_str());
        std::vector<std::string> argv = {"python3", KILN_TEST_SOURCE_FIXTURE_DIR "/http_receiver.py",
                                         "--port-file", port_file, "--record", record};
        argv.insert(argv.end(), extra.begin(), extra.end());
        std::vector<char *> c_argv;
        for (auto &a : argv)
            c_argv.push_back(const_cast<char *>(a.c_str()));
        c_argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
        int rc = posix_spawnp(&pid, "python3", &actions, nullptr, c_argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0)
            return false;
        for (int i = 0; i < 500; i++) { // 10 s
            std::string text = read_file(port_file);
            if (!text.empty() && text.back() == '\n') {
                port = atoi(text.c_str());
                return port > 0;
            }
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                pid = -1;
                return false;
            }
            sleep_ms(20);
        }
        return false;
    }

    void stop()
    {
        if (pid <= 0)
            return;
        kill(pid, SIGTERM);
        int status;
        for (int i = 0; i < 250 && waitpid(pid, &status, WNOHANG) != pid; i++) { // 5 s
            if (i == 249) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
            }
            sleep_ms(20);
        }
        pid = -1;
    }

    std::string base() const { return "http://127.0.0.1:" + std::to_string(port); }

    // Every request recorded so far, in arrival order.
    std::vector<nlohmann::json> requests() const
    {
        std::vector<nlohmann::json> out;
        std::ifstream in(record);
        std::string line;
        while (std::getline(in, line))
            if (!line.empty())
                out.push_back(nlohmann::json::parse(line));
        return out;
    }
};

// fd 2 (where the host's log goes) into a file, while it lives.
struct StderrCapture {
    int saved = -1;
    std::string path;
    void start(const std::string &file)
    {
        path = file;
        int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        saved = dup(2);
        dup2(fd, 2);
        close(fd);
    }
    void stop()
    {
        if (saved >= 0) {
            dup2(saved, 2);
            close(saved);
            saved = -1;
        }
    }
    std::string text() const { return read_file(path); }
};

// A file holding `text` with `mode`.
inline void write_file(const std::string &path, const std::string &text, mode_t mode)
{
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
    chmod(path.c_str(), mode);
}

// One delivery's result, as the callback saw it.
struct Result {
    int calls = 0;
    int status = 1;
    int rejected = -1;
    uint64_t retry_after_ms = 0;
    std::string error;
    bool has_error = false;
};

inline void on_delivery(void *arg, const kiln_delivery *res)
{
    Result *r = static_cast<Result *>(arg);
    r->calls++;
    r->status = res->status;
    r->rejected = res->rejected;
    r->retry_after_ms = res->retry_after_ms;
    r->has_error = res->error != nullptr;
    r->error = res->error ? res->error : "";
}

inline void on_done(void *arg, int status, const char *error)
{
    Result *r = static_cast<Result *>(arg);
    r->calls++;
    r->status = status;
    r->has_error = error != nullptr;
    r->error = error ? error : "";
}

// Runs the loop until every result has its callback, at most `limit_ms`;
// false when the limit ran out.  A prepare handle stops the loop as soon as
// they all have: a UV_RUN_ONCE turn whose only work was a timer callback
// would otherwise go on to block in poll.
inline bool run_until(uv_loop_t *loop, const std::vector<Result *> &results, uint64_t limit_ms = 20000)
{
    struct Wait {
        const std::vector<Result *> *results;
        bool expired = false;
        bool done() const
        {
            for (Result *r : *results)
                if (r->calls == 0)
                    return false;
            return true;
        }
    } wait;
    wait.results = &results;
    uv_timer_t guard;
    uv_prepare_t check;
    uv_timer_init(loop, &guard);
    uv_prepare_init(loop, &check);
    guard.data = check.data = &wait;
    uv_timer_start(&guard, [](uv_timer_t *t) { static_cast<Wait *>(t->data)->expired = true; },
                   limit_ms, 0);
    uv_prepare_start(&check, [](uv_prepare_t *p) {
        if (static_cast<Wait *>(p->data)->done())
            uv_stop(p->loop);
    });
    while (!wait.done() && !wait.expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t *>(&guard), nullptr);
    uv_close(reinterpret_cast<uv_handle_t *>(&check), nullptr);
    uv_run(loop, UV_RUN_NOWAIT);
    return wait.done();
}

inline std::unique_ptr<kiln::Plugin> load(uv_loop_t *loop, const std::string &name,
                                          const std::string &config, std::string &error)
{
    try {
        return kiln::load_plugin(loop, {KILN_TEST_PLUGIN_DIR}, name, KILN_PLUGIN_REPORT,
                                 kiln::parse_config_string(config, "dispatcher.toml"), "kiln-test");
    } catch (const std::exception &e) {
        error = e.what();
        return nullptr;
    }
}

inline uint64_t now_ms()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

const char kCommit[] = "0123456789abcdef0123456789abcdef01234567";

// A commit's event as the dispatcher would hand it over.
struct Event {
    std::vector<kiln_test_result> tests;
    kiln_report rep = {};
    kiln_report_event ev = {};

    Event(int kind, int outcome = KILN_OUTCOME_NONE, const char *commit = kCommit)
    {
        rep.repo = "example";
        rep.branch = "main";
        rep.commit = commit;
        rep.job_id = 42;
        rep.attempt = 1;
        rep.outcome = kind == KILN_EVENT_FAILING ? KILN_FAILED : outcome;
        rep.runner = kind >= KILN_EVENT_STARTED ? "runner-1" : nullptr;
        rep.started_unix_ms = kind >= KILN_EVENT_STARTED ? 1700000000000 : 0;
        ev.size = sizeof ev;
        ev.kind = kind;
        ev.report = &rep;
        ev.delivery_id = 7;
        ev.event_unix_ms = 1700000041000;
        ev.queued_unix_ms = 1699999999000;
        ev.url = "http://ci.example.org/commit/0123456789abcdef0123456789abcdef01234567";
        ev.previous_outcome = KILN_PASSED;
        if (kind == KILN_EVENT_FINISHED) {
            rep.finished_unix_ms = 1700000041000;
            ev.counts[KILN_PASSED] = 212;
        }
        if (kind == KILN_EVENT_FAILING || (kind == KILN_EVENT_FINISHED && outcome == KILN_FAILED)) {
            tests.push_back({"test_b.TestB.test_breaks", KILN_FAILED, 1500, "AssertionError: 1 != 2"});
            ev.counts[KILN_FAILED] = 1;
        }
        if (kind == KILN_EVENT_FINISHED && outcome == KILN_ERROR)
            rep.error = "could not clone";
        rep.tests = tests.empty() ? nullptr : tests.data();
        rep.n_tests = tests.size();
    }
    Event(const Event &) = delete;
};

// One test's state: temp dir, loop, receiver process, the captured log and
// the plugin under test.
struct PluginTest {
    explicit PluginTest(const char *name) : dir(name) {}
    TempDir dir;
    uv_loop_t loop;
    Receiver receiver;
    StderrCapture log;
    std::unique_ptr<kiln::Plugin> plugin;
    std::string error;
};

// setup's shared part: the loop, the log capture, the receiver started with
// `receiver_args`.  0, or -1 for cmocka.
inline int start_test(PluginTest *s, const std::vector<std::string> &receiver_args)
{
    if (s->dir.path().empty() || uv_loop_init(&s->loop) != 0)
        return -1;
    s->log.start(s->dir / "stderr.log");
    return s->receiver.start(s->dir.path(), receiver_args) ? 0 : -1;
}

// teardown: the plugin unloaded, every handle closed, the receiver stopped,
// the log shown as it would be and checked for `secret` (never logged); the
// test's own State (derived from PluginTest) deleted as what it is.
template <class State> int end_test(State *s, const char *secret)
{
    s->plugin.reset();
    uv_run(&s->loop, UV_RUN_DEFAULT); // the client's handles close
    int rc = uv_loop_close(&s->loop);
    s->receiver.stop();
    s->log.stop();
    std::string logged = s->log.text();
    fprintf(stderr, "%s", logged.c_str());
    bool leaked = logged.find(secret) != std::string::npos;
    delete s;
    assert_int_equal(rc, 0); // every handle closed
    assert_false(leaked);    // never log a token or secret
    return 0;
}

// Each config is refused at load, and the log says what `logged` says.
struct Refusal {
    std::string config, logged;
};

inline void expect_refused(PluginTest *s, const std::string &plugin,
                           const std::vector<Refusal> &cases)
{
    for (const auto &c : cases) {
        s->plugin = load(&s->loop, plugin, c.config, s->error);
        assert_null(s->plugin.get());
        if (s->log.text().find(c.logged) == std::string::npos)
            fail_msg("expected \"%s\" in the log", c.logged.c_str());
    }
}

} // namespace http_fixture
