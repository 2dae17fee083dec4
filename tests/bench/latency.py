#!/usr/bin/env python3
"""End-to-end latency: commit + `kilnctl notify` → result of a one-test suite.

Real kiln-dispatcher, one kiln-runner (one slot) and kiln-observer in a temp
dir (the integration tests' fixture, tests/integration/kiln_fixture.py),
all with -v.  The observer polls only every 60 s, so every commit is found
through the notification.  The suite is one `script` test that exits 0 at
once, so the test's own run time is tiny, and it is measured (the result's
duration_ms) and subtracted.

For each of --commits commits: commit, `kilnctl -v notify REPO main`, wait
for the result file.  The phases come from the daemons' log timestamps
(millisecond resolution, one clock) and the result file's mtime:

  observe    kilnctl "notify sent"       → dispatcher "job N: queued"
  queue      dispatcher "queued"         → runner "job N: ...: preparing"
  workspace  runner "preparing"          → runner "job N: running ..."
  test       runner "running"            → runner "job N: passed (...)"
  report     runner "passed"             → dispatcher "recorded" line and result
                                           file (its mtime), whichever is later

with sub-phases (relay to the observer, git poll, hand-over; persist and
assign, delivery; recorded) to show where the time goes.  Prints median and
p90 per phase and the total median beyond the test's own run time, against
the target of 100 ms.  Exit 0 when that median is under the target.

Not a ctest test.  Run from the source tree, after a build:
    python3 tests/bench/latency.py --build-dir build [--commits 20]
"""

import argparse
import datetime
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import kiln_fixture as kf  # noqa: E402

TARGET_MS = 100.0
REPO = "bench"

# "2026-01-02 03:04:05.678 kiln-runner[123] info: message"
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \S+\[\d+\] \w+: (.*)$", re.M)

# (phase, start event, end event); events are named in find_events().
PHASES = [
    ("observe", "sent", "queued"),
    ("  relay to observer", "sent", "notified"),
    ("  git poll", "notified", "new_commit"),
    ("  commit to dispatcher", "new_commit", "queued"),
    ("queue", "queued", "preparing"),
    ("  persist + assign", "queued", "assigned"),
    ("  deliver to runner", "assigned", "preparing"),
    ("workspace", "preparing", "running"),
    ("test", "running", "done"),
    ("report", "done", "reported"),
    ("  recorded (durable)", "done", "recorded"),
    ("  result file written", "done", "file"),
    ("total", "sent", "reported"),
]


def stamps(text):
    """[(unix seconds, message)] of a log's lines, in order."""
    out = []
    for stamp, message in LINE.findall(text):
        t = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        out.append((t, message))
    return out


def first(lines, pattern, after=0.0):
    """Time of the first line matching `pattern` at or after `after`."""
    rx = re.compile(pattern)
    for t, message in lines:
        if t >= after and rx.search(message):
            return t
    raise LookupError("no log line /%s/ after %.3f" % (pattern, after))


def find_events(c, sample, logs):
    """Fill sample["events"]: event name → unix seconds."""
    commit, sent = sample["commit"], sample["sent"]
    # Stamps are cut (not rounded) to the millisecond, so another process's
    # line may carry a stamp up to 1 ms before "sent".
    after = sent - 0.001
    short = commit[:12]
    d, r, o = logs["dispatcher"], logs["runner-1"], logs["observer"]
    m = re.search(r"job (\d+): queued %s \S+ %s" % (REPO, short),
                  "\n".join(msg for _, msg in d))
    if not m:
        raise LookupError("commit %s: no queued line" % short)
    job = m.group(1)
    ev = {"sent": sent}
    ev["notified"] = first(o, r"repo %s main: notified" % REPO, after)
    ev["new_commit"] = first(o, r"repo %s main: new commit %s" % (REPO, short), after)
    ev["queued"] = first(d, r"job %s: queued " % job, after)
    ev["assigned"] = first(d, r"job %s: assigned to " % job, after)
    ev["preparing"] = first(r, r"job %s: \S+ %s: preparing" % (job, short), after)
    ev["running"] = first(r, r"job %s: running .* with " % job, after)
    ev["done"] = first(r, r"job %s: (passed|failed|error|timeout|cancelled)\b" % job, after)
    ev["recorded"] = first(d, r"job %s: %s %s \w+ by " % (job, REPO, short), after)
    ev["file"] = os.stat(c.result_file(commit)).st_mtime
    ev["reported"] = max(ev["recorded"], ev["file"])
    sample["events"] = ev


