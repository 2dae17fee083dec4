#!/usr/bin/env python3
"""Sharding benchmark: a real suite split across real runner processes.

16 tests of 1 s each (the `script` plugin: executables that sleep 1 s) on 4
runners with 1 slot each, the repository asking for `shards = "auto"`.
Prints, for each of two commits, the wall time from the commit being
acknowledged (the dispatcher's "queued" line: it is persisted then) to its
final, merged result (the "recorded" line), against the ideal: total test
time / runners = 4 s.  The first commit is planned with no known durations
(tests spread evenly), the second with the durations the first recorded.

Not part of ctest.  Run from the repository root after a build:
    python3 tests/bench/shards.py [--tests 16] [--runners 4] [--seconds 1]
KILN_BUILD_DIR selects the build (default ./build).  Every wait is bounded,
only 127.0.0.1 is used, and only the daemons it started are stopped.
"""
import argparse
import datetime
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import kiln_fixture as kf  # noqa: E402

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")


def stamp_of(line):
    m = STAMP.match(line)
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f") if m else None


def line_time(log, pattern):
    """Time of the first log line matching `pattern`, or None."""
    for line in log.splitlines():
        if re.search(pattern, line):
            return stamp_of(line)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=16)
    ap.add_argument("--runners", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=1.0, help="each test's run time")
    ap.add_argument("--timeout", type=float, default=120.0, help="bound on each commit's wait")
    args = ap.parse_args()

    c = kf.Cluster(exec_plugin="script", interval="300ms", repo_timeout="5m")
    write_observer = c.write_observer_config

    def sharded_observer_config():
        # The fixture's [[repo]], asking for as many shards as there are free slots.
        path = write_observer()
        with open(path) as f:
            text = f.read()
        text = re.sub(r"(?m)^(timeout = .*)$", r'\1\nshards = "auto"', text, count=1)
        with open(path, "w") as f:
            f.write(text)
        return path

    c.write_observer_config = sharded_observer_config
    ideal = args.tests * args.seconds / args.runners
    rows = []
    try:
        for i in range(args.tests):
            c.repo.write("tests/t%02d" % (i + 1), "#!/bin/sh\nsleep %s\n" % args.seconds,
                         executable=True)
        c.start(runners=args.runners, slots=1)
        for label in ("first (no known durations)", "second (durations known)"):
            c.repo.write("tests/round", label + "\n")
            commit = c.repo.commit(label)
            result = c.wait_result(commit, timeout=args.timeout)
            log = c.log_of("dispatcher")
            job = re.search(r"job (\d+): queued \S+ \S+ %s" % commit[:12], log)
            if not job:
                sys.exit("no 'queued' line for %s in the dispatcher's log" % commit[:12])
            queued = line_time(log, r"job %s: queued " % job.group(1))
            done = line_time(log, r"job %s: \S+ %s \S+ by " % (job.group(1), commit[:12]))
            wall = (done - queued).total_seconds()
            shards = re.search(r"job %s: (\d+) tests in (\d+) shards" % job.group(1), log)
            rows.append((label, wall, result["outcome"], len(result["tests"]),
                         shards.group(2) if shards else "1"))
    finally:
        c.stop()
        c.cleanup()

    print("== kiln sharding benchmark ==")
    print("suite             %d tests x %.1f s, %d runners x 1 slot, shards = \"auto\""
          % (args.tests, args.seconds, args.runners))
    print("ideal             %.2f s (total test time / runners)" % ideal)
    worst = 0.0
    for label, wall, outcome, n, shards in rows:
        worst = max(worst, wall / ideal)
        print("%-17s %.2f s = %.2fx ideal  (%s shards, %d tests, %s)"
              % (label.split()[0], wall, wall / ideal, shards, n, outcome))
    print("target            < 1.25x ideal: %s" % ("met" if worst < 1.25 else "NOT met"))
    return 0 if all(r[2] == "passed" and r[3] == args.tests for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
