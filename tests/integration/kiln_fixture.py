"""Kiln integration-test fixture: the real daemons in a temporary directory.

Standard library only.  The tests import this module (`import kiln_fixture
as kf`); it gathers the names they use from the modules that own them:

  kiln_env      where the built programs are (KILN_BUILD_DIR and the
                KILN_OBSERVER, ... variables), the bounds every wait uses,
                run() (argv, never a shell, bounded) and free_port()
  kiln_wire     msgpack and frames, for tests that speak to a daemon as a
                raw (often hostile) peer
  kiln_repo     GitRepo, a real repository, and the test suites committed
                to it (PASSING_UNITTEST, SLEEPY_UNITTEST, ...)
  kiln_daemon   Daemon, one process started and stopped by PID; pid_alive()
  kiln_config   the daemons' config files, TOML strings, secret files
  kiln_logs     what the tests read from the daemons' logs
  kiln_cluster  Cluster: dispatcher, runners and observer on 127.0.0.1
  kiln_testcase ClusterTestCase (prints the daemons' logs when a test
                fails) and tests_by_name()

Faults: Cluster.kill_daemon(key) crashes one daemon (SIGKILL, by the PID we
started); start_dispatcher() / start_runner(name) / start_observer() start
it again with the same port, state, work dir and spool, logging to a new
file per incarnation (KEY.log, KEY.2.log, ...).  recorded() counts the
dispatcher's "result recorded" log lines over all its incarnations;
runner_running(key) tells from a runner's log which jobs' tests it runs.
SLEEPY_UNITTEST makes each commit's tests take tests/sleep_ms milliseconds.
"""

from kiln_cluster import Cluster
from kiln_config import toml_array, toml_str, write_secret
from kiln_daemon import Daemon, pid_alive
from kiln_env import (HERE, KILL_GRACE, KILNCTL_TIMEOUT, RESULT_TIMEOUT, SOURCE_DIR,
                      START_TIMEOUT, STOP_GRACE, _build_dir, binary, free_port, plugin_dir,
                      run, seeded_random)
from kiln_logs import RECORDED
from kiln_repo import (FAILING_UNITTEST, PASSING_UNITTEST, SLEEPY_UNITTEST, GitRepo,
                       hanging_unittest)
from kiln_testcase import ClusterTestCase, tests_by_name
from kiln_wire import (PROTOCOL_VERSION, RawPeer, frame, hello_frame, mp_decode, mp_map, mp_str,
                       split_frames)

__all__ = [
    "Cluster", "ClusterTestCase", "tests_by_name",
    "toml_array", "toml_str", "write_secret",
    "Daemon", "pid_alive",
    "HERE", "KILL_GRACE", "KILNCTL_TIMEOUT", "RESULT_TIMEOUT", "SOURCE_DIR", "START_TIMEOUT",
    "STOP_GRACE", "_build_dir", "binary", "free_port", "plugin_dir", "run", "seeded_random",
    "RECORDED",
    "FAILING_UNITTEST", "PASSING_UNITTEST", "SLEEPY_UNITTEST", "GitRepo", "hanging_unittest",
    "PROTOCOL_VERSION", "RawPeer", "frame", "hello_frame", "mp_decode", "mp_map", "mp_str",
    "split_frames",
]
