// kiln-bench-load's command line: what a run measures and against which
// dispatcher.
#pragma once

#include <string>

#ifndef KILN_BENCH_DISPATCHER
#define KILN_BENCH_DISPATCHER "kiln-dispatcher"
#endif

namespace kiln::bench {

struct Options {
    unsigned runners = 200;
    unsigned commits = 20000;
    unsigned window = 1000;  // unacknowledged commits
    long backlog = -1;       // outstanding jobs; -1: = runners, 0: unbounded
    double timeout_s = 300;
    unsigned connect_batch = 50; // runners connecting at once
    std::string dispatcher = KILN_BENCH_DISPATCHER;
    bool keep = false;
    std::string config_extra; // a file whose text goes into dispatcher.toml (e.g. [[report]])
};

// Fill `o` from argv; prints the usage and exits (0 for --help, 2 for a bad
// argument) when it cannot.
void parse_args(int argc, char **argv, Options &o);

} // namespace kiln::bench
