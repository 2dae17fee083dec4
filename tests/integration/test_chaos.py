#!/usr/bin/env python3
"""Chaos (issue 3, "Nothing lost"): a stream of commits (mode "every") to a
cluster of one observer, one dispatcher and two runners, while the
dispatcher is killed with SIGKILL and restarted on the same port at least
twice, a runner is killed with SIGKILL while it runs a job and started
again (sometimes twice), and the observer is killed with SIGKILL and
started again once, all at random moments.  Afterwards every commit must have exactly one
job, done, exactly one result file, and exactly one result recorded by the
dispatcher (over the logs of all its incarnations).  Prints

    commits=N results=N lost=0 duplicates=0

The schedule comes from a random seed printed at the start; KILN_CHAOS_SEED
reproduces it (the timing of the daemons themselves is not reproducible).

Run with ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_chaos.py -v
"""

import collections
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402

COMMITS = 40
RUNNERS = ("runner-1", "runner-2")
RUNNER_TIMEOUT = "4s"
DRAIN_TIMEOUT = 60.0     # after the last commit and restart: every result in
RUNNER_KILL_WAIT = 30.0  # after the stream: a runner caught mid-job
SETTLE = 3.0             # after the last result: late resends would show up


class ChaosTest(kf.ClusterTestCase):
    def test_chaos(self):
        rng, seed = kf.seeded_random("KILN_CHAOS_SEED", "chaos")
        began = time.monotonic()

        c = self.cluster(mode="every", interval="300ms", runner_timeout=RUNNER_TIMEOUT,
                         max_attempts=10)
        c.repo.write("tests/test_sleepy.py", kf.SLEEPY_UNITTEST)
        c.repo.write("tests/sleep_ms", "0\n")
        c.start(runners=len(RUNNERS), slots=2)

        # The commit stream: bursts of 1-5 commits 0.15 s apart, 0.5-2.5 s
        # between bursts; each commit's tests sleep 200-600 ms.
        plan = []
        t = 0.5
        while len(plan) < COMMITS:
            for _ in range(min(rng.randint(1, 5), COMMITS - len(plan))):
                plan.append((t, rng.randint(200, 600)))
                t += 0.15
            t += rng.uniform(0.5, 2.5)
        stream_end = plan[-1][0]

        # The chaos: two (sometimes three) dispatcher kills spread over the
        # stream, each down for 0.3-5 s (so sometimes longer than
        # runner_timeout), and one (sometimes two) runner kills, armed at a
        # random moment and fired when that runner is running a job, each
        # down for 0.3-2 s; and one observer kill, down for 0.3-3 s.
        n_kills = 2 + (rng.random() < 0.5)
        slot = stream_end / n_kills
        events = [(i * slot + rng.uniform(0.2, 0.7) * slot, "kill", "dispatcher")
                  for i in range(n_kills)]
        events.append((rng.uniform(0.1, 0.9) * stream_end, "kill", "observer"))
        runner_victim = rng.choice(RUNNERS)
        events.append((rng.uniform(0.15, 0.5) * stream_end, "arm", runner_victim))
        if rng.random() < 0.5:
            events.append((rng.uniform(0.55, 0.9) * stream_end, "arm", rng.choice(RUNNERS)))
        events.sort()
        sys.stderr.write("plan: %d commits over %.1fs; dispatcher kills at %s; observer kill "
                         "at %.1fs; runner kill (%s) armed at %.1fs\n"
                         % (len(plan), stream_end,
                            ", ".join("%.1fs" % e[0] for e in events
                                      if e[1:] == ("kill", "dispatcher")),
                            [e[0] for e in events if e[1:] == ("kill", "observer")][0],
                            runner_victim, [e[0] for e in events if e[1] == "arm"][0]))
        if sum(1 for e in events if e[1] == "arm") > 1:
            sys.stderr.write("plan: a second runner kill armed at %.1fs\n"
                             % [e[0] for e in events if e[1] == "arm"][1])

        commits = []  # (full id, sleep ms)
        armed = None
        runner_killed = 0
        extra_commits = 0
        next_extra = 0.0

        def do_kill(key):
            c.kill_daemon(key)
            events.append((now() + {"dispatcher": rng.uniform(0.3, 5.0),
                                   "observer": rng.uniform(0.3, 3.0)}.get(key, rng.uniform(0.3, 2.0)),
                           "start", key))
            events.sort()

        def now():
            return time.monotonic() - stream_t0

        stream_t0 = time.monotonic()
        hard_deadline = stream_t0 + stream_end + RUNNER_KILL_WAIT + 30
        while plan or events or armed or not runner_killed:
            if time.monotonic() > hard_deadline:
                self.fail("the chaos schedule did not complete in time (plan %d left, "
                          "events %s, armed %s, runner killed %d)\n%s"
                          % (len(plan), events, armed, runner_killed, c.logs()))
            t = now()
            while plan and plan[0][0] <= t:
                _, ms = plan.pop(0)
                c.repo.write("tests/sleep_ms", "%d\n" % ms)
                commits.append((c.repo.commit("commit %d sleeps %d ms" % (len(commits) + 1, ms)),
                                ms))
            while events and events[0][0] <= t:
                _, kind, key = events.pop(0)
                if kind == "kill":
                    if key in c.daemons:
                        do_kill(key)
                    else:  # still down from the previous kill: a little later
                        events.append((t + 1.0, kind, key))
                        events.sort()
                elif kind == "start":
                    if key == "dispatcher":
                        c.start_dispatcher()
                    elif key == "observer":
                        c.start_observer()
                    else:
                        c.start_runner(key, slots=2, wait=False)
                elif kind == "arm":
                    if armed:  # the previous one has not fired yet
                        events.append((t + 1.0, kind, key))
                        events.sort()
                    else:
                        armed = key
            # Once the stream is over, whichever runner is busy will do.
            candidates = [armed] if plan else list(RUNNERS)
            busy = [k for k in candidates if armed and k in c.daemons and c.runner_running(k)]
            if busy:
                c.note("%s is running job(s) %s" % (busy[0], c.runner_running(busy[0])))
                do_kill(busy[0])
                armed = None
                runner_killed += 1
            elif not plan and armed and runner_killed and not any(
                    c.runner_running(k) for k in RUNNERS):
                c.note("second runner kill dropped: the stream is over and no job runs")
                armed = None
            elif not plan and not runner_killed:
                # The stream ended before a runner was caught mid-job: a
                # commit long enough to catch one in (every few seconds).
                armed = armed or runner_victim
                if "dispatcher" in c.daemons and time.monotonic() > next_extra and \
                        extra_commits < 5:
                    c.repo.write("tests/sleep_ms", "1500\n")
                    commits.append((c.repo.commit("extra commit, sleeps 1500 ms"), 1500))
                    extra_commits += 1
                    next_extra = time.monotonic() + 5.0
                    c.note("extra commit so that a runner can be killed mid-job")
            time.sleep(0.05)
        for key in ("dispatcher",) + RUNNERS + ("observer",):
            self.assertIn(key, c.daemons, "%s should be running again" % key)
        c.note("chaos over; waiting for every result")

        # Every commit gets its final result (bounded).
        ids = [commit for commit, _ in commits]

        def all_done():
            jobs = c.jobs()
            done = {j["commit"] for j in jobs if j["state"] == "done"}
            missing = [x for x in ids if x not in done or not os.path.exists(c.result_file(x))]
            return not missing
        try:
            c.wait_until(all_done, DRAIN_TIMEOUT, "a final result for each of the %d commits"
                         % len(ids), interval=0.5)
        except AssertionError:
            pass  # counted and reported below, with the line
        c.note("waited for results; settling %.0fs for late resends" % SETTLE)
        time.sleep(SETTLE)
        jobs = c.jobs()
        try:
            c.stop()  # clean SIGTERM of everything: the logs are complete
            stop_error = None
        except AssertionError as e:
            stop_error = str(e).split("\n")[0:3]

        # Count.
        by_commit = collections.defaultdict(list)
        for j in jobs:
            by_commit[j["commit"]].append(j)
        files = {f[:-5] for f in os.listdir(c.results_dir) if f.endswith(".json")} \
            if os.path.isdir(c.results_dir) else set()
        recorded = c.recorded()
        lost, duplicates, problems, notes = [], [], [], []
        for commit in ids:
            mine = by_commit.get(commit, [])
            done = [j for j in mine if j["state"] == "done"]
            rec = recorded.get(commit[:12], [])
            if len(done) != 1 or commit not in files:
                lost.append(commit)
                problems.append("%s: %d job(s) %s, result file %s"
                                % (commit[:12], len(mine),
                                   [(j["job_id"], j["state"], j["attempt"]) for j in mine],
                                   "present" if commit in files else "missing"))
            if len(mine) > 1 or len(rec) > 1:
                duplicates.append(commit)
                problems.append("%s: %d jobs, recorded %d times: %s"
                                % (commit[:12], len(mine), len(rec), rec))
            elif len(done) == 1 and not rec:
                # Done (in the database) with its result file, but the
                # dispatcher was killed between committing the result and
                # logging it: not a loss, not a duplicate.
                notes.append("%s: done, but its recording line is missing from the "
                             "dispatcher's logs" % commit[:12])
            for j in done:
                if j["outcome"] != "passed":
                    problems.append("%s: job %d ended %s (attempt %d), not passed"
                                    % (commit[:12], j["job_id"], j["outcome"], j["attempt"]))
        strangers = sorted(files - set(ids))
        if stop_error:
            problems.append("stopping the cluster: %s" % " ".join(stop_error))
        if strangers:
            problems.append("result files for commits never made: %s" % strangers)
        results = len(ids) - len(lost)

        attempts = collections.Counter(j["attempt"] for j in jobs)
        sys.stderr.write("chaos applied (seed %d, %.1fs in all):\n" % (seed,
                                                                    time.monotonic() - began))
        for t, what in c.chaos:
            sys.stderr.write("  %7.2fs  %s\n" % (t, what))
        sys.stderr.write("jobs by attempt: %s\n" % dict(sorted(attempts.items())))
        for n in notes:
            sys.stderr.write("note: %s\n" % n)
        line = "commits=%d results=%d lost=%d duplicates=%d" % (len(ids), results, len(lost),
                                                              len(duplicates))
        print(line)
        sys.stdout.flush()
        n_dispatcher_kills = sum(1 for _, w in c.chaos if re.match(r"dispatcher killed", w))
        self.assertGreaterEqual(len(ids), 30)
        self.assertGreaterEqual(n_dispatcher_kills, 2)
        self.assertGreaterEqual(runner_killed, 1)
        if lost or duplicates or problems:
            self.fail("%s\n  %s" % (line, "\n  ".join(problems)))


if __name__ == "__main__":
    unittest.main()
