#!/usr/bin/env python3
"""Report events and their durable delivery, with real daemons.

- A plugin built against ABI 1.0's frozen header (tests/plugin-example's
  marker.c compiled with -I tests/plugin-example/abi-1.0) is loaded by this
  dispatcher and writes its final-result line once per commit (report()).
- tests/fixtures' event_fixture plugin records every event it is handed:
  per commit QUEUED, STARTED, FINISHED arrive in that order; a [[report]]
  table whose `repos` does not list the repository hears nothing, one that
  asks only for "finished" hears only that; kilnctl reports shows them.
- A receiver that fails (event_fixture's fail_file exists) while commits
  run, then the dispatcher is killed (SIGKILL); after a restart, with the
  receiver back, every event is delivered, in order per commit, none twice
  per delivery_id.
Each cluster first commits, starts and waits for that commit's result: the
observer's first look at a branch sends only its head.

Run with ctest (label "integration") or directly with KILN_BUILD_DIR set.
"""

import collections
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402

FIXTURES = os.path.join(os.path.abspath(kf._build_dir()), "tests", "fixtures")
EXAMPLE = os.path.join(kf.SOURCE_DIR, "tests", "plugin-example")
EVENT_TIMEOUT = 30.0
MAKE_TIMEOUT = 60.0


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def add_reports(c, text, plugin_dirs):
    """A conf.d drop-in of the cluster's dispatcher: plugin_dir and [[report]] tables."""
    dropins = c.path("conf.d", "dispatcher")
    os.makedirs(dropins, exist_ok=True)
    with open(os.path.join(dropins, "50-reports.toml"), "w") as f:
        f.write("[dispatcher]\nplugin_dir = %s\nreport_retry_max = \"2s\"\n\n%s"
                % (kf.toml_array(plugin_dirs + [c.plugin_dir]), text))


def start_on_a_first_commit(c, slots=2):
    """Commit a passing suite, start the cluster and wait for its result: the
    observer's first look at the branch sends only its head, every later
    commit is sent."""
    c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
    first = c.repo.commit("arithmetic works")
    c.start(slots=slots)
    c.wait_result(first)
    return first


def events_by_commit(lines):
    """{commit: [kind, ...]} in the order the receiver got them."""
    by_commit = collections.OrderedDict()
    for line in lines:
        by_commit.setdefault(line[3], []).append(line[1])
    return by_commit


class OldHeaderPlugin(kf.ClusterTestCase):
    def test_plugin_built_against_abi_1_0_gets_final_results(self):
        for tool in ("make", "cc", "pkg-config"):
            if not shutil.which(tool):
                self.skipTest("%s not found" % tool)
        c = self.cluster()
        src = c.path("plugin-example")
        shutil.copytree(EXAMPLE, src)
        uv_cflags = kf.run(["pkg-config", "--cflags", "libuv"], timeout=10).stdout.strip()
        uv_libs = kf.run(["pkg-config", "--libs", "libuv"], timeout=10).stdout.strip()
        # The Makefile's own rule, with ABI 1.0's frozen header instead of
        # the installed one.
        kf.run(["make", "-C", src, "CC=cc",
                "KILN_CFLAGS=-I%s %s" % (os.path.join(src, "abi-1.0"), uv_cflags),
                "KILN_LIBS=%s" % uv_libs], timeout=MAKE_TIMEOUT)
        extra = c.path("old-plugins")
        os.makedirs(extra)
        shutil.copy(os.path.join(src, "marker.so"), extra)
        marker = c.path("marker.txt")
        add_reports(c, "[[report]]\nplugin = \"marker\"\nfile = %s\n" % kf.toml_str(marker),
                    [extra])
        commits = [start_on_a_first_commit(c)]
        c.repo.write("tests/test_more.py", kf.FAILING_UNITTEST)
        commits.append(c.repo.commit("second"))
        want = ["%s %s %s main\n" % (commit, outcome, c.repo_name)
                for commit, outcome in zip(commits, ("passed", "failed"))]

        def marked():
            if not os.path.exists(marker):
                return False
            with open(marker) as f:
                text = f.read()
            return all(line in text for line in want)
        c.wait_until(marked, EVENT_TIMEOUT, "the marker plugin's lines %r" % want)
        receivers = {r["receiver"]: r for r in c.ctl("reports")}
        self.assertEqual(receivers["marker"]["plugin"], "marker")
        self.assertEqual(receivers["marker"]["delivered"], 2)  # FINISHED only
        self.assertTrue(c.log_has("dispatcher", r"report marker: \S+/marker\.so, final results only"))
        c.stop()
        with open(marker) as f:
            self.assertEqual(sorted(f.readlines()), sorted(want))  # once per commit


