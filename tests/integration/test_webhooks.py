#!/usr/bin/env python3
"""Forge push webhooks in: POST /hooks/<forge>/<repo> on the dispatcher's
HTTP port, verified with the [[webhook]] secret of that forge and repository.

The observer polls only every 60 s here, so a commit the dispatcher knows
within a second of the POST can only have come from the webhook.  Per forge
(GitHub, Gitea, GitLab): a correctly signed push is relayed and tested; a
wrongly signed one gets 401, is logged with the peer and queues nothing; a
repository without a [[webhook]] gets 404; an event that is not a push is
answered and ignored.

Run with ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_webhooks.py -v
"""

import hashlib
import hmac
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402
from kiln_http_cluster import HttpCluster  # noqa: E402

LONG_INTERVAL = "60s"  # no regular poll during a test
KNOWN_WITHIN = 1.0     # POST → the dispatcher has the commit
NOTIFIED_RESULT = 10.0  # POST → result, with a generous margin
QUIET = 1.5            # after a refused POST: long enough for a relayed notify to show
PASSING_SCRIPT = "#!/bin/sh\nexit 0\n"
SECRETS = {"github": "github-secret-0123456789", "gitea": "gitea-secret-0123456789",
           "gitlab": "gitlab-secret-0123456789"}


def push_body(commit, branch="main"):
    return json.dumps({"ref": "refs/heads/" + branch, "after": commit}).encode()


def signed_headers(forge, body, secret):
    """The headers FORGE sends with a push signed (or tokened) with SECRET."""
    if forge == "gitlab":
        return {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}
    mac = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    event = "X-GitHub-Event" if forge == "github" else "X-Gitea-Event"
    return {event: "push", "X-Hub-Signature-256": mac, "Content-Type": "application/json"}


class WebhookTest(kf.ClusterTestCase):
    def setUp(self):
        c = HttpCluster(self, exec_plugin="script", interval=LONG_INTERVAL)
        self._kiln_clusters.append(c)
        tables = ""
        for forge, secret in SECRETS.items():
            tables += ("\n[[webhook]]\nrepo = \"example\"\nforge = \"%s\"\nsecret_file = %s\n"
                       % (forge, kf.toml_str(c.secret_file(forge + ".secret", secret))))
        c.tables = tables
        c.repo.write("tests/ok", PASSING_SCRIPT, executable=True)
        self.first = c.repo.commit("first")
        c.start()
        # The observer's first poll (at start) finds the first commit.
        self.assertEqual(c.wait_result(self.first)["outcome"], "passed")
        self.c = c

    def known(self, commit):
        return bool(self.c.jobs_of(commit))

    def post(self, forge, body, headers, repo="example"):
        return self.c.http("POST", "/hooks/%s/%s" % (forge, repo), body, headers)

    def test_signed_push_is_tested_at_once(self):
        c = self.c
        for forge, secret in SECRETS.items():
            with self.subTest(forge=forge):
                commit = c.repo.commit("pushed via " + forge)
                body = push_body(commit)
                started = time.monotonic()
                status, _, answer = self.post(forge, body, signed_headers(forge, body, secret))
                self.assertEqual(status, 202, answer)
                c.wait_until(lambda: self.known(commit), KNOWN_WITHIN,
                             "the dispatcher to have commit %s after the %s webhook"
                             % (commit[:12], forge))
                self.assertLess(time.monotonic() - started, KNOWN_WITHIN)
                self.assertEqual(c.wait_result(commit, timeout=NOTIFIED_RESULT)["outcome"],
                                 "passed")
        self.assertTrue(c.log_has("dispatcher", r"webhook gitlab/example: peer 127\.0\.0\.1:\d+: "
                                  r"push to main; relayed to 1 observer"))

    def test_wrong_signature_is_401_and_queues_nothing(self):
        c = self.c
        commit = c.repo.commit("not announced")
        body = push_body(commit)
        for forge in SECRETS:
            with self.subTest(forge=forge):
                headers = signed_headers(forge, body, "not-the-secret-0123456789")
                status, _, _ = self.post(forge, body, headers)
                self.assertEqual(status, 401)
                self.assertTrue(c.log_has(
                    "dispatcher", r"webhook %s/example: peer 127\.0\.0\.1:\d+: bad or missing"
                    % forge))
        # A body altered after signing is refused as well.
        headers = signed_headers("github", body, SECRETS["github"])
        status, _, _ = self.post("github", body.replace(b"main", b"mainx"), headers)
        self.assertEqual(status, 401)
        time.sleep(QUIET)
        self.assertFalse(self.known(commit))
        self.assertFalse(c.log_has("observer", r"notified; polling now"))

    def test_unknown_repository_is_404(self):
        body = push_body("0" * 40)
        for forge, secret in SECRETS.items():
            status, _, _ = self.post(forge, body, signed_headers(forge, body, secret),
                                     repo="no-such-repo")
            self.assertEqual(status, 404)
        status, _, _ = self.post("bitbucket", body, {})
        self.assertEqual(status, 404)

    def test_other_events_are_answered_and_ignored(self):
        c = self.c
        commit = c.repo.commit("pinged only")
        body = push_body(commit)
        headers = signed_headers("github", body, SECRETS["github"])
        headers["X-GitHub-Event"] = "ping"
        status, _, _ = self.post("github", body, headers)
        self.assertEqual(status, 200)
        time.sleep(QUIET)
        self.assertFalse(self.known(commit))


if __name__ == "__main__":
    unittest.main()
