"""The Cluster: one kiln-dispatcher, kiln-runner(s) and kiln-observer on
127.0.0.1 watching one git repository, all in one temp dir.

A Cluster owns one temp dir holding the repository (kiln_repo), the three
daemons' configs (kiln_config), their state and work directories, the
results directory of the files reporter, and one log file per daemon
incarnation (KEY.log, KEY.2.log, ...).  It starts the daemons with free
ports, drives them with `kilnctl --json`, and on teardown stops exactly the
processes it started, by PID (kiln_daemon).  Every wait is bounded:
wait_until() polls with a deadline and fails with a message that names what
it waited for and includes the daemons' logs.  The temp dir is made under
$TMPDIR (tempfile's rules).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import kiln_config
import kiln_logs
from kiln_daemon import Daemon
from kiln_env import KILNCTL_TIMEOUT, RESULT_TIMEOUT, START_TIMEOUT, binary, free_port, \
    plugin_dir, run
from kiln_repo import GitRepo



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
        # [http]: where it listens (port 0: any free one, see http_port) and more lines.
        self.http_listen = "127.0.0.1:0"
        self.http_extra = ""
        self.observer_extra = observer_extra
        self.repo = GitRepo(os.path.join(self.tmp, "repo"))
        # More [runner] lines, by runner name (secret_file, sandbox, ...).
        self.runner_extra = {}
        # Passed to kilnctl as --secret-file when set.
        self.ctl_secret_file = None

    def secret_file(self, name, secret):
        """Write SECRET to a mode-0600 file NAME in the temp dir; its path."""
        return kiln_config.write_secret(self.path(name), secret)

    def set_port(self, port):
        self.port = port
        self.address = "127.0.0.1:%d" % port

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    # -- configs --

    def write_dispatcher_config(self, extra=None):
        return kiln_config.write_dispatcher_config(
            self.path("dispatcher.toml"), self.address, self.path("dispatcher-state"),
            self.runner_timeout, self.handshake_timeout, self.plugin_dir, self.max_attempts,
            self.dispatcher_extra if extra is None else extra, self.results_dir,
            self.http_listen, self.http_extra)

    def http_port(self):
        """The port the running dispatcher's HTTP server listens on, from its
        log line "http: listening on ADDRESS (port N)"."""
        d = self.daemons.get("dispatcher")
        if d is None:
            raise AssertionError("no dispatcher running")
        found = re.findall(r"http: listening on \S+ \(port (\d+)\)", d.log())
        if not found:
            raise AssertionError("the dispatcher logged no HTTP port\n" + self.logs())
        return int(found[-1])

    def http_url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.http_port(), path)

    def write_runner_config(self, name="runner-1", slots=2):
        return kiln_config.write_runner_config(
            self.path("%s.toml" % name), self.address, name, slots, self.path(name + "-work"),
            self.runner_stop_timeout, self.plugin_dir, self.runner_extra.get(name, ""),
            self.path(name + "-git-cache"))

    def write_observer_config(self):
        return kiln_config.write_observer_config(
            self.path("observer.toml"), self.address, self.path("observer-state"),
            self.interval, self.plugin_dir, self.observer_extra, self.repo_name,
            self.repo.path, self.mode, self.exec_plugin, self.repo_timeout, self.repo_extra,
            self.path("observer-git-cache"))

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
        return kiln_logs.recorded_results(self.log_of("dispatcher"))

    def jobs(self):
        return self.ctl("jobs")

    def runner_running(self, key):
        """Job ids whose tests the current incarnation of runner `key` is
        running, from its log: "job N: running tests" and no end of job N
        ("job N: passed (...)" and the like) after it."""
        d = self.daemons.get(key)
        if d is None or not d.running():
            return []
        return kiln_logs.running_jobs(d.log())

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
