// kilnctl: asks the dispatcher one question (or tells it one thing) and
// prints the answer, as a table for people or as JSON (--json) for scripts.
#include <getopt.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <kiln/auth.hpp>
#include <kiln/config.hpp>
#include <kiln/log.hpp>

#include "follow_log.hpp"
#include "print.hpp"
#include "session.hpp"

using namespace kiln;

namespace {

void usage(FILE *out)
{
    fprintf(out,
            "Usage: kilnctl [OPTION]... COMMAND [ARG]...\n"
            "Show and drive a Kiln dispatcher.\n\n"
            "Commands:\n"
            "  status               queue and runner counts\n"
            "  runners              registered runners and their slots\n"
            "  jobs                 every job with its state, attempt and outcome\n"
            "  reports              report receivers: events pending, in flight, rejected,\n"
            "                       delivered, retries, next attempt, last error\n"
            "  result COMMIT        the result of a commit (full id or unique prefix)\n"
            "  retry COMMIT         run a finished commit's tests again\n"
            "  gc [--dry-run]       garbage collection ([retention]) now, or what it would do\n"
            "  log [-f] COMMIT      a commit's log; -f: its tests' output as it comes, until the\n"
            "                       result\n"
            "  notify REPO [BRANCH] make the observers poll REPO (only BRANCH) now\n\n"
            "Options:\n"
            "  -d, --dispatcher HOST:PORT  dispatcher address (default $KILN_DISPATCHER or "
            "127.0.0.1:8888)\n"
            "  -s, --secret-file FILE      prove to the dispatcher that we hold this secret\n"
            "                              (default $KILN_SECRET_FILE; none: no authentication)\n"
            "  -j, --json                  print JSON instead of a table\n"
            "  -f, --follow                log: follow a running job until its result\n"
            "  -n, --dry-run               gc: say what it would delete, delete nothing\n"
            "  -t, --timeout SECONDS       give up after this long (default 10)\n"
            "  -v, --verbose               log debug messages\n"
            "  -h, --help                  show this help and exit\n"
            "  -V, --version               show the version and exit\n\n"
            "Exit status: 0 answered, 1 the dispatcher refused or could not be reached, 2 usage.\n"
            "See kilnctl(1).\n");
}

struct Invocation {
    std::string address;
    std::string secret_file;
    bool json = false;
    bool follow = false;
    bool dry_run = false;
    bool verbose = false;
    long timeout_s = 10;
    std::string command;
    std::vector<std::string> args;
};

// Options into `inv`; -1 to go on, or the status to exit with (--help: 0).
int parse_options(int argc, char **argv, Invocation &inv)
{
    static const option longopts[] = {
        {"dispatcher", required_argument, nullptr, 'd'}, {"json", no_argument, nullptr, 'j'},
        {"follow", no_argument, nullptr, 'f'},           {"dry-run", no_argument, nullptr, 'n'},
        {"secret-file", required_argument, nullptr, 's'},
        {"timeout", required_argument, nullptr, 't'},    {"verbose", no_argument, nullptr, 'v'},
        {"help", no_argument, nullptr, 'h'},             {"version", no_argument, nullptr, 'V'},
        {nullptr, 0, nullptr, 0},
    };
    const char *env = getenv("KILN_DISPATCHER");
    inv.address = env && *env ? env : "127.0.0.1:8888";
    const char *secret_env = getenv("KILN_SECRET_FILE");
    inv.secret_file = secret_env ? secret_env : "";
    int c;
    while ((c = getopt_long(argc, argv, "d:s:jfnt:vhV", longopts, nullptr)) != -1) {
        switch (c) {
        case 'd': inv.address = optarg; break;
        case 's': inv.secret_file = optarg; break;
        case 'j': inv.json = true; break;
        case 'f': inv.follow = true; break;
        case 'n': inv.dry_run = true; break;
        case 't': inv.timeout_s = strtol(optarg, nullptr, 10); break;
        case 'v': inv.verbose = true; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("kilnctl %s\n", KILN_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc || inv.timeout_s <= 0) {
        usage(stderr);
        return 2;
    }
    inv.command = argv[optind++];
    inv.args.assign(argv + optind, argv + argc);
    return -1;
}

// The request for the command, or false after printing the usage error.
// Names are checked here too, so a typo is a usage error (2) rather than a
// refusal from the dispatcher.
bool make_request(const Invocation &inv, Message &request)
{
    const std::string &cmd = inv.command;
    const size_t n = inv.args.size();
    auto fail = [&](const std::string &why) {
        fprintf(stderr, "kilnctl: %s\n", why.c_str());
        return false;
    };
    if (inv.dry_run && cmd != "gc")
        return fail("--dry-run is for gc");
    if (cmd == "status" || cmd == "runners" || cmd == "jobs" || cmd == "reports") {
        if (n > 0)
            return fail("unexpected argument '" + inv.args[0] + "'");
        request = Query{2, cmd, ""};
    } else if (cmd == "result" || cmd == "retry") {
        if (n != 1)
            return fail(n ? "unexpected argument '" + inv.args[1] + "'" : cmd + " needs a COMMIT");
        request = Query{2, cmd, inv.args[0]};
    } else if (cmd == "gc") {
        if (n > 0)
            return fail("unexpected argument '" + inv.args[0] + "'");
        request = Query{2, cmd, inv.dry_run ? "dry-run" : ""};
    } else if (cmd == "log") {
        if (n != 1)
            return fail(n ? "unexpected argument '" + inv.args[1] + "'" : "log needs a COMMIT");
        // '@' separates the offset in the query: not part of a commit prefix.
        if (inv.args[0].find('@') != std::string::npos)
            return fail("log: '" + inv.args[0] + "' is not a commit id or prefix");
        request = Query{2, cmd, inv.args[0]};
    } else if (cmd == "notify") {
        if (n < 1 || n > 2)
            return fail(n ? "unexpected argument '" + inv.args[2] + "'" : "notify needs a REPO");
        if (!valid_name(inv.args[0]))
            return fail("notify: '" + inv.args[0] + "' is not a valid repository name");
        if (n == 2 && !valid_branch(inv.args[1]))
            return fail("notify: '" + inv.args[1] + "' is not a valid branch name");
        request = Notify{2, inv.args[0], n == 2 ? inv.args[1] : ""};
    } else {
        fail("unknown command '" + cmd + "'");
        usage(stderr);
        return false;
    }
    return true;
}

} // namespace

int main(int argc, char **argv)
{
    Invocation inv;
    int status = parse_options(argc, argv, inv);
    if (status >= 0)
        return status;
    Message request;
    if (!make_request(inv, request))
        return 2;
    log_init("kilnctl", inv.verbose);
    std::string secret;
    try {
        if (!inv.secret_file.empty())
            secret = read_secret_file(inv.secret_file);
    } catch (const ConfigError &e) {
        fprintf(stderr, "kilnctl: %s\n", e.what());
        return 1;
    }
    if (inv.command == "log")
        return print_log({inv.address, secret, inv.args[0], inv.follow,
                          static_cast<uint64_t>(inv.timeout_s) * 1000});
    if (inv.follow) {
        fprintf(stderr, "kilnctl: -f is for log only\n");
        return 2;
    }
    return ask_dispatcher(inv.address, secret, request,
                          static_cast<uint64_t>(inv.timeout_s) * 1000,
                          [&](const std::string &body) {
                              try {
                                  auto answer = nlohmann::json::from_msgpack(body);
                                  return print_answer(inv.command, answer, inv.json) ? 0 : 1;
                              } catch (const nlohmann::json::exception &e) {
                                  fprintf(stderr, "kilnctl: unreadable reply: %s\n", e.what());
                                  return 1;
                              }
                          });
}
