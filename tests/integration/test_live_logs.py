#!/usr/bin/env python3
"""Live logs: a running job's output reaches followers before its result.

- `kilnctl log -f COMMIT` shows a test's lines while it runs (each line
  carries the time it was printed: the follower's delay is measured and
  printed as p50/p99), exits when the result arrives, and what it printed
  is byte for byte the result's log (the files reporter's COMMIT.log and
  `kilnctl log COMMIT`);
- across a dispatcher restart the runner resumes from the offset the
  dispatcher acknowledged, and a follower that reconnects prints every
  byte once: no duplicate, no gap;
- a log over the runner's max_log streams its first quarter, says so
  once, and ends with the last three quarters of the output (the start
  says what ran, the end why it failed);
- a `log` message from a peer that is not a registered runner, or a
  malformed one, gets an error and a close; one for a job the runner does
  not hold is acknowledged with offset 0 and the connection stays;
- /api/v1/commits/<id>/log?follow=1 streams the same bytes as `event: log`
  server-sent events, then `event: end` with the outcome.

Run with ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_live_logs.py -v
"""

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402

# A test that prints "tick I T" (T: the time it printed, in seconds) every
# PERIOD seconds, LINES times, then fails.
TICKER = """#!/usr/bin/env python3
import sys, time
for i in range({lines}):
    print("tick %d %.6f" % (i, time.time()), flush=True)
    time.sleep({period})
sys.exit(1)
"""
PERIOD = 0.3
FOLLOW_START = 10.0  # commit → its job assigned
LATENCY_BOUND = 1.0  # printed → shown by the follower, generous for a loaded CI machine


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


class Follower:
    """`kilnctl log -f COMMIT` in the background, each line's arrival timed."""

    def __init__(self, cluster, commit, timeout=60):
        argv = [kf.binary("kilnctl"), "-d", cluster.address, "-t", "20", "log", "-f", commit]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = []  # (arrival time, line bytes)
        self.timeout = timeout
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.append((time.time(), line))

    def finish(self):
        """Wait for kilnctl to exit (bounded); (exit status, stdout bytes, stderr)."""
        try:
            code = self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # ours, by its Popen handle
            self.proc.wait()
            raise AssertionError("kilnctl log -f did not end within %ss" % self.timeout)
        self.reader.join(5)
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, b"".join(line for _, line in self.lines), err


