#!/usr/bin/env python3
"""Installing Kiln: the install tree, an out-of-tree plugin, the .deb.

- `DESTDIR=TMP cmake --install BUILD --prefix /usr` lays out every file:
  kilnctl in bin/, the daemons in sbin/, the plugins in lib/kiln/plugins/,
  include/kiln/plugin.h, kiln-plugin.pc, /etc/kiln/*.toml with their empty
  conf.d/NAME/ drop-in directories, the systemd units of etc/systemd and the
  man pages (when man/ has its CMakeLists.txt), and nothing elsewhere;
- tests/plugin-example (the report plugin "marker") is built against that
  install only, through `pkg-config kiln-plugin` (PKG_CONFIG_SYSROOT_DIR),
  copied into a plugin directory, and named in a conf.d drop-in of the
  installed kiln-dispatcher, which loads it and reports a commit through it;
- `cpack -G DEB` (in a temp dir, from the build tree) makes
  kiln_VERSION_ARCH.deb with computed Depends plus git and python3, the
  configs as conffiles and the maintainer scripts; `dpkg-deb -x` unpacks it
  into a scratch root, where each daemon passes --check-config on the
  packaged default config (completed by a drop-in pointing plugin_dir and
  the state directories into the scratch root), and a bad drop-in is
  refused naming its own file and line.

The build tree must be built (ctest runs after the build); nothing is
rebuilt.  Run with ctest (label "integration"), or directly:
    KILN_BUILD_DIR=build python3 tests/integration/test_install.py -v
"""

import glob
import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln_fixture as kf  # noqa: E402

BUILD = os.path.abspath(kf._build_dir())
CMAKE = os.environ.get("KILN_CMAKE") or shutil.which("cmake")
CPACK = os.environ.get("KILN_CPACK") or shutil.which("cpack")
EXAMPLE = os.path.join(kf.SOURCE_DIR, "tests", "plugin-example")
DAEMONS = ("observer", "dispatcher", "runner")
MAN_PAGES = ("man8/kiln-observer.8", "man8/kiln-dispatcher.8", "man8/kiln-runner.8",
             "man1/kilnctl.1", "man5/kiln.toml.5", "man7/kiln-plugin.7")

# Bounds, in seconds.
INSTALL_TIMEOUT = 60.0
MAKE_TIMEOUT = 60.0
CPACK_TIMEOUT = 90.0
TOOL_TIMEOUT = 20.0


def cache_value(name):
    """A variable of BUILD/CMakeCache.txt, or None."""
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        for line in f:
            m = re.match(r"%s:[A-Z]+=(.*)$" % re.escape(name), line.rstrip("\n"))
            if m:
                return m.group(1)
    return None


def built_plugins():
    """Names of the plugins the build made (BUILD/plugins/NAME.so)."""
    names = sorted(os.path.basename(p)[:-3]
                   for p in glob.glob(os.path.join(BUILD, "plugins", "*.so")))
    if not names:
        raise AssertionError("no plugins in %s/plugins: build first" % BUILD)
    return names


def expected_units():
    """Unit file names etc/systemd provides (NAME.service, or NAME.service.in)."""
    units = set()
    for pattern in ("*.service", "*.socket", "*.timer", "*.service.in"):
        for p in glob.glob(os.path.join(kf.SOURCE_DIR, "etc", "systemd", pattern)):
            name = os.path.basename(p)
            units.add(name[:-3] if name.endswith(".in") else name)
    return sorted(units)


def read(path):
    with open(path) as f:
        return f.read()


def tool(name):
    return shutil.which(name)


