#!/usr/bin/env python3
"""A dispatcher that starts again (issue 10):

- restarts rerun nothing: across 10 SIGTERM and 10 SIGKILL restarts of the
  dispatcher while a runner runs commits whose tests sleep, every test of
  every commit runs exactly once (each test appends a line to a file
  outside its workspace when it starts) and every commit gets its result.
  The dispatcher gives the runners that held jobs `restart_grace` to come
  back before it requeues their jobs; some outages here are longer than
  runner_timeout (3 s), which was the grace before;
- `--check-config` reads only: no state directory, no database;
- asking for an unknown commit is an answer ("no job for commit X"), not a
  broken peer: the connection stays, and kilnctl prints it and exits 1.

Run with ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_restart.py -v
KILN_RESTART_SEED reproduces the outage schedule.
"""

import collections
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402

RESTARTS = 20           # alternately SIGTERM and SIGKILL
LONG_OUTAGES = (3, 8, 13)  # which restarts are down for ~5 s (one SIGTERM, two SIGKILL)
LONG_UP = 3.5           # then up this long (longer than runner_timeout, 3 s)
TESTS_PER_COMMIT = 5    # each sleeps TEST_SECONDS: a commit's suite takes ~10 s
TEST_SECONDS = 2.0
FIRST_COMMITS = 3       # after commit 0; MORE_COMMITS after half the restarts
MORE_COMMITS = 2
DRAIN_TIMEOUT = 60.0    # after the last restart: every result in


def counting_tests(runs_file):
    """A unittest module whose tests each append "<tag> <test>" to
    runs_file (outside the workspace) as they start, then sleep."""
    methods = "".join(
        "    def test_%d(self):\n"
        "        self.run_once(\"test_%d\")\n\n" % (i, i) for i in range(TESTS_PER_COMMIT))
    return ("import os\nimport time\nimport unittest\n\n"
            "HERE = os.path.dirname(os.path.abspath(__file__))\n"
            "RUNS = %r\n\n\n"
            "class Counted(unittest.TestCase):\n"
            "    def run_once(self, name):\n"
            "        with open(os.path.join(HERE, \"tag\")) as f:\n"
            "            tag = f.read().strip()\n"
            "        fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
            "        os.write(fd, (\"%%s %%s\\n\" %% (tag, name)).encode())\n"
            "        os.close(fd)\n"
            "        time.sleep(%r)\n\n%s"
            % (runs_file, TEST_SECONDS, methods))


