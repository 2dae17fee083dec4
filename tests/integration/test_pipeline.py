#!/usr/bin/env python3
"""End-to-end: real kiln-observer, kiln-dispatcher and kiln-runner in a temp
dir, a real git repository, results checked in the files reporter's
directory and through kilnctl.

Run with ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_pipeline.py -v
"""

import json
import os
import re
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402

SHORT = 5.0  # bound for a hostile connection to be closed


class PassFailTest(kf.ClusterTestCase):
    """A passing commit, then a failing one: files, kilnctl JSON and tables."""

    def setUp(self):
        self.c = self.cluster()
        self.c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        self.c.repo.write("README", "example\n")
        self.c.start()

    def check_file_result(self, commit, outcome, tests):
        res = self.c.wait_result(commit)
        self.assertEqual(res["commit"], commit)
        self.assertEqual(res["repo"], "example")
        self.assertEqual(res["branch"], "main")
        self.assertEqual(res["outcome"], outcome, json.dumps(res, indent=2))
        self.assertEqual(res["runner"], "runner-1")
        self.assertEqual(res["log"], commit + ".log")
        self.assertEqual(kf.tests_by_name(res), tests)
        log_path = os.path.join(self.c.results_dir, commit + ".log")
        self.assertTrue(os.path.isfile(log_path), log_path)
        with open(log_path, errors="replace") as f:
            log = f.read()
        self.assertIn("Ran 2 tests", log)
        return res, log

    def test_pass_then_fail(self):
        c = self.c
        good = c.repo.commit("arithmetic works")
        res, log = self.check_file_result(good, "passed", {
            "test_arith.ArithmeticTest.test_add": "passed",
            "test_arith.ArithmeticTest.test_mul": "passed",
        })
        self.assertIsNone(res["error"])
        self.assertIn("OK", log)

        c.repo.write("tests/test_arith.py", kf.FAILING_UNITTEST)
        bad = c.repo.commit("break multiplication")
        self.assertNotEqual(good, bad)
        res, log = self.check_file_result(bad, "failed", {
            "test_arith.ArithmeticTest.test_add": "passed",
            "test_arith.ArithmeticTest.test_mul": "failed",
        })
        mul = [t for t in res["tests"] if t["name"].endswith("test_mul")][0]
        self.assertIn("multiplication is broken", mul["message"])
        self.assertIn("FAIL: test_mul", log)

        # kilnctl --json result, by full id and by prefix.
        for commit, outcome in ((good, "passed"), (bad, "failed")):
            r = c.ctl("result", commit)
            self.assertEqual(r["commit"], commit)
            self.assertEqual(r["state"], "done")
            self.assertEqual(r["outcome"], outcome)
            self.assertEqual(r["runner"], "runner-1")
            self.assertEqual(r["attempt"], 1)
            self.assertEqual(len(r["tests"]), 2)
            self.assertGreater(r["log_bytes"], 0)
            self.assertEqual(r["log_bytes"], len(r["log"].encode()))
            self.assertLessEqual(r["started_unix_ms"], r["finished_unix_ms"])
        self.assertEqual(c.ctl("result", bad[:10])["commit"], bad)
        self.assertEqual(kf.tests_by_name(c.ctl("result", bad)),
                         {"test_arith.ArithmeticTest.test_add": "passed",
                          "test_arith.ArithmeticTest.test_mul": "failed"})

        # An unknown commit is an answer of "no", exit 1, not a hang.
        proc = c.ctl("result", "0" * 40, check=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("no job", proc.stderr)

        jobs = c.ctl("jobs")
        self.assertIsInstance(jobs, list)
        by_commit = {j["commit"]: j for j in jobs}
        self.assertEqual(set(by_commit), {good, bad})
        self.assertEqual(by_commit[good]["outcome"], "passed")
        self.assertEqual(by_commit[bad]["outcome"], "failed")
        for j in jobs:
            self.assertEqual(j["state"], "done")
            self.assertEqual(j["repo"], "example")
            self.assertEqual(j["branch"], "main")
            self.assertEqual(j["runner"], "runner-1")
        self.assertLess(by_commit[good]["job_id"], by_commit[bad]["job_id"])

        status = c.ctl("status")
        for key, value in (("runners", 1), ("queued", 0), ("running", 0), ("done", 2),
                           ("passed", 1), ("not_passed", 1), ("listen", c.address)):
            self.assertEqual(status[key], value, "status.%s in %s" % (key, status))
        self.assertIsInstance(status["version"], str)
        self.assertGreaterEqual(status["uptime_s"], 0)

        runners = c.ctl("runners")
        self.assertEqual(len(runners), 1, runners)
        self.assertEqual(runners[0]["name"], "runner-1")
        self.assertEqual(runners[0]["slots"], 2)
        self.assertEqual(runners[0]["busy"], 0)
        self.assertEqual(runners[0]["completed"], 2)
        self.assertTrue(runners[0]["peer"].startswith("127.0.0.1:"), runners[0])

        # Human output: tables.
        table = c.ctl("jobs", json_output=False).stdout.splitlines()
        self.assertEqual(table[0].split(),
                         ["JOB", "REPO", "BRANCH", "COMMIT", "STATE", "ATTEMPT", "RUNNER",
                          "OUTCOME"])
        self.assertEqual(len(table), 3, table)
        rows = {line.split()[3]: line.split() for line in table[1:]}
        self.assertEqual(rows[good[:12]][-1], "passed")
        self.assertEqual(rows[bad[:12]][-1], "failed")
        text = c.ctl("result", bad, json_output=False).stdout
        self.assertRegex(text, r"outcome\s+failed")
        self.assertRegex(text, r"test_arith\.ArithmeticTest\.test_mul\s+failed")
        self.assertIn("multiplication is broken", text)
        runners_table = c.ctl("runners", json_output=False).stdout
        self.assertRegex(runners_table, r"(?m)^NAME\s+PEER\s+SLOTS")
        self.assertRegex(runners_table, r"(?m)^runner-1\s+127\.0\.0\.1:")


NEW_COMMIT = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .*new commit ([0-9a-f]{12})",
                        re.M)


