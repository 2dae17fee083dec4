#!/usr/bin/env python3
"""GET /metrics on the dispatcher's HTTP port, read back with a real
Prometheus parser (python3-prometheus-client; `promtool check metrics` too
when the prometheus package is installed).

- after a passing and a failing commit: the finished counter by repository
  and outcome, the duration histogram, runners, slots and connections by
  role carry what happened;
- a runner that stops answering (SIGSTOP, by the PID we started) while it
  holds a job: after runner_timeout the job is rerun for reason "timeout" and
  a missed heartbeat is counted, while the job waits in the queue.

Run with ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_metrics.py -v
"""

import os
import shutil
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402
from kiln_http_cluster import HttpCluster  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    # Debian's python3-prometheus-client, for a python3 that is not Debian's
    # (pyenv, a venv): the parser is pure Python.
    sys.path.append("/usr/lib/python3/dist-packages")
    from prometheus_client.parser import text_string_to_metric_families

PASSING_SCRIPT = "#!/bin/sh\nexit 0\n"
FAILING_SCRIPT = "#!/bin/sh\necho broken >&2\nexit 1\n"
HANGING_SCRIPT = "#!/bin/sh\nsleep 60\n"
METRICS_WAIT = 15.0  # runner_timeout (3 s) + the requeue, with margin


class MetricsTestCase(kf.ClusterTestCase):
    def setUp(self):
        self.c = HttpCluster(self, exec_plugin="script", interval="200ms")
        self._kiln_clusters.append(self.c)

    def scrape(self):
        """{(sample name, frozenset of labels): value}, parsed by prometheus_client,
        and the families by name."""
        status, headers, body = self.c.http("GET", "/metrics")
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"),
                        headers["content-type"])
        text = body.decode()
        promtool = shutil.which("promtool")
        if promtool:
            proc = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                                  capture_output=True, timeout=30)
            # promtool exits 1 for lint hints too; an unparsable text says "error".
            self.assertNotIn("error while linting", proc.stdout + proc.stderr, text)
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {}
        for f in families.values():
            for s in f.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return samples, families

    def value(self, samples, name, **labels):
        return samples.get((name, frozenset(labels.items())))


class AfterResultsTest(MetricsTestCase):
    def test_counts_what_happened(self):
        c = self.c
        c.repo.write("tests/ok", PASSING_SCRIPT, executable=True)
        passing = c.repo.commit("passing")
        c.start()
        self.assertEqual(c.wait_result(passing)["outcome"], "passed")
        c.repo.write("tests/ok", FAILING_SCRIPT, executable=True)
        failing = c.repo.commit("failing")
        self.assertEqual(c.wait_result(failing)["outcome"], "failed")

        samples, families = self.scrape()
        v = lambda name, **labels: self.value(samples, name, **labels)  # noqa: E731
        self.assertEqual(families["kiln_job_duration_seconds"].type, "histogram")
        self.assertEqual(families["kiln_jobs_finished"].type, "counter")
        self.assertEqual(v("kiln_jobs_finished_total", repo="example", outcome="passed"), 1)
        self.assertEqual(v("kiln_jobs_finished_total", repo="example", outcome="failed"), 1)
        self.assertEqual(v("kiln_job_duration_seconds_count", repo="example"), 2)
        self.assertEqual(v("kiln_job_duration_seconds_bucket", repo="example", le="+Inf"), 2)
        self.assertEqual(v("kiln_runners_connected"), 1)
        self.assertEqual(v("kiln_runner_slots", runner="runner-1"), 2)
        self.assertEqual(v("kiln_runner_slots_busy", runner="runner-1"), 0)
        self.assertEqual(v("kiln_connections", role="runner"), 1)
        self.assertEqual(v("kiln_connections", role="observer"), 1)
        self.assertEqual(v("kiln_job_reruns_total", reason="timeout"), 0)
        self.assertEqual(v("kiln_heartbeats_missed_total"), 0)
        # The files reporter wrote both results: nothing waits to be reported.
        self.assertEqual(v("kiln_report_backlog", receiver="files"), 0)
        self.assertEqual(v("kiln_report_deliveries_total", receiver="files", result="delivered"), 2)


class SilentRunnerTest(MetricsTestCase):
    def test_a_runner_that_stops_answering_is_a_timeout_rerun(self):
        c = self.c
        c.repo.write("tests/hang", HANGING_SCRIPT, executable=True)
        hanging = c.repo.commit("hangs")
        c.start()
        c.wait_until(lambda: self.value(self.scrape()[0], "kiln_runner_slots_busy",
                                        runner="runner-1") == 1,
                     kf.START_TIMEOUT, "runner-1 to hold the hanging job")
        runner = c.daemons["runner-1"]
        os.kill(runner.pid, signal.SIGSTOP)
        try:
            def rerun():
                samples, _ = self.scrape()
                return (self.value(samples, "kiln_job_reruns_total", reason="timeout") == 1
                        and samples)
            samples = c.wait_until(rerun, METRICS_WAIT, "a timeout rerun in /metrics")
            self.assertEqual(self.value(samples, "kiln_heartbeats_missed_total"), 1)
            self.assertEqual(self.value(samples, "kiln_runners_connected"), 0)
            self.assertEqual(self.value(samples, "kiln_jobs_queued", repo="example"), 1)
            # Queued since before the runner fell silent: at least runner_timeout
            # (3 s) less the heartbeat interval (its last word may precede the job).
            self.assertGreaterEqual(
                self.value(samples, "kiln_oldest_queued_job_age_seconds", repo="example"), 2.5)
            self.assertEqual(self.value(samples, "kiln_job_reruns_total", reason="runner_lost"),
                             0)
            self.assertTrue(c.jobs_of(hanging))
        finally:
            os.kill(runner.pid, signal.SIGCONT)


if __name__ == "__main__":
    unittest.main()
