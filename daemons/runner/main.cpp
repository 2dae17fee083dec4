// kiln-runner: runs the tests of the commits the dispatcher assigns.
#include <cstdio>

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

#include "runner.hpp"

using namespace kiln;

static const DaemonInfo kInfo = {"kiln-runner",
                                 "Run the tests of assigned commits in clean workspaces.",
                                 "runner.toml"};

int main(int argc, char **argv)
{
    DaemonOptions opts = parse_daemon_args(argc, argv, kInfo);
    log_init(kInfo.name, opts.verbose);

    uv_loop_t loop;
    uv_loop_init(&loop);
    std::unique_ptr<Runner> runner;
    // Every exit closes the loop (handles and libuv's own allocations), so a
    // leak checker (KILN_SANITIZE) sees a clean exit on every path.
    auto finish = [&](int status) {
        runner.reset();
        drain_and_close_loop(&loop);
        return status;
    };
    if (!load_daemon_config(opts, kInfo, [&](const ConfigTable &root) {
            runner = std::make_unique<Runner>(&loop, RunnerConfig::from(root));
        }))
        return finish(1);
    if (opts.check_config) {
        printf("%s: %s: OK\n", kInfo.name, opts.config_path.c_str());
        return finish(0);
    }
    runner->start();
    ServiceHooks hooks; // READY=1 now; SIGHUP reloads; STATUS= and WATCHDOG=1 meanwhile
    hooks.stop = [&] { runner->stop(); };
    hooks.reload = [&] {
        reload_daemon_config(opts, kInfo, [&](const ConfigTable &root) {
            runner->reload(RunnerConfig::from(root, geteuid(), /*probe_sandbox=*/false));
        });
    };
    hooks.status = [&] { return runner->status(); };
    run_service(&loop, hooks);
    int status = finish(0);
    log_notice("stopped");
    return status;
}
