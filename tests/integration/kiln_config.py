"""The daemons' config files as the integration tests write them: TOML
strings and arrays, a mode-0600 secret file, and one writer per daemon that
takes every value it puts in the file as an argument (the Cluster passes
its own; a test that needs another file calls a writer itself)."""

import json
import os


def toml_str(s):
    """A TOML basic string (JSON's escaping is valid TOML for these)."""
    return json.dumps(str(s))


def toml_array(items):
    return "[" + ", ".join(toml_str(i) for i in items) + "]"


def write_secret(path, secret):
    """Write SECRET and a newline to PATH, mode 0600 from the start (as the
    daemons demand of a secret_file); returns the path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return path


def write_dispatcher_config(path, address, state_dir, runner_timeout, handshake_timeout,
                            plugin_dir, max_attempts, extra, results_dir, http_listen="127.0.0.1:0",
                            http_extra=""):
    """[dispatcher] listening on `address`, heartbeats every 500 ms, and one
    files reporter writing to `results_dir`; `extra`: more [dispatcher]
    lines.  [http] listens on `http_listen` (port 0: the system picks one, so
    parallel tests never collide; the dispatcher logs it), `http_extra`: more
    [http] lines.  Returns the path."""
    with open(path, "w") as f:
        f.write("[dispatcher]\n"
                "listen = %s\n"
                "state_dir = %s\n"
                "heartbeat_interval = \"500ms\"\n"
                "runner_timeout = %s\n"
                "handshake_timeout = %s\n"
                "plugin_dir = %s\n"
                "%s%s\n"
                "[http]\n"
                "listen = %s\n"
                "%s\n"
                "[[report]]\n"
                "plugin = \"files\"\n"
                "dir = %s\n"
                % (toml_str(address), toml_str(state_dir),
                   toml_str(runner_timeout), toml_str(handshake_timeout),
                   toml_array([plugin_dir]),
                   "" if max_attempts is None else "max_attempts = %d\n" % max_attempts,
                   extra, toml_str(http_listen), http_extra, toml_str(results_dir)))
    return path


def write_runner_config(path, address, name, slots, work_dir, stop_timeout, plugin_dir,
                        extra, git_cache_dir):
    """[runner] `name` with `slots` slots, heartbeats every 500 ms, and the
    git plugin's cache; `extra`: more [runner] lines.  Returns the path."""
    with open(path, "w") as f:
        f.write("[runner]\n"
                "dispatcher = %s\n"
                "name = %s\n"
                "slots = %d\n"
                "work_dir = %s\n"
                "heartbeat_interval = \"500ms\"\n"
                "dispatcher_timeout = \"3s\"\n"
                "stop_timeout = %s\n"
                "plugin_dir = %s\n"
                "%s\n"
                "\n[plugin.git]\n"
                "cache_dir = %s\n"
                % (toml_str(address), toml_str(name), slots,
                   toml_str(work_dir), toml_str(stop_timeout),
                   toml_array([plugin_dir]), extra, toml_str(git_cache_dir)))
    return path


def write_observer_config(path, address, state_dir, interval, plugin_dir, extra,
                          repo_name, repo_url, mode, exec_plugin, repo_timeout, repo_extra,
                          git_cache_dir):
    """[observer] polling every `interval`, watching branch main of one git
    [[repo]]; `extra`: more [observer] lines, `repo_extra`: more [[repo]]
    lines.  Returns the path."""
    with open(path, "w") as f:
        f.write("[observer]\n"
                "dispatcher = %s\n"
                "state_dir = %s\n"
                "interval = %s\n"
                "plugin_dir = %s\n"
                "%s\n"
                "\n[[repo]]\n"
                "name = %s\n"
                "url = %s\n"
                "branches = [\"main\"]\n"
                "vcs = \"git\"\n"
                "mode = %s\n"
                "exec = %s\n"
                "timeout = %s\n"
                "%s\n"
                "\n[plugin.git]\n"
                "cache_dir = %s\n"
                % (toml_str(address), toml_str(state_dir),
                   toml_str(interval), toml_array([plugin_dir]),
                   extra, toml_str(repo_name), toml_str(repo_url),
                   toml_str(mode), toml_str(exec_plugin),
                   toml_str(repo_timeout), repo_extra, toml_str(git_cache_dir)))
    return path