class EveryModeTest(kf.ClusterTestCase):
    """mode = "every": two commits between two polls are both tested."""

    INTERVAL = 3.0

    def test_two_commits_in_one_poll(self):
        c = self.cluster(mode="every", interval="3s")
        c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        first = c.repo.commit("first")
        c.start_dispatcher()
        c.start_runner()
        started = time.monotonic()
        c.start_observer()  # polls at once, then every 3 s
        self.assertEqual(c.wait_result(first)["outcome"], "passed")

        c.repo.write("tests/test_more.py",
                     "import unittest\n\nclass T(unittest.TestCase):\n"
                     "    def test_true(self):\n        self.assertTrue(True)\n")
        second = c.repo.commit("second")
        c.repo.write("tests/test_arith.py", kf.FAILING_UNITTEST)
        third = c.repo.commit("third")
        made = time.monotonic() - started
        if made >= self.INTERVAL:
            self.skipTest("the first result took %.1fs, longer than the poll interval; "
                          "the two commits may fall into different polls" % made)

        res2 = c.wait_result(second)
        res3 = c.wait_result(third)
        self.assertEqual(res2["outcome"], "passed")
        self.assertEqual(len(res2["tests"]), 3)
        self.assertEqual(res3["outcome"], "failed")
        self.assertEqual({j["commit"] for j in c.ctl("jobs")}, {first, second, third})

        # Both were found by the same poll, one after the other: the observer
        # logs them together, oldest first.
        found = NEW_COMMIT.findall(c.daemons["observer"].log())
        ids = [commit for _, commit in found]
        self.assertEqual(ids, [first[:12], second[:12], third[:12]], found)
        def ms(stamp):
            t = time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")
            return time.mktime(t) * 1000 + int(stamp[20:])
        gap = ms(found[2][0]) - ms(found[1][0])
        self.assertLess(gap, 500, "second and third commits were not found by the same poll "
                        "(polls are %.0fs apart): %s" % (self.INTERVAL, found))


