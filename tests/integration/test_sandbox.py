#!/usr/bin/env python3
"""Sandboxed tests (runner.toml: sandbox = "bwrap", test_user, env_allow):
one cluster, the `script` exec plugin, the same tests/ in several
repositories, each served by its own runner through labels:

  plain      runner-plain   no sandbox: the control, where every escape works
  sandboxed  runner-sbx     bubblewrap, no network
  netok      runner-sbx     bubblewrap, the repository sets network = true
  hang       runner-sbx     a test that outlives its timeout, and a child
                            that left its process group
  asnobody   runner-nobody  bubblewrap and test_user = "nobody" (as root only)

The tests in each repository: write outside the workspace (the cluster's
temp dir, a directory on the root file system, the runner's work_dir next to
the workspace), connect to the dispatcher's port, behave (write in the
workspace, $HOME and /tmp), see only the allowed environment, run git in
the checkout (its objects are in the runner's mirror), run as the
expected user, and read the runner's secret_file (kept outside /etc/kiln
here, so that only its own covering hides it).  Skipped, saying why, only where bubblewrap or user
namespaces are not available.
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402
import runner_leftovers  # noqa: E402


def bwrap_problem(user=None):
    """None when bubblewrap can make a sandbox here (as `user`, a pwd entry,
    when given), else why not."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return "bwrap is not installed (apt-get install bubblewrap)"
    argv = [bwrap, "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
            "true"]
    preexec = None
    if user is not None:
        def preexec():
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20,
                           preexec_fn=preexec)
    except (OSError, subprocess.SubprocessError) as e:
        return "cannot run bwrap: %s" % e
    if p.returncode != 0:
        return "bwrap cannot make a sandbox here (user namespaces?): %s" % p.stderr.strip()
    return None


def nobody_problem():
    if os.geteuid() != 0:
        return "test_user needs the runner to run as root"
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        return "no user 'nobody'"
    return bwrap_problem(user)


