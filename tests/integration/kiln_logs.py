"""What the tests read from the daemons' logs (run with -v): the results the
dispatcher recorded, and the jobs whose tests a runner is running.  Pure
functions of the log text; the Cluster hands them the right logs."""

import collections
import re

# The dispatcher's line for a recorded result (dispatcher.cpp on_result):
#   "job 7: example 0123456789ab passed by runner-1"
RECORDED = re.compile(r"job (\d+): (\S+) ([0-9a-f]{12}) (\w+) by (\S+)\s*$", re.M)

# The runner's lines for the end of a job, whatever its outcome.
_JOB_END = r"job %s: (passed|failed|error|timeout|cancelled|skipped)\b"


def recorded_results(dispatcher_log):
    """{commit[:12]: [(job id, outcome, runner), ...]}: every result recorded
    in `dispatcher_log`, in log order."""
    out = collections.defaultdict(list)
    for job, _repo, commit, outcome, runner in RECORDED.findall(dispatcher_log):
        out[commit].append((int(job), outcome, runner))
    return out


def running_jobs(runner_log):
    """Job ids whose tests `runner_log` says are running: "job N: running
    tests" and no end of job N ("job N: passed (...)" and the like) after it."""
    running = []
    for m in re.finditer(r"job (\d+): running tests", runner_log):
        job = m.group(1)
        if not re.compile(_JOB_END % job).search(runner_log, m.end()) and job not in running:
            running.append(job)
    return [int(j) for j in running]
