// kiln-observer: watches repositories and tells the dispatcher about new commits.
#include <cstdio>

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

#include "observer.hpp"

using namespace kiln;

static const DaemonInfo kInfo = {"kiln-observer",
                                 "Watch repositories and send new commits to the dispatcher.",
                                 "observer.toml"};

int main(int argc, char **argv)
{
    DaemonOptions opts = parse_daemon_args(argc, argv, kInfo);
    log_init(kInfo.name, opts.verbose);

    uv_loop_t loop;
    uv_loop_init(&loop);
    std::unique_ptr<Observer> observer;
    // Every exit closes the loop (handles and libuv's own allocations), so a
    // leak checker (KILN_SANITIZE) sees a clean exit on every path.
    auto finish = [&](int status) {
        observer.reset();
        drain_and_close_loop(&loop);
        return status;
    };
    if (!load_daemon_config(opts, kInfo, [&](const ConfigTable &root) {
            observer = std::make_unique<Observer>(&loop, ObserverConfig::from(root));
        }))
        return finish(1);
    if (opts.check_config) {
        printf("%s: %s: OK\n", kInfo.name, opts.config_path.c_str());
        return finish(0);
    }
    if (!observer->start())
        return finish(1); // state file unreadable, corrupt or not writable: start() logged why
    ServiceHooks hooks; // READY=1 now; SIGHUP reloads; STATUS= and WATCHDOG=1 meanwhile
    hooks.stop = [&] { observer->stop(); };
    hooks.reload = [&] {
        reload_daemon_config(opts, kInfo, [&](const ConfigTable &root) {
            observer->reload(ObserverConfig::from(root));
        });
    };
    hooks.status = [&] { return observer->status(); };
    run_service(&loop, hooks);
    int status = finish(0);
    log_notice("stopped");
    return status;
}
