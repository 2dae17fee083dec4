#!/usr/bin/env python3
"""One fault at a time, with exact expectations (issue 3, "Nothing lost"):

  a. a runner killed (SIGKILL) mid-job: the other runner finishes the commit
     within runner_timeout + one job's time, as attempt 2;
  b. the dispatcher killed (SIGKILL) while a runner runs a job, a commit made
     while it is down: after it comes back both the new commit and the
     spooled result arrive, the latter as attempt 1 of the original runner;
  c. a runner killed (SIGKILL) holding a spooled result and started again
     delivers it, and it is recorded once;
  d. the observer killed (SIGKILL), commits made while it is down: each gets
     one job when it is back (mode "every");
  e. a job over its repository's timeout: outcome "timeout", and no process
     of the test is left;
  f. `kilnctl retry COMMIT` of a done job: it runs again (attempt 2) and ends
     done with one final result;
  g. a runner stopped with SIGTERM mid-job finishes the job (shorter than
     its stop_timeout) or hands it back (longer), and exits 0;
  h. a runner killed (SIGKILL) mid-test: the test's processes run on; the
     runner started again kills them before it takes a job.

Run with ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_faults.py -v
"""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402
import runner_leftovers  # noqa: E402

POLL_MARGIN = 2.0   # observer/heartbeat/kilnctl polling slack, seconds
JOB_OVERHEAD = 2.0  # workspace (git) + python start-up of one job, seconds
FINAL = 30.0        # bound for a result that only waits for reconnects


def seconds(duration):
    """"3s" / "500ms" → seconds."""
    return float(duration[:-2]) / 1000 if duration.endswith("ms") else float(duration[:-1])