class Events(kf.ClusterTestCase):
    def test_events_in_order_routed_by_repos_and_kinds(self):
        c = self.cluster()
        every, other, finished = c.path("every.txt"), c.path("other.txt"), c.path("finished.txt")
        add_reports(c,
                    "[[report]]\nplugin = \"event_fixture\"\nrecord = %s\n"
                    "[[report]]\nplugin = \"event_fixture\"\nrepos = [\"other\"]\nrecord = %s\n"
                    "[[report]]\nplugin = \"event_fixture\"\nrepos = [%s]\n"
                    "kinds = \"finished\"\nrecord = %s\n"
                    % (kf.toml_str(every), kf.toml_str(other), kf.toml_str(c.repo_name),
                       kf.toml_str(finished)), [FIXTURES])
        # One slot: the commits finish in order, so each one's previous
        # outcome is its parent's (a commit still running is skipped).
        commits = [start_on_a_first_commit(c, slots=1)]
        c.repo.write("tests/test_more.py", kf.FAILING_UNITTEST)
        commits.append(c.repo.commit("two"))
        c.repo.write("tests/test_more.py", kf.PASSING_UNITTEST)
        commits.append(c.repo.commit("three"))
        c.wait_until(lambda: len(read_lines(every)) == 9 and len(read_lines(finished)) == 3,
                     EVENT_TIMEOUT, "3 events per commit in %s, 3 in %s" % (every, finished))
        by_commit = events_by_commit(read_lines(every))
        self.assertEqual(sorted(by_commit), sorted(commits))
        for commit in commits:
            self.assertEqual(by_commit[commit], ["queued", "started", "finished"], commit)
        self.assertEqual([line[1] for line in read_lines(finished)], ["finished"] * 3)
        # Outcome and previous outcome: passed (0) first, then broke (1 after
        # 0), then fixed (0 after 1); KILN_OUTCOME_NONE (-1) before the first.
        outcomes = {line[3]: (line[5], line[6]) for line in read_lines(finished)}
        self.assertEqual([outcomes[commit] for commit in commits],
                         [("0", "-1"), ("1", "0"), ("0", "1")])
        self.assertEqual(read_lines(other), [])
        reports = {r["receiver"]: r for r in c.ctl("reports")}
        self.assertEqual(sorted(reports), ["event_fixture", "event_fixture#2", "event_fixture#3",
                                           "files"])
        self.assertEqual(reports["event_fixture"]["delivered"], 9)
        self.assertEqual(reports["event_fixture#2"]["delivered"], 0)
        self.assertEqual(reports["event_fixture#3"]["pending"], 0)
        table = c.ctl("reports", json_output=False).stdout
        self.assertIn("RECEIVER", table)
        self.assertIn("event_fixture#3", table)
        c.stop()


class KilledWithDeliveriesQueued(kf.ClusterTestCase):
    def test_sigkill_then_restart_delivers_everything_once(self):
        c = self.cluster()
        record, down = c.path("record.txt"), c.path("receiver-down")
        open(down, "w").close()
        add_reports(c, "[[report]]\nplugin = \"event_fixture\"\nrecord = %s\nfail_file = %s\n"
                    % (kf.toml_str(record), kf.toml_str(down)), [FIXTURES])
        commits = [start_on_a_first_commit(c)]
        for i in range(5):
            c.repo.write("tests/data.txt", "%d\n" % i)
            commits.append(c.repo.commit("commit %d" % i))
        for commit in commits:
            c.wait_result(commit)

        def backlog():
            return {r["receiver"]: r for r in c.ctl("reports")}["event_fixture"]["pending"]
        c.wait_until(lambda: backlog() == 18, EVENT_TIMEOUT, "18 events queued for the receiver")
        self.assertEqual(read_lines(record), [])
        c.kill_daemon("dispatcher")
        os.unlink(down)  # the receiver is back
        c.start_dispatcher()
        c.wait_until(lambda: len(read_lines(record)) >= 18 and backlog() == 0, EVENT_TIMEOUT,
                     "the 18 queued events delivered after the restart")
        lines = read_lines(record)
        ids = [line[0] for line in lines]
        self.assertEqual(len(ids), len(set(ids)), "a delivery_id delivered twice: %r" % ids)
        self.assertEqual(len(lines), 18)
        by_commit = events_by_commit(lines)
        self.assertEqual(sorted(by_commit), sorted(commits))
        for commit in commits:
            self.assertEqual(by_commit[commit], ["queued", "started", "finished"], commit)
        # Attempts failed before the kill: their retries survived it.
        self.assertTrue(any(int(line[4]) >= 1 for line in lines), lines)
        c.stop()


if __name__ == "__main__":
    unittest.main()
