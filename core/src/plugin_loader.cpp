// The plugin loader and the host table plugins see.  Every check that can
// fail does so at start-up, naming the plugin and the file.
#include <kiln/plugin_loader.hpp>

#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <map>

#include <kiln/log.hpp>
#include <kiln/spawn.hpp>

namespace kiln {

const char kReportRoutingKey[] = "plugin";
const char kReportReposKey[] = "repos";

struct Plugin::Impl {
    kiln_host host{};
    std::string name;
    std::string daemon;
    ConfigTable config;
    std::map<std::string, std::string> strings; // keeps config strings alive until fini
    // and config lists: the strings, and the NULL-terminated pointers to them
    std::map<std::string, std::pair<std::vector<std::string>, std::vector<const char *>>> lists;
    bool routed = false; // a [[report]] table: the dispatcher's keys are hidden from the plugin
    Plugin::SpawnHook spawn;                    // empty: spawn_process
};

namespace {

Plugin::Impl &impl_of(const kiln_host *host) { return *static_cast<Plugin::Impl *>(host->host_data); }

// The plugin sees its table without the daemon's routing keys: asking for
// one is asking for an absent key.
bool hidden(const kiln_host *host, const char *key)
{
    return !key || (impl_of(host).routed &&
                    (strcmp(key, kReportRoutingKey) == 0 || strcmp(key, kReportReposKey) == 0));
}

// The host table's functions are called from plugin code, C or C++: none
// lets an exception out (a config string that cannot be kept is -ENOMEM).

void host_log(const kiln_host *host, int level, const char *fmt, ...) noexcept
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    try {
        log(level, "plugin %s: %s", impl_of(host).name.c_str(), text);
    } catch (...) {
    }
}

// The config getters log a wrong type themselves, so the plugin only has to
// fail its init.
int report(int rc, const std::string &message)
{
    if (rc == -EINVAL)
        log_err("%s", message.c_str());
    return rc;
}

// One config getter's body: -ENOENT for the routing key, -ENOMEM for an
// exception.
template <class Get> int config_get(const kiln_host *host, const char *key, Get &&get) noexcept
{
    if (hidden(host, key))
        return -ENOENT;
    try {
        std::string message;
        return report(get(impl_of(host), message), message);
    } catch (...) {
        return -ENOMEM;
    }
}

int host_config_string(const kiln_host *host, const char *key, const char **out) noexcept
{
    return config_get(host, key, [&](Plugin::Impl &impl, std::string &message) {
        std::string value;
        int rc = impl.config.get_string(key, value, message);
        if (rc == 0) {
            auto &kept = impl.strings[key];
            kept = value;
            *out = kept.c_str();
        }
        return rc;
    });
}

int host_config_strings(const kiln_host *host, const char *key, const char *const **out,
                        size_t *n) noexcept
{
    return config_get(host, key, [&](Plugin::Impl &impl, std::string &message) {
        if (!impl.config.has(key))
            return -ENOENT;
        auto &[items, pointers] = impl.lists[key];
        try {
            items = impl.config.strings(key, {});
        } catch (const ConfigError &e) {
            message = e.what();
            return -EINVAL;
        }
        pointers.clear();
        for (const auto &item : items)
            pointers.push_back(item.c_str());
        pointers.push_back(nullptr);
        *out = pointers.data();
        *n = items.size();
        return 0;
    });
}

int host_config_int(const kiln_host *host, const char *key, int64_t *out) noexcept
{
    return config_get(host, key, [&](Plugin::Impl &impl, std::string &message) {
        return impl.config.get_int(key, *out, message);
    });
}

int host_config_bool(const kiln_host *host, const char *key, int *out) noexcept
{
    return config_get(host, key, [&](Plugin::Impl &impl, std::string &message) {
        bool value = false;
        int rc = impl.config.get_bool(key, value, message);
        if (rc == 0)
            *out = value ? 1 : 0;
        return rc;
    });
}

int host_config_duration_ms(const kiln_host *host, const char *key, uint64_t *out) noexcept
{
    return config_get(host, key, [&](Plugin::Impl &impl, std::string &message) {
        return impl.config.get_duration_ms(key, *out, message);
    });
}

int host_spawn(const kiln_host *host, const kiln_spawn_request *req, kiln_spawn_cb cb, void *arg,
               kiln_process **proc) noexcept
{
    auto &impl = impl_of(host);
    if (!req)
        return -EINVAL;
    try {
        if (!impl.spawn)
            return spawn_process(host->loop, req, cb, arg, proc);
        return impl.spawn(*req, cb, arg, proc);
    } catch (...) { // nothing may unwind into the plugin
        log_err("plugin %s: spawn: unexpected exception", impl.name.c_str());
        return -EIO;
    }
}

void host_kill(const kiln_host *, kiln_process *proc) noexcept { kill_process(proc); }

bool ops_complete(const kiln_plugin &d, std::string &missing)
{
    if (!d.init || !d.fini || !d.cancel) {
        missing = "init, fini and cancel";
        return false;
    }
    switch (d.kind) {
    case KILN_PLUGIN_VCS:
        missing = "vcs ops (poll, prepare)";
        return d.vcs && d.vcs->poll && d.vcs->prepare;
    case KILN_PLUGIN_EXEC:
        missing = "exec ops (run)";
        return d.exec && d.exec->run; // list is optional
    case KILN_PLUGIN_REPORT:
        // A plugin that hears events may leave report NULL.
        missing = "report ops (report, or event ops)";
        return (d.report && d.report->report) || (KILN_PLUGIN_HAS(&d, events) && d.events);
    }
    missing = "a known kind";
    return false;
}

// The event ops of a descriptor that has them (its size covers `events`):
// nullptr when absent; a set table must hold event() and say a size that
// covers it (a newer header's larger table is fine).
const kiln_report_event_ops *event_ops(const kiln_plugin &d, std::string &why)
{
    if (!KILN_PLUGIN_HAS(&d, events) || !d.events)
        return nullptr;
    const kiln_report_event_ops *ops = d.events;
    constexpr size_t need = offsetof(kiln_report_event_ops, event) + sizeof ops->event;
    if (d.kind != KILN_PLUGIN_REPORT)
        why = "sets event ops but is not a report plugin";
    else if (ops->size < need || ops->size > 65536)
        why = "event ops table says it is " + std::to_string(ops->size) +
              " bytes, expected at least " + std::to_string(need);
    else if (!ops->event)
        why = "event ops table lacks event()";
    return ops;
}

bool plain_name(const std::string &name)
{
    if (name.empty() || name.size() > 64 || name[0] == '.')
        return false;
    for (char c : name)
        if (!isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
            return false;
    return true;
}

} // namespace

const char *plugin_kind_name(int kind)
{
    switch (kind) {
    case KILN_PLUGIN_VCS: return "vcs";
    case KILN_PLUGIN_EXEC: return "exec";
    case KILN_PLUGIN_REPORT: return "report";
    default: return "unknown";
    }
}

std::vector<std::string> plugin_dirs(const std::vector<std::string> &configured)
{
    std::vector<std::string> dirs = configured;
    dirs.push_back(KILN_PLUGIN_DIR);
    return dirs;
}

void Plugin::set_spawn_hook(SpawnHook hook) { impl_->spawn = std::move(hook); }

Plugin::~Plugin()
{
    if (desc_ && self_)
        desc_->fini(self_);
    // No dlclose: fini may close libuv handles whose close callbacks — plugin
    // code — run on a later loop turn; unmapping the object now would make
    // the loop jump into nothing.  The mapping goes with the process (and a
    // reload that loads the same file again reuses it).
    (void)dl_;
}

std::unique_ptr<Plugin> load_plugin(uv_loop_t *loop, const std::vector<std::string> &dirs,
                                    const std::string &name, int kind, const ConfigTable &config,
                                    const std::string &daemon)
{
    std::string prefix = std::string(plugin_kind_name(kind)) + " plugin '" + name + "'";
    if (!plain_name(name))
        throw PluginError(prefix + ": not a plugin name (letters, digits, '.', '_', '-')");

    std::string path, looked;
    for (const auto &dir : dirs) {
        std::string candidate = dir + "/" + name + ".so";
        if (access(candidate.c_str(), F_OK) == 0) {
            path = candidate;
            break;
        }
        looked += (looked.empty() ? "" : ", ") + candidate;
    }
    if (path.empty())
        throw PluginError(prefix + ": no such file (looked for " + looked + ")");
    auto fail = [&](const std::string &why) { throw PluginError(prefix + ": " + path + ": " + why); };

    std::unique_ptr<Plugin> plugin(new Plugin);
    plugin->name_ = name;
    plugin->path_ = path;
    // RTLD_NOW: an unresolved symbol fails here, not at the first call.
    plugin->dl_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!plugin->dl_)
        fail(std::string("cannot load: ") + dlerror() + " (check its libraries with ldd)");

