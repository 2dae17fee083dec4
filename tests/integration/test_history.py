#!/usr/bin/env python3
"""History out of memory (issue 13), with keep_finished = 0 so that every
finished commit leaves the dispatcher's memory once its report is
delivered:

- the finished commits leave memory (kilnctl status: jobs_in_memory) while
  kilnctl status still counts them and kilnctl jobs still lists them;
- kilnctl result, by full id and by prefix, the commit's web page and
  /api/v1/commits/<id> answer an old commit from the store; kilnctl retry
  runs it again;
- a dispatcher restarted on that database loads only the live jobs (its
  log says how many stay on disk);
- an observer that has forgotten what it sent offers the head again: it is
  acknowledged with the old job and not run a second time.

Run with ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_history.py -v
"""

import json
import os
import re
import shutil
import sys
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402


class HistoryTest(kf.ClusterTestCase):
    def test_finished_commits_answered_from_the_store(self):
        c = self.cluster(mode="every", interval="300ms",
                         dispatcher_extra="keep_finished = 0\n")
        c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        first = c.repo.commit("first")
        c.start(runners=1, slots=2)
        c.wait_result(first)
        c.repo.write("tests/test_arith.py", kf.FAILING_UNITTEST)
        second = c.repo.commit("second")
        c.wait_result(second)
        # Reported (files) and delivered: both leave memory.
        c.wait_until(lambda: c.ctl("status")["jobs_in_memory"] == 0, 15.0,
                     "finished commits to leave memory")
        status = c.ctl("status")
        for key, value in (("done", 2), ("passed", 1), ("not_passed", 1), ("queued", 0)):
            self.assertEqual(status[key], value, "status.%s in %s" % (key, status))
        self.assertEqual(status["repos"]["example"]["done"], 2)
        jobs = {j["commit"]: j for j in c.jobs()}
        self.assertEqual(set(jobs), {first, second})
        self.assertEqual(jobs[first]["outcome"], "passed")
        self.assertEqual(jobs[second]["outcome"], "failed")
        self.assertEqual(jobs[second]["state"], "done")

        # The web page and the JSON API read an old commit back too (the
        # answer comes once the store has been read, off the loop).
        for commit, outcome in ((first, "passed"), (second, "failed")):
            self.assertEqual(c.ctl("status")["jobs_in_memory"], 0)
            with urllib.request.urlopen(c.http_url("/commit/" + commit[:12]), timeout=10) as r:
                self.assertEqual(r.status, 200)
                self.assertIn(commit, r.read().decode())
            with urllib.request.urlopen(c.http_url("/api/v1/commits/" + commit), timeout=10) as r:
                self.assertEqual(json.loads(r.read())["outcome"], outcome)
        with self.assertRaises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(c.http_url("/commit/" + "0" * 40), timeout=10)
        self.assertEqual(missing.exception.code, 404)

        for commit, outcome in ((first, "passed"), (second, "failed")):
            r = c.ctl("result", commit)
            self.assertEqual(r["commit"], commit)
            self.assertEqual(r["outcome"], outcome)
            self.assertEqual(len(r["tests"]), 2)
            self.assertGreater(r["log_bytes"], 0)
        self.assertEqual(c.ctl("result", first[:8])["commit"], first)
        proc = c.ctl("result", "0" * 40, check=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("no job", proc.stderr)

        # Retry an old commit: read back, queued, run again (attempt 2).
        old_id = c.ctl("result", first)["job_id"]
        c.ctl("retry", first[:10])
        c.wait_until(lambda: c.ctl("result", first)["attempt"] == 2
                     and c.ctl("result", first)["state"] == "done",
                     30.0, "the retried commit's second run")
        self.assertEqual(c.ctl("result", first)["job_id"], old_id)
        # Its result is reported (the files plugin) before it leaves memory:
        # only then is nothing live for the restart below.
        c.wait_until(lambda: c.ctl("status")["jobs_in_memory"] == 0, 15.0,
                     "the retried commit to leave memory")

        # A restart loads only what is live: nothing here.
        c.stop_daemon("dispatcher")
        c.start_dispatcher()
        c.wait_until(lambda: c.log_has("dispatcher", r"0 live job\(s\) loaded.*2 finished "
                                       r"commit\(s\) stay on disk"),
                     10.0, "the start-up line of the restarted dispatcher")
        c.wait_until(lambda: c.ctl_ok("status"), 10.0, "the restarted dispatcher")
        self.assertEqual(c.ctl("status")["done"], 2)
        self.assertEqual(c.ctl("status")["jobs_in_memory"], 0)

        # The observer forgets what it sent: the head comes again, and is
        # acknowledged with its old job, not queued.
        second_id = c.ctl("result", second)["job_id"]
        c.stop_daemon("observer")
        shutil.rmtree(c.path("observer-state"))
        c.start_observer()
        state_file = c.path("observer-state")

        def acknowledged():
            for root, _, files in os.walk(state_file):
                for name in files:
                    with open(os.path.join(root, name)) as f:
                        if second in f.read():
                            return True
            return False
        c.wait_until(acknowledged, 15.0, "the observer's state to record the head as sent")
        self.assertTrue(c.log_has("observer", r"acknowledged as job %d\b" % second_id)
                        or c.log_has("observer", r"resuming after"),
                        "observer log")
        self.assertEqual(len(c.jobs()), 2)  # no second job for the head
        runs = [line for line in c.log_of("dispatcher").splitlines()
                if re.search(r"job \d+: example %s" % second[:12], line)]
        self.assertEqual(len(runs), 1, runs)


if __name__ == "__main__":
    unittest.main()
