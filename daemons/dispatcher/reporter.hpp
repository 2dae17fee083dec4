#pragma once
// The report receivers: one per [[report]] table, its plugin loaded.  The
// one owner of the loaded report plugins: a set is shared with the
// deliveries in flight, so a reload can swap in a new set and unload the old
// one once none of its deliveries runs.  The Deliveries engine
// (deliveries.hpp) owns the outbox and sends through these.
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include <kiln/plugin_loader.hpp>

#include "dispatcher_config.hpp"

namespace kiln {

struct Receiver {
    ReportTable table; // identity, plugin name, repos
    std::unique_ptr<Plugin> plugin;

    // Does it hear events of `kind`?  A plugin with event ops as its wants()
    // says (none: every kind); an older plugin only FINISHED, through report().
    bool wants(int kind) const;
};

class Reporter {
  public:
    using Receivers = std::vector<Receiver>;

    explicit Reporter(uv_loop_t *loop) : loop_(loop) {}

    // Load the plugins `settings` names; throws PluginError or ConfigError.
    std::shared_ptr<Receivers> load(const DispatcherSettings &settings) const;
    // Use these from now on; the old set is unloaded once no delivery uses it.
    void install(std::shared_ptr<Receivers> receivers);
    // Unload the replaced sets no delivery uses any more.  Never from inside
    // a plugin's callback (fini there would pull the code from under it):
    // from install and the heartbeat timer.
    void free_unused();

    size_t size() const { return current_->size(); }
    bool empty() const { return current_->empty(); }
    // The set in use (a delivery keeps its copy of the pointer until it ends).
    const std::shared_ptr<Receivers> &current() const { return current_; }
    // The configured receiver of that identity, or nullptr.
    const Receiver *find(const std::string &identity) const;

  private:
    uv_loop_t *loop_;
    std::shared_ptr<Receivers> current_ = std::make_shared<Receivers>();
    std::vector<std::shared_ptr<Receivers>> old_;
};

} // namespace kiln