class LiveLogTest(kf.ClusterTestCase):
    def start_cluster(self, runner_extra=""):
        c = self.cluster(exec_plugin="script")
        c.runner_extra["runner-1"] = runner_extra
        c.start()
        return c

    def commit_ticker(self, c, lines, period=PERIOD):
        c.repo.write("tests/ticker", TICKER.format(lines=lines, period=period), executable=True)
        commit = c.repo.commit("ticker %d" % lines)
        c.wait_until(lambda: any(j["commit"] == commit and j["state"] == "assigned"
                                 for j in c.jobs()), FOLLOW_START, "the job of %s running" % commit[:12])
        return commit

    def final_log(self, c, commit):
        with open(os.path.join(c.results_dir, commit + ".log"), "rb") as f:
            return f.read()

    def test_follow_shows_lines_before_the_result(self):
        c = self.start_cluster()
        commit = self.commit_ticker(c, lines=10)
        follower = Follower(c, commit)
        code, out, err = follower.finish()
        self.assertEqual(code, 0, err)
        res = c.wait_result(commit)
        self.assertEqual(res["outcome"], "failed")

        ticks = [(t, line) for t, line in follower.lines if line.startswith(b"tick ")]
        self.assertGreaterEqual(len(ticks), 8, out)
        delays = [t - float(line.split()[2]) for t, line in ticks]
        # The last tick was printed 0.3 s before the test ended, and more
        # before the result: the first ticks arrived while it ran.
        last_printed = float(ticks[-1][1].split()[2])
        self.assertLess(ticks[0][0], last_printed, "the first line came only after the last")
        self.assertLess(max(delays), LATENCY_BOUND, delays)
        sys.stderr.write("test_live_logs: output → kilnctl log -f: p50 %.0f ms, p99 %.0f ms "
                         "(%d lines)\n" % (1000 * percentile(delays, 50),
                                           1000 * percentile(delays, 99), len(delays)))

        # What was streamed is the result's log, byte for byte.
        self.assertEqual(out, self.final_log(c, commit))
        again = c.ctl("log", commit, json_output=False)
        self.assertEqual(again.stdout.encode(), out)

    def test_dispatcher_restart_resumes_without_duplicates(self):
        c = self.start_cluster()
        commit = self.commit_ticker(c, lines=20)
        follower = Follower(c, commit)
        c.wait_until(lambda: len(follower.lines) >= 4, 10, "four lines followed")
        c.stop_daemon("dispatcher")  # SIGTERM: runners keep their jobs
        time.sleep(0.5)
        c.start_dispatcher()
        code, out, err = follower.finish()
        self.assertEqual(code, 0, err)
        self.assertEqual(c.wait_result(commit)["outcome"], "failed")
        final = self.final_log(c, commit)
        # Every line once, in order, and nothing else: the follower asked
        # from its offset and the runner resent from the acknowledged one.
        self.assertEqual(out, final)
        self.assertEqual([line.split()[1] for line in final.splitlines()],
                         [str(i).encode() for i in range(20)])
        # The restarted dispatcher's tail began where the runner resumed,
        # not at 0: the bytes it had acknowledged were not sent again.
        self.assertTrue(c.log_has("dispatcher", r"live log of attempt 1 resumes at offset [1-9]"),
                        "no resume past offset 0 in the dispatcher's log")

    def test_max_log_bounds_the_stream(self):
        c = self.start_cluster(runner_extra="max_log = 4096\n")
        c.repo.write("tests/chatty", "#!/bin/sh\ni=0\nwhile [ $i -lt 400 ]; do\n"
                     "  echo \"line $i of a chatty test\"\n  i=$((i+1))\ndone\n", executable=True)
        commit = c.repo.commit("chatty")
        res = c.wait_result(commit)
        self.assertEqual(res["outcome"], "passed")
        log = self.final_log(c, commit)
        held = b"[kiln: output beyond max_log / 4 (1024 bytes) is held back"
        self.assertEqual(log.count(held), 1, log[-200:])
        self.assertTrue(log.startswith(b"line 0 of a chatty test\n"), log[:100])
        # The end of the output follows (it says why a run failed).
        self.assertEqual(len(re.findall(rb"\[kiln: \d+ bytes of log dropped\]\n", log)), 1,
                         log[-200:])
        self.assertTrue(log.endswith(b"line 399 of a chatty test\n"), log[-100:])
        self.assertLessEqual(len(log), 4096 + 200)
        self.assertEqual(c.ctl("log", commit, json_output=False).stdout.encode(), log)

    def test_http_follow_streams_events_until_the_end(self):
        c = self.start_cluster()
        commit = self.commit_ticker(c, lines=8)
        conn = http.client.HTTPConnection("127.0.0.1", c.http_port(), timeout=20)
        conn.request("GET", "/api/v1/commits/%s/log?follow=1" % commit[:10])
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.getheader("content-type").startswith("text/event-stream"))
        events, event, pieces = [], None, {}
        for raw in iter(resp.readline, b""):  # bounded by the socket timeout
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((time.time(), event, json.loads(line[len("data: "):])))
        conn.close()
        kinds = [e[1] for e in events]
        self.assertEqual(kinds[-1], "end", kinds)
        self.assertEqual(events[-1][2]["outcome"], "failed")
        self.assertEqual(set(kinds[:-1]), {"log"})
        # Offsets tile the log: no gap, no overlap, and the whole is the result's log.
        offset = 0
        for _, _, data in events[:-1]:
            self.assertEqual(data["offset"], offset, events)
            pieces[offset] = data["text"]
            offset += len(data["text"].encode())
        streamed = "".join(pieces[k] for k in sorted(pieces)).encode()
        c.wait_result(commit)  # `end` comes when the result is recorded; the report follows
        self.assertEqual(streamed, self.final_log(c, commit))
        # More than one event came before the end: it was followed live.
        self.assertGreater(len(kinds), 3, kinds)
        delays = [t - float(line.split()[2]) for t, _, data in events[:-1]
                  for line in data["text"].splitlines() if line.startswith("tick ")]
        sys.stderr.write("test_live_logs: output → HTTP follower: p50 %.0f ms, p99 %.0f ms "
                         "(%d lines)\n" % (1000 * percentile(delays, 50),
                                            1000 * percentile(delays, 99), len(delays)))

        # Without follow: the log as text; an unknown or malformed commit: 404.
        conn = http.client.HTTPConnection("127.0.0.1", c.http_port(), timeout=10)
        for path, status in (("/api/v1/commits/%s/log" % commit, 200),
                             ("/api/v1/commits/%s/log" % ("f" * 40), 404),
                             ("/api/v1/commits/..%2f..%2fetc/log", 404),
                             ("/api/v1/commits/%s" % commit, 200)):
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            self.assertEqual(resp.status, status, (path, body))
            if path.endswith("/log") and status == 200:
                self.assertEqual(body, self.final_log(c, commit))
        conn.close()

    def test_log_messages_from_the_wrong_peer(self):
        c = self.cluster()
        c.start_dispatcher()

        def log_frame(**fields):
            chunk = {"type": "log", "id": 9, "job_id": 1, "attempt": 1, "offset": 0,
                     "bytes": "hi\n"}
            chunk.update(fields)
            return kf.frame(kf.mp_map(chunk))

        # An observer (no secret here: hello is enough) may not send logs.
        obs = kf.RawPeer(c.port)
        obs.send(kf.hello_frame("observer", "obs"))
        obs.send(log_frame())
        self.assertIn(obs.wait_closed(5), ("closed", "reset"))
        errors = [f for f in kf.split_frames(obs.buf) if f.get("type") == "error"]
        self.assertEqual([e["message"] for e in errors], ["only a registered runner sends logs"])
        obs.close()

        # A registered runner: a chunk of a job it does not hold is acked
        # with offset 0, and the connection stays; a malformed one is closed.
        run = kf.RawPeer(c.port)
        run.send(kf.hello_frame("runner", "raw-runner"))
        run.send(kf.frame(kf.mp_map({"type": "register", "id": 2, "name": "raw-runner",
                                     "slots": 0})))
        run.send(log_frame(job_id=77))
        acks = [f for f in run.frames(3) if f.get("type") == "ack"]
        self.assertEqual([(a["id"], a.get("offset")) for a in acks], [(2, 0), (9, 0)], acks)
        run.send(log_frame(attempt=0))
        self.assertIn(run.wait_closed(5), ("closed", "reset"))
        errors = [f for f in kf.split_frames(run.buf) if f.get("type") == "error"]
        self.assertIn("log: field 'attempt' must be at least 1", errors[-1]["message"])
        run.close()
        c.check_alive()

        # kilnctl: usage errors are 2, an unknown commit is refused (1).
        ctl = [kf.binary("kilnctl"), "-d", c.address]
        for args, code, why in ((["log"], 2, "log needs a COMMIT"),
                                (["log", "abcd@12"], 2, "'abcd@12' is not a commit id"),
                                (["log", "abcd", "more"], 2, "unexpected argument 'more'"),
                                (["-f", "status"], 2, "-f is for log only"),
                                (["log", "-f", "f" * 40], 1, "no job for commit")):
            with self.subTest(args=args):
                proc = kf.run(ctl + args, check=False)
                self.assertEqual(proc.returncode, code, proc.stderr)
                self.assertIn(why, proc.stderr)


if __name__ == "__main__":
    unittest.main()