    dlerror();
    auto entry = reinterpret_cast<kiln_plugin_entry_fn>(dlsym(plugin->dl_, KILN_PLUGIN_ENTRY));
    if (!entry) {
        for (int v = 0; v <= 9; v++) {
            std::string other = "kiln_plugin_v" + std::to_string(v);
            if (v != KILN_PLUGIN_ABI && dlsym(plugin->dl_, other.c_str()))
                fail("built for plugin ABI " + std::to_string(v) + ", this daemon loads ABI " +
                     std::to_string(KILN_PLUGIN_ABI) + " (rebuild it against this kiln/plugin.h)");
        }
        fail("no entry symbol " KILN_PLUGIN_ENTRY " (not a Kiln plugin?)");
    }
    const kiln_plugin *desc = entry();
    if (!desc)
        fail(KILN_PLUGIN_ENTRY "() returned no descriptor");
    if (desc->abi != KILN_PLUGIN_ABI)
        fail("descriptor says ABI " + std::to_string(desc->abi) + ", this daemon loads ABI " +
             std::to_string(KILN_PLUGIN_ABI));
    // ABI 1.0's descriptor (an older header) ends before `events`: its size
    // says so, and the fields after it are never read.
    if (desc->size < KILN_PLUGIN_SIZE_V1_0)
        fail("descriptor is " + std::to_string(desc->size) + " bytes, expected at least " +
             std::to_string(KILN_PLUGIN_SIZE_V1_0));
    if (desc->kind != kind)
        fail(std::string("is of kind ") + plugin_kind_name(desc->kind) + ", not " +
             plugin_kind_name(kind));
    if (!desc->name || name != desc->name)
        fail(std::string("calls itself '") + (desc->name ? desc->name : "(null)") +
             "', expected its file stem '" + name + "'");
    std::string missing, bad_events;
    const kiln_report_event_ops *events = event_ops(*desc, bad_events);
    if (!bad_events.empty())
        fail(bad_events);
    if (!ops_complete(*desc, missing))
        fail("descriptor lacks " + missing);

