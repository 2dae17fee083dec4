#pragma once
// The fixture of the exec-plugin tests (test_plugin_exec, test_plugin_ctest):
// a loop, a workspace in a temp dir with an empty tests/, the plugin loaded
// through the real loader, and the results its callback reported.  Every run
// or list runs the loop until the callback fires (a guard timer fails the
// test otherwise) and asserts it fired once, never from inside the start
// call; close_loop() ends a test with uv_loop_close() == 0.
//
// Also the check every exec plugin must pass for sharding: the list split
// into shards, each run on its own, gives together exactly the per-test
// results of one whole run.
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <uv.h>

#include <kiln/config.hpp>
#include <kiln/plugin_loader.hpp>

#include "test.hpp" // last: cmocka's macros (fail, ...) clash with <fstream>

namespace exec_fixture {

struct Test {
    std::string name;
    int outcome;
    uint64_t duration_ms;
    std::string message;
};

struct Fixture {
    uv_loop_t loop{};
    uv_timer_t guard{}, canceller{};
    bool guard_fired = false;
    std::string ws; // the workspace (mkdtemp)
    std::unique_ptr<kiln::Plugin> plugin;
    void *op = nullptr;
    // what the callback reported
    int calls = 0;
    int outcome = -1, status = 0;
    std::string log, error;
    std::vector<Test> tests;
    std::vector<std::string> listed;
};

inline void write_file(const std::string &path, const std::string &text, mode_t mode = 0644)
{
    std::ofstream(path) << text;
    chmod(path.c_str(), mode);
}

// Copies a directory of tests/fixtures (e.g. "shard_suite") into the workspace.
inline void copy_fixture(Fixture *f, const std::string &name)
{
    std::error_code ec;
    std::filesystem::copy(std::string(KILN_TEST_FIXTURE_DIR) + "/" + name, f->ws,
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::overwrite_existing,
                          ec);
    if (ec)
        fail_msg("copy fixture %s: %s", name.c_str(), ec.message().c_str());
}

inline int setup(void **state)
{
    auto *f = new Fixture;
    char tmpl[] = "/tmp/kiln-exec-XXXXXX";
    if (!mkdtemp(tmpl) || uv_loop_init(&f->loop) != 0)
        return -1;
    f->ws = tmpl;
    mkdir((f->ws + "/tests").c_str(), 0755);
    uv_timer_init(&f->loop, &f->guard);
    uv_timer_init(&f->loop, &f->canceller);
    f->guard.data = f->canceller.data = f;
    uv_unref(reinterpret_cast<uv_handle_t *>(&f->guard)); // never keeps the loop alive
    *state = f;
    return 0;
}

inline int teardown(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    std::error_code ec;
    std::filesystem::remove_all(f->ws, ec);
    delete f;
    return ec ? -1 : 0;
}

// Ends a test: unload the plugin, close the timers, nothing may be left behind.
inline void close_loop(Fixture *f)
{
    f->plugin.reset();
    uv_close(reinterpret_cast<uv_handle_t *>(&f->guard), nullptr);
    uv_close(reinterpret_cast<uv_handle_t *>(&f->canceller), nullptr);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

inline void load(Fixture *f, const char *name, const std::string &toml = "")
{
    try {
        kiln::ConfigTable config = toml.empty() ? kiln::ConfigTable()
                                                : kiln::parse_config_string(toml, "test.toml");
        f->plugin = kiln::load_plugin(&f->loop, {KILN_TEST_PLUGIN_DIR}, name, KILN_PLUGIN_EXEC,
                                      config, "kiln-test");
    } catch (const std::exception &e) {
        fail_msg("load %s: %s", name, e.what());
    }
}

inline void on_run(void *arg, const kiln_exec_result *res)
{
    auto *f = static_cast<Fixture *>(arg);
    f->calls++;
    f->outcome = res->outcome;
    f->log.assign(res->log, res->log_len);
    f->error = res->error ? res->error : "";
    for (size_t i = 0; i < res->n_tests; i++) {
        const kiln_test_result &t = res->tests[i];
        f->tests.push_back({t.name, t.outcome, t.duration_ms, t.message ? t.message : ""});
    }
}

inline void on_list(void *arg, int status, const char *error, const char *const *tests, size_t n)
{
    auto *f = static_cast<Fixture *>(arg);
    f->calls++;
    f->status = status;
    f->error = error ? error : "";
    for (size_t i = 0; i < n; i++)
        f->listed.emplace_back(tests[i]);
}

// Cancels the fixture's op after `ms` of loop time.
inline void cancel_after(Fixture *f, uint64_t ms)
{
    uv_timer_start(&f->canceller, [](uv_timer_t *t) {
        auto *fx = static_cast<Fixture *>(t->data);
        fx->plugin->cancel(fx->op);
    }, ms, 0);
}

// Runs the loop until the op is done; returns the wall time it took.
inline uint64_t wait_done(Fixture *f)
{
    uint64_t t0 = uv_hrtime();
    uv_timer_start(&f->guard, [](uv_timer_t *t) {
        static_cast<Fixture *>(t->data)->guard_fired = true;
        uv_stop(t->loop);
    }, 60000, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&f->guard);
    assert_false(f->guard_fired);
    assert_int_equal(f->calls, 1);
    return (uv_hrtime() - t0) / 1000000;
}

inline uint64_t run(Fixture *f, const char *tests_dir = "tests", uint64_t timeout_ms = 0,
                    std::vector<const char *> only = {})
{
    kiln_exec_request req{f->ws.c_str(), tests_dir, timeout_ms,
                          only.empty() ? nullptr : only.data(), only.size()};
    assert_int_equal(f->plugin->exec().run(f->plugin->self(), &req, on_run, f, &f->op), 0);
    assert_int_equal(f->calls, 0); // never from inside the start call
    return wait_done(f);
}

inline void list(Fixture *f, const char *tests_dir = "tests")
{
    kiln_exec_request req{f->ws.c_str(), tests_dir, 0, nullptr, 0};
    assert_int_equal(f->plugin->exec().list(f->plugin->self(), &req, on_list, f, &f->op), 0);
    assert_int_equal(f->calls, 0);
    wait_done(f);
}

// Forgets what the last op reported, for the next one.
inline void reset(Fixture *f)
{
    f->calls = 0;
    f->outcome = -1;
    f->status = 0;
    f->log.clear();
    f->error.clear();
    f->tests.clear();
    f->listed.clear();
}

inline const Test &find(Fixture *f, const std::string &name)
{
    for (const Test &t : f->tests)
        if (t.name == name)
            return t;
    fail_msg("no result for %s", name.c_str());
    abort();
}

inline bool contains(const std::string &s, const std::string &part)
{
    return s.find(part) != std::string::npos;
}

// (name, outcome) of each result, sorted: two runs agree when these are equal.
inline std::vector<std::pair<std::string, int>> outcomes(const std::vector<Test> &tests)
{
    std::vector<std::pair<std::string, int>> v;
    for (const Test &t : tests)
        v.emplace_back(t.name, t.outcome);
    std::sort(v.begin(), v.end());
    return v;
}

inline void print_outcomes(const char *what, const std::vector<std::pair<std::string, int>> &v)
{
    print_message("%s:\n", what);
    for (const auto &[name, outcome] : v)
        print_message("  %s %s\n", kiln_outcome_name(outcome), name.c_str());
}

// Sharding must not change results: one whole run, then the listed tests
// (once each, in name order, as the dispatcher's planner has them) dealt
// round robin into `shards` runs.  Asserts that the shards together report
// exactly the per-test results of the whole run, and that no shard failed
// as a whole (outcome error); returns the whole run's results.
inline std::vector<Test> assert_shards_match_whole_run(Fixture *f, size_t shards)
{
    reset(f);
    run(f);
    std::vector<Test> whole = f->tests;
    reset(f);
    list(f);
    assert_int_equal(f->status, 0);
    std::vector<std::string> names = f->listed;
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    assert_true(names.size() >= shards);
    std::vector<Test> merged;
    for (size_t s = 0; s < shards; s++) {
        std::vector<const char *> only;
        for (size_t i = s; i < names.size(); i += shards)
            only.push_back(names[i].c_str());
        reset(f);
        run(f, "tests", 0, only);
        if (f->outcome == KILN_ERROR)
            fail_msg("shard %zu of %zu: error: %s", s + 1, shards, f->error.c_str());
        merged.insert(merged.end(), f->tests.begin(), f->tests.end());
    }
    if (outcomes(merged) != outcomes(whole)) {
        print_outcomes("whole run", outcomes(whole));
        print_outcomes("shards merged", outcomes(merged));
        fail_msg("%zu shards did not report what the whole run did", shards);
    }
    return whole;
}

} // namespace exec_fixture
