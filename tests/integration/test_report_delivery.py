#!/usr/bin/env python3
"""Report delivery end to end: real daemons, the real forge, webhook, email
and junit plugins, tests/fixtures/http_receiver.py as a separate process
(the GitHub and GitLab status APIs and Kiln webhooks, checked as the forges
check them) and tests/fixtures/fake_sendmail.py.

- Every plugin on one cluster, a passing then a failing commit: statuses
  pending, pending/running, then success/failure with counts, duration and
  the commit's page; signed webhook documents in order; one mail for the
  break naming the failing test; JUnit XML read back by junitparser.
- The receiver down 30 s (process stopped, port refused), then up on the
  same port: every status of the commits made meanwhile arrives once, in
  order.
- The dispatcher killed (SIGKILL) with 102 webhook events queued: after a
  restart every event is delivered, none twice, in order per commit.
- A 401 (wrong token): logged with the answer's first bytes, counted by
  kilnctl reports and /metrics as rejected, never retried.
- A receiver that never answers (timeout 1 s) beside a healthy one: the
  healthy one gets everything promptly, the other's attempts time out and
  stay pending, results are recorded on time.

Run with ctest (label "integration") or directly with KILN_BUILD_DIR set.
"""

import collections
import email
import email.policy
import json
import os
import re
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402
from kiln_receiver import FIXTURES, ReceiverProcess, fake_sendmail  # noqa: E402

EVENT_TIMEOUT = 30.0
BASE_URL = "http://ci.example.test"
TOKEN = "ghp_e2eTokenThatIsNeverLogged"
PASS_SCRIPT = "#!/bin/sh\nexit 0\n"
# junitparser is Debian's (python3-junitparser): the system python has it.
SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"


def add_reports(c, tables, retry_max="2s"):
    """A conf.d drop-in of the cluster's dispatcher: [[report]] tables (dicts;
    a list value is a TOML array)."""
    dropins = c.path("conf.d", "dispatcher")
    os.makedirs(dropins, exist_ok=True)
    with open(os.path.join(dropins, "50-reports.toml"), "w") as f:
        f.write("[dispatcher]\nreport_retry_max = %s\n\n" % kf.toml_str(retry_max))
        for table in tables:
            f.write("[[report]]\n" + "".join(
                "%s = %s\n" % (k, kf.toml_array(v) if isinstance(v, list) else kf.toml_str(v))
                for k, v in table.items()) + "\n")


def start_on_a_first_commit(c, runners=1, slots=1, files=None):
    """Commit a suite, start the cluster, wait for that commit's result (the
    observer's first look at a branch sends only its head)."""
    for path, text in (files or {"tests/test_arith.py": kf.PASSING_UNITTEST}).items():
        c.repo.write(path, text, executable=path.endswith(".sh"))
    first = c.repo.commit("first")
    c.start(runners=runners, slots=slots)
    c.wait_result(first)
    return first


def receivers(c):
    return {r["receiver"]: r for r in c.ctl("reports")}


def by_commit(requests, key):
    """{commit: [key(request), ...]} in arrival order; the commit from the path."""
    out = collections.OrderedDict()
    for r in requests:
        commit = r["json"]["commit"] if r["flavour"] == "webhook" else r["path"].rsplit("/", 1)[1]
        out.setdefault(commit, []).append(key(r))
    return out


def state_and_description(r):
    return (r["json"]["state"], r["json"]["description"])


