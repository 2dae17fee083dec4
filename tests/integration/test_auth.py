"""Shared-secret authentication between the real daemons.

A dispatcher with separate secrets for runners, observers and kilnctl:
the runner and observer holding theirs register and get a commit tested; a
runner with a wrong secret (the observers' one) is refused and gets no job;
kilnctl needs the ctl secret.  A raw peer that proves nothing gets an error
and a close, whatever it sends instead of the proof; one that stops after
hello is closed at the handshake deadline; one that computes the documented
HMAC itself (Python's hmac, not our code) is let in.  A SIGHUP makes the
dispatcher read its secret again: the old one no longer opens new
connections, authenticated peers stay.  Start-up refuses
world-readable secret files and a non-loopback listen address without a
secret.
"""

import hashlib
import hmac
import os
import re
import signal
import socket
import struct
import time
import unittest

import kiln_fixture as kf
from test_pipeline import read_until_closed

SHORT = 5.0


def proof(key, direction, role, name, peer_nonce, dispatcher_nonce):
    """HMAC-SHA-256 over length-prefixed fields, as kiln-dispatcher(8) says."""
    msg = b""
    for field in (b"kiln-auth-v1", direction.encode(), role.encode(), name.encode(),
                  peer_nonce.encode(), dispatcher_nonce.encode()):
        msg += struct.pack(">I", len(field)) + field
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()


RUNNER_SECRET = "runner-secret-0123456789abcdef"
OBSERVER_SECRET = "observer-secret-0123456789abcdef"
ADMIN_SECRET = "admin-secret-0123456789abcdef"


