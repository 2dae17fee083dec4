#pragma once
// The one main() of the three daemons.  Each daemon's main.cpp names
// itself, says how to read its config, and calls run_daemon:
//
//   int main(int argc, char **argv)
//   {
//       return run_daemon<Observer>(argc, argv, kInfo, &ObserverConfig::from);
//   }
//
// run_daemon then does what every daemon does, in this order: parse the
// command line; read the config and construct the daemon from it (an error
// prints "NAME: file:line:col: key: why" and exits 1); with --check-config
// print "NAME: PATH: OK" and exit 0 (the daemon is constructed, so its
// plugins are loaded and validated, but never started: construction must
// touch no disk); start it (false: exit 1); run the loop under the service
// manager (READY=1, STATUS=, WATCHDOG=1, STOPPING=1, SIGINT/SIGTERM call
// stop(), SIGHUP reads the config again and calls reload()); close the loop.
//
// `Daemon` needs: Daemon(uv_loop_t *, Config); bool start() (or void: it
// cannot fail); void stop(); void reload(Config); std::string status().
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include <kiln/config.hpp>
#include <kiln/daemon.hpp>

namespace kiln {

// run_daemon's daemon, type-erased: what differs between the three.
struct DaemonSteps {
    // Read the config root and construct the daemon (throws on bad config).
    std::function<void(uv_loop_t *loop, const ConfigTable &root)> construct;
    std::function<bool()> start;
    std::function<void()> destroy;
    // SIGHUP: read the root again and apply it (throws, changing nothing).
    std::function<void(const ConfigTable &root)> reload;
    std::function<void()> stop;
    std::function<std::string()> status;
};

int run_daemon(int argc, char **argv, const DaemonInfo &info, const DaemonSteps &steps);

// `load` reads the config at start-up and for --check-config;
// `load_on_reload` on SIGHUP (a reload may skip start-up probes).
template <typename Daemon, typename Load, typename LoadOnReload>
int run_daemon(int argc, char **argv, const DaemonInfo &info, Load load,
               LoadOnReload load_on_reload)
{
    std::unique_ptr<Daemon> daemon;
    DaemonSteps steps;
    steps.construct = [&](uv_loop_t *loop, const ConfigTable &root) {
        daemon = std::make_unique<Daemon>(loop, load(root));
    };
    steps.start = [&] {
        if constexpr (std::is_same_v<decltype(daemon->start()), bool>)
            return daemon->start();
        else
            return daemon->start(), true;
    };
    steps.destroy = [&] { daemon.reset(); };
    steps.reload = [&](const ConfigTable &root) { daemon->reload(load_on_reload(root)); };
    steps.stop = [&] { daemon->stop(); };
    steps.status = [&] { return daemon->status(); };
    return run_daemon(argc, argv, info, steps);
}

template <typename Daemon, typename Load>
int run_daemon(int argc, char **argv, const DaemonInfo &info, Load load)
{
    return run_daemon<Daemon>(argc, argv, info, load, load);
}

} // namespace kiln