class LatestModeTest(kf.ClusterTestCase):
    """mode = "latest" (the original behaviour): of two commits between two
    polls only the newer is tested -- the counterpart of EveryModeTest."""

    def test_only_newest(self):
        c = self.cluster(mode="latest", interval="2s")
        c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        first = c.repo.commit("first")
        c.start_dispatcher()
        c.start_runner()
        started = time.monotonic()
        c.start_observer()
        self.assertEqual(c.wait_result(first)["outcome"], "passed")
        skipped = c.repo.commit("skipped")
        newest = c.repo.commit("newest")
        if time.monotonic() - started >= 2.0:
            self.skipTest("the first result took longer than the poll interval")
        self.assertEqual(c.wait_result(newest)["outcome"], "passed")
        self.assertEqual({j["commit"] for j in c.ctl("jobs")}, {first, newest})
        self.assertFalse(os.path.exists(c.result_file(skipped)))


class DispatcherRestartTest(kf.ClusterTestCase):
    """The dispatcher stops (SIGTERM) while a job runs and comes back with
    its state: a commit made meanwhile is tested under a new job id, and the
    result the runner held across the restart is recorded for its own commit
    (test_faults.py has the SIGKILL variants)."""

    def test_restart(self):
        c = self.cluster()
        c.repo.write("tests/test_slow.py",
                     "import time, unittest\n\nclass Slow(unittest.TestCase):\n"
                     "    def test_slow(self):\n        time.sleep(1.5)\n")
        c.start()
        held = c.repo.commit("slow, passes")
        # The runner has it (the dispatcher sends an assignment once it is
        # on disk, so "assigned" in kilnctl jobs is not yet enough).
        c.wait_until(lambda: c.log_has("runner-1", r"job 1: .*preparing"), 20,
                     "the slow job assigned and received")
        c.stop_daemon("dispatcher")
        c.repo.remove("tests/test_slow.py")
        c.repo.write("tests/test_fail.py",
                     "import unittest\n\nclass Fail(unittest.TestCase):\n"
                     "    def test_fail(self):\n        self.fail('made while down')\n")
        made_while_down = c.repo.commit("fails, made while the dispatcher is down")
        c.wait_until(lambda: re.search(r"job 1: passed", c.daemons["runner-1"].log()), 20,
                     "the runner finishing the slow job while disconnected")
        # A fresh observer connects at once, so the new commit is acknowledged
        # before the runner (reconnecting with backoff) delivers the held result.
        c.stop_daemon("observer")
        c.start_dispatcher()
        c.start_observer()
        res = c.wait_result(made_while_down)
        self.assertEqual(res["outcome"], "failed", res)
        self.assertEqual(kf.tests_by_name(res), {"test_fail.Fail.test_fail": "failed"})
        self.assertEqual(c.ctl("result", made_while_down)["outcome"], "failed")
        self.assertNotEqual(held, made_while_down)
        # The held result is not taken for another commit's: it is job 1's.
        res = c.wait_result(held)
        self.assertEqual((res["outcome"], res["attempt"]), ("passed", 1), res)
        self.assertEqual(kf.tests_by_name(res), {"test_slow.Slow.test_slow": "passed"})
        ids = {j["commit"]: j["job_id"] for j in c.ctl("jobs")}
        self.assertEqual(ids[held], 1)
        self.assertNotEqual(ids[made_while_down], 1)


