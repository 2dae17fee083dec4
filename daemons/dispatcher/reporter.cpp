// The report receivers: loading and swapping their plugins.
#include "reporter.hpp"

#include <kiln/log.hpp>
#include <kiln/plugin.h>

namespace kiln {

bool Receiver::wants(int kind) const
{
    const kiln_report_event_ops *ops = plugin->events();
    if (!ops)
        return kind == KILN_EVENT_FINISHED;
    return !ops->wants || ops->wants(plugin->self(), kind) != 0;
}

std::shared_ptr<Reporter::Receivers> Reporter::load(const DispatcherSettings &settings) const
{
    auto receivers = std::make_shared<Receivers>();
    auto dirs = plugin_dirs(settings.plugin_dirs);
    for (const auto &table : settings.reports) {
        receivers->push_back({table, load_plugin(loop_, dirs, table.plugin, KILN_PLUGIN_REPORT,
                                                 table.config, "kiln-dispatcher")});
        const Plugin &p = *receivers->back().plugin;
        log_info("report %s: %s, %s%s", table.identity.c_str(), p.path().c_str(),
                 p.events() ? "hears events" : "final results only (report())",
                 table.repos.empty() ? "" : ", some repositories");
    }
    return receivers;
}

void Reporter::install(std::shared_ptr<Receivers> receivers)
{
    old_.push_back(std::move(current_));
    current_ = std::move(receivers);
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

const Receiver *Reporter::find(const std::string &identity) const
{
    for (const auto &r : *current_)
        if (r.table.identity == identity)
            return &r;
    return nullptr;
}

} // namespace kiln
