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