class RestartTest(kf.ClusterTestCase):
    def test_restarts_rerun_nothing(self):
        rng, seed = kf.seeded_random("KILN_RESTART_SEED", "restart")
        began = time.monotonic()
        c = self.cluster(mode="every", interval="300ms", max_attempts=10)
        runs_file = c.path("runs.log")
        c.repo.write("tests/test_counted.py", counting_tests(runs_file))
        c.repo.write("tests/tag", "0\n")
        # The branch exists before the observer starts (a branch that appears
        # is tested at its head only): commit 0 is tested, and each one after.
        commits = {"0": c.repo.commit("commit 0")}  # tag → commit id
        c.start(runners=1, slots=2)
        c.wait_until(lambda: c.jobs_of(commits["0"]), 30.0, "commit 0 queued")

        def make_commits(n):
            for _ in range(n):
                tag = str(len(commits))
                c.repo.write("tests/tag", tag + "\n")
                commits[tag] = c.repo.commit("commit %s" % tag)

        make_commits(FIRST_COMMITS)
        # Let the first jobs start, so the first outage finds them running.
        c.wait_until(lambda: os.path.exists(runs_file), 30.0, "a first test started")

        for i in range(RESTARTS):
            if i == RESTARTS // 2:
                make_commits(MORE_COMMITS)
            # Mostly short outages; a few long ones, each followed by a longer
            # time up: runners in back-off come back late (that was when a
            # requeue after runner_timeout reran their jobs).
            long = i in LONG_OUTAGES
            down = rng.uniform(4.5, 5.5) if long else rng.uniform(0.2, 0.8)
            if i % 2 == 0:
                c.stop_daemon("dispatcher")
                c.note("dispatcher stopped with SIGTERM; down for %.1fs" % down)
            else:
                c.kill_daemon("dispatcher")
                c.note("dispatcher down for %.1fs" % down)
            time.sleep(down)
            c.start_dispatcher()  # waits (bounded) until it answers
            time.sleep(LONG_UP if long else rng.uniform(0.2, 0.6))
        c.note("%d restarts done; waiting for every result" % RESTARTS)

        def all_done():
            done = {j["commit"] for j in c.jobs() if j["state"] == "done"}
            return all(x in done and os.path.exists(c.result_file(x))
                       for x in commits.values())
        c.wait_until(all_done, DRAIN_TIMEOUT, "a result for each of the %d commits"
                     % len(commits), interval=0.5)
        jobs = c.jobs()
        with open(runs_file) as f:
            runs = collections.Counter(tuple(line.split()) for line in f if line.strip())
        c.stop()

        problems = []
        for tag, commit in sorted(commits.items()):
            for t in range(TESTS_PER_COMMIT):
                n = runs[(tag, "test_%d" % t)]
                if n != 1:
                    problems.append("commit %s (%s): test_%d ran %d times"
                                    % (tag, commit[:12], t, n))
            mine = [j for j in jobs if j["commit"] == commit]
            if len(mine) != 1 or mine[0]["outcome"] != "passed":
                problems.append("commit %s (%s): jobs %s" % (tag, commit[:12], mine))
            if not os.path.exists(c.result_file(commit)):
                problems.append("commit %s (%s): no result file" % (tag, commit[:12]))
        strangers = [k for k in runs if k[0] not in commits]
        if strangers:
            problems.append("runs of tests of no commit: %s" % strangers)
        sys.stderr.write("%d commits, %d test runs, %d restarts in %.1fs\n"
                         % (len(commits), sum(runs.values()), RESTARTS,
                            time.monotonic() - began))
        if problems:
            self.fail("seed %d:\n  %s" % (seed, "\n  ".join(problems)))


class CheckConfigTest(unittest.TestCase):
    def test_check_config_writes_nothing(self):
        c = kf.Cluster(self)
        config = c.write_dispatcher_config()
        state = c.path("dispatcher-state")
        proc = kf.run([kf.binary("dispatcher"), "--check-config", "-c", config], check=False)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        if os.path.exists(state):
            self.fail("--check-config created %s: %s" % (state, os.listdir(state)))


def query_frame(id, what, arg=""):
    return kf.frame(kf.mp_map({"type": "query", "id": id, "what": what, "arg": arg}))


class UnknownCommitTest(kf.ClusterTestCase):
    def test_unknown_commit_is_an_answer(self):
        c = self.cluster()
        c.start_dispatcher()
        unknown = "0123456789abcdef0123456789abcdef01234567"
        peer = kf.RawPeer(c.port)
        self.addCleanup(peer.close)
        peer.send(kf.hello_frame("ctl") + query_frame(2, "result", unknown))
        frames = peer.frames(2)
        self.assertEqual([f.get("type") for f in frames], ["hello", "error"], frames)
        self.assertEqual(frames[1]["id"], 2)
        self.assertIn("no job for commit '%s'" % unknown, frames[1]["message"])
        # The same connection still answers.
        peer.send(query_frame(3, "status"))
        frames = peer.frames(3)
        self.assertEqual(frames[2].get("type"), "reply", frames)
        self.assertEqual(frames[2]["id"], 3)
        # kilnctl says it and exits 1.
        proc = c.ctl("result", unknown[:10], json_output=False, check=False)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("no job for commit '%s'" % unknown[:10], proc.stderr)
        # A normal answer: no warning, no closed connection in the log.
        log = c.log_of("dispatcher")
        self.assertNotIn("closing the connection", log)
        self.assertNotRegex(log, r"(?i)warn.*no job for commit")


if __name__ == "__main__":
    unittest.main()
