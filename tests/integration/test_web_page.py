#!/usr/bin/env python3
"""The web page in a real browser: headless Chromium, driven over WebDriver
by chromium-driver (spoken with urllib: no selenium).

With the real daemons on 127.0.0.1 and the dispatcher serving HTTP, a commit
whose test prints a line a second and then fails is made.  While it runs
the browser holds `/` and `/commit/<id>` open, each loaded once:
- the commit page shows the log's lines arriving (when the dispatcher
  serves live logs: /api/v1/commits/<id>/log?follow=1);
- both pages show the commit turning "failed";
- neither page was reloaded (a marker set in each page's window survives).
The server-rendered pages are also read without a browser: complete HTML,
failing test first.

Skipped, saying why, only where Chromium cannot start (chromium or
chromium-driver not installed, or the browser refuses to start).  Run with
ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_web_page.py -v
KILN_SCREENSHOT_DIR=DIR keeps a screenshot of each page there.
"""

import base64
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402

DRIVER_START_TIMEOUT = 15.0  # chromium-driver answering /status
WEBDRIVER_TIMEOUT = 30.0     # one WebDriver command (a session start launches Chromium)
PAGE_TIMEOUT = 20.0          # something the page should show by itself
LINES = 8                    # the test prints one a second, then fails
EVENT_LAG_MS = 3000          # result recorded → the open page shows it (polled every 0.1 s)

# One line a second, flushed (the shell writes each echo at once), then a failure.
SLOW_FAILING_SCRIPT = """#!/bin/sh
i=1
while [ $i -le %d ]; do
  echo "progress line $i"
  sleep 1
  i=$((i + 1))
done
echo "it broke <here>" >&2
exit 1
""" % LINES


class WebDriverError(Exception):
    pass


class WebDriver:
    """chromium-driver on a free port of 127.0.0.1, one session.  The driver
    runs in a process group of its own so that stop() ends it and the
    browser it started, by that group's id, and nothing else."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.port = kf.free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(tmp, "chromedriver.log")
        self.proc = None
        self.session = None

    def start(self):
        driver = shutil.which("chromedriver")
        browser = shutil.which("chromium")
        if not driver or not browser:
            raise unittest.SkipTest("chromium or chromium-driver is not installed "
                                    "(scripts/bootstrap installs both)")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [driver, "--port=%d" % self.port, "--log-path=" + self.log_path],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + DRIVER_START_TIMEOUT
        while True:
            try:
                if self.call("GET", "/status").get("ready"):
                    break
            except (OSError, WebDriverError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise unittest.SkipTest("chromium-driver did not start: %s" % self.log())
            time.sleep(0.1)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--window-size=1200,900",
                "--user-data-dir=" + os.path.join(self.tmp, "chromium-profile")]
        try:
            value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": browser, "args": args}}}})
        except WebDriverError as e:
            raise unittest.SkipTest("chromium cannot start here: %s" % e)
        self.session = value["sessionId"]

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError as e:
            return "(no log: %s)" % e

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=WEBDRIVER_TIMEOUT) as resp:
                return json.load(resp)["value"]
        except urllib.error.HTTPError as e:
            raise WebDriverError("%s %s: HTTP %d: %s" % (method, path, e.code,
                                                          e.read().decode(errors="replace")[:2000]))

    def cmd(self, method, path, body=None):
        return self.call(method, "/session/%s%s" % (self.session, path), body)

    def open(self, url):
        self.cmd("POST", "/url", {"url": url})

    def new_tab(self, url):
        handle = self.cmd("POST", "/window/new", {"type": "tab"})["handle"]
        self.switch(handle)
        self.open(url)
        return handle

    def window(self):
        return self.cmd("GET", "/window")

    def switch(self, handle):
        self.cmd("POST", "/window", {"handle": handle})

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.cmd("GET", "/screenshot")))

    def stop(self):
        if self.session:
            try:
                self.cmd("DELETE", "")
            except (OSError, WebDriverError):
                pass
            self.session = None
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the driver and its browser
            try:
                self.proc.wait(timeout=kf.STOP_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=kf.KILL_GRACE)
        if self.proc:
            try:  # a browser process that outlived its driver, same group
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def http_get(port, path):
    """(status, headers with lower-case names, body text) of GET path."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, \
            resp.read().decode(errors="replace")
    finally:
        conn.close()


