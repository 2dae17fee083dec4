#!/usr/bin/env python3
"""The dispatcher's HTTP server (issue 11): the JSON API answers what
`kilnctl --json` prints, /api/v1/events streams a commit's state changes,
HTTP basic accounts from auth_file, the [http] refusals at start-up, and
hostile clients: oversized headers and bodies, a malformed chunked body, a
client that trickles bytes, path traversal, 10,000 open connections and
more than max_connections, each answered or closed while the dispatcher's
memory stays bounded and other clients are served.

Run with ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_http.py -v
"""

import base64
import ctypes
import ctypes.util
import http.client
import json
import os
import re
import resource
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402

SHORT = 5.0  # bound for anything the dispatcher should do at once


def get(port, path, headers=None, method="GET", body=None, timeout=SHORT):
    """(status, headers dict with lower-case names, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def get_json(port, path):
    status, _, body = get(port, path)
    return status, json.loads(body)


def raw(port, data, timeout=SHORT):
    """Send raw bytes; everything received until the server closes (or
    `timeout`): (bytes, closed_by_server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                return got, True
            if not chunk:
                return got, True
            got += chunk
        return got, False
    finally:
        s.close()


def status_of(response):
    m = re.match(rb"HTTP/1\.1 (\d+)", response)
    return int(m.group(1)) if m else None


def memory_kib(pid):
    """VmRSS of a process, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pwhash(password):
    """A libsodium crypto_pwhash_str string (argon2id) for PASSWORD, with
    small limits so the test is fast (the dispatcher reads the cost from the
    string), via ctypes: no python package needed beyond libsodium itself."""
    lib = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
    assert lib.sodium_init() >= 0
    out = ctypes.create_string_buffer(128)  # crypto_pwhash_STRBYTES
    pw = password.encode()
    rc = lib.crypto_pwhash_str(out, pw, ctypes.c_ulonglong(len(pw)), ctypes.c_ulonglong(1),
                               ctypes.c_size_t(8192 * 16))
    assert rc == 0
    return out.value.decode()


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(
        ("%s:%s" % (user, password)).encode()).decode()}


class SseReader:
    """A subscriber of /api/v1/events: reads the stream as it comes."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=SHORT)
        self.sock.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        self.buf = b""

    def events_until(self, done, timeout):
        """Parsed (event, data) pairs until done(list) is true; bounded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = [(m.group(1).decode(), json.loads(m.group(2)))
                      for m in re.finditer(rb"event: (\w+)\r?\ndata: ([^\r\n]*)\r?\n", self.buf)]
            if done(events):
                return events
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            self.buf += chunk
        raise AssertionError("events not seen in %.0fs; the stream so far:\n%s"
                             % (timeout, self.buf.decode(errors="replace")))

    def close(self):
        self.sock.close()


class ApiTest(kf.ClusterTestCase):
    """The JSON API and the event stream against a real pipeline."""

    def test_api_matches_kilnctl_and_events_follow_a_commit(self):
        c = self.cluster()
        c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        c.start()
        port = c.http_port()
        events = SseReader(port)
        self.addCleanup(events.close)
        # The stream is open (its first bytes arrived) before the commit.
        events.events_until(lambda e: b"retry:" in events.buf, SHORT)
        commit = c.repo.commit("arithmetic")
        c.wait_result(commit)

        seen = events.events_until(
            lambda e: any(n == "finished" and d["commit"] == commit for n, d in e),
            kf.RESULT_TIMEOUT)
        mine = [(n, d) for n, d in seen if d["commit"] == commit]
        names = [n for n, _ in mine]
        self.assertEqual(names[0], "queued", mine)
        self.assertIn("started", names)
        self.assertLess(names.index("started"), names.index("finished"), mine)
        finished = dict(mine)["finished"]
        self.assertEqual(finished["outcome"], "passed")
        self.assertEqual(finished["state"], "done")
        self.assertEqual(finished["runner"], "runner-1")
        self.assertEqual(finished["repo"], "example")
        self.assertEqual(dict(mine)["started"]["runner"], "runner-1")

        # The same JSON as kilnctl --json (status's uptime and the runners'
        # heartbeat ages move between two calls: compared apart).
        status, result = get_json(port, "/api/v1/commits/" + commit)
        self.assertEqual(status, 200)
        self.assertEqual(result, c.ctl("result", commit))
        status, by_prefix = get_json(port, "/api/v1/commits/" + commit[:10])
        self.assertEqual((status, by_prefix), (200, result))
        status, jobs = get_json(port, "/api/v1/jobs")
        self.assertEqual((status, jobs), (200, c.ctl("jobs")))
        volatile = re.compile(r"uptime|_ms$|_s$|age|last")

        def steady(value):
            if isinstance(value, dict):
                return {k: steady(v) for k, v in value.items() if not volatile.search(k)}
            if isinstance(value, list):
                return [steady(v) for v in value]
            return value
        for what in ("status", "runners"):
            status, answer = get_json(port, "/api/v1/" + what)
            self.assertEqual(status, 200)
            self.assertEqual(steady(answer), steady(c.ctl(what)), what)
        self.assertEqual(get_json(port, "/api/v1/runners")[1][0]["name"], "runner-1")

        # Unknown commit: 404 with a JSON error.  HEAD: the headers alone.
        status, err = get_json(port, "/api/v1/commits/" + "0" * 40)
        self.assertEqual(status, 404)
        self.assertIn("no job for commit", err["error"])
        status, headers, body = get(port, "/api/v1/status", method="HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers["content-type"], "application/json")
        status, _, _ = get(port, "/api/v1/status", method="POST", body=b"{}")
        self.assertEqual(status, 405)
        self.assertEqual(get(port, "/api/v1/nothing")[0], 404)


class ConfigTest(kf.ClusterTestCase):
    """[http] refusals, checked with --check-config."""

    def check_config(self, c, http_listen, http_extra):
        c.http_listen, c.http_extra = http_listen, http_extra
        return kf.run([kf.binary("dispatcher"), "--check-config", "-c",
                       c.write_dispatcher_config()], check=False)

    def test_refusals(self):
        c = self.cluster()
        p = self.check_config(c, "0.0.0.0:8080", "")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertRegex(p.stderr, r"dispatcher\.toml:\d+:\d+: http\.listen: '0\.0\.0\.0:8080' is "
                                   r"not a loopback address: set auth_file")
        p = self.check_config(c, "0.0.0.0:8080", "public = true\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        accounts = c.path("accounts")
        with open(accounts, "w") as f:
            f.write("alice:%s\n" % pwhash("secret"))
        os.chmod(accounts, 0o644)
        p = self.check_config(c, "0.0.0.0:8080", "auth_file = %s\n" % kf.toml_str(accounts))
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"http\.auth_file: %s: .*(group|others)" % re.escape(accounts))
        os.chmod(accounts, 0o600)
        p = self.check_config(c, "0.0.0.0:8080", "auth_file = %s\n" % kf.toml_str(accounts))
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(accounts, "a") as f:
            f.write("bob:plaintext-password\n")
        p = self.check_config(c, "127.0.0.1:0", "auth_file = %s\n" % kf.toml_str(accounts))
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"http\.auth_file: %s: line 2: user bob: the hash is not"
                         % re.escape(accounts))
        p = self.check_config(c, "", "")
        self.assertEqual(p.returncode, 0, p.stderr)


class AuthTest(kf.ClusterTestCase):
    def test_basic_accounts(self):
        c = self.cluster()
        accounts = kf.write_secret(c.path("accounts"), "alice:%s\ncarol:%s" % (
            pwhash("wonderland"), pwhash("other")))
        c.http_extra = "auth_file = %s\n" % kf.toml_str(accounts)
        c.start_dispatcher()
        port = c.http_port()
        status, headers, body = get(port, "/api/v1/status")
        self.assertEqual(status, 401)
        self.assertIn("Basic realm=", headers["www-authenticate"])
        self.assertEqual(json.loads(body), {"error": "authentication required"})
        self.assertEqual(get(port, "/api/v1/status", basic("alice", "wrong"))[0], 401)
        self.assertEqual(get(port, "/api/v1/status", basic("mallory", "x"))[0], 401)
        self.assertEqual(get(port, "/api/v1/status", {"Authorization": "Basic !!!"})[0], 401)
        for _ in range(2):  # the second from the remembered password
            status, _, body = get(port, "/api/v1/status", basic("alice", "wonderland"))
            self.assertEqual(status, 200)
            self.assertIn("queued", json.loads(body))
        self.assertEqual(get(port, "/api/v1/status", basic("carol", "other"))[0], 200)
        self.assertEqual(get(port, "/api/v1/status", basic("carol", "wonderland"))[0], 401)
        self.assertTrue(c.log_has("dispatcher", r"http: peer 127\.0\.0\.1:\d+: login refused: "
                                                r"wrong password for user alice"))


class HostileTest(kf.ClusterTestCase):
    """One dispatcher (no runner needed) and clients that misbehave."""

    def setUp(self):
        # 10,000 connections need that many descriptors, in this process and
        # the dispatcher (which inherits the limit): raise the soft limit.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < 10500:
            self.skipTest("the file descriptor limit (%d) is below 10,500: ulimit -Hn" % hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        self.c = self.cluster()
        self.c.http_extra = ('request_timeout = "1s"\nmax_connections = 12000\n'
                             "max_body_bytes = 65536\n")
        self.c.start_dispatcher()
        self.port = self.c.http_port()
        self.pid = self.c.daemons["dispatcher"].pid

    def served(self):
        """Another, well-behaved client gets its answer, quickly."""
        t = time.monotonic()
        status, body = get_json(self.port, "/api/v1/status")
        self.assertEqual(status, 200)
        self.assertIn("queued", body)
        self.assertLess(time.monotonic() - t, 1.0)

    def test_oversized_headers(self):
        big = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        got, closed = raw(self.port, big)
        self.assertEqual(status_of(got), 431, got[:200])
        self.assertTrue(closed)
        self.assertIn(b"max_header_bytes = 16384", got)
        # Past what the HTTP library reads at all (about 400 KiB): 400, closed.
        huge = b"GET / HTTP/1.1\r\nX-Huge: " + b"a" * 600000
        got, closed = raw(self.port, huge)
        self.assertTrue(closed)
        self.assertIn(status_of(got), (400, None), got[:200])
        self.served()

    def test_bodies(self):
        got, closed = raw(self.port, b"POST /api/v1/status HTTP/1.1\r\nHost: x\r\n"
                                     b"Content-Length: 100000\r\n\r\n" + b"x" * 100)
        self.assertEqual(status_of(got), 413, got[:200])
        self.assertTrue(closed)
        got, closed = raw(self.port, b"POST /api/v1/status HTTP/1.1\r\nHost: x\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        self.assertEqual(status_of(got), 400, got[:200])
        self.assertTrue(closed)
        got, closed = raw(self.port, b"POST /api/v1/status HTTP/1.1\r\nHost: x\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\n"
                                     + b"8000\r\n" + b"x" * 0x8000 + b"\r\n"
                                     + b"8000\r\n" + b"x" * 0x8000 + b"\r\n"
                                     + b"8000\r\n" + b"x" * 0x8000 + b"\r\n0\r\n\r\n")
        self.assertEqual(status_of(got), 413, got[:200])
        got, closed = raw(self.port, b"GARBAGE\x00\x01\r\n\r\n")
        self.assertEqual(status_of(got), 400, got[:200])
        self.served()

    def test_path_traversal(self):
        for path in (b"/api/v1/commits/../../../../etc/passwd",
                     b"/api/v1/commits/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                     b"/api/v1/commits/..%2F..%2Fdispatcher.db",
                     b"/commit/../../../../etc/passwd",
                     b"/commit/%2e%2e/%2e%2e/etc/passwd",
                     b"/../../etc/passwd"):
            got, _ = raw(self.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                                     b"Connection: close\r\n\r\n")
            self.assertIn(status_of(got), (400, 404), (path, got[:300]))
            self.assertNotIn(b"root:", got)
            self.assertNotIn(b"SQLite", got)
        self.served()

    def test_slow_client_is_cut_and_others_served(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=SHORT)
        self.addCleanup(s.close)
        request = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
        t0 = time.monotonic()
        closed_after = None
        for i, byte in enumerate(request):
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - t0
                break
            if i % 5 == 0:
                self.served()  # the trickle does not hold anyone else up
            time.sleep(0.2)
        if closed_after is None:
            s.settimeout(SHORT)
            try:
                got = s.recv(100)
            except OSError:
                got = b""
            self.assertEqual(got, b"", "a trickled request was answered: request_timeout "
                                       "did not apply")
            closed_after = time.monotonic() - t0
        # request_timeout is 1 s; the whole request would take 8 s to trickle.
        self.assertLess(closed_after, 4.0)

    def test_ten_thousand_connections(self):
        rss_before = memory_kib(self.pid)
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        t = time.monotonic()
        for i in range(10000):
            s = socket.socket()
            s.settimeout(SHORT)
            s.connect(("127.0.0.1", self.port))
            socks.append(s)
        # Half of them have sent a partial request: the parser holds it.
        for s in socks[::2]:
            s.send(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
        opened = time.monotonic() - t
        self.served()
        rss = memory_kib(self.pid)
        sys.stderr.write("10,000 connections opened in %.1fs; dispatcher RSS %d -> %d KiB\n"
                         % (opened, rss_before, rss))
        self.assertLess(rss - rss_before, 200 * 1024)
        # request_timeout (1 s) closes them all, silent or half-sent.
        deadline = time.monotonic() + SHORT
        open_left = list(socks)
        while open_left and time.monotonic() < deadline:
            still = []
            for s in open_left:
                s.setblocking(False)
                try:
                    if s.recv(100) == b"":
                        continue
                except BlockingIOError:
                    still.append(s)
                    continue
                except OSError:
                    continue
            open_left = still
            time.sleep(0.2)
        self.assertEqual(len(open_left), 0, "connections left open past request_timeout")
        self.served()


class ConnectionLimitTest(kf.ClusterTestCase):
    def test_over_max_connections(self):
        c = self.cluster()
        c.http_extra = 'max_connections = 50\nrequest_timeout = "2s"\n'
        c.start_dispatcher()
        port = c.http_port()
        socks = [socket.create_connection(("127.0.0.1", port), timeout=SHORT) for _ in range(60)]
        self.addCleanup(lambda: [s.close() for s in socks])
        time.sleep(0.3)
        closed = 0
        for s in socks:
            s.setblocking(False)
            try:
                if s.recv(10) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        self.assertEqual(closed, 10)
        self.assertTrue(c.log_has("dispatcher", r"http: too many connections: 50 open "
                                                r"\(max_connections = 50\)"))
        # Once request_timeout has closed the idle ones, others are served.
        c.wait_until(lambda: get(port, "/api/v1/status")[0] == 200, SHORT,
                     "a new client served after the idle connections timed out")


if __name__ == "__main__":
    unittest.main()
