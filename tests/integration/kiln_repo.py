"""The repository under test: a real git repository in the temp dir, and the
test suites the integration tests commit to it."""

import os

from kiln_env import run


class GitRepo:
    """A real git repository (non-bare, branch main) that commits with a fixed
    identity and never reads the user's git config."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path)
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("GIT_"):
                del self.env[k]
        self.env.update({
            "GIT_AUTHOR_NAME": "Kiln Test", "GIT_AUTHOR_EMAIL": "kiln@example.invalid",
            "GIT_COMMITTER_NAME": "Kiln Test", "GIT_COMMITTER_EMAIL": "kiln@example.invalid",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
            "HOME": path,
        })
        self.git("init", "-q")
        self.git("symbolic-ref", "HEAD", "refs/heads/main")

    def git(self, *args):
        return run(["git", "-C", self.path] + list(args), env=self.env).stdout

    def write(self, relpath, text, executable=False):
        path = os.path.join(self.path, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755 if executable else 0o644)

    def remove(self, relpath):
        self.git("rm", "-q", "--", relpath)

    def commit(self, message):
        """Commit everything in the work tree; returns the full commit id."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").strip()


PASSING_UNITTEST = """import unittest


class ArithmeticTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(1 + 1, 2)

    def test_mul(self):
        self.assertEqual(2 * 3, 6)
"""

FAILING_UNITTEST = """import unittest


class ArithmeticTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(1 + 1, 2)

    def test_mul(self):
        self.assertEqual(2 * 3, 7, "multiplication is broken")
"""


# A test that sleeps as long as tests/sleep_ms (in the same commit) says, so
# each commit can take its own time: repo.write("tests/sleep_ms", "300").
SLEEPY_UNITTEST = """import os
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class Sleepy(unittest.TestCase):
    def test_sleep(self):
        with open(os.path.join(HERE, "sleep_ms")) as f:
            ms = int(f.read().strip() or "0")
        time.sleep(ms / 1000.0)
"""


def hanging_unittest(marker, seconds=30):
    """A test that starts a child (`sleep`), writes "<its pid> <child pid>" to
    the file `marker` (atomically) and sleeps `seconds`: for timeouts."""
    return ("import os\nimport subprocess\nimport time\nimport unittest\n\n\n"
            "class Hang(unittest.TestCase):\n"
            "    def test_hang(self):\n"
            "        child = subprocess.Popen([\"sleep\", \"%d\"])\n"
            "        tmp = %r + \".tmp\"\n"
            "        with open(tmp, \"w\") as f:\n"
            "            f.write(\"%%d %%d\\n\" %% (os.getpid(), child.pid))\n"
            "        os.rename(tmp, %r)\n"
            "        time.sleep(%d)\n"
            "        child.wait()\n" % (seconds, marker, marker, seconds))
