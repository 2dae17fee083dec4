#!/usr/bin/env python3
"""Push notification and repository labels, end to end.

- `kilnctl notify REPO [BRANCH]` makes the observer poll at once: the
  observer polls only every 60 s here, so a result within seconds can only
  come from the notification;
- etc/kiln/post-receive, installed in a bare repository, notifies on a push;
- a repository requiring label "gpu" is tested only by the runner that has it.

Run with ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_notify.py -v
"""

import json
import os
import re
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402

HOOK = os.path.join(kf.SOURCE_DIR, "etc", "kiln", "post-receive")
LONG_INTERVAL = "60s"  # no regular poll during a test
NOTIFIED_RESULT = 10.0  # commit + notify → result, with a generous margin
PASSING_SCRIPT = "#!/bin/sh\nexit 0\n"


class NotifyCluster(kf.Cluster):
    """A Cluster whose [[repo]] can watch another url and carry extra keys,
    and whose runners can have labels (set before starting them)."""

    def __init__(self, testcase=None, url=None, repo_keys="", **kwargs):
        super().__init__(testcase, **kwargs)
        self.url = url
        self.repo_keys = repo_keys
        self.runner_labels = {}  # runner name → [label, ...]

    def _rewrite(self, path, old, new):
        with open(path) as f:
            text = f.read()
        if old not in text:
            raise AssertionError("%s: no %r to replace (fixture changed?)" % (path, old))
        with open(path, "w") as f:
            f.write(text.replace(old, new, 1))
        return path

    def write_observer_config(self):
        path = super().write_observer_config()
        if self.url:
            self._rewrite(path, "url = %s\n" % kf.toml_str(self.repo.path),
                          "url = %s\n" % kf.toml_str(self.url))
        return self._rewrite(path, "\n[[repo]]\n", "\n[[repo]]\n" + self.repo_keys)

    def write_runner_config(self, name="runner-1", slots=2):
        path = super().write_runner_config(name, slots)
        labels = self.runner_labels.get(name)
        if labels is None:
            return path
        return self._rewrite(path, "[runner]\n", "[runner]\nlabels = %s\n" % kf.toml_array(labels))

    def notify(self, *args, json_output=False, check=True):
        return self.ctl("notify", *args, json_output=json_output, check=check)

    def wait_observer_connected(self):
        self.wait_until(lambda: self.log_has("dispatcher", r"hello from observer"),
                        kf.START_TIMEOUT, "the observer connected to the dispatcher")


class NotifyTestCase(kf.ClusterTestCase):
    def notify_cluster(self, **kwargs):
        """A NotifyCluster whose logs are printed if the test fails."""
        c = NotifyCluster(self, **kwargs)
        self._kiln_clusters.append(c)
        return c


