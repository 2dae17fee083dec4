// kiln-dispatcher: queues commits, assigns them to runners, records results.
#include <cstdio>

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

#include "dispatcher.hpp"

using namespace kiln;

static const DaemonInfo kInfo = {"kiln-dispatcher",
                                 "Queue commits, hand them to test runners, record results.",
                                 "dispatcher.toml"};

int main(int argc, char **argv)
{
    DaemonOptions opts = parse_daemon_args(argc, argv, kInfo);
    log_init(kInfo.name, opts.verbose);

    uv_loop_t loop;
    uv_loop_init(&loop);
    std::unique_ptr<Dispatcher> dispatcher;
    // Every exit closes the loop (handles and libuv's own allocations), so a
    // leak checker (KILN_SANITIZE) sees a clean exit on every path.
    auto finish = [&](int status) {
        dispatcher.reset();
        drain_and_close_loop(&loop);
        return status;
    };
    if (!load_daemon_config(opts, kInfo, [&](const ConfigTable &root) {
            dispatcher = std::make_unique<Dispatcher>(&loop, DispatcherConfig::from(root));
        }))
        return finish(1);
    if (opts.check_config) {
        printf("%s: %s: OK\n", kInfo.name, opts.config_path.c_str());
        return finish(0);
    }
    if (!dispatcher->start())
        return finish(1);
    ServiceHooks hooks; // READY=1 now; SIGHUP reloads; STATUS= and WATCHDOG=1 meanwhile
    hooks.stop = [&] { dispatcher->stop(); };
    hooks.reload = [&] {
        reload_daemon_config(opts, kInfo, [&](const ConfigTable &root) {
            dispatcher->reload(DispatcherConfig::from(root));
        });
    };
    hooks.status = [&] { return dispatcher->status(); };
    run_service(&loop, hooks);
    int status = finish(0);
    log_notice("stopped");
    return status;
}
