"""The scenario of kiln-runner(8), LEFTOVER TESTS, shared by test_faults
(no sandbox) and test_sandbox (bubblewrap): a runner killed with SIGKILL
while a test runs, and started again.  Standard library only, over
kiln_fixture's Cluster."""

import os
import signal
import time

import kiln_fixture as kf

LEFTOVER_BOUND = 5.0  # restart of the runner → its predecessor's tests gone, seconds


def pids_of(argv):
    """PIDs of the live processes whose command line is exactly argv (read
    from /proc: processes in other pid namespaces, a sandbox's, included)."""
    want = ("\0".join(argv) + "\0").encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if f.read() == want and kf.pid_alive(int(pid)):
                    found.append(int(pid))
        except OSError:
            pass
    return found


def group_records(c, runner):
    """The test process group records in a runner's work_dir/groups."""
    try:
        return sorted(f for f in os.listdir(c.path(runner + "-work", "groups"))
                      if f.startswith("group-") and ".tmp" not in f)
    except FileNotFoundError:
        return []


def check_leftovers_killed(testcase, c, runner="runner-1", sandboxed=False):
    """The scenario of kiln-runner(8), LEFTOVER TESTS, shared by test_faults
    (no sandbox) and test_sandbox (bwrap).  `c`: a Cluster made with
    exec_plugin="script" and not started; the runner's own lines, if any,
    are in c.runner_extra[runner].

    A test (a shell script) starts a sleeper in the background and sleeps
    itself; the runner has recorded its process group in work_dir/groups;
    the runner is killed with SIGKILL.  Without a sandbox both sleepers
    still run (the fault: their process group has no parent left), and the
    runner started again kills them before it registers, logs it, and
    removes the record.  In bubblewrap (`sandboxed`) they die with the runner
    (--die-with-parent), and the runner started again finds the record and
    nothing left to kill.  Returns the seconds from the restart until both
    were gone (0 when sandboxed).  Should a check fail, the sleepers are
    killed by PID in the test's cleanup."""
    tag = "%d%03d" % (os.getpid() % 1000, int(time.time() * 1000) % 1000)
    sleepers = [["sleep", "90.%s1" % tag], ["sleep", "90.%s2" % tag]]
    c.repo.write("tests/leftover", "#!/bin/sh\n%s >/dev/null 2>&1 &\n%s\n"
                 % (" ".join(sleepers[0]), " ".join(sleepers[1])), executable=True)
    c.start(runners=1, slots=1)
    c.repo.commit("a test that sleeps for 90 s")
    pids = c.wait_until(lambda: all(pids_of(a) for a in sleepers) and
                        [p for a in sleepers for p in pids_of(a)], 30,
                        "the test's two sleepers running: %s" % sleepers)

    def kill_pids():
        for pid in pids:
            if kf.pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    testcase.addCleanup(kill_pids)
    # Checked below, once the leftovers are shown to be killed (or not).
    deadline = time.monotonic() + 5
    while not group_records(c, runner) and time.monotonic() < deadline:
        time.sleep(0.1)
    records = group_records(c, runner)
    c.kill_daemon(runner)
    if sandboxed:
        c.wait_until(lambda: not any(kf.pid_alive(p) for p in pids), LEFTOVER_BOUND,
                     "the sandboxed test processes %s dying with the runner (bwrap "
                     "--die-with-parent)" % pids)
    else:
        time.sleep(0.5)
        testcase.assertEqual([p for p in pids if not kf.pid_alive(p)], [],
                             "the test's processes %s outlive the runner killed with SIGKILL "
                             "(the fault this scenario is about)" % pids)
    testcase.assertEqual(group_records(c, runner), records, "the record survives the SIGKILL")
    restarted = time.monotonic()
    c.start_runner(runner, slots=1, wait=False)
    c.wait_until(lambda: not any(kf.pid_alive(p) for p in pids), LEFTOVER_BOUND,
                 "the restarted runner killing the leftover test processes %s" % pids)
    took = time.monotonic() - restarted
    c.wait_until(lambda: runner in c.runner_names(), kf.START_TIMEOUT,
                 "runner %s registered again" % runner)
    testcase.assertEqual(len(records), 1, "the test's process group recorded in "
                         "%s-work/groups: %s" % (runner, records))
    if not sandboxed:
        testcase.assertTrue(c.log_has(runner, r"leftover test process group %s .*killed 3 "
                                      % records[0].split("-")[1]),
                            "the restarted runner logging what it killed (the test's shell "
                            "and its two sleepers)")
    testcase.assertNotIn(records[0], group_records(c, runner), "the old record removed")
    return 0.0 if sandboxed else took