class InstallTree:
    """Checks shared by the DESTDIR install and the unpacked package: `root`
    holds usr/ and etc/ as they would be on a system."""

    def check_tree(self, root, units=True):
        usr = os.path.join(root, "usr")
        for program in ["bin/kilnctl"] + ["sbin/kiln-" + d for d in DAEMONS]:
            path = os.path.join(usr, program)
            self.assertTrue(os.path.isfile(path) and os.access(path, os.X_OK),
                            "%s: not an executable file" % path)
        plugin_dir = os.path.join(usr, "lib", "kiln", "plugins")
        for name in built_plugins():
            self.assertTrue(os.path.isfile(os.path.join(plugin_dir, name + ".so")),
                            "%s/%s.so missing" % (plugin_dir, name))
        header = os.path.join(usr, "include", "kiln", "plugin.h")
        self.assertEqual(read(header),
                         read(os.path.join(kf.SOURCE_DIR, "plugins", "include", "kiln",
                                           "plugin.h")))
        pcs = glob.glob(os.path.join(usr, "lib", "**", "kiln-plugin.pc"), recursive=True)
        self.assertEqual(len(pcs), 1, "kiln-plugin.pc: %r" % pcs)
        pc = read(pcs[0])
        self.assertIn("\nprefix=/usr\n", "\n" + pc)
        self.assertIn("plugindir=${prefix}/lib/kiln/plugins", pc)
        self.assertIn("Requires: libuv", pc)
        self.assertEqual(os.path.basename(os.path.dirname(pcs[0])), "pkgconfig")

        etc = os.path.join(root, "etc", "kiln")
        for d in DAEMONS:
            self.assertEqual(read(os.path.join(etc, d + ".toml")),
                             read(os.path.join(kf.SOURCE_DIR, "etc", "kiln", d + ".toml")))
            dropins = os.path.join(etc, "conf.d", d)
            self.assertTrue(os.path.isdir(dropins), "%s: no drop-in directory" % dropins)
            self.assertEqual(os.listdir(dropins), [])
        self.assertTrue(os.access(os.path.join(etc, "post-receive"), os.X_OK))

        if units:
            unit_dir = os.path.join(usr, "lib", "systemd", "system")
            for unit in expected_units():
                self.assertTrue(os.path.isfile(os.path.join(unit_dir, unit)),
                                "%s/%s missing" % (unit_dir, unit))
        if os.path.exists(os.path.join(kf.SOURCE_DIR, "man", "CMakeLists.txt")):
            man = os.path.join(usr, "share", "man")
            for page in MAN_PAGES:
                found = glob.glob(os.path.join(man, page)) + glob.glob(os.path.join(man, page + ".gz"))
                self.assertTrue(found, "%s/%s missing" % (man, page))
        else:
            print("note: man/CMakeLists.txt absent: man pages not checked", file=sys.stderr)

        # Nothing outside /usr and /etc (no /usr/local, no /var written).
        self.assertEqual(sorted(e for e in os.listdir(root) if not e.startswith(".")),
                         ["etc", "usr"])
        self.assertNotIn("local", os.listdir(usr))


