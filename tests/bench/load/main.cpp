// kiln-bench-load: a load generator for kiln-dispatcher, speaking the real
// protocol through libkiln.
//
// It starts a real kiln-dispatcher process on 127.0.0.1 (port 0: the kernel
// picks one, read back from the dispatcher's log) with a throw-away state
// dir and no report plugins, then, all in this one uv loop:
//   - registers --runners synthetic runners, one slot and one TCP connection
//     each, that answer every Assign at once with a passing one-test Result;
//   - connects one synthetic observer that floods --commits commits (fake
//     but valid 40-hex ids) with at most --window unacknowledged and at most
//     --backlog jobs outstanding (sent, result not yet acknowledged);
// and prints throughput (jobs persisted per second, first commit sent → last
// result acknowledged), assignment latency (commit acked to the observer →
// Assign received by a runner, matched by Ack.job_id), commit-ack latency,
// and the dispatcher's peak RSS and CPU per 1,000 jobs from /proc.
//
// Every wait is bounded (--timeout for the whole run); the only process it
// signals is the dispatcher it started.  Exit 0 only when every job completed.
//
//   options.cpp             the command line
//   dispatcher_process.cpp  the dispatcher: state dir, process, port, stop
//   synthetic_peers.cpp     the runners and the observer that load it
//   bench.cpp               one run: start, deadline, finish
//   report.cpp              the figures printed at the end
//   proc_stats.cpp          /proc readings of the dispatcher
#include <csignal>
#include <cstdio>

#include <uv.h>

#include "bench.hpp"
#include "options.hpp"

int main(int argc, char **argv)
{
    kiln::bench::Options o;
    kiln::bench::parse_args(argc, argv, o);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, nullptr, _IOLBF, 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    int rc;
    {
        kiln::bench::Bench bench(&loop, o);
        rc = bench.run();
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
}