def follows_live_logs(port, commit):
    """Does the dispatcher serve the commit's live log stream?  Only the
    headers are read: the stream itself stays open."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/api/v1/commits/%s/log?follow=1" % commit)
        resp = conn.getresponse()
        return resp.status == 200 and \
            resp.getheader("content-type", "").startswith("text/event-stream")
    finally:
        conn.close()


# In the page: the text of the state badge of a commit's first row (or of
# the commit page's own outcome), and the log shown so far.
STATE_OF_COMMIT = """
var row = document.querySelector('tr[data-commit="' + arguments[0] + '"] .state');
return row ? row.textContent : null;
"""
LOG_TEXT = "var log = document.getElementById('log'); return log ? log.textContent : null;"


class WebPageTest(kf.ClusterTestCase):
    def setUp(self):
        self.c = kf.Cluster(self, exec_plugin="script", interval="200ms")
        self._kiln_clusters.append(self.c)
        self.browser_tmp = tempfile.mkdtemp(prefix="kiln-chromium-")
        self.addCleanup(shutil.rmtree, self.browser_tmp, True)
        self.browser = WebDriver(self.browser_tmp)
        self.addCleanup(self.browser.stop)

    def wait_in_page(self, what, predicate, timeout=PAGE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %.0fs waiting for %s (driver log: %s)"
                                     % (timeout, what, self.browser.log()))
            time.sleep(0.1)

    def screenshot(self, name):
        where = os.environ.get("KILN_SCREENSHOT_DIR")
        if where:
            os.makedirs(where, exist_ok=True)
            self.browser.screenshot(os.path.join(where, name + ".png"))

    def test_running_commit_turns_failed_without_a_reload(self):
        c, b = self.c, self.browser
        b.start()  # before the cluster: a skip costs nothing
        c.repo.write("tests/slow_then_fails", SLOW_FAILING_SCRIPT, executable=True)
        commit = c.repo.commit("a test that prints a line a second, then fails")
        c.start()
        c.wait_until(lambda: any(j["state"] == "assigned" for j in c.jobs_of(commit)),
                     kf.START_TIMEOUT, "commit %s running" % commit[:12])
        port = c.http_port()
        url = "http://127.0.0.1:%d" % port
        live_logs = follows_live_logs(port, commit)
        if not live_logs:
            sys.stderr.write("test_web_page: the dispatcher serves no live log stream here "
                             "(404 on /api/v1/commits/<id>/log?follow=1): lines are not checked\n")

        # `/`, loaded once, with the commit running.
        home = b.window()
        b.open(url + "/")
        b.js("window.kilnMarker = 'home';")
        self.assertEqual(self.wait_in_page("the running row on /",
                                           lambda: b.js(STATE_OF_COMMIT, commit)), "running")

        # Its page, loaded once, in a second tab.
        b.new_tab(url + "/commit/" + commit)
        b.js("window.kilnMarker = 'commit';")
        self.assertEqual(b.js(STATE_OF_COMMIT, commit), "running")
        if live_logs:
            # Lines arrive while the test runs: one seen, then a later one.
            first = self.wait_in_page("a progress line in the log",
                                      lambda: re.findall(r"progress line (\d+)",
                                                         b.js(LOG_TEXT) or ""))
            later = self.wait_in_page("a later progress line", lambda: [
                n for n in re.findall(r"progress line (\d+)", b.js(LOG_TEXT) or "")
                if int(n) > int(first[-1])])
            self.assertEqual(b.js(STATE_OF_COMMIT, commit), "running",
                             "line %s arrived while the test still ran" % later[0])
            self.screenshot("commit-running")

        self.assertEqual(self.wait_in_page("the commit page turning failed", lambda: (
            b.js(STATE_OF_COMMIT, commit) if b.js(STATE_OF_COMMIT, commit) != "running"
            else None), timeout=LINES + PAGE_TIMEOUT), "failed")
        commit_page_saw_ms = time.time() * 1000
        self.wait_in_page("the failing test listed", lambda: b.js(
            "return document.getElementById('tests').textContent").find("slow_then_fails") >= 0)
        log = self.wait_in_page("the whole log", lambda: (
            (b.js(LOG_TEXT) or "") if "progress line %d" % LINES in (b.js(LOG_TEXT) or "")
            else None))
        self.assertEqual(log.count("progress line 1\n"), 1, "no line shown twice:\n" + log)
        self.assertEqual(b.js("return window.kilnMarker"), "commit", "the commit page reloaded")
        self.screenshot("commit-failed")

        # The page learnt it from the event, not from its 30 s refresh.
        finished_ms = c.jobs_of(commit)[0]["finished_unix_ms"]
        self.assertLess(commit_page_saw_ms - finished_ms, EVENT_LAG_MS)

        b.switch(home)  # loaded less than 30 s ago: only an event can have changed it
        self.assertEqual(self.wait_in_page("/ turning failed", lambda: (
            b.js(STATE_OF_COMMIT, commit) if b.js(STATE_OF_COMMIT, commit) != "running"
            else None), timeout=EVENT_LAG_MS / 1000), "failed")
        self.assertEqual(b.js("return window.kilnMarker"), "home", "/ reloaded")
        self.screenshot("home")

        # The same, complete without JavaScript.
        status, headers, body = http_get(port, "/commit/" + commit)
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/html"))
        self.assertIn("default-src 'self'", headers.get("content-security-policy", ""))
        self.assertIn('<span class="state failed">failed</span>', body)
        self.assertIn("it broke &lt;here&gt;", body)  # the failing test's message, escaped
        self.assertLess(body.find("Failing tests (1)"), body.find("progress line %d" % LINES))
        status, _, body = http_get(port, "/")
        self.assertEqual(status, 200)
        self.assertIn(commit[:10], body)
        self.assertLess(len(body), 50 * 1024)
        self.assertEqual(http_get(port, "/commit/..%2f..%2fetc%2fpasswd")[0], 404)
        self.assertEqual(http_get(port, "/runner/runner-1")[0], 200)
        self.assertEqual(http_get(port, "/runner/nobody")[0], 404)
        self.assertEqual(http_get(port, "/static/kiln.js")[0], 200)


if __name__ == "__main__":
    unittest.main()
