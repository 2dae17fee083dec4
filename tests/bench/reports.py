#!/usr/bin/env python3
"""Report delivery under load: the webhook report plugin and the dispatcher's outbox.

1. Delivery rate.  kiln-bench-load runs --commits commits through a
   dispatcher whose [[report]] is the webhook plugin pointed at a port
   where nothing listens yet, so every result's delivery stays queued in
   the outbox (--keep keeps that state dir).  Then a receiver starts on that
   port (answering 200 at once) and a real kiln-dispatcher is started on the
   kept state: it delivers the backlog.  Prints deliveries per second (first
   to last arrival), and how many arrived twice (expected 0: none was
   delivered before).
2. Scheduling while a receiver is slow.  kiln-bench-load's assignment
   latency (commit acknowledged -> assignment sent) without report plugins,
   then with the webhook sending every event to a receiver that takes
   --slow seconds per request.  Prints both p99s.

Not a ctest test.  Run from the source tree after a (Release) build:
    python3 tests/bench/reports.py --build-dir build [--commits 1000] [--slow 1.0]
                                   [--slow-commits 20000]
"""

import argparse
import glob
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import kiln_fixture as kf  # noqa: E402

LOAD_TIMEOUT = 300.0
DRAIN_TIMEOUT = 300.0


class Receiver:
    """A webhook receiver on 127.0.0.1:port: records each delivery's id and
    arrival time, answers 200 after `delay` seconds."""

    def __init__(self, port, delay):
        self.arrivals = []  # (monotonic time, X-Kiln-Delivery)
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                if delay:
                    time.sleep(delay)
                with receiver.lock:
                    receiver.arrivals.append((time.monotonic(),
                                              self.headers.get("X-Kiln-Delivery", "")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.arrivals)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def report_config(path, port, events):
    with open(path, "w") as f:
        f.write("plugin_dir = %s\nreport_retry_max = \"1s\"\n\n"
                "[[report]]\nplugin = \"webhook\"\nurl = %s\nevents = %s\ntimeout = \"30s\"\n"
                % (kf.toml_array([kf.plugin_dir()]),
                   kf.toml_str("http://127.0.0.1:%d/hook" % port), kf.toml_array(events)))
    return path


def run_load(build_dir, tmp, commits, extra=None, keep=False):
    """kiln-bench-load's output, and its kept state dir (or None)."""
    load = os.path.join(build_dir, "tests", "bench", "kiln-bench-load")
    if not os.access(load, os.X_OK):
        sys.exit("reports.py: %s: not built (cmake --build %s --target kiln-bench-load)"
                 % (load, build_dir))
    load_tmp = tempfile.mkdtemp(dir=tmp)
    args = [load, "--commits", str(commits), "--runners", "50",
            "--dispatcher", kf.binary("dispatcher"), "--timeout", str(int(LOAD_TIMEOUT))]
    if extra:
        args += ["--config-extra", extra]
    if keep:
        args.append("--keep")
    proc = subprocess.run(args, env=dict(os.environ, TMPDIR=load_tmp), capture_output=True,
                          text=True, timeout=LOAD_TIMEOUT + 60)
    if proc.returncode != 0:
        sys.exit("reports.py: kiln-bench-load failed (%d):\n%s%s"
                 % (proc.returncode, proc.stdout, proc.stderr))
    states = glob.glob(os.path.join(load_tmp, "kiln-bench-load.*", "state"))
    return proc.stdout, (states[0] if keep and len(states) == 1 else None)


def assign_p99(output):
    m = re.search(r"assign latency\s+p50 ([0-9.]+) ms\s+p99 ([0-9.]+) ms", output)
    if not m:
        sys.exit("reports.py: no assign latency line in kiln-bench-load's output:\n" + output)
    return float(m.group(2))


def delivery_rate(build_dir, tmp, commits):
    port = kf.free_port()
    extra = report_config(os.path.join(tmp, "rate.toml"), port, ["finished"])
    _, state = run_load(build_dir, tmp, commits, extra, keep=True)
    if not state:
        sys.exit("reports.py: kiln-bench-load kept no state dir")
    receiver = Receiver(port, 0)
    config = os.path.join(tmp, "dispatcher.toml")
    with open(config, "w") as f:
        f.write("[dispatcher]\nlisten = \"127.0.0.1:0\"\nstate_dir = %s\n" % kf.toml_str(state))
        f.write(open(extra).read())
        f.write("\n[http]\nlisten = \"\"\n")
    d = kf.Daemon("dispatcher", [kf.binary("dispatcher"), "-c", config],
                  os.path.join(tmp, "drain.log"))
    try:
        d.start()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while receiver.count() < commits and time.monotonic() < deadline:
            if not d.running():
                sys.exit("reports.py: the dispatcher exited:\n" + d.log())
            time.sleep(0.05)
        time.sleep(1.0)  # anything arriving twice would come now
    finally:
        d.stop()
        receiver.stop()
    arrivals = receiver.arrivals
    ids = [i for _, i in arrivals]
    if len(set(ids)) < commits:
        sys.exit("reports.py: %d of %d results delivered within %.0f s"
                 % (len(set(ids)), commits, DRAIN_TIMEOUT))
    span = arrivals[-1][0] - arrivals[0][0]
    print("delivery          %d results to a local webhook receiver in %.2f s: %.0f deliveries/s"
          " (%d arrived twice)" % (commits, span, commits / span if span else float("inf"),
                                   len(ids) - len(set(ids))))


def slow_receiver(build_dir, tmp, commits, slow):
    base = assign_p99(run_load(build_dir, tmp, commits)[0])
    port = kf.free_port()
    receiver = Receiver(port, slow)
    try:
        extra = report_config(os.path.join(tmp, "slow.toml"), port,
                              ["queued", "started", "finished"])
        out, _ = run_load(build_dir, tmp, commits, extra)
    finally:
        receiver.stop()
    print("scheduling        %d commits: assign p99 %.2f ms without report plugins, %.2f ms with "
          "a webhook receiver taking %.1f s per request for every event (%d answered meanwhile)"
          % (commits, base, assign_p99(out), slow, receiver.count()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--slow", type=float, default=1.0, help="seconds per request, part 2")
    ap.add_argument("--slow-commits", type=int, default=20000,
                    help="commits in part 2 (long enough for the slow receiver to matter)")
    args = ap.parse_args()
    os.environ.setdefault("KILN_BUILD_DIR", os.path.abspath(args.build_dir))
    tmp = tempfile.mkdtemp(prefix="kiln-bench-reports.")
    try:
        delivery_rate(args.build_dir, tmp, args.commits)
        slow_receiver(args.build_dir, tmp, args.slow_commits, args.slow)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
