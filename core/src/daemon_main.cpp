// run_daemon: the sequence every daemon's main() follows (daemon_main.hpp).
#include <kiln/daemon_main.hpp>

#include <cstdio>

#include <kiln/log.hpp>

namespace kiln {

int run_daemon(int argc, char **argv, const DaemonInfo &info, const DaemonSteps &steps)
{
    DaemonOptions opts = parse_daemon_args(argc, argv, info);
    log_init(info.name, opts.verbose);

    uv_loop_t loop;
    uv_loop_init(&loop);
    // Every exit closes the loop (handles and libuv's own allocations), so a
    // leak checker (KILN_SANITIZE) sees a clean exit on every path.
    auto finish = [&](int status) {
        steps.destroy();
        drain_and_close_loop(&loop);
        return status;
    };
    if (!load_daemon_config(opts, info,
                            [&](const ConfigTable &root) { steps.construct(&loop, root); }))
        return finish(1);
    if (opts.check_config) {
        printf("%s: %s: OK\n", info.name, opts.config_path.c_str());
        return finish(0);
    }
    if (!steps.start()) // it logged why (a state file it cannot trust, ...)
        return finish(1);
    ServiceHooks hooks; // READY=1 now; SIGHUP reloads; STATUS= and WATCHDOG=1 meanwhile
    hooks.stop = steps.stop;
    hooks.reload = [&] { reload_daemon_config(opts, info, steps.reload); };
    hooks.status = steps.status;
    run_service(&loop, hooks);
    int status = finish(0);
    log_notice("stopped");
    return status;
}

} // namespace kiln
