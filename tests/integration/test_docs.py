"""The man pages: mandoc-lint clean, every config key documented, and the
minimal plugin in kiln-plugin(7) compiles and is loaded by kiln-dispatcher.

Standard library only.  Needs mandoc for the lint (skipped with a printed
reason without it) and cc + pkg-config libuv for the plugin example.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import kiln_fixture

SOURCE_DIR = kiln_fixture.SOURCE_DIR
MAN_DIR = os.path.join(SOURCE_DIR, "man")
PAGES = ["kilnctl.1", "kiln.toml.5", "kiln-plugin.7",
         "kiln-observer.8", "kiln-dispatcher.8", "kiln-runner.8"]
TIMEOUT = 60  # seconds, for each program run


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def config_keys_read():
    """Every key a daemon's *_config.cpp reads, by the string literal passed to
    a ConfigTable getter (string, integer, duration_ms, ..., table, tables) or
    to secret_from_config()."""
    keys = set()
    getter = re.compile(r'(?:\.\s*(?:string|strings|integer|boolean|duration_ms|required_string|'
                        r'get_string|get_int|table|tables|error_at)\s*\(|'
                        r'secret_from_config\s*\(\s*\w+\s*,)\s*"([a-z_]+)"')
    for path in glob.glob(os.path.join(SOURCE_DIR, "daemons", "*", "*_config.cpp")):
        keys.update(getter.findall(read(path)))
    return keys


def example_plugin():
    """The C source between the BEGIN/END EXAMPLE markers of kiln-plugin.7."""
    text = read(os.path.join(MAN_DIR, "kiln-plugin.7"))
    m = re.search(r'^\.\\" BEGIN EXAMPLE[^\n]*\n(.*?)^\.\\" END EXAMPLE', text, re.S | re.M)
    if not m:
        raise AssertionError("kiln-plugin.7: no BEGIN EXAMPLE / END EXAMPLE markers")
    lines = [l for l in m.group(1).splitlines() if l not in (".EX", ".EE")]
    src = "\n".join(lines) + "\n"
    # roff escapes used in code: \e is a backslash, \- a minus, \(dq a quote
    return src.replace("\\-", "-").replace("\\(dq", '"').replace("\\e", "\\")


class ManPages(unittest.TestCase):
    def test_pages_exist(self):
        for page in PAGES:
            self.assertTrue(os.path.isfile(os.path.join(MAN_DIR, page)), page)

    def test_mandoc_lint(self):
        mandoc = shutil.which("mandoc")
        if not mandoc:
            print("test_mandoc_lint: skipped: mandoc is not installed "
                  "(apt-get install mandoc)", file=sys.stderr)
            self.skipTest("mandoc is not installed")
        for page in PAGES:
            with self.subTest(page=page):
                p = subprocess.run([mandoc, "-T", "lint", "-W", "warning",
                                    os.path.join(MAN_DIR, page)],
                                   capture_output=True, text=True, timeout=TIMEOUT)
                self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""),
                                 "mandoc -T lint -W warning %s" % page)

    def test_every_config_key_documented(self):
        keys = config_keys_read()
        self.assertGreater(len(keys), 30, "config keys not found in daemons/*/*_config.cpp")
        page = read(os.path.join(MAN_DIR, "kiln.toml.5")).replace("\\-", "-")
        # A key is documented as ".B key" (a key entry) or inside a section
        # heading such as ".SS [[repo]]" / ".SS [plugin.NAME]".
        missing = [k for k in sorted(keys)
                   if not re.search(r'^\.B %s$|^\.SS \[+%s[\].]' % (k, k), page, re.M)]
        self.assertEqual(missing, [], "config keys missing from man/kiln.toml.5")

    def test_every_plugin_key_documented(self):
        page = read(os.path.join(MAN_DIR, "kiln.toml.5"))
        for path in glob.glob(os.path.join(SOURCE_DIR, "plugins", "*", "*.cpp")):
            m = re.search(r'[cC]onfig_?[kK]eys\[\]\s*=\s*\{([^}]*)\}', read(path))
            if not m:
                continue
            for key in re.findall(r'"([a-z_]+)"', m.group(1)):
                with self.subTest(plugin=path, key=key):
                    self.assertRegex(page, r'(?m)^\.B %s$' % key)


class ExamplePlugin(unittest.TestCase):
    def test_example_compiles_and_loads(self):
        cc = shutil.which("cc")
        if not cc or not shutil.which("pkg-config"):
            self.skipTest("no cc or pkg-config")
        uv = subprocess.run(["pkg-config", "--cflags", "libuv"], capture_output=True,
                            text=True, timeout=TIMEOUT)
        self.assertEqual(uv.returncode, 0, "pkg-config --cflags libuv: " + uv.stderr)
        dispatcher = kiln_fixture.binary("dispatcher")
        with tempfile.TemporaryDirectory(prefix="kiln-docs-") as tmp:
            plugins = os.path.join(tmp, "plugins")
            os.mkdir(plugins)
            src = os.path.join(tmp, "hello.c")
            with open(src, "w") as f:
                f.write(example_plugin())
            so = os.path.join(tmp, "hello.so")
            p = subprocess.run([cc, "-shared", "-fPIC", "-Wall", "-Werror",
                                "-I" + os.path.join(SOURCE_DIR, "plugins", "include")]
                               + uv.stdout.split() + ["-o", so, src],
                               capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 0, "compiling the kiln-plugin(7) example:\n" + p.stderr)
            shutil.copy(so, plugins)
            config = os.path.join(tmp, "dispatcher.toml")
            with open(config, "w") as f:
                f.write('[dispatcher]\nstate_dir = "%s"\nplugin_dir = "%s"\n\n'
                        '[[report]]\nplugin = "hello"\ngreeting = "docs"\n'
                        % (os.path.join(tmp, "state"), plugins))
            os.mkdir(os.path.join(tmp, "state"))
            p = subprocess.run([dispatcher, "--check-config", "-c", config],
                               capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 0, "kiln-dispatcher --check-config with the example "
                             "plugin:\n" + p.stdout + p.stderr)
            # An undeclared key is refused: the loader really saw the plugin.
            with open(config, "a") as f:
                f.write('colour = "red"\n')
            p = subprocess.run([dispatcher, "--check-config", "-c", config],
                               capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("colour", p.stderr)


if __name__ == "__main__":
    unittest.main()