class SandboxTest(kf.ClusterTestCase):

    def setUp(self):
        why = bwrap_problem()
        if why:
            print("test_sandbox: skipped: %s" % why, file=sys.stderr)
            self.skipTest(why)
        self.nobody_why = nobody_problem()
        if self.nobody_why:
            print("test_sandbox: test_user part skipped: %s" % self.nobody_why, file=sys.stderr)
        # In the runners' environment: one variable to be scrubbed, one allowed.
        for name, value in (("KILN_IT_SECRET", "hunter2"), ("KILN_IT_ALLOWED", "yes")):
            self.addCleanup(self.restore_env, name, os.environ.get(name))
            os.environ[name] = value

    @staticmethod
    def restore_env(name, value):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def write_tests(self, repo, name, c, expected_uid):
        """Write the common tests/ of repository `name` into `repo`."""
        # The system's python: the test user may not reach one in root's home.
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
            else shutil.which("python3")
        marker = "kiln-sandbox-%d-%s" % (os.getpid(), name)
        # Outside the workspace: the cluster's temp dir (under /tmp: not even
        # there in the sandbox's private /tmp), a directory on the root file
        # system (read-only there), and the runner's work_dir beside the
        # workspace (other jobs' workspaces: hidden, read-only).
        repo.write("tests/escape_tmp", "#!/bin/sh\necho escaped > %s\n"
                   % os.path.join(self.outside_tmp, name), executable=True)
        repo.write("tests/escape_root", "#!/bin/sh\necho escaped > %s\n"
                   % os.path.join(self.outside_root, name), executable=True)
        repo.write("tests/escape_work", "#!/bin/sh\necho escaped > \"$PWD/../%s-escaped\"\n"
                   % name, executable=True)
        repo.write("tests/connect",
                   "#!%s\nimport socket, sys\n"
                   "try:\n"
                   "    socket.create_connection(('127.0.0.1', %d), timeout=5).close()\n"
                   "except OSError as e:\n"
                   "    sys.exit('cannot connect: %%s' %% e)\n"
                   "print('connected')\n" % (python, c.port), executable=True)
        repo.write("tests/behaves",
                   "#!/bin/sh\nset -e\n"
                   "test \"$HOME\" = \"$PWD\" && test \"$TMPDIR\" = /tmp\n"
                   "echo ok > out.txt && echo ok > \"$HOME/.home.txt\"\n"
                   "echo ok > /tmp/%s && echo ok > \"$TMPDIR/%s.2\"\n"
                   "test \"$(cat out.txt /tmp/%s)\" = \"$(printf 'ok\\nok')\"\n"
                   % (marker, marker, marker), executable=True)
        repo.write("tests/env",
                   "#!/bin/sh\nenv | sort\n"
                   "test -z \"${KILN_IT_SECRET+set}\" && test \"$KILN_IT_ALLOWED\" = yes\n",
                   executable=True)
        # The checkout borrows its objects from the runner's mirror (git clone
        # --shared): git works only if the sandbox shows them.
        repo.write("tests/git_works", "#!/bin/sh\nset -e\ngit cat-file -e HEAD^{tree}\n"
                   "git log -1 --format=%H\n", executable=True)
        repo.write("tests/uid", "#!/bin/sh\nid\ntest \"$(id -u)\" = %d\n" % expected_uid,
                   executable=True)
        # The runner's secret_file, outside /etc/kiln: passes if it can read it.
        repo.write("tests/steal_secret", "#!/bin/sh\ngrep -q . %s\n" % self.secret_path,
                   executable=True)
        return marker

    def test_sandbox(self):
        with_nobody = self.nobody_why is None
        env_allow = 'env_allow = ["PATH", "KILN_IT_ALLOWED"]\n'
        # More [[repo]] tables: observer_extra comes before the fixture's own
        # [[repo]] ("plain"), which stays the last one.
        extra_repos = ""
        names = ["sandboxed", "netok", "hang"] + (["asnobody"] if with_nobody else [])
        c = self.cluster(exec_plugin="script", repo_name="plain", repo_timeout="20s",
                         repo_extra='labels = ["plain"]\n')
        self.outside_tmp = c.path("outside")
        os.mkdir(self.outside_tmp)
        os.chmod(self.outside_tmp, 0o777)
        root_tmp = "/var/tmp" if os.path.isdir("/var/tmp") else kf.SOURCE_DIR
        self.outside_root = tempfile.mkdtemp(prefix="kiln-it-sandbox-", dir=root_tmp)
        self.addCleanup(shutil.rmtree, self.outside_root, True)
        os.chmod(self.outside_root, 0o777)
        # The runners' secret (mode 600), somewhere a test could look.
        self.secret_path = kf.write_secret(os.path.join(self.outside_root, "runner.secret"),
                                           "the runners' secret, 0123456789")
        secret = "secret_file = %s\n" % kf.toml_str(self.secret_path)
        c.dispatcher_extra = "runner_secret_file = %s\n" % kf.toml_str(self.secret_path)
        repos = {"plain": c.repo}
        for name in names:
            repos[name] = kf.GitRepo(c.path("repo-" + name))
            label = {"sandboxed": "sbx", "netok": "sbx", "hang": "sbx",
                     "asnobody": "nobody"}[name]
            extra_repos += ("[[repo]]\nname = %s\nurl = %s\nbranches = [\"main\"]\n"
                            "exec = \"script\"\ntimeout = %s\nlabels = [%s]\n%s\n"
                            % (kf.toml_str(name), kf.toml_str(repos[name].path),
                               kf.toml_str("2s" if name == "hang" else "20s"),
                               kf.toml_str(label),
                               "network = true\n" if name == "netok" else ""))
        c.observer_extra = extra_repos
        c.runner_extra["runner-plain"] = 'labels = ["plain"]\n' + env_allow + secret
        c.runner_extra["runner-sbx"] = ('labels = ["sbx"]\nsandbox = "bwrap"\n' + env_allow +
                                        secret)
        c.runner_extra["runner-nobody"] = ('labels = ["nobody"]\nsandbox = "bwrap"\n'
                                           'test_user = "nobody"\n' + env_allow + secret)
        if with_nobody:
            os.chmod(c.tmp, 0o711)  # nobody must get through to its runner's work_dir

        uid = os.geteuid()
        markers = {}
        for name, repo in repos.items():
            if name == "hang":
                continue
            expected = pwd.getpwnam("nobody").pw_uid if name == "asnobody" else uid
            markers[name] = self.write_tests(repo, name, c, expected)
            self.addCleanup(self.remove, "/tmp/" + markers[name], "/tmp/%s.2" % markers[name])
        # hang: a test past the repository's 2s timeout, with one child in
        # its process group and one that left it (setsid): both must go.
        # (Their output goes elsewhere: a child holding the test's pipes
        # would hold up its result.)
        sleeper = ["sleep", "%d.7" % (60 + os.getpid() % 300)]
        repos["hang"].write("tests/hang", "#!/bin/sh\n%s >/dev/null 2>&1 &\n"
                            "setsid %s >/dev/null 2>&1 &\nsleep 30\n"
                            % (" ".join(sleeper), " ".join(sleeper)), executable=True)
        self.addCleanup(self.kill_leftovers, sleeper)

        t0 = time.monotonic()
        c.start_dispatcher()
        c.start_runner("runner-plain", slots=1)
        c.start_runner("runner-sbx", slots=3)
        if with_nobody:
            c.start_runner("runner-nobody", slots=1)
        c.start_observer()
        commits = {name: repo.commit("tests for " + name) for name, repo in repos.items()}
        results = {name: c.wait_result(commit) for name, commit in commits.items()}
        sys.stderr.write("test_sandbox: all %d results in %.1fs\n"
                         % (len(results), time.monotonic() - t0))

        def outcomes(name):
            return kf.tests_by_name(results[name])

        def log(name):
            with open(os.path.join(c.results_dir, commits[name] + ".log"),
                      errors="replace") as f:
                return f.read()

        good = {"behaves": "passed", "env": "passed", "git_works": "passed", "uid": "passed"}
        # The control: without the sandbox every escape works, so the
        # sandboxed failures below are the sandbox's doing.
        self.assertEqual(outcomes("plain"), dict(good, escape_tmp="passed", escape_root="passed",
                                                 escape_work="passed", connect="passed",
                                                 steal_secret="passed"),
                         log("plain"))
        self.assertEqual(results["plain"]["runner"], "runner-plain")
        self.assertTrue(os.path.exists(os.path.join(self.outside_tmp, "plain")))
        self.assertTrue(os.path.exists(os.path.join(self.outside_root, "plain")))
        self.assertTrue(os.path.exists(c.path("runner-plain-work", "workspaces",
                                              "plain-escaped")))
        self.assertTrue(os.path.exists("/tmp/" + markers["plain"]))  # the host's /tmp

        confined = ["sandboxed", "netok"] + (["asnobody"] if with_nobody else [])
        for name in confined:
            with self.subTest(repo=name):
                expected = dict(good, escape_tmp="failed", escape_root="failed",
                                escape_work="failed", steal_secret="failed",
                                connect="passed" if name == "netok" else "failed")
                self.assertEqual(outcomes(name), expected, log(name))
                self.assertEqual(results[name]["outcome"], "failed")
                runner = "runner-nobody" if name == "asnobody" else "runner-sbx"
                self.assertEqual(results[name]["runner"], runner)
                # Nothing it wrote outside its workspace is anywhere outside.
                self.assertFalse(os.path.exists(os.path.join(self.outside_tmp, name)))
                self.assertFalse(os.path.exists(os.path.join(self.outside_root, name)))
                self.assertFalse(os.path.exists(c.path(runner + "-work", "workspaces",
                                                       name + "-escaped")))
                self.assertFalse(os.path.exists("/tmp/" + markers[name]))  # a private /tmp
                text = log(name)
                self.assertNotIn("hunter2", text)  # env printed it all: the secret is not there
                self.assertIn("KILN_IT_ALLOWED=yes", text)
                if name != "netok":
                    self.assertIn("cannot connect", text)
        if with_nobody:
            self.assertIn("uid=%d(nobody)" % pwd.getpwnam("nobody").pw_uid, log("asnobody"))

        # The hang: a timeout, and nothing of it left running.
        self.assertEqual(results["hang"]["outcome"], "timeout", log("hang"))
        self.assertEqual(outcomes("hang"), {"hang": "timeout"})
        deadline = time.monotonic() + 5
        while runner_leftovers.pids_of(sleeper) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(runner_leftovers.pids_of(sleeper), [],
                         "the timed-out test's children still run")

    def test_leftovers_after_sigkill(self):
        """kiln-runner(8), LEFTOVER TESTS, with the tests in bubblewrap."""
        c = self.cluster(exec_plugin="script", runner_stop_timeout="1s")
        c.runner_extra["runner-1"] = 'sandbox = "bwrap"\n'
        runner_leftovers.check_leftovers_killed(self, c, sandboxed=True)

    @staticmethod
    def kill_leftovers(argv):
        """Should the test fail: the sleepers our hang test started, by PID."""
        for pid in runner_leftovers.pids_of(argv):
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    @staticmethod
    def remove(*paths):
        for p in paths:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    unittest.main()
