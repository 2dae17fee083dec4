// kilnctl: asks the dispatcher one question and prints the answer, as a
// table for people or as JSON (--json) for scripts.
#include <getopt.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include <kiln/log.hpp>
#include <kiln/net.hpp>

#include "print.hpp"

using namespace kiln;

namespace {

void usage(FILE *out)
{
    fprintf(out,
            "Usage: kilnctl [OPTION]... COMMAND [ARG]\n"
            "Show and drive a Kiln dispatcher.\n\n"
            "Commands:\n"
            "  status           queue and runner counts\n"
            "  runners          registered runners and their slots\n"
            "  jobs             every job with its state, attempt and outcome\n"
            "  result COMMIT    the result of a commit (full id or unique prefix)\n"
            "  retry COMMIT     run a finished commit's tests again\n\n"
            "Options:\n"
            "  -d, --dispatcher HOST:PORT  dispatcher address (default $KILN_DISPATCHER or "
            "127.0.0.1:8888)\n"
            "  -j, --json                  print JSON instead of a table\n"
            "  -t, --timeout SECONDS       give up after this long (default 10)\n"
            "  -v, --verbose               log debug messages\n"
            "  -h, --help                  show this help and exit\n"
            "  -V, --version               show the version and exit\n\n"
            "Exit status: 0 answered, 1 the dispatcher refused or could not be reached, 2 usage.\n"
            "See kilnctl(1).\n");
}

struct Session {
    Query query;
    bool json = false;
    int exit_status = 1;
    bool answered = false;
};

} // namespace

int main(int argc, char **argv)
{
    static const option longopts[] = {
        {"dispatcher", required_argument, nullptr, 'd'}, {"json", no_argument, nullptr, 'j'},
        {"timeout", required_argument, nullptr, 't'},    {"verbose", no_argument, nullptr, 'v'},
        {"help", no_argument, nullptr, 'h'},             {"version", no_argument, nullptr, 'V'},
        {nullptr, 0, nullptr, 0},
    };
    const char *env = getenv("KILN_DISPATCHER");
    std::string address = env && *env ? env : "127.0.0.1:8888";
    Session session;
    bool verbose = false;
    long timeout_s = 10;
    int c;
    while ((c = getopt_long(argc, argv, "d:jt:vhV", longopts, nullptr)) != -1) {
        switch (c) {
        case 'd': address = optarg; break;
        case 'j': session.json = true; break;
        case 't': timeout_s = strtol(optarg, nullptr, 10); break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("kilnctl %s\n", KILN_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc || timeout_s <= 0) {
        usage(stderr);
        return 2;
    }
    session.query.what = argv[optind++];
    if (session.query.what == "result" || session.query.what == "retry") {
        if (optind >= argc) {
            fprintf(stderr, "kilnctl: %s needs a COMMIT\n", session.query.what.c_str());
            return 2;
        }
        session.query.arg = argv[optind++];
    } else if (session.query.what != "status" && session.query.what != "runners" &&
               session.query.what != "jobs") {
        fprintf(stderr, "kilnctl: unknown command '%s'\n", session.query.what.c_str());
        usage(stderr);
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "kilnctl: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    log_init("kilnctl", verbose);

    uv_loop_t loop;
    uv_loop_init(&loop);
    Client client(&loop, address, 256u << 20, /*reconnect=*/false);
    session.query.id = 2;
    client.on_connected = [&](Connection &conn) {
        conn.send(Hello{1, kProtocolVersion, "ctl", "kilnctl"});
        conn.send(session.query);
    };
    client.on_message = [&](Connection &conn, Message &&msg) {
        if (auto *reply = std::get_if<Reply>(&msg)) {
            session.answered = true;
            try {
                auto body = nlohmann::json::from_msgpack(reply->body);
                session.exit_status = print_answer(session.query.what, body, session.json) ? 0 : 1;
            } catch (const nlohmann::json::exception &e) {
                fprintf(stderr, "kilnctl: unreadable reply: %s\n", e.what());
            }
            conn.close("done");
        } else if (auto *error = std::get_if<Error>(&msg)) {
            session.answered = true;
            fprintf(stderr, "kilnctl: %s\n", error->message.c_str());
            conn.close("refused");
        }
    };
    client.on_disconnected = [&](const std::string &why) {
        if (!session.answered)
            fprintf(stderr, "kilnctl: dispatcher %s: %s\n", address.c_str(), why.c_str());
        uv_stop(&loop);
    };
    uv_timer_t deadline;
    uv_timer_init(&loop, &deadline);
    deadline.data = &loop;
    uv_timer_start(&deadline, [](uv_timer_t *t) {
        fprintf(stderr, "kilnctl: no answer in time\n");
        uv_stop(static_cast<uv_loop_t *>(t->data));
    }, static_cast<uint64_t>(timeout_s) * 1000, 0);
    client.start();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t *>(&deadline), nullptr);
    client.stop();
    uv_run(&loop, UV_RUN_NOWAIT);
    return session.exit_status;
}
