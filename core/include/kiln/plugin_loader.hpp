#pragma once
// Loading plugins: dlopen(RTLD_NOW) by name from plugin directories, then the
// checks the ABI promises, each failing start-up with a PluginError that
// names the plugin and the path: file missing, dlopen failure, entry symbol
// missing, ABI version or descriptor size wrong, kind not the one
// configured, name not the file stem, ops table incomplete (a report
// plugin's event ops included), init failure.  A descriptor from ABI 1.0's
// header (shorter: no `events`) is accepted.
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <uv.h>

#include <kiln/config.hpp>
#include <kiln/plugin.h>

namespace kiln {

class PluginError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// One loaded, initialised plugin: the descriptor, its state, the host table
// handed to it.  Destroying it calls fini(); the object stays mapped (see ~Plugin).
class Plugin {
  public:
    ~Plugin();
    Plugin(const Plugin &) = delete;
    Plugin &operator=(const Plugin &) = delete;

    const std::string &name() const { return name_; }
    const std::string &path() const { return path_; }
    const kiln_plugin &descriptor() const { return *desc_; }
    void *self() const { return self_; }
    const kiln_vcs_ops &vcs() const { return *desc_->vcs; }
    const kiln_exec_ops &exec() const { return *desc_->exec; }
    // report() only when the plugin has it: one with event ops may not.
    const kiln_report_ops &report() const { return *desc_->report; }
    // The report event ops, nullptr when the plugin has none (an ABI 1.0
    // descriptor, or a plugin that only hears final results).
    const kiln_report_event_ops *events() const { return events_; }
    void cancel(void *op) const { desc_->cancel(self_, op); }

    // What the plugin's host->spawn does: spawn_process() unless the daemon
    // puts itself in between (kiln-runner does, for the exec plugins, to
    // scrub the environment and sandbox the tests).  The hook's arguments
    // are those of host->spawn; it must not throw (it is called from C).
    using SpawnHook = std::function<int(const kiln_spawn_request &req, kiln_spawn_cb cb,
                                        void *arg, kiln_process **proc)>;
    void set_spawn_hook(SpawnHook hook);

    struct Impl; // host-side state reachable from kiln_host.host_data
  private:
    friend std::unique_ptr<Plugin> load_plugin(uv_loop_t *, const std::vector<std::string> &,
                                               const std::string &, int, const ConfigTable &,
                                               const std::string &);
    Plugin() = default;
    std::string name_, path_;
    void *dl_ = nullptr;
    const kiln_plugin *desc_ = nullptr;
    const kiln_report_event_ops *events_ = nullptr;
    void *self_ = nullptr;
    std::unique_ptr<Impl> impl_;
};

// The keys of a [[report]] table that route it: the plugin it goes to
// (plugin = "files") and the repositories whose events it hears (repos =
// ["a", "b"]; absent: all).  They are the dispatcher's: the plugin neither
// declares nor sees them.
extern const char kReportRoutingKey[];
extern const char kReportReposKey[];

// Find NAME.so in `dirs` (first match wins), load and check it, init() it
// with `config` as its config table (keys it does not declare are refused;
// for a report plugin, the table without the routing keys).  `kind` is the
// enum kiln_plugin_kind the caller needs.  Throws PluginError.
std::unique_ptr<Plugin> load_plugin(uv_loop_t *loop, const std::vector<std::string> &dirs,
                                    const std::string &name, int kind, const ConfigTable &config,
                                    const std::string &daemon);

// Plugin directories: those configured, then the installed one.
std::vector<std::string> plugin_dirs(const std::vector<std::string> &configured);

const char *plugin_kind_name(int kind);

} // namespace kiln
