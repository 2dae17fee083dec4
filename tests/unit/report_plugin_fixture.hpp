#pragma once
// What the tests of the report plugins (email, junit) share: the plugin
// loaded by the real loader, its event and report ops called directly, the
// loop run until the callback (bounded), and a result to report.
#include "test.hpp"

#include <kiln/config.hpp>
#include <kiln/plugin_loader.hpp>

#include <memory>
#include <string>

struct ReportPluginState {
    TempDir tmp{"kiln-test-report"};
    uv_loop_t loop;
    std::unique_ptr<kiln::Plugin> plugin;
    int calls = 0, status = 1, rejected = -1;
    std::string error;
};

// NAME.so with `config` as its [[report]] table, or nullptr (s->error says why).
inline std::unique_ptr<kiln::Plugin> load_report_plugin(ReportPluginState *s, const char *name,
                                                        const std::string &config)
{
    try {
        return kiln::load_plugin(&s->loop, {KILN_TEST_PLUGIN_DIR}, name, KILN_PLUGIN_REPORT,
                                 kiln::parse_config_string(config, "test.toml"), "kiln-test");
    } catch (const std::exception &e) {
        s->error = e.what();
        return nullptr;
    }
}

inline void on_delivery(void *arg, const kiln_delivery *res)
{
    auto *s = static_cast<ReportPluginState *>(arg);
    s->calls++;
    s->status = res->status;
    s->rejected = res->rejected;
    s->error = res->error ? res->error : "";
}

inline void on_reported(void *arg, int status, const char *error)
{
    auto *s = static_cast<ReportPluginState *>(arg);
    s->calls++;
    s->status = status;
    s->error = error ? error : "";
}

// Run the loop until the callback has run once, at most `limit_ms`.
inline void wait_callback(ReportPluginState *s, uint64_t limit_ms = 20000)
{
    uv_timer_t guard;
    bool expired = false;
    uv_timer_init(&s->loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, [](uv_timer_t *t) { *static_cast<bool *>(t->data) = true; }, limit_ms, 0);
    while (s->calls == 0 && !expired)
        uv_run(&s->loop, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t *>(&guard), nullptr);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    assert_false(expired);
    assert_int_equal(s->calls, 1);
}

// A result: the strings and tests stay the caller's, as the ABI lends them.
struct Result {
    kiln_report rep{};
    kiln_report_event ev{};
    Result(const char *commit, int outcome, const kiln_test_result *tests, size_t n)
    {
        rep.repo = "example";
        rep.branch = "main";
        rep.commit = commit;
        rep.outcome = outcome;
        rep.runner = "runner-1";
        rep.job_id = 42;
        rep.attempt = 1;
        rep.started_unix_ms = 1700000000123;
        rep.finished_unix_ms = 1700000041623;
        rep.tests = tests;
        rep.n_tests = n;
        ev.size = sizeof ev;
        ev.kind = KILN_EVENT_FINISHED;
        ev.report = &rep;
        ev.delivery_id = 7;
        ev.event_unix_ms = rep.finished_unix_ms;
        ev.queued_unix_ms = rep.started_unix_ms - 1000;
        ev.previous_outcome = KILN_OUTCOME_NONE;
        for (size_t i = 0; i < n; i++)
            if (tests[i].outcome >= 0 && tests[i].outcome < 6)
                ev.counts[tests[i].outcome]++;
    }
};

// event() as the host calls it; the callback lands in s.
inline int send_event(ReportPluginState *s, const kiln_report_event &ev, void **op = nullptr)
{
    s->calls = 0;
    s->rejected = -1;
    const kiln_plugin &d = s->plugin->descriptor();
    assert_true(KILN_PLUGIN_HAS(&d, events));
    assert_non_null(d.events);
    void *o = nullptr;
    return d.events->event(s->plugin->self(), &ev, on_delivery, s, op ? op : &o);
}

// report() as an older host calls it.
inline int send_report(ReportPluginState *s, const kiln_report &rep, void **op = nullptr)
{
    s->calls = 0;
    void *o = nullptr;
    return s->plugin->report().report(s->plugin->self(), &rep, on_reported, s, op ? op : &o);
}

inline int wants(ReportPluginState *s, int kind)
{
    const kiln_plugin &d = s->plugin->descriptor();
    return d.events->wants(s->plugin->self(), kind);
}

inline int report_plugin_setup(void **state)
{
    auto *s = new ReportPluginState();
    *state = s;
    assert_false(s->tmp.path().empty());
    assert_int_equal(uv_loop_init(&s->loop), 0);
    return 0;
}

inline int report_plugin_teardown(void **state)
{
    auto *s = static_cast<ReportPluginState *>(*state);
    s->plugin.reset();
    uv_run(&s->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&s->loop);
    delete s;
    assert_int_equal(rc, 0);
    return 0;
}
