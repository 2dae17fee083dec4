// kiln-observer: watches repositories and tells the dispatcher about new commits.
#include <kiln/daemon_main.hpp>

#include "observer.hpp"

int main(int argc, char **argv)
{
    using namespace kiln;
    static const DaemonInfo info = {"kiln-observer",
                                    "Watch repositories and send new commits to the dispatcher.",
                                    "observer.toml"};
    // start() fails when the state file is unreadable, corrupt or not writable.
    return run_daemon<Observer>(argc, argv, info, &ObserverConfig::from);
}
