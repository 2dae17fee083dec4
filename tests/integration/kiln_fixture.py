"""Kiln integration-test fixture: the real daemons in a temporary directory.

Standard library only.  A Cluster owns one temp dir holding a git repository
with a tests/ directory, the three daemons' configs, their state and work
directories, the results directory of the files reporter, and one log file
per daemon (stdout and stderr).  It starts kiln-dispatcher, kiln-runner and
kiln-observer on 127.0.0.1 with free ports, drives them with
`kilnctl --json`, and on teardown stops exactly the processes it started, by
PID: SIGTERM, then SIGKILL after a bound, and checks that each one exited.

Every wait is bounded: wait_until() polls with a deadline and fails with a
message that names what it waited for and includes the daemons' logs.

Faults: kill_daemon(key) crashes one daemon (SIGKILL, by the PID we
started); start_dispatcher() / start_runner(name) / start_observer() start
it again with the same port, state, work dir and spool, logging to a new
file per incarnation (KEY.log, KEY.2.log, ...).  recorded() counts the
dispatcher's "result recorded" log lines over all its incarnations;
runner_running(key) tells from a runner's log which jobs' tests it runs.
SLEEPY_UNITTEST makes each commit's tests take tests/sleep_ms milliseconds.
The temp dir is made under $TMPDIR (tempfile's rules).

Where the binaries are: environment variables KILN_OBSERVER, KILN_DISPATCHER,
KILN_RUNNER, KILNCTL and KILN_PLUGIN_DIR (set by tests/integration/
CMakeLists.txt for ctest), or KILN_BUILD_DIR (a CMake build tree), or else
the build tree ./build at the top of the source tree.
"""

import collections
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

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


def toml_str(s):
    """A TOML basic string (JSON's escaping is valid TOML for these)."""
    return json.dumps(str(s))


def toml_array(items):
    return "[" + ", ".join(toml_str(i) for i in items) + "]"