def read_until_closed(sock, timeout):
    """Everything the peer sends until it closes (returns (data, how))."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data, "reset"
        if not chunk:
            return data, "closed"
        data += chunk
    return data, "still open after %.1fs" % timeout


class HostileInputTest(kf.ClusterTestCase):
    """Garbage on the dispatcher port: each connection is closed, with an
    error frame where the frame could be read; the dispatcher keeps serving."""

    def setUp(self):
        self.c = self.cluster()
        self.c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        self.c.start()

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.c.port), timeout=SHORT)

    def expect_closed(self, payload, error_contains=None, allow_reset=False, what=""):
        with self.connect() as s:
            if payload:
                s.sendall(payload)
            data, how = read_until_closed(s, SHORT)
        ok = ("closed", "reset") if allow_reset else ("closed",)
        if how not in ok:
            self.fail("%s: connection %s\n%s" % (what, how, self.c.logs()))
        if error_contains is not None:
            frames = kf.split_frames(data)
            self.assertTrue(frames, "%s: no frame before the close (got %r)" % (what, data))
            last = frames[-1]
            self.assertEqual(last.get("type"), "error", "%s: %r" % (what, frames))
            self.assertIn(error_contains, last.get("message", ""), "%s: %r" % (what, frames))
        return data

    def test_hostile_input(self):
        c = self.c
        first = c.repo.commit("before the attack")
        self.assertEqual(c.wait_result(first)["outcome"], "passed")
        t0 = time.monotonic()

        # 1. Random bytes.  Whatever length prefix they start with, the
        # connection ends: an error frame (bad length or msgpack) or the
        # handshake timeout (2 s in the fixture's config).  The kernel may
        # answer unread bytes with a reset, which is a close too.
        self.expect_closed(os.urandom(1024), allow_reset=True, what="random bytes")
        # ... and random bytes in a well-formed frame reach the msgpack decoder.
        garbage = b"\xc1" + os.urandom(200)  # 0xc1 is never valid msgpack
        self.expect_closed(kf.frame(garbage), error_contains="", what="framed random bytes")
        # 2. A length prefix of 2 GiB: refused from the header alone.
        self.expect_closed(struct.pack(">I", 0x80000000), error_contains="exceeds max_frame",
                           what="2 GiB length prefix")
        # 3. A valid frame of an unknown type.
        bogus = b"\x81\xa4type\xa5bogus"  # {"type": "bogus"}, by hand
        self.assertEqual(bogus, kf.mp_map({"type": "bogus"}))
        self.expect_closed(struct.pack(">I", len(bogus)) + bogus,
                           error_contains="unknown message type 'bogus'",
                           what="unknown message type")
        # 4. A valid frame before hello.
        self.expect_closed(kf.frame(kf.mp_map({"type": "query", "id": 7, "what": "status"})),
                           error_contains="expected hello", what="query before hello")
        # 5. Half a header, then silence: the handshake timeout ends it.
        self.expect_closed(b"\x00\x00", what="half a header")
        # 6. Connect and go away at once.
        socket.create_connection(("127.0.0.1", c.port), timeout=SHORT).close()
        attack = time.monotonic() - t0

        # Still serving: status, the runner still registered, new commits tested.
        c.check_alive()
        status = c.ctl("status")
        self.assertEqual(status["runners"], 1, status)
        self.assertEqual(c.runner_names(), ["runner-1"])
        c.repo.write("tests/test_arith.py", kf.FAILING_UNITTEST)
        after = c.repo.commit("after the attack")
        self.assertEqual(c.wait_result(after)["outcome"], "failed")
        self.assertEqual(c.ctl("result", after)["outcome"], "failed")
        self.assertLess(attack, 6 * SHORT)


class ScriptExecTest(kf.ClusterTestCase):
    """exec = "script": each executable in tests/ is a test."""

    def test_scripts(self):
        c = self.cluster(exec_plugin="script")
        c.repo.write("tests/10-pass.sh", "#!/bin/sh\necho all good\nexit 0\n", executable=True)
        c.repo.write("tests/20-fail.sh", "#!/bin/sh\necho broken >&2\nexit 1\n",
                     executable=True)
        c.repo.write("tests/30-skip.sh", "#!/bin/sh\nexit 77\n", executable=True)
        c.repo.write("tests/README", "not executable: not a test\n")
        c.start()
        commit = c.repo.commit("scripts")
        res = c.wait_result(commit)
        self.assertEqual(res["outcome"], "failed", json.dumps(res, indent=2))
        outcomes = kf.tests_by_name(res)
        self.assertEqual(outcomes, {"10-pass.sh": "passed", "20-fail.sh": "failed",
                                    "30-skip.sh": "skipped"}, json.dumps(res, indent=2))
        with open(os.path.join(c.results_dir, commit + ".log"), errors="replace") as f:
            log = f.read()
        self.assertIn("all good", log)
        self.assertIn("broken", log)

        # Fix it: the next commit passes.
        c.repo.write("tests/20-fail.sh", "#!/bin/sh\nexit 0\n", executable=True)
        fixed = c.repo.commit("fix")
        res = c.wait_result(fixed)
        self.assertEqual(res["outcome"], "passed", json.dumps(res, indent=2))
        self.assertEqual(c.ctl("result", fixed)["outcome"], "passed")


if __name__ == "__main__":
    unittest.main()
