"""tests/fixtures/http_receiver.py as a process of its own, for report
delivery tests: started, stopped (its port then refuses connections) and
started again on the same port, by the PID this module started; what it
recorded read back from its --record file (one JSON object a line, kept
across its restarts)."""

import json
import os
import subprocess
import sys
import time

from kiln_env import KILL_GRACE, SOURCE_DIR, START_TIMEOUT, STOP_GRACE

FIXTURES = os.path.join(SOURCE_DIR, "tests", "fixtures")
RECEIVER = os.path.join(FIXTURES, "http_receiver.py")
FAKE_SENDMAIL = os.path.join(FIXTURES, "fake_sendmail.py")


class ReceiverProcess:
    """One http_receiver.py process on 127.0.0.1.  `port` 0 takes a free one
    at the first start; every later start uses the same port.  Stopped by
    the test's cleanup."""

    def __init__(self, testcase, directory, name, port=0, token="", secret_file=None,
                 hang_match=()):
        self.name = name
        self.port = port
        self.record = os.path.join(directory, name + ".jsonl")
        self.port_file = os.path.join(directory, name + ".port")
        self.log_path = os.path.join(directory, name + ".log")
        self.options = ["--token", token]
        if secret_file:
            self.options += ["--secret-file", secret_file]
        for match in hang_match:
            self.options += ["--hang-match", match]
        self.proc = None
        testcase.addCleanup(self.stop)

    def url(self, path=""):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def start(self):
        """Start it and wait until it listens; returns self."""
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        argv = [sys.executable, RECEIVER, "--port", str(self.port), "--port-file",
                self.port_file, "--record", self.record] + self.options
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, close_fds=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("receiver %s did not start listening (port %d):\n%s"
                                     % (self.name, self.port, self.log()))
            time.sleep(0.05)
        with open(self.port_file) as f:
            self.port = int(f.read())
        return self

    def stop(self):
        """SIGTERM, then SIGKILL after a bound; only the PID started here."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=KILL_GRACE)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError as e:
            return "(no log: %s)" % e

    def requests(self, flavour=None):
        """Every request recorded so far, in arrival order (over restarts)."""
        try:
            with open(self.record) as f:
                lines = f.readlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            if line.endswith("\n"):  # a line still being written is not read
                r = json.loads(line)
                if flavour is None or r["flavour"] == flavour:
                    found.append(r)
        return found


def fake_sendmail(path, out_dir):
    """An executable at `path` that runs tests/fixtures/fake_sendmail.py with
    FAKE_SENDMAIL_DIR=out_dir (the email plugin passes no environment of its
    own: the dispatcher's is inherited).  Returns path."""
    os.makedirs(out_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write("#!%s\nimport os, sys\nos.environ['FAKE_SENDMAIL_DIR'] = %r\n"
                "os.execv(sys.executable, [sys.executable, %r] + sys.argv[1:])\n"
                % (sys.executable, out_dir, FAKE_SENDMAIL))
    os.chmod(path, 0o755)
    return path
