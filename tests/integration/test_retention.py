#!/usr/bin/env python3
"""Retention and garbage collection, end to end (issue 13):

- a dispatcher with no [retention] limit deletes nothing (kilnctl gc);
- after a SIGHUP that sets max_age, `kilnctl gc --dry-run` says what would
  go (per repository and branch) and deletes nothing; `kilnctl gc` deletes
  exactly that: every result but the newest keep_per_branch of the branch;
- the deleted commits are gone from kilnctl and stay gone after a restart;
  the kept result's log reads back whole from the (compressed) database;
- the database is consistent and in incremental auto_vacuum mode.

Run with ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_retention.py -v
"""

import os
import signal
import sqlite3
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402

SHORT = 10.0
RESULTS = 60.0
RETENTION = '\n[retention]\nmax_age = "1ms"\nkeep_per_branch = 1\n'


class RetentionTest(kf.ClusterTestCase):
    def test_gc_deletes_what_the_policy_says(self):
        c = self.cluster(mode="every", interval="300ms")
        c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        commits = [c.repo.commit("commit 0")]
        c.start(runners=1, slots=2)
        c.wait_result(commits[0], RESULTS)
        for i in (1, 2):
            c.repo.write("tests/n.txt", "%d\n" % i)
            commits.append(c.repo.commit("commit %d" % i))
            c.wait_result(commits[-1], RESULTS)
        # Every report delivered: no outbox row holds a job back.
        c.wait_until(lambda: all(r["pending"] == 0 for r in c.ctl("reports")), SHORT,
                     "the reports delivered")

        nothing = c.ctl("gc")
        self.assertEqual((nothing["jobs"], nothing["dry_run"]), (0, False))
        self.assertEqual(len(c.jobs()), 3)

        c.dispatcher_extra = RETENTION
        c.write_dispatcher_config()
        os.kill(c.daemons["dispatcher"].pid, signal.SIGHUP)
        c.wait_until(lambda: c.log_has("dispatcher", r"reload: "), SHORT, "the reload")
        branch = c.jobs()[0]["branch"]

        plan = c.ctl("gc", "--dry-run")
        self.assertTrue(plan["dry_run"])
        self.assertEqual(plan["jobs"], 2)
        self.assertEqual(plan["branches"], [{"repo": "example", "branch": branch, "jobs": 2,
                                             "logs_cut": 0, "log_bytes_cut": 0}])
        self.assertEqual(len(c.jobs()), 3)  # a dry run deletes nothing

        done = c.ctl("gc")
        self.assertFalse(done["dry_run"])
        self.assertEqual(done["jobs"], 2)
        self.assertGreater(done["stored_bytes"], 0)
        self.assertEqual([j["commit"] for j in c.jobs()], [commits[2]])
        gone = c.ctl("result", commits[0], check=False)
        self.assertEqual(gone.returncode, 1)
        self.assertIn("no job for commit", gone.stderr)
        table = c.ctl("gc", "--dry-run", json_output=False).stdout
        self.assertIn("would delete 0 job(s)", table)

        # A restart reads what is left, its log decompressed.
        before = c.ctl("result", commits[2])["log"]
        self.assertIn("Ran 2 tests", before)
        c.stop_daemon("dispatcher")
        c.start_dispatcher()
        self.assertEqual([j["commit"] for j in c.jobs()], [commits[2]])
        self.assertEqual(c.ctl("result", commits[2])["log"], before)
        c.stop()

        db = sqlite3.connect(c.path("dispatcher-state", "dispatcher.db"))
        try:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            self.assertEqual(db.execute("PRAGMA auto_vacuum").fetchone()[0], 2)
            self.assertEqual(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0], 1)
            magic = db.execute("SELECT substr(frame, 1, 4) FROM results").fetchone()[0]
            self.assertEqual(bytes(magic), b"KZS1")
        finally:
            db.close()


if __name__ == "__main__":
    unittest.main()
