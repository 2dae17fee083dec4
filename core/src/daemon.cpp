// Command line, config loading and signals shared by the daemons.
#include <kiln/daemon.hpp>

#include <getopt.h>
#include <signal.h>
#include <sys/time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <kiln/log.hpp>
#include <kiln/plugin_loader.hpp>
#include <kiln/systemd.hpp>

namespace kiln {

namespace {

void print_help(const DaemonInfo &info)
{
    printf("Usage: %s [OPTION]...\n"
           "%s\n\n"
           "  -c, --config PATH   config file (default %s/%s)\n"
           "      --check-config  validate the config and its plugins, then exit (0 good, 1 bad)\n"
           "  -v, --verbose       log debug messages\n"
           "  -h, --help          show this help and exit\n"
           "  -V, --version       show the version and exit\n"
           "\nSee %s(8) and kiln.toml(5).\n",
           info.name, info.summary, KILN_SYSCONF_DIR, info.config, info.name);
}

} // namespace

DaemonOptions parse_daemon_args(int argc, char **argv, const DaemonInfo &info)
{
    static const option longopts[] = {
        {"config", required_argument, nullptr, 'c'}, {"check-config", no_argument, nullptr, 'C'},
        {"verbose", no_argument, nullptr, 'v'},      {"help", no_argument, nullptr, 'h'},
        {"version", no_argument, nullptr, 'V'},      {nullptr, 0, nullptr, 0},
    };
    DaemonOptions opts;
    opts.config_path = std::string(KILN_SYSCONF_DIR) + "/" + info.config;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:vhV", longopts, nullptr)) != -1) {
        switch (c) {
        case 'c': opts.config_path = optarg; break;
        case 'C': opts.check_config = true; break;
        case 'v': opts.verbose = true; break;
        case 'h': print_help(info); exit(0);
        case 'V': printf("%s %s\n", info.name, KILN_VERSION); exit(0);
        default:
            fprintf(stderr, "Try '%s --help'.\n", info.name);
            exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\nTry '%s --help'.\n", info.name, argv[optind],
                info.name);
        exit(2);
    }
    return opts;
}

bool load_daemon_config(const DaemonOptions &opts, const DaemonInfo &info,
                        const std::function<void(const ConfigTable &)> &apply)
{
    try {
        ConfigTable root = load_config_with_dropins(opts.config_path); // + conf.d/NAME/*.toml
        apply(root);
        return true;
    } catch (const ConfigError &e) {
        fprintf(stderr, "%s: %s\n", info.name, e.what());
    } catch (const PluginError &e) {
        fprintf(stderr, "%s: %s: %s\n", info.name, opts.config_path.c_str(), e.what());
    } catch (const std::exception &e) { // the daemon's own start-up errors (its store, ...)
        fprintf(stderr, "%s: %s\n", info.name, e.what());
    }
    return false;
}

StopSignals::StopSignals(uv_loop_t *loop, std::function<void(int)> on_stop)
    : sigint_(new uv_signal_t), sigterm_(new uv_signal_t), on_stop_(std::move(on_stop))
{
    signal(SIGPIPE, SIG_IGN);
    for (uv_signal_t *s : {sigint_, sigterm_}) {
        uv_signal_init(loop, s);
        s->data = this;
        uv_unref(reinterpret_cast<uv_handle_t *>(s)); // signals alone do not keep the loop alive
    }
    uv_signal_start(sigint_, on_signal, SIGINT);
    uv_signal_start(sigterm_, on_signal, SIGTERM);
}

StopSignals::~StopSignals()
{
    for (uv_signal_t *s : {sigint_, sigterm_})
        uv_close(reinterpret_cast<uv_handle_t *>(s),
                 [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_signal_t *>(h); });
}

void StopSignals::on_signal(uv_signal_t *handle, int signum) noexcept
{
    auto *self = static_cast<StopSignals *>(handle->data);
    if (++self->received_ > 1) {
        log_warning("signal %s again: stopping at once", strsignal(signum));
        exit(1);
    }
    log_notice("signal %s: stopping", strsignal(signum));
    if (!guarded("stop", [&] { self->on_stop_(signum); })) {
        log_err("signal %s: the graceful stop failed; stopping at once", strsignal(signum));
        exit(1);
    }
}

void run_until_stopped(uv_loop_t *loop, const std::function<void()> &stop)
{
    StopSignals signals(loop, [&](int) { stop(); });
    uv_run(loop, UV_RUN_DEFAULT);
}

