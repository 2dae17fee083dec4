"""One daemon process the fixture started: its argv, its log file, and how it
ends.  It signals only the PID it started (SIGTERM, then SIGKILL after a
bound) and reaps it."""

import signal
import subprocess

from kiln_env import KILL_GRACE, STOP_GRACE


def pid_alive(pid):
    """True when pid exists and is not a zombie (a zombie has ended)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")



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