class EveryPlugin(kf.ClusterTestCase):
    def test_forges_webhook_email_junit_for_a_pass_then_a_break(self):
        c = self.cluster()
        c.http_extra = "base_url = %s\n" % kf.toml_str(BASE_URL)
        rx = ReceiverProcess(self, c.tmp, "receiver", token=TOKEN,
                             secret_file=c.secret_file("webhook.secret", "hmac-key")).start()
        token, mail_dir, junit_dir = c.secret_file("forge.token", TOKEN), c.path("mail"), c.path("junit")
        add_reports(c, [
            {"plugin": "forge", "forge": "github", "api_url": rx.url(), "context": "ci/kiln",
             "repository": "kiln-ci/example", "token_file": token},
            {"plugin": "forge", "forge": "gitlab", "api_url": rx.url("/api/v4"),
             "repository": "kiln-ci/example", "token_file": token},
            {"plugin": "webhook", "url": rx.url("/hooks/kiln"),
             "secret_file": c.path("webhook.secret"), "events": ["queued", "started", "finished"]},
            {"plugin": "email", "to": ["dev@example.org", "qa@example.org"], "mode": "change",
             "sendmail": fake_sendmail(c.path("sendmail"), mail_dir)},
            {"plugin": "junit", "dir": junit_dir}])
        commits = [start_on_a_first_commit(c)]
        c.repo.write("tests/test_arith.py", kf.FAILING_UNITTEST)
        commits.append(c.repo.commit("break multiplication"))
        c.wait_result(commits[1])
        c.wait_until(lambda: len(rx.requests()) == 18 and all(
            receivers(c)[r]["pending"] == 0 for r in ("email", "junit")),
            EVENT_TIMEOUT, "18 requests (3 events x 2 commits x 3 receivers), mail and junit done")
        self.assertEqual([(r["status"], r["problems"]) for r in rx.requests()], [
            (200 if r["flavour"] == "webhook" else 201, []) for r in rx.requests()])
        finished = [r"^2 passed in \d+ s$", r"^1 passed, 1 failed in \d+ s$"]
        for flavour, started, final in (("github", "pending", ("success", "failure")),
                                        ("gitlab", "running", ("success", "failed"))):
            got = by_commit(rx.requests(flavour), state_and_description)
            self.assertEqual(list(got), commits, flavour)
            for commit, end, description in zip(commits, final, finished):
                self.assertEqual(got[commit][:2], [("pending", "queued"),
                                                   (started, "running on runner-1")], flavour)
                self.assertEqual(got[commit][2][0], end, flavour)
                self.assertRegex(got[commit][2][1], description)
        for r in rx.requests("github"):
            self.assertEqual(r["path"].rsplit("/", 1)[0], "/repos/kiln-ci/example/statuses")
            self.assertEqual(r["json"]["context"], "ci/kiln")
        for r in rx.requests("gitlab"):
            self.assertEqual(r["project"], "kiln-ci/example")
            self.assertEqual(r["json"]["name"], "kiln")
        for r in rx.requests("github") + rx.requests("gitlab"):
            self.assertEqual(r["json"]["target_url"], BASE_URL + "/commit/" + r["path"][-40:])
        self.check_webhooks(rx.requests("webhook"), commits)
        self.check_mail(mail_dir, commits[1])
        self.check_junit(junit_dir, commits)
        self.assertNotIn(TOKEN, c.log_of("dispatcher"))
        c.stop()

    def check_webhooks(self, hooks, commits):
        self.assertTrue(all(r["signature_ok"] for r in hooks), hooks)
        self.assertEqual(by_commit(hooks, lambda r: r["json"]["event"]),
                         {commit: ["queued", "started", "finished"] for commit in commits})
        ids = [r["headers"]["x-kiln-delivery"] for r in hooks]
        self.assertEqual(len(set(ids)), 6, ids)
        ends = [r["json"] for r in hooks if r["json"]["event"] == "finished"]
        self.assertEqual([(d["outcome"], d["previous_outcome"]) for d in ends],
                         [("passed", None), ("failed", "passed")])
        (broken,) = ends[1]["failing_tests"]
        self.assertIn("test_mul", broken["name"])
        self.assertIn("multiplication is broken", broken["message"])
        self.assertEqual(ends[1]["counts"]["passed"], 1)
        self.assertEqual(ends[1]["url"], BASE_URL + "/commit/" + commits[1])

    def check_mail(self, mail_dir, broken):
        mails = sorted(f for f in os.listdir(mail_dir) if f.endswith(".eml"))
        self.assertEqual(mails, ["0.eml"], "one mail: the break (the first pass is no change)")
        with open(os.path.join(mail_dir, "0.eml"), "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        with open(os.path.join(mail_dir, "0.json")) as f:
            self.assertEqual(json.load(f), {"args": ["-t", "-oi"],
                                            "recipients": ["dev@example.org", "qa@example.org"]})
        self.assertIn(broken[:8], msg["Subject"])
        self.assertIn("broken", msg["Subject"])
        body = msg.get_body().get_content()
        self.assertIn("test_mul", body)
        self.assertIn("multiplication is broken", body)

    def check_junit(self, junit_dir, commits):
        checks = ("import sys, junitparser\n"
                  "for path, failures in zip(sys.argv[1::2], sys.argv[2::2]):\n"
                  "    (suite,) = list(junitparser.JUnitXml.fromfile(path))\n"
                  "    cases = {c.name: c for c in suite}\n"
                  "    assert (suite.tests, suite.failures) == (2, int(failures)), path\n"
                  "    assert sorted(cases) == ['test_add', 'test_mul'], cases\n"
                  "    assert cases['test_add'].is_passed\n"
                  "    mul = cases['test_mul']\n"
                  "    assert mul.classname.endswith('ArithmeticTest'), mul.classname\n"
                  "    assert mul.is_passed == (failures == '0'), path\n"
                  "    if failures != '0':\n"
                  "        (f,) = mul.result\n"
                  "        assert f.message == 'AssertionError: 6 != 7 : multiplication is broken', f.message\n"
                  "        assert 'line 9, in test_mul' in f.text, f.text\n")
        args = []
        for commit, failures in zip(commits, ("0", "1")):
            args += [os.path.join(junit_dir, commit + ".xml"), failures]
        kf.run([SYSTEM_PYTHON, "-c", checks] + args, timeout=30)
        kf.run(["xmllint", "--noout", "--schema", os.path.join(FIXTURES, "junit-10.xsd")]
               + args[::2], timeout=30)


class ReceiverDown(kf.ClusterTestCase):
    def test_down_30s_then_up_every_status_once_in_order(self):
        c = self.cluster()
        rx = ReceiverProcess(self, c.tmp, "github", token=TOKEN).start()
        add_reports(c, [{"plugin": "forge", "forge": "github", "api_url": rx.url(),
                         "repository": "kiln-ci/example",
                         "token_file": c.secret_file("forge.token", TOKEN)}])
        first = start_on_a_first_commit(c)
        c.wait_until(lambda: len(rx.requests()) == 3, EVENT_TIMEOUT, "the first commit's statuses")
        rx.stop()
        down = time.monotonic()
        commits = []
        for i in range(3):
            c.repo.write("data.txt", "%d\n" % i)
            commits.append(c.repo.commit("while the receiver is down %d" % i))
        for commit in commits:
            c.wait_result(commit)  # scheduling goes on
        c.wait_until(lambda: receivers(c)["forge"]["pending"] == 9, EVENT_TIMEOUT, "9 queued")
        self.assertGreaterEqual(receivers(c)["forge"]["retries"], 1)
        self.assertEqual(len(rx.requests()), 3)
        c.wait_until(lambda: time.monotonic() - down >= 30, 40, "30 s of outage")
        rx.start()  # the same port
        up = time.monotonic()
        c.wait_until(lambda: len(rx.requests()) >= 12 and receivers(c)["forge"]["pending"] == 0,
                     EVENT_TIMEOUT, "the 9 queued statuses after the receiver came back")
        sys.stderr.write("receiver back: 9 statuses in %.1f s\n" % (time.monotonic() - up))
        got = by_commit(rx.requests(), state_and_description)
        self.assertEqual(list(got), [first] + commits)
        for commit in commits:
            self.assertEqual([s for s, _ in got[commit]], ["pending", "pending", "success"], commit)
            self.assertEqual(got[commit][0][1], "queued")
        self.assertTrue(all(r["status"] == 201 for r in rx.requests()))
        c.stop()


class KilledWithHundredQueued(kf.ClusterTestCase):
    def test_sigkill_with_102_queued_then_all_delivered_once(self):
        c = self.cluster(exec_plugin="script")
        rx = ReceiverProcess(self, c.tmp, "webhook", port=kf.free_port())  # down for now
        add_reports(c, [{"plugin": "webhook", "url": rx.url("/hooks/kiln")}])
        commits = [start_on_a_first_commit(c, runners=2, slots=2,
                                           files={"tests/pass.sh": PASS_SCRIPT})]
        for i in range(33):
            c.repo.write("data.txt", "%d\n" % i)
            commits.append(c.repo.commit("commit %d" % i))
        for commit in commits:
            c.wait_result(commit)
        c.wait_until(lambda: receivers(c)["webhook"]["pending"] == 102, EVENT_TIMEOUT,
                     "102 events queued (34 commits x 3)")
        c.kill_daemon("dispatcher")
        rx.start()
        up = time.monotonic()
        c.start_dispatcher()
        c.wait_until(lambda: len(rx.requests()) >= 102 and receivers(c)["webhook"]["pending"] == 0,
                     EVENT_TIMEOUT, "the 102 queued events delivered after the restart")
        sys.stderr.write("restart and 102 events delivered in %.1f s\n" % (time.monotonic() - up))
        hooks = rx.requests()
        ids = [r["headers"]["x-kiln-delivery"] for r in hooks]
        self.assertEqual(len(ids), 102)
        self.assertEqual(len(set(ids)), 102, "an event delivered twice")
        self.assertTrue(all(r["status"] == 200 for r in hooks))
        self.assertEqual(by_commit(hooks, lambda r: r["json"]["event"]),
                         {commit: ["queued", "started", "finished"] for commit in commits})
        c.stop()


class Rejected(kf.ClusterTestCase):
    def test_401_logged_counted_and_not_retried(self):
        c = self.cluster()
        rx = ReceiverProcess(self, c.tmp, "github", token=TOKEN).start()
        add_reports(c, [{"plugin": "forge", "forge": "github", "api_url": rx.url(),
                         "repository": "kiln-ci/example",
                         "token_file": c.secret_file("forge.token", "ghp_wrong")}],
                    retry_max="1s")
        start_on_a_first_commit(c)
        c.wait_until(lambda: receivers(c)["forge"]["rejected"] == 3, EVENT_TIMEOUT,
                     "the commit's 3 events rejected")
        time.sleep(4.0)  # four of the longest back-off periods: nothing is sent again
        self.assertEqual([r["status"] for r in rx.requests()], [401, 401, 401])
        forge = receivers(c)["forge"]
        self.assertEqual((forge["pending"], forge["delivered"], forge["rejected"]), (0, 0, 3))
        self.assertTrue(c.log_has("dispatcher", r"report forge: delivery \d+ \(queued of job \d+\)"
                                  r" rejected, not retried: HTTP 401: .*Bad credentials"))
        self.assertNotIn("ghp_wrong", c.log_of("dispatcher"))
        with urllib.request.urlopen(c.http_url("/metrics"), timeout=10) as resp:
            metrics = resp.read().decode()
        samples = {}
        for labels, value in re.findall(r'^kiln_report_deliveries_total\{(.*)\} (\S+)$',
                                        metrics, re.M):
            samples[tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels)))] = float(value)
        self.assertEqual(samples[(("receiver", "forge"), ("result", "rejected"))], 3)
        self.assertEqual(samples[(("receiver", "forge"), ("result", "delivered"))], 0)
        c.stop()