class AuthTest(kf.ClusterTestCase):
    def setUp(self):
        c = self.c = self.cluster(handshake_timeout="1500ms")
        admin = c.secret_file("admin.secret", ADMIN_SECRET)
        runners = c.secret_file("runner.secret", RUNNER_SECRET)
        observers = c.secret_file("observer.secret", OBSERVER_SECRET)
        c.dispatcher_extra = ("secret_file = %s\nrunner_secret_file = %s\n"
                              "observer_secret_file = %s\n"
                              % (kf.toml_str(admin), kf.toml_str(runners), kf.toml_str(observers)))
        c.observer_extra = "secret_file = %s\n" % kf.toml_str(observers)
        c.runner_extra["runner-1"] = "secret_file = %s\n" % kf.toml_str(runners)
        # The observers' secret is a wrong secret for a runner.
        c.runner_extra["intruder"] = "secret_file = %s\n" % kf.toml_str(observers)
        c.ctl_secret_file = admin
        c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.c.port), timeout=SHORT)

    def hello(self, sock, role="runner", name="raw"):
        """Say hello with a fresh nonce; the dispatcher's hello and our nonce."""
        nonce = os.urandom(32).hex()
        sock.sendall(kf.frame(kf.mp_map({"type": "hello", "id": 1, "version": 1,
                                         "role": role, "name": name, "nonce": nonce})))
        data = b""
        deadline = time.monotonic() + SHORT
        while not kf.split_frames(data) and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        frames = kf.split_frames(data)
        self.assertTrue(frames, "no answer to hello: %r" % data)
        return frames[0], nonce

    def test_only_holders_of_the_secret_get_in(self):
        c = self.c
        c.start_dispatcher()  # waits for kilnctl status: the ctl secret works
        c.start_runner("runner-1")
        c.start_runner("intruder", wait=False)
        c.start_observer()
        commit = c.repo.commit("passing tests")
        res = c.wait_result(commit)
        self.assertEqual(res["outcome"], "passed")
        self.assertEqual([j["runner"] for j in c.jobs_of(commit)], ["runner-1"])

        # The intruder saw that the dispatcher's proof is not made with its
        # secret and never registered, let alone got a job.
        c.wait_until(lambda: c.log_has("intruder", r"does not match our secret"), SHORT,
                     "the intruder refusing the dispatcher")
        self.assertEqual(c.runner_names(), ["runner-1"])
        self.assertFalse(c.log_has("intruder", r"registered with"))
        self.assertFalse(c.log_has("intruder", r"job \d+"))
        self.assertTrue(c.log_has("dispatcher", r"hello from runner runner-1 \(authenticated\)"))
        self.assertTrue(c.log_has("dispatcher", r"hello from observer .*\(authenticated\)"))

        # kilnctl: no secret, a wrong one, the right one.
        c.ctl_secret_file = None
        proc = c.ctl("status", check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("the dispatcher requires authentication", proc.stderr)
        c.ctl_secret_file = c.path("runner.secret")
        proc = c.ctl("status", check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("does not match our secret", proc.stderr)
        c.ctl_secret_file = c.path("admin.secret")
        self.assertEqual(c.ctl("status")["runners"], 1)

    def test_raw_peers(self):
        c = self.c
        c.start_dispatcher()
        key = RUNNER_SECRET

        # A wrong proof: an error frame and a close; its register is never read.
        with self.connect() as s:
            d, nonce = self.hello(s)
            self.assertEqual(len(d["nonce"]), 64)
            # The dispatcher proved itself with the runners' secret.
            self.assertEqual(d["proof"], proof(key, "dispatcher", "runner", "raw", nonce,
                                               d["nonce"]))
            s.sendall(kf.frame(kf.mp_map({"type": "auth", "id": 2, "proof": "0" * 64})) +
                      kf.frame(kf.mp_map({"type": "register", "id": 3, "name": "raw",
                                          "slots": 4})))
            data, how = read_until_closed(s, SHORT)
            self.assertEqual(how, "closed")
            frames = kf.split_frames(data)
            self.assertEqual([f["type"] for f in frames], ["error"])
            self.assertEqual(frames[0]["message"], "authentication failed")
        self.assertTrue(c.log_has("dispatcher", r"runner raw: authentication failed"))

        # Skipping the proof: refused too.
        with self.connect() as s:
            self.hello(s)
            s.sendall(kf.frame(kf.mp_map({"type": "register", "id": 3, "name": "raw"})))
            data, how = read_until_closed(s, SHORT)
            self.assertEqual(how, "closed")
            self.assertIn("expected auth, got register", kf.split_frames(data)[-1]["message"])

        # A peer with no nonce cannot be challenged: refused.
        with self.connect() as s:
            s.sendall(kf.frame(kf.mp_map({"type": "hello", "id": 1, "version": 1,
                                          "role": "runner", "name": "raw"})))
            data, how = read_until_closed(s, SHORT)
            self.assertIn("authentication required", kf.split_frames(data)[-1]["message"])

        # Hello, then no proof: closed at the handshake deadline (1.5 s after
        # the connect) even though it trickles a byte every 0.3 s.
        with self.connect() as s:
            start = time.monotonic()
            self.hello(s)
            s.sendall(struct.pack(">I", 1000))  # a frame that never completes
            s.settimeout(0.3)
            closed_after = None
            while closed_after is None and time.monotonic() - start < 8.0:
                try:
                    s.sendall(b"\x00")
                    if not s.recv(65536):
                        closed_after = time.monotonic() - start
                except socket.timeout:
                    continue
                except OSError:
                    closed_after = time.monotonic() - start
            self.assertIsNotNone(closed_after, "still open after 8 s")
            self.assertGreaterEqual(closed_after, 1.4)
            self.assertLess(closed_after, 1.5 + 0.5 + 1.5)  # + heartbeat_interval + slack
        c.wait_until(lambda: c.log_has("dispatcher", r"no auth within handshake_timeout"),
                     SHORT, "the dispatcher closing the silent peer")

        # The documented proof, computed here, is accepted.
        with self.connect() as s:
            d, nonce = self.hello(s, name="py")
            s.sendall(kf.frame(kf.mp_map({
                "type": "auth", "id": 2,
                "proof": proof(key, "peer", "runner", "py", nonce, d["nonce"])})) +
                kf.frame(kf.mp_map({"type": "register", "id": 3, "name": "py", "slots": 1})))
            data = b""
            deadline = time.monotonic() + SHORT
            while len(kf.split_frames(data)) < 2 and time.monotonic() < deadline:
                data += s.recv(65536)
            acks = [f for f in kf.split_frames(data) if f["type"] == "ack"]
            self.assertEqual([a["id"] for a in acks], [2, 3])
            self.assertIn("py", c.runner_names())


class RefusedBackoffTest(kf.ClusterTestCase):
    """A runner with a wrong secret backs off exponentially (the backoff
    starts over only after an accepted handshake), and says why once per
    attempt, with the delay: not ten log lines a second."""

    def test_wrong_secret_backs_off(self):
        c = self.cluster()
        runners = c.secret_file("runner.secret", RUNNER_SECRET)
        wrong = c.secret_file("wrong.secret", OBSERVER_SECRET)
        c.dispatcher_extra = "runner_secret_file = %s\n" % kf.toml_str(runners)
        c.runner_extra["intruder"] = "secret_file = %s\n" % kf.toml_str(wrong)
        c.start_dispatcher()
        c.start_runner("intruder", wait=False)
        time.sleep(4.0)
        log = c.log_of("intruder")
        retries = re.findall(r"dispatcher \S+: authentication failed: .*does not match our "
                             r"secret.*; retrying in ([0-9.]+) s", log)
        delays = [float(d) for d in retries]
        # 0.125-0.25, 0.25-0.5, 0.5-1, 1-2, 2-4 s: 3 to 5 attempts in 4 s.
        self.assertGreaterEqual(len(delays), 3, log)
        self.assertLessEqual(len(delays), 6, log)
        self.assertLessEqual(delays[0], 0.25, log)
        self.assertEqual(delays, sorted(delays), log)
        self.assertGreater(delays[-1], 2 * delays[0], log)
        # Every line about it, whoever logs it: a few per attempt at most.
        mentions = len(re.findall(r"does not match our secret", log))
        self.assertLessEqual(mentions, 2 * len(delays) + 2, log)
        self.assertNotIn("intruder", c.runner_names())


class RotationTest(kf.ClusterTestCase):
    """SIGHUP re-reads the secret files: new connections need the new secret,
    the peers already in keep their connections."""

    def test_new_secret_on_sighup(self):
        c = self.cluster()
        admin = c.secret_file("admin.secret", ADMIN_SECRET)
        c.dispatcher_extra = "secret_file = %s\n" % kf.toml_str(admin)
        c.runner_extra["runner-1"] = "secret_file = %s\n" % kf.toml_str(admin)
        c.ctl_secret_file = admin
        c.start_dispatcher()
        c.start_runner("runner-1")

        # The same file, a new secret; the dispatcher reloads.
        c.secret_file("admin.secret", "the-next-secret-0123456789abcdef")
        c.secret_file("old.secret", ADMIN_SECRET)
        os.kill(c.daemons["dispatcher"].pid, signal.SIGHUP)
        c.wait_until(lambda: c.log_has("dispatcher", r"reload: "), SHORT, "the reload")

        c.ctl_secret_file = c.path("old.secret")
        proc = c.ctl("status", check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("does not match our secret", proc.stderr)
        c.ctl_secret_file = admin
        status = c.ctl("status")
        # runner-1 authenticated with the old secret and is still there.
        self.assertEqual(status["runners"], 1)
        self.assertEqual(c.runner_names(), ["runner-1"])
        self.assertFalse(c.log_has("runner-1", r"disconnected"))


class StartupRefusalTest(unittest.TestCase):
    """--check-config refuses what would open the door."""

    def setUp(self):
        self.c = kf.Cluster(self)

    def check(self, program, config_text, *expected):
        path = self.c.path(program + "-check.toml")
        with open(path, "w") as f:
            f.write(config_text)
        proc = kf.run([kf.binary(program), "--check-config", "-c", path], check=False)
        self.assertNotEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        for text in expected:
            self.assertIn(text, proc.stderr)

    def test_refusals(self):
        c = self.c
        loose = c.secret_file("loose.secret", ADMIN_SECRET)
        os.chmod(loose, 0o644)
        self.check("dispatcher", '[dispatcher]\nlisten = "0.0.0.0:%d"\n' % kf.free_port(),
                   "dispatcher.listen:", "is not a loopback address: set secret_file")
        self.check("dispatcher", "[dispatcher]\nsecret_file = %s\n" % kf.toml_str(loose),
                   "dispatcher-check.toml:2:", "dispatcher.secret_file:",
                   "(mode 0644); chmod 600 it")
        self.check("runner", "[runner]\nsecret_file = %s\n" % kf.toml_str(loose),
                   "runner.secret_file:", "(mode 0644)")
        self.check("observer", "[observer]\nsecret_file = %s\n" % kf.toml_str(c.path("none")),
                   "observer.secret_file:", "No such file or directory")
        # With a proper secret, listening on every address is accepted.
        ok = c.secret_file("ok.secret", ADMIN_SECRET)
        path = c.path("dispatcher-ok.toml")
        with open(path, "w") as f:
            f.write('[dispatcher]\nlisten = "0.0.0.0:%d"\nsecret_file = %s\nstate_dir = %s\n'
                    % (kf.free_port(), kf.toml_str(ok), kf.toml_str(c.path("st"))))
        proc = kf.run([kf.binary("dispatcher"), "--check-config", "-c", path], check=False)
        self.assertEqual(proc.returncode, 0, proc.stderr)


if __name__ == "__main__":
    unittest.main()