class FaultTest(kf.ClusterTestCase):
    def sleepy_cluster(self, sleep_ms, runners=1, slots=1, start=True, **kwargs):
        c = self.cluster(**kwargs)
        c.repo.write("tests/test_sleepy.py", kf.SLEEPY_UNITTEST)
        c.repo.write("tests/sleep_ms", "%d\n" % sleep_ms)
        if start:
            c.start(runners=runners, slots=slots)
        return c

    def commit_sleeping(self, c, sleep_ms, message):
        c.repo.write("tests/sleep_ms", "%d\n" % sleep_ms)
        return c.repo.commit(message)

    def wait_running(self, c, commit, timeout=20):
        """Wait until the commit's job is assigned and its runner's log says
        its tests run; returns (job id, runner name)."""
        def running():
            for j in c.jobs_of(commit):
                if j["state"] != "done" and j["runner"] in c.daemons \
                        and j["job_id"] in c.runner_running(j["runner"]):
                    return j["job_id"], j["runner"]
            return None
        return c.wait_until(running, timeout, "the tests of commit %s running on a runner"
                            % commit[:12])

    def assert_one_done_job(self, c, commit):
        jobs = c.jobs_of(commit)
        self.assertEqual(len(jobs), 1, "jobs of %s: %s" % (commit[:12], jobs))
        self.assertEqual(jobs[0]["state"], "done", jobs[0])
        return jobs[0]

    def assert_recorded_once(self, c, commit, settle=1.5):
        """The dispatcher logged exactly one recorded result for the commit,
        and still so after `settle` seconds (late resends are not counted)."""
        time.sleep(settle)
        rec = c.recorded().get(commit[:12], [])
        self.assertEqual(len(rec), 1, "results of %s recorded by the dispatcher "
                         "(all incarnations): %s" % (commit[:12], rec))
        return rec[0]

    # a.
    def test_runner_killed_mid_job(self):
        timeout = "3s"
        sleep_ms = 3000
        c = self.sleepy_cluster(sleep_ms, runners=2, slots=1, runner_timeout=timeout)
        commit = self.commit_sleeping(c, sleep_ms, "slow")
        job_id, victim = self.wait_running(c, commit)
        other = "runner-2" if victim == "runner-1" else "runner-1"
        c.kill_daemon(victim)
        killed = time.monotonic()
        bound = seconds(timeout) + sleep_ms / 1000.0 + JOB_OVERHEAD + POLL_MARGIN
        res = c.wait_result(commit, timeout=bound + 10)  # a clear failure below, not here
        took = time.monotonic() - killed
        self.assertLessEqual(took, bound, "commit finished %.1fs after the kill; bound is "
                             "runner_timeout + one job + margin = %.1fs" % (took, bound))
        self.assertEqual(res["outcome"], "passed", json.dumps(res, indent=2))
        self.assertEqual(res["runner"], other)
        self.assertEqual(res["attempt"], 2)
        job = self.assert_one_done_job(c, commit)
        self.assertEqual(job["job_id"], job_id)
        self.assertEqual((job["attempt"], job["runner"]), (2, other), job)
        r = c.ctl("result", commit)
        self.assertEqual((r["attempt"], r["runner"], r["outcome"]), (2, other, "passed"))
        self.assertEqual(self.assert_recorded_once(c, commit), (job_id, "passed", other))
        sys.stderr.write("runner killed mid-job: finished by %s %.1fs after the kill "
                         "(bound %.1fs)\n" % (other, took, bound))

    # b.
    def test_dispatcher_down_commit_and_result(self):
        c = self.sleepy_cluster(3000, runners=1, slots=2, runner_timeout="10s")
        slow = self.commit_sleeping(c, 3000, "slow, finishes while the dispatcher is down")
        job_id, runner = self.wait_running(c, slow)
        c.kill_daemon("dispatcher")
        made_while_down = self.commit_sleeping(c, 100, "made while the dispatcher is down")
        c.wait_until(lambda: c.log_has(runner, r"job %d: passed" % job_id), 20,
                     "%s finishing job %d while the dispatcher is down" % (runner, job_id))
        c.wait_until(lambda: c.spool_files(runner), 5,
                     "the result of job %d spooled in %s-work/spool" % (job_id, runner))
        self.assertFalse(os.path.exists(c.result_file(slow)))
        c.start_dispatcher()
        new = c.wait_result(made_while_down, timeout=FINAL)
        held = c.wait_result(slow, timeout=FINAL)
        self.assertEqual(new["outcome"], "passed", new)
        self.assertEqual(held["outcome"], "passed", held)
        self.assertEqual((held["runner"], held["attempt"]), (runner, 1), held)
        job = self.assert_one_done_job(c, slow)
        self.assertEqual((job["job_id"], job["attempt"], job["runner"]), (job_id, 1, runner))
        new_job = self.assert_one_done_job(c, made_while_down)
        self.assertNotEqual(new_job["job_id"], job_id, "job ids must be unique across restarts")
        self.assertEqual(self.assert_recorded_once(c, slow), (job_id, "passed", runner))
        self.assertEqual(len(c.recorded()[made_while_down[:12]]), 1)
        c.wait_until(lambda: not c.spool_files(runner), 5,
                     "%s's spool emptied once the result is acknowledged" % runner)

    # c.
    def test_restarted_runner_delivers_spool(self):
        c = self.sleepy_cluster(2000, runners=1, slots=1, runner_timeout="10s")
        commit = self.commit_sleeping(c, 2000, "finishes while the dispatcher is down")
        job_id, runner = self.wait_running(c, commit)
        c.stop_daemon("dispatcher")  # SIGTERM this time (b. uses SIGKILL)
        c.wait_until(lambda: c.log_has(runner, r"job %d: passed" % job_id), 20,
                     "%s finishing job %d while the dispatcher is down" % (runner, job_id))
        c.wait_until(lambda: c.spool_files(runner), 5,
                     "the result of job %d spooled in %s-work/spool" % (job_id, runner))
        spooled = c.spool_files(runner)
        c.kill_daemon(runner)
        self.assertEqual(c.spool_files(runner), spooled, "the spool survives a SIGKILL")
        c.start_dispatcher()
        c.start_runner(runner, slots=1)
        res = c.wait_result(commit, timeout=FINAL)
        self.assertEqual((res["outcome"], res["runner"], res["attempt"]), ("passed", runner, 1),
                         json.dumps(res, indent=2))
        job = self.assert_one_done_job(c, commit)
        self.assertEqual((job["job_id"], job["attempt"]), (job_id, 1), job)
        self.assertEqual(self.assert_recorded_once(c, commit, settle=2.0),
                         (job_id, "passed", runner))
        c.wait_until(lambda: not c.spool_files(runner), 5,
                     "%s's spool emptied once the result is acknowledged" % runner)

    # d.
    def test_observer_killed(self):
        c = self.sleepy_cluster(100, runners=1, slots=2, mode="every")
        first = self.commit_sleeping(c, 100, "first")
        c.wait_result(first)
        c.kill_daemon("observer")
        down = [self.commit_sleeping(c, 100 + i, "made while the observer is down %d" % i)
                for i in range(3)]
        c.start_observer()
        # One more right after the restart, which may be found by its first poll.
        down.append(self.commit_sleeping(c, 150, "made as the observer restarts"))
        for commit in down:
            self.assertEqual(c.wait_result(commit)["outcome"], "passed")
        jobs = c.jobs()
        for commit in [first] + down:
            mine = [j for j in jobs if j["commit"] == commit]
            self.assertEqual(len(mine), 1, "jobs of %s: %s" % (commit[:12], mine))
        self.assertEqual(len(jobs), 1 + len(down), jobs)
        for commit in [first] + down:
            self.assertEqual(len(c.recorded()[commit[:12]]), 1, commit)

    # e.
    def test_timeout_kills_the_test(self):
        c = self.cluster(repo_timeout="1s")
        marker = c.path("hang.pids")
        c.repo.write("tests/test_hang.py", kf.hanging_unittest(marker, seconds=30))
        c.start()
        commit = c.repo.commit("hangs for 30 s")
        c.wait_until(lambda: os.path.exists(marker), 20, "the hanging test writing %s" % marker)
        began = time.monotonic()
        with open(marker) as f:
            pids = [int(p) for p in f.read().split()]
        res = c.wait_result(commit, timeout=15)
        took = time.monotonic() - began
        self.assertEqual(res["outcome"], "timeout", json.dumps(res, indent=2))
        self.assertLess(took, 1 + 10, "timeout result %.1fs after the test started" % took)
        self.assertEqual(c.ctl("result", commit)["outcome"], "timeout")
        c.wait_until(lambda: not any(kf.pid_alive(p) for p in pids), 3,
                     "the test process and its child (pids %s) gone after the timeout" % pids)

    # g.
    def test_runner_sigterm_finishes_job(self):
        """SIGTERM during a job shorter than stop_timeout: the runner finishes
        it, delivers the result and exits 0."""
        c = self.sleepy_cluster(1500, runners=2, slots=1, runner_stop_timeout="8s")
        commit = self.commit_sleeping(c, 1500, "finished by a stopping runner")
        job_id, runner = self.wait_running(c, commit)
        c.stop_daemon(runner)  # SIGTERM; fails unless it exits 0 within the fixture's bound
        res = c.wait_result(commit)
        self.assertEqual((res["outcome"], res["runner"], res["attempt"]), ("passed", runner, 1),
                         json.dumps(res, indent=2))
        job = self.assert_one_done_job(c, commit)
        self.assertEqual((job["job_id"], job["attempt"], job["runner"]), (job_id, 1, runner))
        self.assertEqual(self.assert_recorded_once(c, commit), (job_id, "passed", runner))
        self.assertEqual(c.spool_files(runner), [])

    def test_runner_sigterm_hands_back_job(self):
        """SIGTERM during a job longer than stop_timeout: the runner cancels
        it and exits; the job is handed back and the other runner runs it."""
        c = self.sleepy_cluster(4000, runners=2, slots=1, runner_stop_timeout="1s")
        commit = self.commit_sleeping(c, 4000, "handed back by a stopping runner")
        job_id, runner = self.wait_running(c, commit)
        other = "runner-2" if runner == "runner-1" else "runner-1"
        stopped = time.monotonic()
        c.stop_daemon(runner)
        self.assertLess(time.monotonic() - stopped, 1 + 4.0,
                        "the runner should stop about stop_timeout (1s) after SIGTERM")
        res = c.wait_result(commit, timeout=4 + JOB_OVERHEAD + POLL_MARGIN + 10)
        self.assertEqual((res["outcome"], res["runner"], res["attempt"]), ("passed", other, 2),
                         json.dumps(res, indent=2))
        job = self.assert_one_done_job(c, commit)
        self.assertEqual((job["job_id"], job["attempt"], job["runner"]), (job_id, 2, other))
        self.assertEqual(self.assert_recorded_once(c, commit), (job_id, "passed", other))

    # f.
    def test_retry(self):
        c = self.sleepy_cluster(200, runners=1, slots=1)
        commit = self.commit_sleeping(c, 200, "run me twice")
        first = c.wait_result(commit)
        self.assertEqual(first["attempt"], 1)
        job = self.assert_one_done_job(c, commit)
        proc = c.ctl("retry", commit, json_output=False, check=False)
        self.assertEqual(proc.returncode, 0, "kilnctl retry: %s%s" % (proc.stdout, proc.stderr))

        def done_again():
            jobs = c.jobs_of(commit)
            return len(jobs) == 1 and jobs[0]["state"] == "done" and jobs[0]["attempt"] == 2 \
                and jobs[0]
        again = c.wait_until(done_again, 20, "job of %s done again as attempt 2" % commit[:12])
        self.assertEqual(again["job_id"], job["job_id"])
        self.assertEqual(again["outcome"], "passed")
        res = c.wait_until(lambda: c.wait_result(commit)["attempt"] == 2 and c.wait_result(commit),
                           10, "the result file of %s rewritten for attempt 2" % commit[:12])
        self.assertEqual(res["outcome"], "passed")
        results = [f for f in os.listdir(c.results_dir) if f.endswith(".json")]
        self.assertEqual(results, [commit + ".json"])
        self.assertEqual(c.ctl("result", commit)["attempt"], 2)
        time.sleep(1.0)
        rec = c.recorded()[commit[:12]]
        self.assertEqual(len(rec), 2, "one recorded result per run: %s" % rec)
        # Unknown commit: a refusal, not a hang.
        proc = c.ctl("retry", "0" * 40, json_output=False, check=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)

    # h.
    def test_restarted_runner_kills_leftover_tests(self):
        c = self.cluster(exec_plugin="script", runner_stop_timeout="1s")
        took = runner_leftovers.check_leftovers_killed(self, c)
        sys.stderr.write("leftover tests of a killed runner gone %.2fs after its restart\n"
                         % took)


if __name__ == "__main__":
    unittest.main()
