"""A runner's disk, with the real daemons.

min_free: runner-1 is configured to keep 1000 TB free, more than any test
machine's work_dir file system has, so it refuses jobs: it registers with
0 slots and says why, and `kilnctl runners` (JSON and the table) and the web
page show "paused: low disk ...".  Meanwhile runner-2 runs every job.  Once
runner-1's config is rewritten with a small min_free and it gets SIGHUP, it
is "ready" again, and with runner-2 stopped it runs the next commit.

mirror_keep_days: at start-up the runner removes a mirror last used 40 days
ago and keeps one used 10 days ago; the job of a commit waiting meanwhile
runs once the sweep is over.

Disk full (root only: it mounts a 4 MB tmpfs as a runner's work_dir; skipped,
saying why, when mount is refused): a test writing more than that makes its
job end `error` with a reason naming the disk, and the same runner then runs
the next commit, which passes.
"""

import os
import shutil
import signal
import subprocess
import time
import unittest
import urllib.request

import kiln_fixture as kf

BIG_WRITER = """import os
import unittest


class T(unittest.TestCase):
    def test_fill(self):
        with open("big.bin", "wb") as f:
            for _ in range(64):
                f.write(b"x" * (128 * 1024))
                f.flush()
                os.fsync(f.fileno())
"""


def runner_row(c, name):
    rows = [r for r in c.ctl("runners") if r["name"] == name]
    return rows[0] if rows else {}


class RunnerDiskTest(kf.ClusterTestCase):

    def test_min_free_pauses_and_sighup_resumes(self):
        c = self.cluster()
        c.runner_extra["runner-1"] = 'min_free = "1000T"'
        c.start_dispatcher()
        c.start_runner("runner-1", slots=2)
        c.wait_until(lambda: runner_row(c, "runner-1").get("state", "").startswith(
            "paused: low disk"), 10, "runner-1 paused for low disk")
        row = runner_row(c, "runner-1")
        self.assertEqual(row["slots"], 0)
        self.assertIn("min_free is 1000.0 TiB", row["state"])
        self.assertIn(c.path("runner-1-work"), row["state"])
        table = c.ctl("runners", json_output=False).stdout
        self.assertIn("STATE", table.splitlines()[0])
        self.assertRegex(table, r"runner-1 .*paused: low disk")
        with urllib.request.urlopen(c.http_url("/"), timeout=10) as resp:
            page = resp.read().decode()
        self.assertIn("paused: low disk", page)
        self.assertTrue(c.log_has("runner-1", r"taking no jobs: low disk"))

        c.start_runner("runner-2", slots=2)
        c.start_observer()
        c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        first = c.repo.commit("tests")
        self.assertEqual(c.wait_result(first)["outcome"], "passed")
        c.repo.write("tests/more.txt", "more\n")
        second = c.repo.commit("more")
        self.assertEqual(c.wait_result(second)["outcome"], "passed")
        for commit in (first, second):
            self.assertEqual([j["runner"] for j in c.jobs_of(commit)], ["runner-2"])
        self.assertEqual(c.runner_running("runner-1"), [])
        # Workspaces go with their jobs (keep_workspaces is false).
        self.assertEqual(os.listdir(c.path("runner-2-work", "workspaces")), [])

        # Lower min_free and SIGHUP: runner-1 takes jobs again.
        with open(c.path("runner-1.toml")) as f:
            text = f.read()
        with open(c.path("runner-1.toml"), "w") as f:
            f.write(text.replace('min_free = "1000T"', 'min_free = "1K"'))
        os.kill(c.daemons["runner-1"].pid, signal.SIGHUP)
        c.wait_until(lambda: runner_row(c, "runner-1").get("state") == "ready", 10,
                     "runner-1 ready after SIGHUP")
        self.assertEqual(runner_row(c, "runner-1")["slots"], 2)
        self.assertTrue(c.log_has("runner-1", r"enough disk again"))
        c.stop_daemon("runner-2")
        c.repo.write("tests/third.txt", "third\n")
        third = c.repo.commit("third")
        self.assertEqual(c.wait_result(third)["outcome"], "passed")
        self.assertEqual([j["runner"] for j in c.jobs_of(third)], ["runner-1"])

    def test_old_mirrors_removed(self):
        c = self.cluster()
        c.runner_extra["runner-1"] = "mirror_keep_days = 30"
        git_cache = c.path("runner-1-work", "cache", "git")
        old, recent = os.path.join(git_cache, "0123-old"), os.path.join(git_cache, "4567-recent")
        now = time.time()
        for path, days in ((old, 40), (recent, 10)):
            kf.run(["git", "init", "-q", "--bare", path])
            os.utime(path, (now - days * 86400, now - days * 86400))
        c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        c.repo.commit("tests")
        c.start_dispatcher()
        c.start_observer()  # the commit waits for the runner
        c.start_runner("runner-1", slots=1)
        c.wait_until(lambda: c.log_has("runner-1", r"mirror \S*0123-old: unused for over 30 "
                                                    r"day\(s\); removed"),
                     10, "the old mirror removed")
        self.assertFalse(os.path.exists(old))
        self.assertTrue(os.path.exists(os.path.join(recent, "HEAD")))
        head = c.repo.git("rev-parse", "HEAD").strip()
        self.assertEqual(c.wait_result(head)["outcome"], "passed")
        # The job's own mirror was made (and used) after the sweep.
        self.assertEqual(len(os.listdir(git_cache)), 2)

    def test_job_filling_the_disk_ends_error(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root (the CI runs these as root)")
        mount, umount = shutil.which("mount"), shutil.which("umount")
        if not mount or not umount:
            self.skipTest("no mount/umount program")
        c = self.cluster()
        work = c.path("runner-1-work")
        os.makedirs(work)
        proc = subprocess.run([mount, "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", work],
                              capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            self.skipTest("mount -t tmpfs refused (%s): cannot fill a small file system"
                          % proc.stderr.strip())

        def unmount():
            # Cleanups run last-registered first: stop the daemons before
            # their work_dir goes (the cluster's own cleanup then finds them
            # stopped and removes the temp dir).
            try:
                if not c.stopped:
                    c.stop()
            finally:
                subprocess.run([umount, work], capture_output=True, timeout=10)
        self.addCleanup(unmount)
        c.runner_extra["runner-1"] = "min_free = 0"
        c.start(runners=1, slots=1)
        c.repo.write("tests/test_big.py", BIG_WRITER)
        full = c.repo.commit("a test that fills the disk")
        res = c.wait_result(full)
        self.assertEqual(res["outcome"], "error", res)
        self.assertIn("no space left in work_dir %s" % work, str(res))
        self.assertTrue(c.daemons["runner-1"].running())
        self.assertEqual(os.listdir(os.path.join(work, "workspaces")), [])
        # The workspace is gone with its big file; the next job runs.
        os.remove(c.repo.path + "/tests/test_big.py")
        c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        ok = c.repo.commit("passing tests only")
        self.assertEqual(c.wait_result(ok)["outcome"], "passed")
        self.assertEqual([j["runner"] for j in c.jobs_of(ok)], ["runner-1"])


if __name__ == "__main__":
    unittest.main()