class DestdirInstall(InstallTree, unittest.TestCase):
    """`cmake --install` into a DESTDIR, then a plugin built against it."""

    @classmethod
    def setUpClass(cls):
        if not CMAKE:
            raise unittest.SkipTest("cmake not found")
        cls.tmp = tempfile.mkdtemp(prefix="kiln-install-")
        cls.root = os.path.join(cls.tmp, "root")
        env = dict(os.environ, DESTDIR=cls.root)
        cls.install = kf.run([CMAKE, "--install", BUILD, "--prefix", "/usr"],
                             timeout=INSTALL_TIMEOUT, env=env)

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("KILN_KEEP_TMP") != "1":
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_tree(self):
        self.check_tree(self.root)
        # The installed programs run (their libraries resolved from the system).
        for d in DAEMONS:
            proc = kf.run([os.path.join(self.root, "usr", "sbin", "kiln-" + d), "--version"],
                          timeout=TOOL_TIMEOUT)
            self.assertEqual(proc.stdout.split()[0], "kiln-" + d)
        kf.run([os.path.join(self.root, "usr", "bin", "kilnctl"), "--help"],
               timeout=TOOL_TIMEOUT)

    def pkg_config_env(self):
        pcs = glob.glob(os.path.join(self.root, "usr", "lib", "**", "kiln-plugin.pc"),
                        recursive=True)
        self.assertEqual(len(pcs), 1)
        return dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]),
                    PKG_CONFIG_SYSROOT_DIR=self.root)

    def test_out_of_tree_plugin(self):
        if not tool("pkg-config") or not tool("make") or not tool("cc"):
            self.skipTest("pkg-config, make or cc not found")
        env = self.pkg_config_env()
        cflags = kf.run(["pkg-config", "--cflags", "kiln-plugin"], env=env,
                        timeout=TOOL_TIMEOUT).stdout.split()
        self.assertIn("-I" + os.path.join(self.root, "usr", "include"), cflags)
        # Only the install: nothing of the source tree.
        self.assertFalse([f for f in cflags if kf.SOURCE_DIR in f], cflags)

        # Build tests/plugin-example in a copy (the source tree stays clean).
        src = os.path.join(self.tmp, "plugin-example")
        shutil.copytree(EXAMPLE, src)
        kf.run(["make", "-C", src, "CC=cc"], env=env, timeout=MAKE_TIMEOUT)
        extra = os.path.join(self.tmp, "extra-plugins")
        os.makedirs(extra)
        shutil.copy(os.path.join(src, "marker.so"), extra)

        # A cluster of the installed daemons and plugins; the dispatcher's
        # conf.d drop-in adds the plugin directory and a [[report]] marker.
        installed = {
            "KILN_OBSERVER": os.path.join(self.root, "usr", "sbin", "kiln-observer"),
            "KILN_DISPATCHER": os.path.join(self.root, "usr", "sbin", "kiln-dispatcher"),
            "KILN_RUNNER": os.path.join(self.root, "usr", "sbin", "kiln-runner"),
            "KILNCTL": os.path.join(self.root, "usr", "bin", "kilnctl"),
            "KILN_PLUGIN_DIR": os.path.join(self.root, "usr", "lib", "kiln", "plugins"),
        }
        saved = {k: os.environ.get(k) for k in installed}
        os.environ.update(installed)
        try:
            self.run_cluster_with_marker(extra, installed["KILN_PLUGIN_DIR"])
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def run_cluster_with_marker(self, extra, installed_plugins):
        c = kf.Cluster(self)
        marker = c.path("marker.txt")
        dropins = c.path("conf.d", "dispatcher")
        os.makedirs(dropins)
        with open(os.path.join(dropins, "50-marker.toml"), "w") as f:
            f.write("[dispatcher]\n"
                    "plugin_dir = %s\n"
                    "\n[[report]]\n"
                    "plugin = \"marker\"\n"
                    "file = %s\n" % (kf.toml_array([extra, installed_plugins]),
                                     kf.toml_str(marker)))
        c.repo.write("tests/test_arith.py", kf.PASSING_UNITTEST)
        c.start()
        commit = c.repo.commit("arithmetic works")
        res = c.wait_result(commit)  # the files reporter, from the main config
        self.assertEqual(res["outcome"], "passed")
        line = "%s passed %s main\n" % (commit, c.repo_name)

        def marked():
            return os.path.exists(marker) and line in read(marker)
        c.wait_until(marked, 15.0, "the marker plugin's line %r in %s" % (line, marker))
        c.stop()
        self.assertEqual(read(marker), line)  # once per commit


