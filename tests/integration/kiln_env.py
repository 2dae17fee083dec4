"""Where the programs under test are, how long a test may wait for them, and
how to run one: the base every other kiln_* module of the fixture builds on.

Where the binaries are: environment variables KILN_OBSERVER, KILN_DISPATCHER,
KILN_RUNNER, KILNCTL and KILN_PLUGIN_DIR (set by tests/integration/
CMakeLists.txt for ctest), or KILN_BUILD_DIR (a CMake build tree), or else
the build tree ./build at the top of the source tree.
"""

import os
import random
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))

# Bounds, in seconds.
STOP_GRACE = 10.0       # SIGTERM → exit, before SIGKILL
KILL_GRACE = 5.0        # SIGKILL → reaped
START_TIMEOUT = 15.0    # a daemon answering / a runner registered
RESULT_TIMEOUT = 45.0   # a commit's result reported
KILNCTL_TIMEOUT = 15.0  # one kilnctl call


def _build_dir():
    return os.environ.get("KILN_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")


def binary(name):
    """Path of a built program: "observer", "dispatcher", "runner" or "kilnctl"."""
    env = {"observer": "KILN_OBSERVER", "dispatcher": "KILN_DISPATCHER",
           "runner": "KILN_RUNNER", "kilnctl": "KILNCTL"}[name]
    path = os.environ.get(env)
    if not path:
        if name == "kilnctl":
            path = os.path.join(_build_dir(), "daemons", "kilnctl", "kilnctl")
        else:
            path = os.path.join(_build_dir(), "daemons", name, "kiln-" + name)
    if not os.access(path, os.X_OK):
        raise RuntimeError("%s: not found or not executable (build first, or set %s)"
                           % (path, env))
    return path


def plugin_dir():
    path = os.environ.get("KILN_PLUGIN_DIR") or os.path.join(_build_dir(), "plugins")
    if not os.path.isdir(path):
        raise RuntimeError("%s: no plugin directory (build first, or set KILN_PLUGIN_DIR)"
                           % path)
    return path


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv, timeout=30.0, check=True, **kwargs):
    """Run argv (a list, never a shell), capturing text output, bounded."""
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError("%s: exit %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc


def seeded_random(variable, what):
    """A random generator for a randomised test (faults at random moments):
    seeded from the environment variable `variable` when it is set, else at
    random; the seed is printed so that a failure can be reproduced.
    Returns the generator and its seed."""
    seed = int(os.environ.get(variable) or random.SystemRandom().randrange(2 ** 32))
    sys.stderr.write("%s seed %d (%s=%d reproduces it)\n" % (what, seed, variable, seed))
    return random.Random(seed), seed