class NotifyTest(NotifyTestCase):
    """kilnctl notify against an observer that would otherwise wait 60 s."""

    def setUp(self):
        self.c = self.notify_cluster(exec_plugin="script", interval=LONG_INTERVAL)
        self.c.repo.write("tests/ok", PASSING_SCRIPT, executable=True)
        self.first = self.c.repo.commit("first")
        self.c.start()
        # The observer's first poll (at start) finds the first commit.
        self.assertEqual(self.c.wait_result(self.first)["outcome"], "passed")

    def test_notify_polls_at_once(self):
        c = self.c
        second = c.repo.commit("second")
        started = time.monotonic()
        out = c.notify("example", "main").stdout
        self.assertEqual(out, "notified 1 observer(s)\n")
        res = c.wait_result(second, timeout=NOTIFIED_RESULT)
        self.assertEqual(res["outcome"], "passed")
        self.assertLess(time.monotonic() - started, NOTIFIED_RESULT)
        self.assertTrue(c.log_has("observer", r"repo example main: notified; polling now"))

        # Without a branch: every watched branch; --json gives the raw answer.
        third = c.repo.commit("third")
        self.assertEqual(c.notify("example", json_output=True), {"observers": 1})
        self.assertEqual(c.wait_result(third, timeout=NOTIFIED_RESULT)["outcome"], "passed")

    def test_notifications_close_together_lose_nothing(self):
        # The second notification may arrive while the first one's poll
        # runs (and listed the branch before the newer commit): the observer
        # must then poll again, not drop it.
        c = self.c
        commits = []
        for i in range(4):
            commits.append(c.repo.commit("burst %d" % i))
            c.notify("example", "main")
        for commit in commits:
            self.assertEqual(c.wait_result(commit, timeout=NOTIFIED_RESULT)["outcome"], "passed")

    def test_unwatched_repo_or_branch_is_a_warning(self):
        c = self.c
        self.assertEqual(c.notify("nosuch").stdout, "notified 1 observer(s)\n")
        self.assertEqual(c.notify("example", "release").stdout, "notified 1 observer(s)\n")
        c.wait_until(lambda: c.log_has("observer", r"warning: notify nosuch \(all branches\): "
                                                   r"repository nosuch is not watched"),
                     5, "the observer's warning about repo nosuch")
        c.wait_until(lambda: c.log_has("observer", r"warning: notify example release: branch "
                                                   r"release of example is not watched"),
                     5, "the observer's warning about branch release")
        c.check_alive()

    def test_usage_errors(self):
        c = self.c
        for args, why in ((["notify"], "notify needs a REPO"),
                          (["notify", "a b"], "'a b' is not a valid repository name"),
                          (["notify", "example", "-x"], "'-x' is not a valid branch name"),
                          (["notify", "example", "main", "more"], "unexpected argument 'more'")):
            with self.subTest(args=args):
                proc = kf.run([kf.binary("kilnctl"), "-d", c.address, "--"] + args, check=False)
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertIn(why, proc.stderr)
        # Nobody listening: exit 1, saying why.
        proc = kf.run([kf.binary("kilnctl"), "-d", "127.0.0.1:%d" % kf.free_port(), "-t", "3",
                       "notify", "example"], check=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("kilnctl: dispatcher 127.0.0.1:", proc.stderr)


class PostReceiveTest(NotifyTestCase):
    """etc/kiln/post-receive in a bare repository that the observer watches."""

    def test_push_is_tested_at_once(self):
        c = self.notify_cluster(exec_plugin="script", interval=LONG_INTERVAL,
                                repo_name="hooked")
        bare = c.path("srv", "hooked.git")
        c.url = bare
        os.makedirs(bare)
        git = lambda *args, cwd=bare: kf.run(["git", "-C", cwd] + list(args), env=c.repo.env)
        git("init", "-q", "--bare")
        git("symbolic-ref", "HEAD", "refs/heads/main")
        # No kiln.repo: the hook names the repository after its directory.
        git("config", "kiln.dispatcher", c.address)
        git("config", "kiln.kilnctl", os.path.abspath(kf.binary("kilnctl")))
        shutil.copy(HOOK, os.path.join(bare, "hooks", "post-receive"))
        os.chmod(os.path.join(bare, "hooks", "post-receive"), 0o755)

        c.repo.write("tests/ok", PASSING_SCRIPT, executable=True)
        c.repo.git("remote", "add", "origin", bare)
        c.start()
        c.wait_observer_connected()

        push = lambda *refs: kf.run(["git", "-C", c.repo.path, "push", "origin"] + list(refs),
                                    env=c.repo.env)
        first = c.repo.commit("first push")
        proc = push("main")
        self.assertNotIn("kiln post-receive", proc.stderr)
        self.assertEqual(c.wait_result(first, timeout=NOTIFIED_RESULT)["outcome"], "passed")

        # A tag and a new branch in one push: only the branch is notified
        # (and it is not watched: a warning, and the push still succeeds).
        second = c.repo.commit("second push")
        c.repo.git("tag", "v1")
        c.repo.git("branch", "topic")
        proc = push("main", "v1", "topic")
        self.assertNotIn("kiln post-receive", proc.stderr)
        self.assertEqual(c.wait_result(second, timeout=NOTIFIED_RESULT)["outcome"], "passed")
        c.wait_until(lambda: c.log_has("observer", r"branch topic of hooked is not watched"),
                     5, "the notification of branch topic")
        self.assertFalse(c.log_has("observer", r"notify hooked v1"))

        # Deleting a branch notifies nothing; a dispatcher that is gone makes
        # the hook complain on stderr but never fails the push.
        self.assertNotIn("kiln post-receive", push(":topic").stderr)
        git("config", "kiln.dispatcher", "127.0.0.1:%d" % kf.free_port())
        third = c.repo.commit("third push")
        proc = push("main")
        self.assertIn("kiln post-receive: kilnctl notify hooked main failed", proc.stderr)
        self.assertEqual(kf.run(["git", "-C", bare, "rev-parse", "main"],
                                env=c.repo.env).stdout.strip(), third)


class LabelTest(NotifyTestCase):
    """A repository requiring label "gpu": only the runner with it tests it."""

    def test_job_runs_on_labelled_runner(self):
        c = self.notify_cluster(exec_plugin="script", repo_keys="labels = [\"gpu\"]\n")
        c.runner_labels = {"plain": [], "gpu-box": ["gpu", "linux"]}
        c.repo.write("tests/ok", PASSING_SCRIPT, executable=True)
        c.start_dispatcher()
        c.start_runner("plain", slots=2)
        c.start_runner("gpu-box", slots=1)
        runners = {r["name"]: r for r in c.ctl("runners")}
        self.assertEqual(runners["gpu-box"]["labels"], ["gpu", "linux"])
        self.assertEqual(runners["plain"]["labels"], [])
        c.start_observer()
        # One at a time: the first poll of a branch sends only its head.
        for i in range(3):
            commit = c.repo.commit("gpu work %d" % i)
            res = c.wait_result(commit)
            self.assertEqual(res["outcome"], "passed")
            self.assertEqual(res["runner"], "gpu-box", json.dumps(res, indent=2))
        self.assertFalse(re.search(r"job \d+: \S+ [0-9a-f]{12}: preparing",
                                   c.log_of("plain")), c.log_of("plain"))


if __name__ == "__main__":
    unittest.main()
