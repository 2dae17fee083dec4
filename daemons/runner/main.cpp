// kiln-runner: runs the tests of the commits the dispatcher assigns.
#include <unistd.h>

#include <kiln/daemon_main.hpp>

#include "runner.hpp"

int main(int argc, char **argv)
{
    using namespace kiln;
    static const DaemonInfo info = {"kiln-runner",
                                    "Run the tests of assigned commits in clean workspaces.",
                                    "runner.toml"};
    // A reload does not probe the sandbox again: that was settled at start-up.
    return run_daemon<Runner>(
        argc, argv, info, [](const ConfigTable &root) { return RunnerConfig::from(root); },
        [](const ConfigTable &root) {
            return RunnerConfig::from(root, geteuid(), /*probe_sandbox=*/false);
        });
}