def write_secret(path, secret):
    """Write SECRET and a newline to PATH, mode 0600 from the start (as the
    daemons demand of a secret_file); returns the path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return path


def run(argv, timeout=30.0, check=True, **kwargs):
    """Run argv (a list, never a shell), capturing text output, bounded."""
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError("%s: exit %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc


# ---- msgpack, the little the hostile-input tests need ----

def mp_str(s):
    b = s.encode()
    if len(b) < 32:
        return bytes([0xa0 | len(b)]) + b
    if len(b) < 256:
        return b"\xd9" + bytes([len(b)]) + b
    return b"\xda" + struct.pack(">H", len(b)) + b


def mp_map(pairs):
    """Encode a dict of str → str|int (non-negative)."""
    assert len(pairs) < 16
    out = bytes([0x80 | len(pairs)])
    for k, v in pairs.items():
        out += mp_str(k)
        if isinstance(v, str):
            out += mp_str(v)
        elif isinstance(v, int) and 0 <= v < 128:
            out += bytes([v])
        elif isinstance(v, int) and 0 <= v < 2 ** 32:
            out += b"\xce" + struct.pack(">I", v)
        else:
            raise ValueError("unsupported value %r" % (v,))
    return out


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def mp_decode(data):
    """Decode one msgpack object (maps, arrays, strings, bin, ints, nil,
    bools, floats) from bytes; returns (object, rest)."""
    b = data[0]
    rest = data[1:]

    def take(n):
        nonlocal rest
        if len(rest) < n:
            raise ValueError("truncated msgpack")
        chunk, rest = rest[:n], rest[n:]
        return chunk

    def container(n, is_map):
        nonlocal rest
        if is_map:
            out = {}
            for _ in range(n):
                k, rest = mp_decode(rest)
                v, rest = mp_decode(rest)
                out[k] = v
            return out
        out = []
        for _ in range(n):
            v, rest = mp_decode(rest)
            out.append(v)
        return out

    if b <= 0x7f:
        return b, rest
    if b >= 0xe0:
        return b - 0x100, rest
    if 0x80 <= b <= 0x8f:
        return container(b & 0x0f, True), rest
    if 0x90 <= b <= 0x9f:
        return container(b & 0x0f, False), rest
    if 0xa0 <= b <= 0xbf:
        return take(b & 0x1f).decode("utf-8", "replace"), rest
    simple = {0xc0: None, 0xc2: False, 0xc3: True}
    if b in simple:
        return simple[b], rest
    if b in (0xd9, 0xda, 0xdb):
        n = struct.unpack(">" + {0xd9: "B", 0xda: "H", 0xdb: "I"}[b],
                          take({0xd9: 1, 0xda: 2, 0xdb: 4}[b]))[0]
        return take(n).decode("utf-8", "replace"), rest
    if b in (0xc4, 0xc5, 0xc6):
        n = struct.unpack(">" + {0xc4: "B", 0xc5: "H", 0xc6: "I"}[b],
                          take({0xc4: 1, 0xc5: 2, 0xc6: 4}[b]))[0]
        return take(n), rest
    ints = {0xcc: "B", 0xcd: "H", 0xce: "I", 0xcf: "Q",
            0xd0: "b", 0xd1: "h", 0xd2: "i", 0xd3: "q"}
    if b in ints:
        fmt = ">" + ints[b]
        return struct.unpack(fmt, take(struct.calcsize(fmt)))[0], rest
    if b == 0xca:
        return struct.unpack(">f", take(4))[0], rest
    if b == 0xcb:
        return struct.unpack(">d", take(8))[0], rest
    if b in (0xdc, 0xdd):
        n = struct.unpack(">H" if b == 0xdc else ">I", take(2 if b == 0xdc else 4))[0]
        return container(n, False), rest
    if b in (0xde, 0xdf):
        n = struct.unpack(">H" if b == 0xde else ">I", take(2 if b == 0xde else 4))[0]
        return container(n, True), rest
    raise ValueError("unsupported msgpack byte 0x%02x" % b)


def split_frames(data):
    """Decode the complete frames in data: a list of decoded maps."""
    out = []
    while len(data) >= 4:
        n = struct.unpack(">I", data[:4])[0]
        if len(data) < 4 + n:
            break
        obj, rest = mp_decode(data[4:4 + n])
        if rest:
            raise ValueError("%d bytes after the msgpack object" % len(rest))
        out.append(obj)
        data = data[4 + n:]
    return out


# ---- the repository under test ----

class GitRepo:
    """A real git repository (non-bare, branch main) that commits with a fixed
    identity and never reads the user's git config."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path)
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("GIT_"):
                del self.env[k]
        self.env.update({
            "GIT_AUTHOR_NAME": "Kiln Test", "GIT_AUTHOR_EMAIL": "kiln@example.invalid",
            "GIT_COMMITTER_NAME": "Kiln Test", "GIT_COMMITTER_EMAIL": "kiln@example.invalid",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
            "HOME": path,
        })
        self.git("init", "-q")
        self.git("symbolic-ref", "HEAD", "refs/heads/main")

    def git(self, *args):
        return run(["git", "-C", self.path] + list(args), env=self.env).stdout

    def write(self, relpath, text, executable=False):
        path = os.path.join(self.path, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755 if executable else 0o644)

    def remove(self, relpath):
        self.git("rm", "-q", "--", relpath)

    def commit(self, message):
        """Commit everything in the work tree; returns the full commit id."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").strip()


PASSING_UNITTEST = """import unittest


class ArithmeticTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(1 + 1, 2)

    def test_mul(self):
        self.assertEqual(2 * 3, 6)
"""

FAILING_UNITTEST = """import unittest


class ArithmeticTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(1 + 1, 2)

    def test_mul(self):
        self.assertEqual(2 * 3, 7, "multiplication is broken")
"""


# A test that sleeps as long as tests/sleep_ms (in the same commit) says, so
# each commit can take its own time: repo.write("tests/sleep_ms", "300").
SLEEPY_UNITTEST = """import os
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class Sleepy(unittest.TestCase):
    def test_sleep(self):
        with open(os.path.join(HERE, "sleep_ms")) as f:
            ms = int(f.read().strip() or "0")
        time.sleep(ms / 1000.0)
"""


def hanging_unittest(marker, seconds=30):
    """A test that starts a child (`sleep`), writes "<its pid> <child pid>" to
    the file `marker` (atomically) and sleeps `seconds`: for timeouts."""
    return ("import os\nimport subprocess\nimport time\nimport unittest\n\n\n"
            "class Hang(unittest.TestCase):\n"
            "    def test_hang(self):\n"
            "        child = subprocess.Popen([\"sleep\", \"%d\"])\n"
            "        tmp = %r + \".tmp\"\n"
            "        with open(tmp, \"w\") as f:\n"
            "            f.write(\"%%d %%d\\n\" %% (os.getpid(), child.pid))\n"
            "        os.rename(tmp, %r)\n"
            "        time.sleep(%d)\n"
            "        child.wait()\n" % (seconds, marker, marker, seconds))


def pid_alive(pid):
    """True when pid exists and is not a zombie (a zombie has ended)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")


