#!/usr/bin/env python3
"""Command lines of kiln-observer, kiln-dispatcher, kiln-runner and kilnctl:
--help, --version, --check-config on good and broken configs, missing
plugins, usage errors; and the shipped etc/kiln/*.toml files.

Run with ctest (label "integration"), or directly from a build:
    KILN_BUILD_DIR=build python3 tests/integration/test_cli.py -v
"""

import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402

DAEMONS = ("observer", "dispatcher", "runner")
ETC_DIR = os.path.join(kf.SOURCE_DIR, "etc", "kiln")


def run(argv):
    return kf.run(argv, timeout=30, check=False)


class CliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kiln-cli-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.plugin_dir = kf.plugin_dir()

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def good_config(self, daemon):
        """A minimal valid config for daemon, with plugin_dir set."""
        pd = kf.toml_array([self.plugin_dir])
        if daemon == "observer":
            return ("[observer]\ndispatcher = \"127.0.0.1:1\"\nplugin_dir = %s\n"
                    "\n[[repo]]\nname = \"example\"\nurl = %s\n"
                    % (pd, kf.toml_str(self.tmp)))
        if daemon == "dispatcher":
            return ("[dispatcher]\nlisten = \"127.0.0.1:0\"\nplugin_dir = %s\n"
                    "\n[[report]]\nplugin = \"files\"\ndir = %s\n"
                    % (pd, kf.toml_str(os.path.join(self.tmp, "results"))))
        return ("[runner]\ndispatcher = \"127.0.0.1:1\"\nname = \"r1\"\nplugin_dir = %s\n"
                "work_dir = %s\n" % (pd, kf.toml_str(os.path.join(self.tmp, "work"))))

    def check_config(self, daemon, text, name=None):
        path = self.write(name or daemon + ".toml", text)
        return path, run([kf.binary(daemon), "--check-config", "-c", path])

    def assert_rejected(self, proc, *needles):
        self.assertEqual(proc.returncode, 1, "stdout: %s\nstderr: %s" % (proc.stdout, proc.stderr))
        for needle in needles:
            self.assertIn(needle, proc.stderr)

    # -- --help, --version --

    def test_help_and_version(self):
        for daemon in DAEMONS:
            with self.subTest(daemon=daemon):
                proc = run([kf.binary(daemon), "--help"])
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertIn("--check-config", proc.stdout)
                self.assertIn("kiln-" + daemon, proc.stdout)
                proc = run([kf.binary(daemon), "--version"])
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertRegex(proc.stdout, r"^kiln-%s \d+\.\d+\.\d+" % daemon)
                proc = run([kf.binary(daemon), "--no-such-option"])
                self.assertEqual(proc.returncode, 2, proc.stderr)

    def test_kilnctl_usage(self):
        ctl = kf.binary("kilnctl")
        proc = run([ctl, "--help"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        for word in ("status", "runners", "jobs", "result", "--json"):
            self.assertIn(word, proc.stdout)
        proc = run([ctl, "--version"])
        self.assertEqual(proc.returncode, 0)
        self.assertRegex(proc.stdout, r"^kilnctl \d+\.\d+\.\d+")
        for argv in (["frobnicate"], [], ["result"], ["status", "extra"], ["--no-such-option"]):
            with self.subTest(argv=argv):
                proc = run([ctl] + argv)
                self.assertEqual(proc.returncode, 2, "%s: %s" % (argv, proc.stderr))
                self.assertTrue(proc.stderr, "a usage error says why on stderr")
        proc = run([ctl, "frobnicate"])
        self.assertIn("frobnicate", proc.stderr)

    def test_kilnctl_no_dispatcher(self):
        # Nothing listens on this port: exit 1, quickly, with the address named.
        port = kf.free_port()
        proc = run([kf.binary("kilnctl"), "-d", "127.0.0.1:%d" % port, "-t", "5", "status"])
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("127.0.0.1:%d" % port, proc.stderr)

    # -- --check-config --

    def test_good_configs(self):
        for daemon in DAEMONS:
            with self.subTest(daemon=daemon):
                path, proc = self.check_config(daemon, self.good_config(daemon))
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertIn("OK", proc.stdout)

    def test_wrong_type(self):
        cases = {
            "observer": ("[observer]\ninterval = true\n", 2, "observer.interval"),
            "dispatcher": ("[dispatcher]\nmax_attempts = \"three\"\n", 2,
                           "dispatcher.max_attempts"),
            "runner": ("[runner]\nname = \"r1\"\nslots = \"two\"\n", 3, "runner.slots"),
        }
        for daemon, (text, line, key) in cases.items():
            with self.subTest(daemon=daemon):
                path, proc = self.check_config(daemon, text, "bad-type-%s.toml" % daemon)
                self.assert_rejected(proc, "%s:%d:" % (path, line), key)
        # The runner's message also says what was expected.
        path, proc = self.check_config("runner", cases["runner"][0], "slots.toml")
        self.assertRegex(proc.stderr, r"slots\.toml:3:\d+: runner\.slots: expected an integer")

    def test_unknown_key(self):
        for daemon in DAEMONS:
            with self.subTest(daemon=daemon):
                text = self.good_config(daemon).replace(
                    "[%s]\n" % daemon, "[%s]\nfrobnicate = 1\n" % daemon, 1)
                path, proc = self.check_config(daemon, text, "unknown-%s.toml" % daemon)
                self.assert_rejected(proc, "%s:2:" % path, "%s.frobnicate" % daemon,
                                     "unknown key")
        # In an array of tables and at the top level too.
        text = self.good_config("observer") + "brnaches = [\"main\"]\n"
        path, proc = self.check_config("observer", text, "typo-repo.toml")
        self.assert_rejected(proc, "%s:" % path, "repo[0].brnaches")
        path, proc = self.check_config("dispatcher", "[dispatcher]\n[dispather]\nlisten = 1\n",
                                       "typo-table.toml")
        self.assert_rejected(proc, "%s:2:" % path, "dispather")

    def test_syntax_error(self):
        for daemon in DAEMONS:
            with self.subTest(daemon=daemon):
                text = "[%s]\n# fine\nkey = \"unterminated\n" % daemon
                path, proc = self.check_config(daemon, text, "syntax-%s.toml" % daemon)
                self.assert_rejected(proc, "%s:3:" % path)

    def test_missing_config_file(self):
        missing = os.path.join(self.tmp, "nope.toml")
        for daemon in DAEMONS:
            with self.subTest(daemon=daemon):
                proc = run([kf.binary(daemon), "--check-config", "-c", missing])
                self.assert_rejected(proc, missing)

    def test_bad_values(self):
        cases = [
            ("observer", self.good_config("observer") + "mode = \"sometimes\"\n",
             "repo[0].mode"),
            ("observer", self.good_config("observer").replace("\"example\"", "\"../x\""),
             "repo[0].name"),
            ("dispatcher", "[dispatcher]\nheartbeat_interval = \"5s\"\nrunner_timeout = \"2s\"\n",
             "dispatcher.runner_timeout"),
            ("runner", "[runner]\nname = \"r1\"\nslots = 0\n", "runner.slots"),
            ("runner", "[runner]\nname = \"r1\"\nheartbeat_interval = \"soon\"\n",
             "runner.heartbeat_interval"),
        ]
        for i, (daemon, text, key) in enumerate(cases):
            with self.subTest(daemon=daemon, key=key):
                path, proc = self.check_config(daemon, text, "value-%d.toml" % i)
                self.assert_rejected(proc, path, key)

    def test_missing_plugin(self):
        pd = kf.toml_array([self.plugin_dir])
        cases = {
            "observer": self.good_config("observer") + "vcs = \"nosuchvcs\"\n",
            "dispatcher": "[dispatcher]\nplugin_dir = %s\n\n[[report]]\nplugin = \"nosuchreport\"\n"
                          % pd,
            "runner": "[runner]\nname = \"r1\"\nplugin_dir = %s\nexec = [\"unittest\", "
                      "\"nosuchexec\"]\n" % pd,
        }
        for daemon, text in cases.items():
            plugin = re.search(r"nosuch\w+", text).group(0)
            with self.subTest(daemon=daemon):
                path, proc = self.check_config(daemon, text, "missing-%s.toml" % daemon)
                self.assert_rejected(proc, path, "'%s'" % plugin,
                                     os.path.join(self.plugin_dir, plugin + ".so"))

    def test_plugin_config_checked(self):
        # A plugin's own keys are checked too: unknown keys and missing required ones.
        text = self.good_config("dispatcher") + "colour = \"blue\"\n"
        path, proc = self.check_config("dispatcher", text, "report-key.toml")
        self.assert_rejected(proc, path, "report[0].colour")
        text = self.good_config("runner") + "\n[plugin.script]\nparallel = \"lots\"\n"
        path, proc = self.check_config("runner", text, "plugin-key.toml")
        self.assert_rejected(proc, path, "script")
        text = self.good_config("runner") + "\n[plugin.nosuch]\nx = 1\n"
        path, proc = self.check_config("runner", text, "plugin-table.toml")
        self.assert_rejected(proc, path, "nosuch")


class ShippedConfigTest(unittest.TestCase):
    """etc/kiln/*.toml: valid as shipped, every documented key real, every key
    the code reads documented."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kiln-etc-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.plugin_dir = kf.plugin_dir()

    def read(self, daemon):
        with open(os.path.join(ETC_DIR, daemon + ".toml")) as f:
            return f.read()

    def with_plugin_dir(self, daemon, text):
        """The text with plugin_dir set to the build's plugins, right under
        the [daemon] header (the installed plugin dir does not exist here)."""
        header = "\n[%s]\n" % daemon
        self.assertIn(header, text, "etc/kiln/%s.toml has no [%s] table" % (daemon, daemon))
        return text.replace(header, header + "plugin_dir = %s\n"
                            % kf.toml_array([self.plugin_dir]), 1)

    def secret_file(self):
        return kf.write_secret(os.path.join(self.tmp, "secret"),
                               "a secret of more than sixteen bytes")

    def check(self, daemon, text, name):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        proc = run([kf.binary(daemon), "--check-config", "-c", path])
        self.assertEqual(proc.returncode, 0, "%s:\n%s\n%s" % (name, proc.stderr, text))

    def test_shipped_configs_pass(self):
        for daemon in DAEMONS:
            with self.subTest(daemon=daemon):
                self.check(daemon, self.with_plugin_dir(daemon, self.read(daemon)),
                           daemon + ".toml")

    def test_every_documented_key_is_accepted(self):
        # Uncomment every "#key = value" and "#[table]" line: still valid.
        for daemon in DAEMONS:
            with self.subTest(daemon=daemon):
                lines = []
                for line in self.read(daemon).splitlines():
                    if re.match(r"^#(\[|[a-z_]+ = )", line) and not line.startswith("#plugin_dir"):
                        line = line[1:]
                    # Secret and token files named there do not exist here: a real one.
                    m = re.match(r"^([a-z_]*(?:secret|token)_file) = ", line)
                    if m:
                        line = "%s = %s" % (m.group(1), kf.toml_str(self.secret_file()))
                    lines.append(line)
                self.check(daemon, self.with_plugin_dir(daemon, "\n".join(lines) + "\n"),
                           daemon + "-all.toml")

    def test_every_key_read_is_documented(self):
        getter = re.compile(r"(?:\.(?:string|required_string|optional_string|strings|integer|"
                            r"boolean|duration_ms)\(|secret_from_config\(\w+,)\s*\"([a-z_]+)\"")
        for daemon in DAEMONS:
            with self.subTest(daemon=daemon):
                src = os.path.join(kf.SOURCE_DIR, "daemons", daemon, daemon + "_config.cpp")
                with open(src) as f:
                    keys = set(getter.findall(f.read()))
                self.assertTrue(keys, src)
                text = self.read(daemon)
                missing = sorted(k for k in keys
                                 if not re.search(r"(?m)^#?%s = " % re.escape(k), text))
                self.assertEqual(missing, [], "etc/kiln/%s.toml does not list %s (read in %s)"
                                 % (daemon, ", ".join(missing), src))

    def test_dispatcher_reports_to_files(self):
        text = self.read("dispatcher")
        self.assertRegex(text, r"(?ms)^\[\[report\]\]\n(#[^\n]*\n)*plugin = \"files\"")
        self.assertRegex(text, r"(?m)^dir = \"/var/lib/kiln/results\"")
        self.assertRegex(self.read("observer"), r"(?m)^#\[\[repo\]\]")


if __name__ == "__main__":
    unittest.main()