    // Keys the plugin does not declare are a config error, reported with
    // their place in the file like any other unknown key.  A report
    // plugin's [[report]] table holds the dispatcher's routing key too
    // (plugin = "NAME", repos = [...]): those are the daemon's, never the
    // plugin's.
    bool routed = kind == KILN_PLUGIN_REPORT;
    if (routed) {
        config.accept(kReportRoutingKey);
        config.accept(kReportReposKey);
    }
    for (const char *const *key = desc->config_keys; key && *key; key++)
        config.accept(*key);
    config.reject_unknown_keys();

    plugin->desc_ = desc;
    plugin->events_ = events;
    plugin->impl_ = std::make_unique<Plugin::Impl>();
    Plugin::Impl &impl = *plugin->impl_;
    impl.name = name;
    impl.daemon = daemon;
    impl.config = config;
    impl.routed = routed;
    kiln_host &host = impl.host;
    host.abi = KILN_PLUGIN_ABI;
    host.size = sizeof(kiln_host);
    host.loop = loop;
    host.daemon = impl.daemon.c_str();
    host.host_data = &impl;
    host.log = host_log;
    host.config_string = host_config_string;
    host.config_int = host_config_int;
    host.config_bool = host_config_bool;
    host.config_duration_ms = host_config_duration_ms;
    host.config_strings = host_config_strings;
    host.spawn = host_spawn;
    host.kill_process = host_kill;

    void *self = nullptr;
    int rc = desc->init(&host, &self);
    if (rc != 0)
        fail(std::string("init failed: ") + strerror(rc < 0 ? -rc : rc));
    plugin->self_ = self;
    return plugin;
}

} // namespace kiln