def notify(c):
    """Run kilnctl -v notify; returns (spawned at, "notify sent" time)."""
    spawned = time.time()
    proc = kf.run([kf.binary("kilnctl"), "-v", "-d", c.address, "notify", REPO, "main"])
    sent = stamps(proc.stderr)
    sent = [t for t, msg in sent if msg.endswith("notify sent")]
    if not sent:
        raise AssertionError("kilnctl -v printed no 'notify sent' line:\n" + proc.stderr)
    if proc.stdout.strip() != "notified 1 observer(s)":
        raise AssertionError("kilnctl notify: %r" % proc.stdout)
    return spawned, sent[0]


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    v = sorted(values)
    return v[max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))]


def report(samples):
    print("%d commits, one test each (script plugin, `exit 0`); times in ms" % len(samples))
    print()
    print("%-24s %8s %8s %8s" % ("PHASE", "MEDIAN", "P90", "MAX"))
    for name, start, end in PHASES:
        values = [(s["events"][end] - s["events"][start]) * 1000.0 for s in samples]
        print("%-24s %8.1f %8.1f %8.1f" % (name, statistics.median(values),
                                           percentile(values, 90), max(values)))
    test_ms = [s["test_ms"] for s in samples]
    spawn_ms = [(s["sent"] - s["spawned"]) * 1000.0 for s in samples]
    beyond = [(s["events"]["reported"] - s["events"]["sent"]) * 1000.0 - s["test_ms"]
              for s in samples]
    print()
    print("test's own run time (duration_ms): median %.1f ms" % statistics.median(test_ms))
    print("kilnctl start → notify sent (not counted above): median %.1f ms"
          % statistics.median(spawn_ms))
    median = statistics.median(beyond)
    print("total beyond the test's own run time: median %.1f ms, p90 %.1f ms (target < %.0f ms)"
          " — %s" % (median, percentile(beyond, 90), TARGET_MS,
                     "MET" if median < TARGET_MS else "MISSED"))
    return median < TARGET_MS


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--commits", type=int, default=20, help="commits measured (default 20)")
    ap.add_argument("--warmup", type=int, default=2, help="commits not measured (default 2)")
    ap.add_argument("--build-dir", help="CMake build tree (default $KILN_BUILD_DIR or ./build)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    args = ap.parse_args()
    if args.build_dir:
        os.environ["KILN_BUILD_DIR"] = os.path.abspath(args.build_dir)

    c = kf.Cluster(exec_plugin="script", interval="60s", repo_name=REPO, keep=args.keep)
    try:
        c.repo.write("tests/ok", "#!/bin/sh\nexit 0\n", executable=True)
        c.repo.commit("initial")
        c.start(runners=1, slots=1)
        samples = []
        for i in range(args.warmup + args.commits):
            commit = c.repo.commit("bench %d" % i)
            spawned, sent = notify(c)
            result = c.wait_result(commit, timeout=30)
            if result["outcome"] != "passed":
                raise AssertionError("commit %s: %s" % (commit[:12], result["outcome"]))
            if i >= args.warmup:
                samples.append({"commit": commit, "spawned": spawned, "sent": sent,
                                "test_ms": float(result["tests"][0]["duration_ms"])})
        logs = {k: stamps(c.log_of(k)) for k in ("dispatcher", "runner-1", "observer")}
        for s in samples:
            find_events(c, s, logs)
        ok = report(samples)
        c.stop()
        return 0 if ok else 1
    except Exception:
        sys.stderr.write(c.logs()[-20000:] + "\n")
        raise
    finally:
        c.cleanup()


if __name__ == "__main__":
    sys.exit(main())
