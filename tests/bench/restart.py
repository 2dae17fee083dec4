#!/usr/bin/env python3
"""Restart to listening: start kiln-dispatcher on a state dir that
`kiln-bench-load --keep` left (its dispatcher.toml, and state/dispatcher.db
with every job of the run), and time from the spawn until its port accepts a TCP
connection.  Repeats --runs times (each a fresh start of the same state) and
prints each time and the median, with the dispatcher's start-up line (how
many live jobs it loaded, how many finished ones stayed on disk) and its
peak RSS (VmHWM) once it listens.

    kiln-bench-load --commits 1000000 --keep      # prints "kept DIR"
    python3 tests/bench/restart.py DIR --dispatcher build-bench/daemons/dispatcher/kiln-dispatcher

Standard library only.  The only process it signals is the dispatcher it
started (by PID); every wait is bounded (--timeout).
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time


def vm_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def one_start(dispatcher, state_dir, timeout):
    log_path = os.path.join(state_dir, "restart-bench.log")
    config = os.path.join(state_dir, "dispatcher.toml")
    with open(log_path, "w") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen([dispatcher, "-c", config], stdout=log, stderr=subprocess.STDOUT)
    try:
        port = None
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the dispatcher exited with status %s; log: %s"
                                   % (proc.returncode, log_path))
            if port is None:
                with open(log_path) as f:
                    m = re.search(r"listening on \S+ \(port (\d+)\)", f.read())
                if m:
                    port = int(m.group(1))
            if port is not None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    elapsed = time.monotonic() - t0
                    break
                except OSError:
                    pass
            time.sleep(0.002)
        else:
            raise RuntimeError("no port answered within %.0f s; log: %s" % (timeout, log_path))
        hwm = vm_hwm_kb(proc.pid)
        with open(log_path) as f:
            m = re.search(r"store \S+: (.*)", f.read())
        return elapsed, hwm, m.group(1) if m else "(no start-up line)"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("state_dir", help="a dir kept by kiln-bench-load --keep")
    ap.add_argument("--dispatcher", default=os.environ.get("KILN_DISPATCHER", "kiln-dispatcher"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.state_dir, "dispatcher.toml")):
        sys.exit("restart.py: %s has no dispatcher.toml" % a.state_dir)
    times = []
    for i in range(a.runs):
        elapsed, hwm, line = one_start(a.dispatcher, a.state_dir, a.timeout)
        times.append(elapsed)
        print("start %d: listening after %.3f s, VmHWM %s; %s"
              % (i + 1, elapsed, "%.1f MB" % (hwm / 1024.0) if hwm else "?", line))
    print("restart to listening: median %.3f s, max %.3f s over %d start(s)"
          % (statistics.median(times), max(times), len(times)))


if __name__ == "__main__":
    main()
