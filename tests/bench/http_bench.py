#!/usr/bin/env python3
"""Server time of the dispatcher's HTTP pages with a large history.

1. kiln-bench-load fills a dispatcher's state with --jobs finished jobs
   (synthetic runners and observer speaking the real protocol; --keep keeps
   the state dir, made under a TMPDIR of ours so we find it).
2. A real kiln-dispatcher with [http] is started on that state dir (it
   loads every job at start) and answers GET /, /api/v1/status and /metrics
   --requests times each over one keep-alive connection; the time from
   sending a request to having read its whole body is the server time plus
   one loopback round trip (tens of microseconds).  Prints p50/p99/max and
   the body size, against the issue's target for / (20 ms).
3. Runner output -> follower latency: a real cluster (dispatcher, runner,
   observer; the `script` plugin) tests a commit whose test prints a line
   with its time.time() every --log-period seconds; a follower reads
   /api/v1/commits/<id>/log?follow=1 (server-sent events) and each line's
   delay is its arrival time less the time it carries (one host, one
   clock).  Prints p50/p99 against the issue's target (p99 < 250 ms).

Not a ctest test.  Run from the source tree after a (Release) build:
    python3 tests/bench/http_bench.py --build-dir build [--jobs 100000] [--requests 200] [--keep]
Exit 0 when every page answered 200 and / met its target at p99.
"""

import argparse
import glob
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import kiln_fixture as kf  # noqa: E402

PATHS = ["/", "/api/v1/status", "/metrics"]
TARGET_MS = {"/": 20.0}
FOLLOW_TARGET_MS = 250.0  # p99, runner output -> follower
TICKER = """#!/usr/bin/env python3
import sys, time
for i in range({lines}):
    print("tick %d %.6f" % (i, time.time()), flush=True)
    time.sleep({period})
"""
FILL_TIMEOUT = 900.0  # kiln-bench-load filling the history
START_TIMEOUT = 60.0  # loading 100,000 jobs at start
REQUEST_TIMEOUT = 30.0


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def fill_history(build_dir, tmp, jobs):
    """A dispatcher state dir holding `jobs` finished jobs; its path."""
    load = os.path.join(build_dir, "tests", "bench", "kiln-bench-load")
    if not os.access(load, os.X_OK):
        sys.exit("http_bench.py: %s: not built (cmake --build %s --target kiln-bench-load)"
                 % (load, build_dir))
    load_tmp = os.path.join(tmp, "load")
    os.mkdir(load_tmp)
    started = time.monotonic()
    env = dict(os.environ, TMPDIR=load_tmp)
    proc = subprocess.run([load, "--commits", str(jobs), "--runners", "50", "--keep",
                           "--dispatcher", kf.binary("dispatcher"),
                           "--timeout", str(int(FILL_TIMEOUT))],
                          env=env, capture_output=True, text=True, timeout=FILL_TIMEOUT + 30)
    if proc.returncode != 0:
        sys.exit("http_bench.py: kiln-bench-load failed (%d):\n%s%s"
                 % (proc.returncode, proc.stdout, proc.stderr))
    states = glob.glob(os.path.join(load_tmp, "kiln-bench-load.*", "state"))
    if len(states) != 1:
        sys.exit("http_bench.py: expected one kept state dir under %s, found %r" % (load_tmp, states))
    print("history: %d jobs written by kiln-bench-load in %.1f s"
          % (jobs, time.monotonic() - started))
    return states[0]


def start_dispatcher(tmp, state_dir):
    port, http_port = kf.free_port(), kf.free_port()
    config = os.path.join(tmp, "dispatcher.toml")
    with open(config, "w") as f:
        f.write("[dispatcher]\nlisten = %s\nstate_dir = %s\n\n[http]\nlisten = %s\n"
                % (kf.toml_str("127.0.0.1:%d" % port), kf.toml_str(state_dir),
                   kf.toml_str("127.0.0.1:%d" % http_port)))
    d = kf.Daemon("dispatcher", [kf.binary("dispatcher"), "-c", config],
                  os.path.join(tmp, "dispatcher.log"))
    started = time.monotonic()
    d.start()
    deadline = started + START_TIMEOUT
    while time.monotonic() < deadline:
        if not d.running():
            sys.exit("http_bench.py: the dispatcher exited:\n" + d.log())
        try:
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
            conn.request("GET", "/api/v1/status")
            if conn.getresponse().status == 200:
                print("dispatcher: answering after %.1f s (loads the history at start)"
                      % (time.monotonic() - started))
                return d, http_port
        except OSError:
            pass
        time.sleep(0.2)
    d.stop()
    sys.exit("http_bench.py: the dispatcher did not answer within %.0f s:\n%s"
             % (START_TIMEOUT, d.log()))


