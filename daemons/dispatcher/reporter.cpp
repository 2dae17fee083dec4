// Reporting: loading and swapping the report plugins, and handing a done
// job to each of them.
#include "reporter.hpp"

#include <kiln/log.hpp>
#include <kiln/plugin.h>

namespace kiln {

std::shared_ptr<Reporter::Plugins> Reporter::load(const DispatcherSettings &settings) const
{
    auto plugins = std::make_shared<Plugins>();
    auto dirs = plugin_dirs(settings.plugin_dirs);
    for (const auto &table : settings.reports)
        plugins->push_back(load_plugin(loop_, dirs, table.required_string("plugin"),
                                       KILN_PLUGIN_REPORT, table, "kiln-dispatcher"));
    return plugins;
}

void Reporter::install(std::shared_ptr<Plugins> plugins)
{
    old_.push_back(std::move(plugins_));
    plugins_ = std::move(plugins);
    free_unused();
}

void Reporter::free_unused()
{
    for (auto it = old_.begin(); it != old_.end();)
        if (it->use_count() == 1) {
            if (!(*it)->empty())
                log_info("reload: %zu old report plugin(s) unloaded", (*it)->size());
            it = old_.erase(it);
        } else {
            ++it;
        }
}

void Reporter::report(const Job &job, std::function<void()> all_done)
{
    in_flight_++;
    all_done = [this, done = std::move(all_done)] {
        in_flight_--;
        done();
    };
    std::vector<kiln_test_result> tests;
    tests.reserve(job.result.tests.size());
    for (const auto &t : job.result.tests)
        tests.push_back({t.name.c_str(), t.outcome, t.duration_ms,
                         t.message.empty() ? nullptr : t.message.c_str()});
    kiln_report rep{};
    rep.repo = job.spec.repo.c_str();
    rep.branch = job.spec.branch.c_str();
    rep.commit = job.spec.commit.c_str();
    rep.outcome = job.result.outcome;
    rep.runner = job.runner.c_str();
    rep.job_id = job.id;
    rep.attempt = job.attempt;
    rep.started_unix_ms = job.result.started_unix_ms;
    rep.finished_unix_ms = job.result.finished_unix_ms ? job.result.finished_unix_ms
                                                        : job.finished_unix_ms;
    rep.tests = tests.data();
    rep.n_tests = tests.size();
    rep.log = job.result.log.data();
    rep.log_len = job.result.log.size();
    rep.error = job.result.error.empty() ? nullptr : job.result.error.c_str();
    // One count per plugin, and one for this loop, so that a plugin that
    // answers at once cannot finish the report before the others start.
    struct Pending {
        std::function<void()> all_done;
        size_t left;
    };
    auto *pending = new Pending{std::move(all_done), plugins_->size() + 1};
    auto finish_one = [](Pending *p) {
        if (--p->left > 0)
            return;
        std::unique_ptr<Pending> done(p);
        guarded("report: after the plugins", [p] { p->all_done(); });
    };
    for (const auto &plugin : *plugins_) {
        struct Call {
            Pending *pending;
            std::string name;
            void (*finish)(Pending *);
            std::shared_ptr<Plugins> plugins; // a reload unloads them once no call holds them
        };
        auto *call = new Call{pending, plugin->name(), finish_one, plugins_};
        void *op = nullptr;
        int rc = plugin->report().report(
            plugin->self(), &rep,
            [](void *arg, int status, const char *error) noexcept {
                std::unique_ptr<Call> call(static_cast<Call *>(arg));
                if (status != 0)
                    log_err("report %s: %s", call->name.c_str(), error ? error : "failed");
                call->finish(call->pending);
            },
            call, &op);
        if (rc != 0) {
            log_err("report %s: cannot start: %s", call->name.c_str(), uv_strerror(rc));
            finish_one(pending);
            delete call;
        }
    }
    finish_one(pending);
}

} // namespace kiln