namespace {

// The handles run_service adds to the loop; closed when the loop ends.
class ServiceNotifier {
  public:
    ServiceNotifier(uv_loop_t *loop, const ServiceHooks &hooks) : hooks_(hooks)
    {
        hup_ = new uv_signal_t;
        uv_signal_init(loop, hup_);
        hup_->data = this;
        uv_unref(handle(hup_));
        uv_signal_start(hup_, on_hup, SIGHUP);

        if (notify_enabled())
            retry_timer_ = new_timer(loop);
        notify_ready(status());
        arm_retry();
        if (notify_enabled() && hooks_.status) {
            status_timer_ = new_timer(loop);
            uv_timer_start(status_timer_, on_status_timer, 1000, 1000);
        }
        if (uint64_t usec = watchdog_usec()) {
            uint64_t ms = usec / 2000; // half the interval, as sd_watchdog_enabled(3) advises
            watchdog_timer_ = new_timer(loop);
            uv_timer_start(
                watchdog_timer_,
                [](uv_timer_t *t) noexcept {
                    notify_watchdog();
                    static_cast<ServiceNotifier *>(t->data)->arm_retry();
                },
                ms ? ms : 1, ms ? ms : 1);
            log_info("watchdog: keep-alive every %llu ms", static_cast<unsigned long long>(ms));
        }
    }
    ~ServiceNotifier()
    {
        uv_close(handle(hup_), [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_signal_t *>(h); });
        for (uv_timer_t *t : {status_timer_, watchdog_timer_, retry_timer_})
            if (t)
                uv_close(handle(t), [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_timer_t *>(h); });
    }
    ServiceNotifier(const ServiceNotifier &) = delete;
    ServiceNotifier &operator=(const ServiceNotifier &) = delete;

    void stopping()
    {
        stopping_ = true;
        notify_stopping();
        arm_retry();
        // The watchdog keeps going while the daemon drains: a long graceful
        // stop is not a hang.
    }

  private:
    template <typename H> static uv_handle_t *handle(H *h)
    {
        return reinterpret_cast<uv_handle_t *>(h);
    }
    uv_timer_t *new_timer(uv_loop_t *loop)
    {
        auto *t = new uv_timer_t;
        uv_timer_init(loop, t);
        t->data = this;
        uv_unref(handle(t));
        return t;
    }
    // An essential notification did not fit the manager's queue: try again
    // shortly, until it goes (the timer does not keep the loop alive).
    void arm_retry() noexcept
    {
        if (!retry_timer_ || !notify_pending() || uv_is_active(handle(retry_timer_)))
            return;
        uv_timer_start(
            retry_timer_,
            [](uv_timer_t *t) noexcept {
                notify_retry();
                static_cast<ServiceNotifier *>(t->data)->arm_retry();
            },
            kNotifyRetryMs, 0);
    }
    static constexpr uint64_t kNotifyRetryMs = 100;

    std::string status()
    {
        std::string s;
        if (hooks_.status)
            guarded("status", [&] { s = hooks_.status(); });
        last_status_ = s;
        return s;
    }
    static void on_status_timer(uv_timer_t *t) noexcept
    {
        auto *self = static_cast<ServiceNotifier *>(t->data);
        guarded("status", [&] {
            std::string before = self->last_status_;
            if (self->status() != before)
                notify_status(self->last_status_);
            self->arm_retry();
        });
    }
    static void on_hup(uv_signal_t *h, int) noexcept
    {
        auto *self = static_cast<ServiceNotifier *>(h->data);
        if (self->stopping_) {
            log_notice("signal %s: stopping; not reloading", strsignal(SIGHUP));
            return;
        }
        if (!self->hooks_.reload) {
            log_notice("signal %s: nothing to reload", strsignal(SIGHUP));
            return;
        }
        guarded("reload", [&] {
            log_notice("signal %s: reloading the config", strsignal(SIGHUP));
            notify_reloading();
            self->hooks_.reload();
            notify_ready(self->status());
            self->arm_retry();
        });
    }

    const ServiceHooks &hooks_;
    uv_signal_t *hup_ = nullptr;
    uv_timer_t *status_timer_ = nullptr, *watchdog_timer_ = nullptr, *retry_timer_ = nullptr;
    std::string last_status_;
    bool stopping_ = false;
};

} // namespace

void run_service(uv_loop_t *loop, const ServiceHooks &hooks)
{
    ServiceNotifier notifier(loop, hooks);
    StopSignals signals(loop, [&](int) {
        notifier.stopping();
        hooks.stop();
    });
    uv_run(loop, UV_RUN_DEFAULT);
}

bool reload_daemon_config(const DaemonOptions &opts, const DaemonInfo &info,
                          const std::function<void(const ConfigTable &)> &apply)
{
    if (load_daemon_config(opts, info, apply)) {
        log_notice("config %s: reloaded", opts.config_path.c_str());
        return true;
    }
    log_err("config %s: not reloaded (error above); still running with the previous config",
            opts.config_path.c_str());
    return false;
}

bool warn_needs_restart(const char *key, bool changed)
{
    if (changed)
        log_warning("reload: %s changed: needs a restart; keeping the running value", key);
    return changed;
}

int drain_and_close_loop(uv_loop_t *loop)
{
    uv_walk(
        loop,
        [](uv_handle_t *h, void *) noexcept {
            if (!uv_is_closing(h))
                uv_close(h, nullptr);
        },
        nullptr);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop);
}

int64_t unix_ms()
{
    timeval tv;
    gettimeofday(&tv, nullptr);
    return static_cast<int64_t>(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
}

} // namespace kiln