def measure(port, path, requests):
    """(times in ms, body bytes) of `requests` GETs of `path`, after a warm-up;
    (None, 0) when the path answers 404."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    times, size = [], 0
    for i in range(requests + 5):
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        elapsed = (time.perf_counter() - t0) * 1000.0
        if resp.status == 404 and i == 0:
            conn.close()
            return None, 0  # this build does not serve it (a part not merged yet)
        if resp.status != 200:
            sys.exit("http_bench.py: GET %s: %d %s" % (path, resp.status, body[:200]))
        if i >= 5:
            times.append(elapsed)
            size = len(body)
    conn.close()
    return times, size


def follower_latency(lines, period):
    """Delays in ms of `lines` printed lines, from print to an HTTP follower."""
    c = kf.Cluster(None, exec_plugin="script", interval="200ms")
    try:
        c.repo.write("tests/ticker", TICKER.format(lines=lines, period=period), executable=True)
        commit = c.repo.commit("ticker")
        c.start()
        c.wait_until(lambda: any(j["commit"] == commit and j["state"] == "assigned"
                                 for j in c.jobs()), kf.START_TIMEOUT, "the ticker running")
        conn = http.client.HTTPConnection("127.0.0.1", c.http_port(),
                                          timeout=REQUEST_TIMEOUT + lines * period)
        conn.request("GET", "/api/v1/commits/%s/log?follow=1" % commit)
        resp = conn.getresponse()
        if resp.status != 200:
            sys.exit("http_bench.py: follow: %d %s" % (resp.status, resp.read()[:200]))
        delays, event = [], None
        for raw in iter(resp.readline, b""):  # ends with the job (event: end)
            now = time.time()
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: ") and event == "log":
                text = json.loads(line[len("data: "):]).get("text", "")
                delays += [1000.0 * (now - float(t.split()[2])) for t in text.splitlines()
                           if t.startswith("tick ")]
        conn.close()
        return delays
    finally:
        c.cleanup()  # stops the daemons it started, by PID


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.environ.get("KILN_BUILD_DIR", "build"))
    ap.add_argument("--jobs", type=int, default=100000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--log-lines", type=int, default=100)
    ap.add_argument("--log-period", type=float, default=0.05)
    ap.add_argument("--skip-pages", action="store_true", help="only the follower latency")
    ap.add_argument("--skip-follow", action="store_true", help="only the page times")
    args = ap.parse_args()
    os.environ["KILN_BUILD_DIR"] = os.path.abspath(args.build_dir)
    tmp = tempfile.mkdtemp(prefix="kiln-bench-http-")
    dispatcher = None
    ok = True
    try:
        paths = [] if args.skip_pages else PATHS
        if paths:
            state = fill_history(args.build_dir, tmp, args.jobs)
            dispatcher, port = start_dispatcher(tmp, state)
            print("%-16s %9s %9s %9s %10s" % ("GET", "p50 ms", "p99 ms", "max ms", "bytes"))
        for path in paths:
            times, size = measure(port, path, args.requests)
            if times is None:
                print("%-16s not served by this build (404)" % path)
                ok = ok and path not in TARGET_MS
                continue
            p50, p99 = statistics.median(times), percentile(times, 99)
            target = TARGET_MS.get(path)
            verdict = ""
            if target is not None:
                verdict = "  (target p99 < %.0f ms: %s)" % (target, "met" if p99 < target else "MISSED")
                ok = ok and p99 < target
            print("%-16s %9.2f %9.2f %9.2f %10d%s" % (path, p50, p99, max(times), size, verdict))
        if dispatcher:
            dispatcher.stop()
            dispatcher = None
        if not args.skip_follow:
            delays = follower_latency(args.log_lines, args.log_period)
            if not delays:
                sys.exit("http_bench.py: the follower saw no line")
            p99 = percentile(delays, 99)
            print("runner output -> HTTP follower: p50 %.1f ms, p99 %.1f ms, max %.1f ms "
                  "(%d lines every %.0f ms; target p99 < %.0f ms: %s)"
                  % (statistics.median(delays), p99, max(delays), len(delays),
                     1000 * args.log_period, FOLLOW_TARGET_MS,
                     "met" if p99 < FOLLOW_TARGET_MS else "MISSED"))
            ok = ok and p99 < FOLLOW_TARGET_MS
    finally:
        if dispatcher:
            dispatcher.stop()
        if args.keep:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
