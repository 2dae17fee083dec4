// The delivery engine test rig (delivery_rig.hpp).
#include "delivery_rig.hpp"

#include <stdlib.h>

#include <filesystem>
#include <system_error>

#include <kiln/daemon.hpp>

namespace kiln {

DeliveryRig::DeliveryRig()
{
    uv_loop_init(&loop);
    char tmpl[] = "/tmp/kiln-deliveries-XXXXXX";
    dir = mkdtemp(tmpl) ? tmpl : "";
}

DeliveryRig::~DeliveryRig()
{
    if (engine)
        engine->stop();
    run_until([] { return false; }, 200); // cancelled attempts end
    engine.reset();
    reporter.reset();
    store.reset();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

void DeliveryRig::build()
{
    DispatcherSettings settings;
    settings.plugin_dirs = {KILN_TEST_FIXTURE_DIR};
    settings.reports = DispatcherConfig::reports_from(parse_config_string(reports_toml, "d.toml"));
    store = std::make_unique<Store>(&loop, dir);
    store->open();
    reporter = std::make_unique<Reporter>(&loop);
    reporter->install(reporter->load(settings));
    engine = std::make_unique<Deliveries>(&loop, *reporter, *store, jobs);
    engine->configure(retry_max_ms_, base_url_, Deliveries::kDefaultMaxInFlight,
                      first_backoff_ms_);
}

void DeliveryRig::start(const std::string &toml, uint64_t retry_max_ms,
                        uint64_t first_backoff_ms, const std::string &base_url)
{
    reports_toml = toml;
    retry_max_ms_ = retry_max_ms;
    first_backoff_ms_ = first_backoff_ms;
    base_url_ = base_url;
    build();
}

void DeliveryRig::reopen()
{
    engine->stop();
    run_until([] { return false; }, 100);
    engine.reset();
    reporter.reset();
    store.reset();
    uv_run(&loop, UV_RUN_NOWAIT); // the old handles' close callbacks
    build();
    engine->restore(store->load_deliveries());
}

event_fixture &DeliveryRig::fixture(size_t i)
{
    return *static_cast<event_fixture *>((*reporter->current())[i].plugin->self());
}

uint64_t DeliveryRig::add_job(const std::string &repo, char fill)
{
    JobSpec spec;
    spec.repo = repo;
    spec.url = "/srv/git/" + repo;
    spec.branch = "main";
    spec.commit = std::string(40, fill);
    spec.vcs = "git";
    spec.exec = "unittest";
    return jobs.add(spec, 1000).first->id;
}

void DeliveryRig::assign(uint64_t id, int64_t now) { jobs.assign(id, "runner-1", now); }

void DeliveryRig::finish(uint64_t id, int outcome, int64_t now)
{
    const Job *job = jobs.find(id);
    Result r;
    r.job_id = id;
    r.attempt = job->attempt;
    r.commit = job->spec.commit;
    r.outcome = static_cast<kiln_outcome>(outcome);
    r.tests = {{"t.a", KILN_PASSED, 10, ""}, {"t.b", KILN_FAILED, 20, "boom"},
               {"t.c", KILN_PASSED, 5, ""}};
    jobs.record(r, "runner-1", now);
}

std::vector<OutboxRow> DeliveryRig::raise(int kind, uint64_t id, int64_t now)
{
    auto rows = engine->raise(kind, *jobs.find(id), now);
    Deliveries *e = engine.get();
    raised++;
    store->save_job(*jobs.find(id), rows, [this, e, rows] {
        e->accept(rows);
        accepted++;
    });
    return rows;
}

bool DeliveryRig::run_until(const std::function<bool()> &done, uint64_t timeout_ms)
{
    // A ticking timer, so that one loop turn never waits longer than 5 ms.
    auto *tick = new uv_timer_t;
    uv_timer_init(&loop, tick);
    uv_timer_start(tick, [](uv_timer_t *) {}, 5, 5);
    uint64_t deadline = uv_now(&loop) + timeout_ms;
    while (!done() && uv_now(&loop) < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t *>(tick),
             [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
    uv_run(&loop, UV_RUN_NOWAIT);
    return done();
}

const ReceiverStatus *DeliveryRig::status_of(const std::string &receiver)
{
    last_status_ = engine->status(unix_ms());
    for (const auto &s : last_status_)
        if (s.receiver == receiver)
            return &s;
    return nullptr;
}

} // namespace kiln
