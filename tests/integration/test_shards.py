#!/usr/bin/env python3
"""Sharding and superseding, end to end, with real daemons and git.

- A repository with `shards = 3` is listed by one runner, split over three
  runners, and its commit gets one merged result with every test exactly
  once; the files reporter's result says the same.
- A real-world Python suite (tests/fixtures/shard_suite: doctests through
  load_tests, a duplicated id, subtests, generated and FunctionTestCase
  tests, class and module fixtures, a failing setUpClass and setUpModule, a
  module that cannot be imported), with `shards = "auto"` over two runners, gives
  exactly the per-test results of the same suite run unsharded.
- With `cancel_superseded = true`, a slow commit that is running when a
  newer commit of its branch arrives is cancelled (the runner kills its
  tests) and the newer one runs to its own result.
"""
import collections
import os
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_fixture as kf  # noqa: E402


def script(body):
    return "#!/bin/sh\n" + body + "\n"


class ShardTest(kf.ClusterTestCase):
    def test_split_over_runners_and_merged(self):
        c = self.cluster(exec_plugin="script", repo_extra="shards = 3")
        names = ["t%d" % i for i in range(1, 8)]
        for n in names:
            # t5 fails, so the merged outcome must be "failed"
            c.repo.write("tests/" + n, script("sleep 0.3\nexit %d" % (1 if n == "t5" else 0)),
                         executable=True)
        c.start(runners=3, slots=1)
        commit = c.repo.commit("seven tests")
        res = c.wait_result(commit)
        self.assertEqual(res["outcome"], "failed", res)
        self.assertEqual(sorted(t["name"] for t in res["tests"]), sorted(names))
        by_name = kf.tests_by_name(res)
        self.assertEqual(by_name["t5"], "failed")
        self.assertEqual([n for n, o in by_name.items() if o == "passed"].__len__(), 6)
        shown = c.ctl("result", commit)
        self.assertEqual(len(shown["shards"]), 3, shown)
        self.assertEqual(sorted(t["name"] for t in shown["tests"]), sorted(names))
        self.assertEqual(sum(s["tests"] for s in shown["shards"]), len(names))
        self.assertEqual(len({s["runner"] for s in shown["shards"]}), 3,
                         "each shard on its own runner: %s" % shown["shards"])
        self.assertIn("==== shard 1 of 3", shown["log"])
        # One job for the commit in `jobs`, its shards counted there.
        (job,) = [j for j in c.ctl("jobs") if j["commit"] == commit]
        self.assertEqual((job["state"], job["shards"], job["shards_done"]), ("done", 3, 3))


SHARD_SUITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                           "fixtures", "shard_suite")


def commit_shard_suite(repo, message):
    for sub in ("seqlib", "tests"):
        shutil.copytree(os.path.join(SHARD_SUITE, sub), os.path.join(repo.path, sub),
                        ignore=shutil.ignore_patterns("__pycache__"))
    return repo.commit(message)


def per_test(result):
    """Counter of (name, outcome): a test the suite holds twice counts twice."""
    return collections.Counter((t["name"], t["outcome"]) for t in result["tests"])


class RealSuiteShardTest(kf.ClusterTestCase):
    def test_sharded_results_equal_the_unsharded_run(self):
        whole = self.cluster(exec_plugin="unittest")
        sharded = self.cluster(exec_plugin="unittest", repo_extra='shards = "auto"')
        whole.start(runners=1, slots=1)
        sharded.start(runners=2, slots=2)
        whole_commit = commit_shard_suite(whole.repo, "the suite, unsharded")
        sharded_commit = commit_shard_suite(sharded.repo, "the suite, sharded")
        expected = whole.wait_result(whole_commit)
        got = sharded.wait_result(sharded_commit)
        # The unsharded run is the suite it is meant to be ...
        self.assertEqual(expected["outcome"], "failed", expected)
        self.assertEqual(sum(per_test(expected).values()), 23, expected["tests"])
        self.assertEqual(per_test(expected)[("tests.test_views.Twice.test_twice", "passed")], 2)
        self.assertEqual(kf.tests_by_name(expected)["seqlib.views.SequenceView"], "passed")
        # ... and the shards, over both runners, report exactly the same.
        shown = sharded.ctl("result", sharded_commit)
        self.assertGreaterEqual(len(shown["shards"]), 2, shown)
        self.assertEqual(len({s["runner"] for s in shown["shards"]}), 2, shown["shards"])
        self.assertEqual(per_test(got), per_test(expected),
                         "sharded: %s\nerror: %s" % (sorted(per_test(got).items()),
                                                      got.get("error")))
        self.assertEqual(got["outcome"], expected["outcome"])


class SupersedeTest(kf.ClusterTestCase):
    def test_newer_commit_cancels_the_running_one(self):
        c = self.cluster(exec_plugin="script", repo_extra="cancel_superseded = true")
        c.repo.write("tests/slow", script("sleep 30"), executable=True)
        c.start(runners=1, slots=1)
        old = c.repo.commit("slow")
        c.wait_until(lambda: any(j["commit"] == old and j["state"] == "assigned"
                                 for j in c.ctl("jobs"))
                     and c.runner_running("runner-1"), 20, "the slow commit running")
        c.repo.write("tests/slow", script("exit 0"), executable=True)
        started = time.monotonic()
        new = c.repo.commit("fast now")
        old_res = c.wait_result(old, timeout=20)
        self.assertEqual(old_res["outcome"], "cancelled", old_res)
        self.assertLess(time.monotonic() - started, 15, "cancelled well before the test's 30 s")
        new_res = c.wait_result(new)
        self.assertEqual(new_res["outcome"], "passed", new_res)


if __name__ == "__main__":
    unittest.main(verbosity=2)
