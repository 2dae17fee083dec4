"""systemd: the units verify, the daemons speak sd_notify, SIGHUP reloads.

- every unit in etc/systemd passes `systemd-analyze verify` (with ExecStart
  pointed at this build's binaries, since verify wants them to exist);
- a daemon started with NOTIFY_SOCKET (a datagram socket this test owns)
  and WATCHDOG_USEC sends READY=1, WATCHDOG=1 periodically, STATUS= lines,
  and STOPPING=1 on SIGTERM;
- a notify socket nobody reads (its queue full) costs the daemon STATUS=
  lines but never its loop: it keeps answering kilnctl and serving a
  runner, stops promptly on SIGTERM, and its keep-alives resume once the
  socket is read again;
- SIGHUP to the observer with a second repository added: its commit gets a
  result while a job runs on a runner whose connection is not dropped, and
  that job ends at attempt 1; a broken config on SIGHUP is refused with an
  error naming the line, and the daemon keeps running on the old one.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_fixture as kf  # noqa: E402

UNIT_DIR = os.path.join(kf.SOURCE_DIR, "etc", "systemd")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
UNITS = ["kiln-dispatcher.service", "kiln-observer.service", "kiln-runner.service",
         "kiln-runner@.service"]


class UnitsVerify(unittest.TestCase):
    def test_verify(self):
        if not os.access(SYSTEMD_ANALYZE, os.X_OK):
            self.skipTest("systemd-analyze not installed")
        tmp = tempfile.mkdtemp(prefix="kiln-units-")
        self.addCleanup(shutil.rmtree, tmp, True)
        for unit in UNITS:
            with open(os.path.join(UNIT_DIR, unit)) as f:
                text = f.read()
            for name in ("observer", "dispatcher", "runner"):
                text = text.replace("ExecStart=/usr/sbin/kiln-%s" % name,
                                    "ExecStart=%s" % kf.binary(name))
            # A template is verified through an instance of it.
            target = unit.replace("@.service", "@ci1.service")
            with open(os.path.join(tmp, target), "w") as f:
                f.write(text)
            argv = [SYSTEMD_ANALYZE, "verify", "--man=no", os.path.join(tmp, target)]
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=60)
            if proc.returncode != 0 and ("Failed to initialize manager" in proc.stdout
                                         or "Operation not permitted" in proc.stdout):
                self.skipTest("systemd-analyze cannot run here: %s" % proc.stdout.strip())
            # --man=no: the man pages are checked by their own test (mandoc).
            self.assertEqual(proc.returncode, 0, "%s:\n%s" % (" ".join(argv), proc.stdout))
            self.assertEqual(proc.stdout.strip(), "", "%s: warnings:\n%s"
                             % (unit, proc.stdout))

    def test_state_dirs_match_defaults(self):
        """StateDirectory= is where the default configs keep their state."""
        for unit, key, conf in (("kiln-dispatcher.service", "state_dir", "dispatcher.toml"),
                                ("kiln-observer.service", "state_dir", "observer.toml"),
                                ("kiln-runner.service", "work_dir", "runner.toml")):
            with open(os.path.join(UNIT_DIR, unit)) as f:
                m = re.search(r"^StateDirectory=(\S+)$", f.read(), re.M)
            with open(os.path.join(kf.SOURCE_DIR, "etc", "kiln", conf)) as f:
                d = re.search(r"^#?\s*%s\s*=\s*\"([^\"]+)\"" % key, f.read(), re.M)
            self.assertTrue(m and d, unit)
            self.assertEqual("/var/lib/" + m.group(1), d.group(1), unit)


class NotifySocket:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, tmp, key):
        self.path = os.path.join(tmp, "notify-%s.sock" % key)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, "KEY=value") in arrival order

    def pump(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            now = time.monotonic()
            for line in data.decode().split("\n"):
                if line:
                    self.messages.append((now, line))

    def wait_for(self, line, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(m == line for _, m in self.messages):
                return
            self.pump(0.2)
        raise AssertionError("no %s within %.0fs; got %r" % (what, timeout,
                                                             [m for _, m in self.messages]))

    def index(self, line):
        for i, (_, m) in enumerate(self.messages):
            if m == line:
                return i
        return -1

    def close(self):
        self.sock.close()


class Notify(kf.ClusterTestCase):
    def notify_run(self, c, key, program, config):
        """Start one daemon with NOTIFY_SOCKET and WATCHDOG_USEC=400000 (no
        WATCHDOG_PID: it cannot be known before the fork), and check what
        it tells the service manager up to and after SIGTERM."""
        ns = NotifySocket(c.tmp, key)
        self.addCleanup(ns.close)
        env = dict(os.environ, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="400000")
        env.pop("WATCHDOG_PID", None)
        log = c.path(key + ".notify.log")
        d = kf.Daemon(key, [kf.binary(program), "-v", "-c", config], log)
        with open(log, "ab") as f:
            d.proc = subprocess.Popen(d.argv, stdin=subprocess.DEVNULL, stdout=f,
                                      stderr=subprocess.STDOUT, close_fds=True, env=env)
        c.started.append(d)
        self.addCleanup(d.stop)
        ns.wait_for("READY=1", kf.START_TIMEOUT, "READY=1 from " + key)
        ready = ns.index("READY=1")
        ns.pump(1.5)  # 400 ms watchdog: a keep-alive every 200 ms
        dogs = [i for i, (_, m) in enumerate(ns.messages) if m == "WATCHDOG=1"]
        self.assertGreaterEqual(len(dogs), 2, "watchdog keep-alives: %r" % ns.messages)
        self.assertTrue(all(i > ready for i in dogs), "WATCHDOG=1 before READY=1")
        statuses = [m for _, m in ns.messages if m.startswith("STATUS=")]
        self.assertTrue(statuses, "no STATUS= line: %r" % ns.messages)
        d.proc.send_signal(signal.SIGTERM)
        ns.wait_for("STOPPING=1", kf.STOP_GRACE, "STOPPING=1 after SIGTERM")
        self.assertGreater(ns.index("STOPPING=1"), ready)
        d.proc.wait(timeout=kf.STOP_GRACE)
        self.assertEqual(d.proc.returncode, 0, d.log())
        return statuses

    def test_dispatcher_then_runner(self):
        c = self.cluster()
        self.addCleanup(c.cleanup)
        statuses = self.notify_run(c, "dispatcher", "dispatcher", c.write_dispatcher_config())
        self.assertRegex(statuses[0], r"STATUS=0 runners .*0 queued, 0 running")
        # The runner, with a dispatcher to talk to.
        c.start_dispatcher()
        statuses = self.notify_run(c, "runner-n", "runner", c.write_runner_config("runner-n"))
        self.assertTrue(any("idle" in s for s in statuses), statuses)

    def test_no_notify_socket(self):
        """Without NOTIFY_SOCKET nothing is sent and nothing breaks (the
        other integration tests run that way too)."""
        c = self.cluster()
        self.addCleanup(c.cleanup)
        c.start_dispatcher()
        self.assertTrue(c.ctl_ok("status"))


class StalledNotify(kf.ClusterTestCase):
    def test_unread_notify_socket_does_not_freeze_the_dispatcher(self):
        c = self.cluster()
        self.addCleanup(c.cleanup)
        ns = NotifySocket(c.tmp, "stalled")
        self.addCleanup(ns.close)
        ns.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        # A keep-alive every 10 ms: the unread queue is full within a second
        # (net.unix.max_dgram_qlen is 10 by default), and with the runner
        # coming and going the status line keeps changing too.
        env = dict(os.environ, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="20000")
        env.pop("WATCHDOG_PID", None)
        d = kf.Daemon("dispatcher", [kf.binary("dispatcher"), "-v", "-c",
                                     c.write_dispatcher_config()], c.path("dispatcher.log"))
        with open(d.log_path, "ab") as f:
            d.proc = subprocess.Popen(d.argv, stdin=subprocess.DEVNULL, stdout=f,
                                      stderr=subprocess.STDOUT, close_fds=True, env=env)
        c.started.append(d)
        c.daemons["dispatcher"] = d
        self.addCleanup(d.stop)
        time.sleep(1.5)  # long past the queue filling up
        self.assertTrue(d.running(), d.log())
        for _ in range(3):
            self.assertTrue(c.ctl_ok("status"),
                            "kilnctl status got no answer:\n" + d.log())
        c.start_runner("runner-1")  # registers: the dispatcher still serves
        c.stop_daemon("runner-1")
        self.assertTrue(c.ctl_ok("runners"), d.log())

        # Read the socket again: the keep-alives get through once more.
        ns.messages = []
        ns.pump(1.0)
        self.assertIn("WATCHDOG=1", [m for _, m in ns.messages])

        # Full again, SIGTERM: the daemon stops at once anyway.
        time.sleep(0.5)
        started = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.fail("no exit within 5 s of SIGTERM:\n" + d.log())
        self.assertEqual(d.proc.returncode, 0, d.log())
        self.assertLess(time.monotonic() - started, 5)


class Reload(kf.ClusterTestCase):
    def test_sighup_adds_repository_without_dropping_anything(self):
        c = self.cluster(exec_plugin="unittest")
        self.addCleanup(c.cleanup)
        c.repo.write("tests/test_sleepy.py", kf.SLEEPY_UNITTEST)
        c.repo.write("tests/sleep_ms", "6000")
        slow = c.repo.commit("a slow test")
        c.start(runners=1, slots=2)
        c.wait_until(lambda: c.runner_running("runner-1"), kf.RESULT_TIMEOUT,
                     "runner-1 running the slow commit's tests")

        # A second repository, added to the observer's config on the fly.
        other = kf.GitRepo(c.path("repo2"))
        other.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        second = other.commit("second repository")
        observer_toml = c.path("observer.toml")
        with open(observer_toml) as f:
            original = f.read()
        added = original.replace(
            "\n[plugin.git]",
            "\n[[repo]]\nname = \"second\"\nurl = %s\nbranches = [\"main\"]\n"
            "exec = \"unittest\"\n\n[plugin.git]" % kf.toml_str(other.path), 1)
        self.assertNotEqual(added, original)
        with open(observer_toml, "w") as f:
            f.write(added)
        observer = c.daemons["observer"]
        os.kill(observer.pid, signal.SIGHUP)
        res = c.wait_result(second)
        self.assertEqual(res["outcome"], "passed", res)
        self.assertTrue(c.log_has("observer", r"reload: repo second main: now watched"),
                        observer.log())

        # The slow job, running all along, ends at its first attempt.
        res = c.wait_result(slow)
        self.assertEqual(res["outcome"], "passed", res)
        job = [j for j in c.jobs() if j["commit"] == slow][0]
        self.assertEqual(job.get("attempt"), 1, job)
        self.assertIsNone(re.search(r"runner-1: disconnected", c.log_of("dispatcher")),
                          c.log_of("dispatcher"))
        self.assertIsNone(re.search(r"dispatcher .*disconnected", c.log_of("runner-1")))

        # A broken config: refused, naming the line; the observer goes on.
        with open(observer_toml, "w") as f:
            f.write(added + "\n[[repo]]\nname = \"bad name!\"\nurl = \"x\"\n")
        bad_line = (added + "\n[[repo]]\nname").count("\n") + 1
        os.kill(observer.pid, signal.SIGHUP)
        c.wait_until(lambda: c.log_has("observer", r"not reloaded"), 10,
                     "the observer refusing the broken config")
        log = observer.log()
        self.assertRegex(log, r"observer\.toml:%d:\d+: .*name" % bad_line)
        self.assertTrue(observer.running())
        # Still watching both: a new commit of the second repository is tested.
        third = other.commit("after the broken reload")
        res = c.wait_result(third)
        self.assertEqual(res["outcome"], "passed", res)

    def test_sighup_runner_slots_and_dispatcher(self):
        """The runner re-registers with new slots on the same connection;
        the dispatcher reloads its report plugins and keeps its runners."""
        c = self.cluster()
        self.addCleanup(c.cleanup)
        c.start(runners=1, slots=2)
        runner = c.daemons["runner-1"]
        with open(c.path("runner-1.toml")) as f:
            text = f.read()
        with open(c.path("runner-1.toml"), "w") as f:
            f.write(text.replace("slots = 2", "slots = 3")
                    .replace("work_dir", "labels = [\"big\"]\nwork_dir"))
        os.kill(runner.pid, signal.SIGHUP)

        def slots():
            return [r for r in c.ctl("runners") if r["name"] == "runner-1"][0]
        c.wait_until(lambda: slots().get("slots") == 3, 10, "runner-1 with 3 slots")
        os.kill(c.daemons["dispatcher"].pid, signal.SIGHUP)
        c.wait_until(lambda: c.log_has("dispatcher", r"reload: 1 report plugin"), 10,
                     "the dispatcher reloaded")
        commit = c.repo.commit("after the reloads")
        c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        commit = c.repo.commit("tests")
        self.assertEqual(c.wait_result(commit)["outcome"], "passed")
        self.assertIsNone(re.search(r"runner-1: disconnected", c.log_of("dispatcher")))


if __name__ == "__main__":
    unittest.main()