class HangingReceiver(kf.ClusterTestCase):
    def test_a_receiver_that_never_answers_costs_the_others_nothing(self):
        c = self.cluster()
        healthy = ReceiverProcess(self, c.tmp, "healthy").start()
        silent = ReceiverProcess(self, c.tmp, "silent", hang_match=["/"]).start()
        add_reports(c, [{"plugin": "webhook", "url": healthy.url("/hooks/kiln")},
                        {"plugin": "webhook", "url": silent.url("/hooks/kiln"), "timeout": "1s"}])
        commits = [start_on_a_first_commit(c)]
        latencies = []
        for i in range(3):
            c.repo.write("data.txt", "%d\n" % i)
            t = time.monotonic()
            commits.append(c.repo.commit("commit %d" % i))
            c.wait_result(commits[-1], timeout=10)  # about 1 s unhindered
            n = 3 * len(commits)
            c.wait_until(lambda: len(healthy.requests()) == n, 3, "%d events at the healthy one" % n)
            latencies.append(time.monotonic() - t)
        sys.stderr.write("commit to result and its 3 webhooks: %s s\n"
                         % ", ".join("%.1f" % s for s in latencies))
        self.assertEqual(by_commit(healthy.requests(), lambda r: r["json"]["event"]),
                         {commit: ["queued", "started", "finished"] for commit in commits})
        timed_out = c.wait_until(lambda: re.findall(
            r"report webhook#2: delivery \d+ \(queued of job \d+\) failed \(attempt \d+\): "
            r".*timed out after (\d+) milliseconds", c.log_of("dispatcher")),
            EVENT_TIMEOUT, "a timed-out attempt in the log")
        self.assertLess(max(int(ms) for ms in timed_out), 3000, "bounded by the 1 s timeout")
        silent_state = receivers(c)["webhook#2"]
        self.assertEqual((silent_state["pending"], silent_state["delivered"]), (12, 0))
        self.assertGreaterEqual(silent_state["retries"], 1)
        self.assertTrue(silent.requests(), "the silent receiver was asked")
        self.assertTrue(all(r["status"] is None for r in silent.requests()))
        c.stop()  # with attempts hanging: cancelled, the dispatcher exits 0


if __name__ == "__main__":
    unittest.main()