class Package(InstallTree, unittest.TestCase):
    """cpack -G DEB, unpacked with dpkg-deb -x and run from there."""

    @classmethod
    def setUpClass(cls):
        missing = [t for t in ("dpkg-deb", "dpkg-shlibdeps", "file") if not tool(t)]
        if not CPACK or missing:
            raise unittest.SkipTest("cannot build a .deb here: missing %s"
                                    % ", ".join((["cpack"] if not CPACK else []) + missing))
        cls.tmp = tempfile.mkdtemp(prefix="kiln-deb-")
        out = os.path.join(cls.tmp, "out")
        kf.run([CPACK, "-G", "DEB", "-B", out, "--config",
                os.path.join(BUILD, "CPackConfig.cmake")],
               timeout=CPACK_TIMEOUT, cwd=BUILD)
        arch = kf.run(["dpkg", "--print-architecture"], timeout=TOOL_TIMEOUT).stdout.strip()
        version = cache_value("CMAKE_PROJECT_VERSION")
        cls.deb = os.path.join(out, "kiln_%s_%s.deb" % (version, arch))
        if not os.path.isfile(cls.deb):
            raise AssertionError("%s not made; %s holds %r"
                                 % (cls.deb, out, os.listdir(out)))
        cls.root = os.path.join(cls.tmp, "root")
        kf.run(["dpkg-deb", "-x", cls.deb, cls.root], timeout=TOOL_TIMEOUT)
        cls.control = os.path.join(cls.tmp, "control")
        kf.run(["dpkg-deb", "-e", cls.deb, cls.control], timeout=TOOL_TIMEOUT)

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("KILN_KEEP_TMP") != "1":
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def field(self, name):
        return kf.run(["dpkg-deb", "-f", self.deb, name], timeout=TOOL_TIMEOUT).stdout.strip()

    def test_control(self):
        self.assertEqual(self.field("Package"), "kiln")
        depends = [d.strip().split()[0] for d in self.field("Depends").split(",")]
        # Computed by dpkg-shlibdeps, and the programs the plugins run.
        for dep in ("libc6", "libuv1", "libsqlite3-0", "libstdc++6", "git", "python3",
                    "adduser"):
            self.assertIn(dep, depends, "Depends: %s" % self.field("Depends"))
        conffiles = read(os.path.join(self.control, "conffiles")).split()
        for d in DAEMONS:
            self.assertIn("/etc/kiln/%s.toml" % d, conffiles)
        for script in ("postinst", "prerm", "postrm"):
            path = os.path.join(self.control, script)
            self.assertTrue(os.access(path, os.X_OK), "%s: not executable" % script)
            kf.run(["sh", "-n", path], timeout=TOOL_TIMEOUT)
        postinst = read(os.path.join(self.control, "postinst"))
        self.assertRegex(postinst, r"adduser --system --group .*--home /var/lib/kiln")
        self.assertRegex(postinst, r"(?s)getent passwd kiln-test.*adduser --system --group .*"
                                   r"--shell /usr/sbin/nologin .*kiln-test")
        # The data stays: no rm, no deluser.
        postrm = read(os.path.join(self.control, "postrm"))
        self.assertNotRegex(postrm, r"(?m)^\s*(rm|deluser|userdel|delgroup)\b")

    def test_files(self):
        self.check_tree(self.root)
        # Every file belongs to root in the archive.
        listing = kf.run(["dpkg-deb", "-c", self.deb], timeout=TOOL_TIMEOUT).stdout
        owners = {line.split()[1] for line in listing.splitlines() if line.strip()}
        self.assertEqual(owners, {"root/root"})

    def test_compiled_in_paths(self):
        prefix = cache_value("CMAKE_INSTALL_PREFIX")
        if prefix != "/usr":
            self.skipTest("build tree configured for %s, not /usr: its package's daemons "
                          "look for their configs under %s/etc" % (prefix, prefix))
        for d in DAEMONS:
            proc = kf.run([os.path.join(self.root, "usr", "sbin", "kiln-" + d), "--help"],
                          timeout=TOOL_TIMEOUT)
            self.assertIn("/etc/kiln/%s.toml" % d, proc.stdout)
        so = os.path.join(self.root, "usr", "sbin", "kiln-runner")
        with open(so, "rb") as f:
            strings = f.read()
        self.assertIn(b"/usr/lib/kiln/plugins", strings)

    def test_check_config(self):
        """Each packaged daemon accepts its packaged default config, completed
        by a drop-in that points plugin_dir and the state into the scratch
        root (the compiled-in plugin directory is /usr/lib/kiln/plugins)."""
        plugins = os.path.join(self.root, "usr", "lib", "kiln", "plugins")
        state = os.path.join(self.tmp, "state")
        keys = {"observer": "state_dir", "dispatcher": "state_dir", "runner": "work_dir"}
        for d in DAEMONS:
            config = os.path.join(self.root, "etc", "kiln", d + ".toml")
            dropin = os.path.join(self.root, "etc", "kiln", "conf.d", d, "50-scratch.toml")
            with open(dropin, "w") as f:
                f.write("[%s]\nplugin_dir = %s\n%s = %s\n"
                        % (d, kf.toml_str(plugins), keys[d],
                           kf.toml_str(os.path.join(state, d))))
            program = os.path.join(self.root, "usr", "sbin", "kiln-" + d)
            proc = kf.run([program, "--check-config", "-c", config], timeout=TOOL_TIMEOUT,
                          check=False)
            self.assertEqual(proc.returncode, 0, "kiln-%s --check-config: %s%s"
                             % (d, proc.stdout, proc.stderr))
            self.assertIn("OK", proc.stdout)

            # A later drop-in's mistake is reported in that drop-in.
            bad = os.path.join(self.root, "etc", "kiln", "conf.d", d, "60-bad.toml")
            with open(bad, "w") as f:
                f.write("[%s]\n\nmax_frame = \"big\"\n" % d)
            proc = kf.run([program, "--check-config", "-c", config], timeout=TOOL_TIMEOUT,
                          check=False)
            os.unlink(bad)
            os.unlink(dropin)  # the tree stays as packaged for test_files
            self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
            self.assertIn("%s:3:13: %s.max_frame: expected an integer" % (bad, d), proc.stderr)


if __name__ == "__main__":
    unittest.main()
