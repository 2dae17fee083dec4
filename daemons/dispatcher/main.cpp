// kiln-dispatcher: queues commits, assigns them to runners, records results.
#include <kiln/daemon_main.hpp>

#include "dispatcher.hpp"

int main(int argc, char **argv)
{
    using namespace kiln;
    static const DaemonInfo info = {"kiln-dispatcher",
                                    "Queue commits, hand them to test runners, record results.",
                                    "dispatcher.toml"};
    return run_daemon<Dispatcher>(argc, argv, info, &DispatcherConfig::from);
}