# The dispatcher's line for a recorded result (dispatcher.cpp on_result):
#   "job 7: example 0123456789ab passed by runner-1"
RECORDED = re.compile(r"job (\d+): (\S+) ([0-9a-f]{12}) (\w+) by (\S+)\s*$", re.M)


# ---- the daemons ----

class Daemon:
    def __init__(self, name, argv, log_path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.proc = None
        self.returncode = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, close_fds=True)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError as e:
            return "(no log: %s)" % e

    def kill(self):
        """SIGKILL now (a crash), and reap it.  Only this PID, only if we
        started it and it has not been reaped."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.poll() if self.proc else None
        self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s (pid %d): still alive %.0fs after SIGKILL"
                                 % (self.name, self.proc.pid, KILL_GRACE))
        self.returncode = self.proc.returncode
        return self.returncode

    def stop(self):
        """SIGTERM, wait; SIGKILL, wait.  Only this PID, only if we started it
        and it has not been reaped.  Returns (exit status, how it ended)."""
        if self.proc is None:
            return None, "not started"
        how = "exited by itself"
        if self.proc.poll() is None:
            how = "stopped by SIGTERM"
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                how = "did not stop within %.0fs of SIGTERM; killed" % STOP_GRACE
                self.proc.kill()
                try:
                    self.proc.wait(timeout=KILL_GRACE)
                except subprocess.TimeoutExpired:
                    how = "still alive %.0fs after SIGKILL" % KILL_GRACE
        self.returncode = self.proc.poll()
        return self.returncode, how


class Cluster:
    """One dispatcher, runner(s) and observer watching one repository.

    Typical use (see test_pipeline.py):
        c = Cluster(self)          # temp dir, repo, configs
        c.start()                  # dispatcher, runner, observer; waits until ready
        commit = c.repo.commit("...")
        res = c.wait_result(commit)
        c.stop()                   # also registered with addCleanup
    """

    def __init__(self, testcase=None, exec_plugin="unittest", mode="every",
                 interval="500ms", repo_name="example", keep=None, runner_timeout="3s",
                 max_attempts=None, repo_timeout="60s", runner_stop_timeout="5s",
                 repo_extra="", dispatcher_extra="", observer_extra="",
                 handshake_timeout="2s"):
        self.plugin_dir = plugin_dir()
        for program in ("observer", "dispatcher", "runner", "kilnctl"):
            binary(program)  # fail now, clearly, when the build is missing
        self.daemons = {}      # running (or expected to be), by key
        self.retired = []      # stopped on purpose by stop_daemon(), for their logs
        self.started = []      # every Daemon ever started, in order (one per incarnation)
        self.chaos = []        # (seconds since the first start, what): kills and restarts
        self.t0 = None
        self.stopped = False
        self.final_logs = ""
        self.tmp = tempfile.mkdtemp(prefix="kiln-it-")
        self.keep = os.environ.get("KILN_KEEP_TMP") == "1" if keep is None else keep
        if testcase is not None:
            testcase.addCleanup(self.cleanup)
        self.set_port(free_port())
        self.results_dir = os.path.join(self.tmp, "results")
        self.repo_name = repo_name
        self.exec_plugin = exec_plugin
        self.mode = mode
        self.interval = interval
        self.runner_timeout = runner_timeout
        self.max_attempts = max_attempts
        self.repo_timeout = repo_timeout
        self.runner_stop_timeout = runner_stop_timeout  # < STOP_GRACE
        self.repo_extra = repo_extra  # more [[repo]] lines: shards, labels, ...
        # More [dispatcher] / [observer] lines: limits, timeouts, ...
        self.dispatcher_extra = dispatcher_extra
        self.handshake_timeout = handshake_timeout
        self.observer_extra = observer_extra
        self.repo = GitRepo(os.path.join(self.tmp, "repo"))
        # More [runner] lines, by runner name (secret_file, sandbox, ...).
        self.runner_extra = {}
        # Passed to kilnctl as --secret-file when set.
        self.ctl_secret_file = None

    def secret_file(self, name, secret):
        """Write SECRET to a mode-0600 file NAME in the temp dir; its path."""
        return write_secret(self.path(name), secret)

    def set_port(self, port):
        self.port = port
        self.address = "127.0.0.1:%d" % port

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    # -- configs --

    def write_dispatcher_config(self, extra=None):
        if extra is None:
            extra = self.dispatcher_extra
        path = self.path("dispatcher.toml")
        with open(path, "w") as f:
            f.write("[dispatcher]\n"
                    "listen = %s\n"
                    "state_dir = %s\n"
                    "heartbeat_interval = \"500ms\"\n"
                    "runner_timeout = %s\n"
                    "handshake_timeout = %s\n"
                    "plugin_dir = %s\n"
                    "%s%s\n"
                    "[[report]]\n"
                    "plugin = \"files\"\n"
                    "dir = %s\n"
                    % (toml_str(self.address), toml_str(self.path("dispatcher-state")),
                       toml_str(self.runner_timeout), toml_str(self.handshake_timeout),
                       toml_array([self.plugin_dir]),
                       "" if self.max_attempts is None
                       else "max_attempts = %d\n" % self.max_attempts,
                       extra, toml_str(self.results_dir)))
        return path

    def write_runner_config(self, name="runner-1", slots=2):
        path = self.path("%s.toml" % name)
        with open(path, "w") as f:
            f.write("[runner]\n"
                    "dispatcher = %s\n"
                    "name = %s\n"
                    "slots = %d\n"
                    "work_dir = %s\n"
                    "heartbeat_interval = \"500ms\"\n"
                    "dispatcher_timeout = \"3s\"\n"
                    "stop_timeout = %s\n"
                    "plugin_dir = %s\n"
                    "%s\n"
                    "\n[plugin.git]\n"
                    "cache_dir = %s\n"
                    % (toml_str(self.address), toml_str(name), slots,
                       toml_str(self.path(name + "-work")), toml_str(self.runner_stop_timeout),
                       toml_array([self.plugin_dir]), self.runner_extra.get(name, ""),
                       toml_str(self.path(name + "-git-cache"))))
        return path

    def write_observer_config(self):
        path = self.path("observer.toml")
        with open(path, "w") as f:
            f.write("[observer]\n"
                    "dispatcher = %s\n"
                    "state_dir = %s\n"
                    "interval = %s\n"
                    "plugin_dir = %s\n"
                    "%s\n"
                    "\n[[repo]]\n"
                    "name = %s\n"
                    "url = %s\n"
                    "branches = [\"main\"]\n"
                    "vcs = \"git\"\n"
                    "mode = %s\n"
                    "exec = %s\n"
                    "timeout = %s\n"
                    "%s\n"
                    "\n[plugin.git]\n"
                    "cache_dir = %s\n"
                    % (toml_str(self.address), toml_str(self.path("observer-state")),
                       toml_str(self.interval), toml_array([self.plugin_dir]),
                       self.observer_extra, toml_str(self.repo_name), toml_str(self.repo.path),
                       toml_str(self.mode), toml_str(self.exec_plugin),
                       toml_str(self.repo_timeout), self.repo_extra,
                       toml_str(self.path("observer-git-cache"))))
        return path

    # -- processes --

    def _start(self, key, program, config):
        if key in self.daemons and self.daemons[key].running():
            raise RuntimeError("%s already running" % key)
        n = sum(1 for d in self.started if d.name == key)
        log = self.path(key + ".log" if n == 0 else "%s.%d.log" % (key, n + 1))
        d = Daemon(key, [binary(program), "-v", "-c", config], log)
        if self.t0 is None:
            self.t0 = time.monotonic()
        d.start()
        self.daemons[key] = d
        self.started.append(d)
        if n:
            self.note("%s restarted (pid %d)" % (key, d.pid))
        return d

    def start_dispatcher(self, attempts=3):
        """Start the dispatcher and wait until kilnctl status answers.  The
        port was free when picked; if something took it since, the dispatcher
        exits at start-up and is started again on another port."""
        restart = any(d.name == "dispatcher" for d in self.started)
        for attempt in range(attempts):
            d = self._start("dispatcher", "dispatcher", self.write_dispatcher_config())
            deadline = time.monotonic() + START_TIMEOUT
            while d.running() and time.monotonic() < deadline:
                if self.ctl_ok("status"):
                    return d
                time.sleep(0.1)
            if (not d.running() and "address already in use" in d.log()
                    and attempt + 1 < attempts and not restart):
                os.rename(d.log_path, "%s.%d" % (d.log_path, attempt))
                self.started.remove(d)
                self.set_port(free_port())
                continue
            break
        self.check_alive()
        raise AssertionError("timed out after %.1fs waiting for the dispatcher to answer "
                             "kilnctl status on %s\n%s"
                             % (START_TIMEOUT, self.address, self.logs()))

    def start_runner(self, name="runner-1", slots=2, wait=True):
        """Start a runner (again: same name, work dir and spool) and, with
        `wait`, wait until the dispatcher lists it (so not while it is down)."""
        d = self._start(name, "runner", self.write_runner_config(name, slots))
        if wait:
            self.wait_until(lambda: name in self.runner_names(), START_TIMEOUT,
                            "runner %s registered with the dispatcher" % name)
        return d

    def start_observer(self):
        return self._start("observer", "observer", self.write_observer_config())

    def start(self, runners=1, slots=2):
        self.start_dispatcher()
        for i in range(runners):
            self.start_runner("runner-%d" % (i + 1), slots)
        self.start_observer()

    def stop(self):
        """Stop every daemon this cluster started (by PID), the observer first.
        Fails if one did not exit or exited with an error."""
        self.stopped = True
        problems = []
        order = ["observer"] + [k for k in self.daemons if k not in ("observer", "dispatcher")] \
            + ["dispatcher"]
        for key in order:
            d = self.daemons.get(key)
            if d is None:
                continue
            code, how = d.stop()
            if code is None or code != 0:
                problems.append("%s (pid %s): %s, exit status %s" % (key, d.pid, how, code))
        if problems:
            raise AssertionError("daemons did not stop cleanly:\n  " + "\n  ".join(problems)
                                 + "\n" + self.logs())

    def stop_daemon(self, key):
        """Stop one daemon now (SIGTERM, by PID) and check it exited 0; it
        can be started again (its log file is appended to)."""
        d = self.daemons.pop(key)
        code, how = d.stop()
        self.retired.append(d)
        if code != 0:
            raise AssertionError("%s (pid %s): %s, exit status %s\n%s"
                                 % (key, d.pid, how, code, self.logs()))

    def kill_daemon(self, key):
        """Crash one daemon: SIGKILL (by PID, one we started), reaped.  It can
        be started again (start_dispatcher(), start_runner(name), ...: same
        port, same state and work dirs, a new log file)."""
        d = self.daemons.pop(key)
        d.kill()
        self.retired.append(d)
        self.note("%s killed with SIGKILL (pid %d)" % (key, d.pid))
        return d

    def note(self, what):
        """Remember (and print) a chaos event with its time since the first start."""
        t = time.monotonic() - (self.t0 or time.monotonic())
        self.chaos.append((t, what))
        sys.stderr.write("[%7.2fs] %s\n" % (t, what))
        sys.stderr.flush()

    def log_of(self, key):
        """The logs of every incarnation of daemon `key`, oldest first."""
        return "".join(d.log() for d in self.started if d.name == key)

    def log_has(self, key, pattern):
        """A match of regex `pattern` in the current incarnation of `key`'s log."""
        d = self.daemons.get(key)
        return d is not None and re.search(pattern, d.log(), re.M)

    def recorded(self):
        """{commit[:12]: [(job id, outcome, runner), ...]}: every result the
        dispatcher logged as recorded, over all its incarnations."""
        out = collections.defaultdict(list)
        for job, _repo, commit, outcome, runner in RECORDED.findall(self.log_of("dispatcher")):
            out[commit].append((int(job), outcome, runner))
        return out

    def jobs(self):
        return self.ctl("jobs")

    def runner_running(self, key):
        """Job ids whose tests the current incarnation of runner `key` is
        running, from its log: "job N: running tests" and no end of job N
        ("job N: passed (...)" and the like) after it."""
        d = self.daemons.get(key)
        if d is None or not d.running():
            return []
        log = d.log()
        running = []
        for m in re.finditer(r"job (\d+): running tests", log):
            job = m.group(1)
            end = re.compile(r"job %s: (passed|failed|error|timeout|cancelled|skipped)\b" % job)
            if not end.search(log, m.end()) and job not in running:
                running.append(job)
        return [int(j) for j in running]

    def spool_files(self, runner):
        """The files in a runner's spool (work_dir/spool), but temporaries."""
        spool = self.path(runner + "-work", "spool")
        try:
            return sorted(f for f in os.listdir(spool)
                          if not f.startswith(".") and ".tmp" not in f)
        except FileNotFoundError:
            return []

    def jobs_of(self, commit):
        return [j for j in self.jobs() if j["commit"] == commit]

    def cleanup(self):
        try:
            if not self.stopped:
                self.stop()
        finally:
            self.final_logs = self.logs()
            if self.keep:
                sys.stderr.write("kiln fixture: keeping %s\n" % self.tmp)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def logs(self):
        out = []
        for d in self.started:
            state = "running" if d.running() else "exit status %s" % d.proc.poll()
            out.append("----- %s (pid %s, %s): %s -----\n%s"
                       % (d.name, d.pid, state, d.log_path, d.log()))
        return "\n".join(out)

    def check_alive(self):
        dead = ["%s (exit status %s)" % (k, d.proc.poll())
                for k, d in self.daemons.items() if not d.running()]
        if dead:
            raise AssertionError("daemon(s) died: %s\n%s" % (", ".join(dead), self.logs()))

    # -- waiting --

    def wait_until(self, predicate, timeout, what, interval=0.1):
        """Poll predicate() until it returns a true value (returned) or timeout
        seconds pass (AssertionError naming `what`, with the logs).  A daemon
        that dies meanwhile fails at once."""
        deadline = time.monotonic() + timeout
        last_error = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except (AssertionError, ValueError, OSError, subprocess.SubprocessError) as e:
                last_error = e
            self.check_alive()
            if time.monotonic() >= deadline:
                raise AssertionError("timed out after %.1fs waiting for %s%s\n%s"
                                     % (timeout, what,
                                        "\nlast error: %s" % last_error if last_error else "",
                                        self.logs()))
            time.sleep(interval)

    # -- kilnctl --

    def ctl(self, *args, json_output=True, check=True, timeout=KILNCTL_TIMEOUT):
        argv = [binary("kilnctl"), "-d", self.address, "-t", str(int(timeout) - 2 or 1)]
        if self.ctl_secret_file:
            argv += ["--secret-file", self.ctl_secret_file]
        if json_output:
            argv.append("--json")
        argv += list(args)
        proc = run(argv, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("%s: exit %d\nstdout:\n%s\nstderr:\n%s"
                                 % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
        if json_output and check:
            try:
                return json.loads(proc.stdout)
            except ValueError as e:
                raise AssertionError("%s: output is not JSON (%s):\n%s"
                                     % (" ".join(argv), e, proc.stdout))
        return proc

    def ctl_ok(self, *args):
        """True when kilnctl gets an answer (a short timeout: for polling)."""
        return self.ctl(*args, check=False, timeout=4).returncode == 0

    def runner_names(self):
        proc = self.ctl("runners", check=False, timeout=4)
        if proc.returncode != 0:
            return []
        return [r["name"] for r in json.loads(proc.stdout)]

    def result_file(self, commit):
        return os.path.join(self.results_dir, commit + ".json")

    def wait_result(self, commit, timeout=RESULT_TIMEOUT):
        """Wait until the files reporter wrote DIR/<commit>.json; returns it parsed."""
        path = self.result_file(commit)

        def ready():
            if not os.path.exists(path):
                return None
            with open(path) as f:
                return json.load(f)  # written atomically: complete when present
        return self.wait_until(ready, timeout, "the result of commit %s in %s"
                               % (commit[:12], path), interval=0.2)


class ClusterTestCase(unittest.TestCase):
    """A TestCase whose clusters' daemon logs are printed (to stderr) when the
    test fails or errs, whatever failed: the logs are read before the temp
    dir is removed.  Set KILN_KEEP_TMP=1 to keep the temp dirs as well."""

    def cluster(self, **kwargs):
        c = Cluster(self, **kwargs)
        self._kiln_clusters.append(c)
        return c

    def run(self, result=None):
        self._kiln_clusters = []
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            if len(result.failures) + len(result.errors) > before:
                for c in self._kiln_clusters:
                    sys.stderr.write("\n===== daemon logs of %s (%s) =====\n%s\n"
                                     % (self.id(), c.tmp, c.final_logs or c.logs()))


def tests_by_name(result):
    """{short test name: outcome} from a result's "tests" list (file or kilnctl)."""
    return {t["name"]: t["outcome"] for t in result["tests"]}
