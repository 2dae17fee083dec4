#pragma once
// Reporting: the report plugins ([[report]] tables) and the reports in
// flight.  The plugin set is shared with the reports in flight, so a reload
// can swap in a new set and unload the old one once they are done.
#include <functional>
#include <memory>
#include <vector>

#include <uv.h>

#include <kiln/plugin_loader.hpp>

#include "dispatcher_config.hpp"
#include "job_table.hpp"

namespace kiln {

class Reporter {
  public:
    using Plugins = std::vector<std::unique_ptr<Plugin>>;

    explicit Reporter(uv_loop_t *loop) : loop_(loop) {}

    // Load the plugins `settings` names; throws PluginError or ConfigError.
    std::shared_ptr<Plugins> load(const DispatcherSettings &settings) const;
    // Use these from now on; the old set is unloaded once no report uses it.
    void install(std::shared_ptr<Plugins> plugins);
    // Unload the replaced sets no report uses any more.  Never from inside
    // a plugin's callback (fini and dlclose there would pull the code from
    // under it): from install and the heartbeat timer.
    void free_unused();

    size_t size() const { return plugins_->size(); }
    bool empty() const { return plugins_->empty(); }

    // Hand a done job to every plugin; `all_done` runs once each has
    // answered (failures are logged: reporting is at least once, not
    // guaranteed to succeed).
    void report(const Job &job, std::function<void()> all_done);
    // Reports handed to the plugins and not yet done by all of them (after
    // a restart, every unreported commit is handed again): the report
    // backlog, without walking the job table.
    size_t in_flight() const { return in_flight_; }

  private:
    uv_loop_t *loop_;
    size_t in_flight_ = 0;
    std::shared_ptr<Plugins> plugins_ = std::make_shared<Plugins>();
    std::vector<std::shared_ptr<Plugins>> old_;
};

} // namespace kiln
