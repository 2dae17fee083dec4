#include "options.hpp"

#include <cstdio>
#include <cstdlib>

namespace kiln::bench {

namespace {

void usage(FILE *f)
{
    fprintf(f,
            "usage: kiln-bench-load [options]\n"
            "  --runners N       synthetic runners, 1 slot and 1 connection each (200)\n"
            "  --commits N       commits the synthetic observer sends (20000)\n"
            "  --window N        at most N commits sent and not yet acknowledged (1000)\n"
            "  --backlog N       at most N jobs outstanding, commit sent to result acked\n"
            "                    (default: = runners, so latency is the dispatcher's own;\n"
            "                    0: unbounded, only --window limits the observer)\n"
            "  --dispatcher PATH kiln-dispatcher to start (%s)\n"
            "  --timeout S       hard bound on the whole run in seconds (300)\n"
            "  --keep            keep the temporary state dir and dispatcher log\n"
            "  --config-extra F  put F's text into dispatcher.toml after the [dispatcher]\n"
            "                    keys (bare keys join [dispatcher]; e.g. plugin_dir and a\n"
            "                    [[report]] table: reporting under load)\n",
            KILN_BENCH_DISPATCHER);
}

} // namespace

void parse_args(int argc, char **argv, Options &o)
{
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&](const char *name) -> const char * {
            if (i + 1 >= argc) {
                fprintf(stderr, "kiln-bench-load: %s needs a value\n", name);
                exit(2);
            }
            return argv[++i];
        };
        auto number = [&](const char *name, double lo, double hi) {
            const char *v = value(name);
            char *end = nullptr;
            double d = strtod(v, &end);
            if (!*v || *end || d < lo || d > hi) {
                fprintf(stderr, "kiln-bench-load: %s: expected a number from %g to %g, got '%s'\n",
                        name, lo, hi, v);
                exit(2);
            }
            return d;
        };
        if (a == "--runners")
            o.runners = static_cast<unsigned>(number("--runners", 1, 10000));
        else if (a == "--commits")
            o.commits = static_cast<unsigned>(number("--commits", 1, 10000000));
        else if (a == "--window")
            o.window = static_cast<unsigned>(number("--window", 1, 1000000));
        else if (a == "--backlog")
            o.backlog = static_cast<long>(number("--backlog", 0, 10000000));
        else if (a == "--timeout")
            o.timeout_s = number("--timeout", 1, 86400);
        else if (a == "--dispatcher")
            o.dispatcher = value("--dispatcher");
        else if (a == "--config-extra")
            o.config_extra = value("--config-extra");
        else if (a == "--keep")
            o.keep = true;
        else if (a == "-h" || a == "--help") {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "kiln-bench-load: unknown argument '%s'\n", a.c_str());
            usage(stderr);
            exit(2);
        }
    }
    if (o.backlog < 0)
        o.backlog = o.runners;
}

} // namespace kiln::bench
