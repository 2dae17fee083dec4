// kilnctl's one round trip to the dispatcher, on a private libuv loop.
#include "session.hpp"

#include <cstdio>

#include <kiln/auth.hpp>
#include <kiln/daemon.hpp>
#include <kiln/log.hpp>
#include <kiln/net.hpp>

namespace kiln {

namespace {

struct Session {
    uv_loop_t loop;
    int exit_status = 1; // until a reply says otherwise: a throw below leaves it
    bool answered = false;
};

} // namespace

int ask_dispatcher(const std::string &address, const std::string &secret, const Message &request,
                   uint64_t timeout_ms, const ReplyHandler &on_reply)
{
    Session session;
    ClientHandshake handshake("ctl", "kilnctl", secret);
    uv_loop_init(&session.loop);
    uv_timer_t deadline;
    {
        Client client(&session.loop, address, 256u << 20, /*reconnect=*/false);
        // The Client runs these through core's exception boundary: a throw
        // (out of memory in the printer, say) is logged, closes the
        // connection and so ends the session with status 1.
        client.on_connected = [&](Connection &conn) { conn.send(handshake.hello(1)); };
        client.on_message = [&](Connection &conn, Message &&msg) {
            if (auto *hello = std::get_if<Hello>(&msg)) {
                std::string error;
                if (!handshake.reply(conn, *hello, 3, error)) {
                    session.answered = true; // said here, not again on the close
                    fprintf(stderr, "kilnctl: dispatcher %s: %s\n", address.c_str(),
                            error.c_str());
                    return;
                }
                // With -v: when the request leaves, for latency measurements
                // (tests/bench/latency.py).  Logged first: the write may go
                // out at once and the answer's effects be logged elsewhere
                // before it.
                log_debug("dispatcher %s: %s sent", address.c_str(), message_type(request));
                conn.send(request);
            } else if (auto *reply = std::get_if<Reply>(&msg)) {
                session.answered = true;
                session.exit_status = on_reply(reply->body);
                conn.close("done");
            } else if (auto *error = std::get_if<Error>(&msg)) {
                session.answered = true;
                fprintf(stderr, "kilnctl: %s\n", error->message.c_str());
                conn.close("refused");
            }
        };
        client.on_disconnected = [&](const std::string &why) {
            uv_stop(&session.loop); // first: printing cannot throw past it
            if (!session.answered)
                fprintf(stderr, "kilnctl: dispatcher %s: %s\n", address.c_str(), why.c_str());
        };
        uv_timer_init(&session.loop, &deadline);
        deadline.data = &session;
        uv_timer_start(
            &deadline,
            [](uv_timer_t *t) noexcept {
                auto *s = static_cast<Session *>(t->data);
                fprintf(stderr, "kilnctl: no answer in time\n");
                s->exit_status = 1;
                uv_stop(&s->loop);
            },
            timeout_ms, 0);
        client.start();
        uv_run(&session.loop, UV_RUN_DEFAULT);
        uv_close(reinterpret_cast<uv_handle_t *>(&deadline), nullptr);
        client.stop();
        uv_run(&session.loop, UV_RUN_NOWAIT);
    } // the client is gone: close what is left and the loop (libuv's own memory)
    drain_and_close_loop(&session.loop);
    return session.exit_status;
}

namespace {

struct Poll {
    uv_loop_t loop;
    uv_timer_t deadline, pause;
    Message request;
    int exit_status = 1;
    bool said_why = false; // the reason is on stderr already
    Client *client = nullptr;
    uint64_t timeout_ms = 0;
};

void restart_deadline(Poll &p)
{
    uv_timer_start(
        &p.deadline,
        [](uv_timer_t *t) noexcept {
            auto *p = static_cast<Poll *>(t->data);
            fprintf(stderr, "kilnctl: no answer in time\n");
            p->exit_status = 1;
            uv_stop(&p->loop);
        },
        p.timeout_ms, 0);
}

} // namespace

int poll_dispatcher(const std::string &address, const std::string &secret, Message request,
                    uint64_t timeout_ms, uint64_t pause_ms, const NextRequest &next)
{
    Poll poll;
    poll.request = std::move(request);
    poll.timeout_ms = timeout_ms;
    ClientHandshake handshake("ctl", "kilnctl", secret);
    uv_loop_init(&poll.loop);
    {
        Client client(&poll.loop, address, 256u << 20, /*reconnect=*/true);
        client.set_reconnect_max(1000); // a restarting dispatcher is back within a second or two
        poll.client = &client;
        client.on_connected = [&](Connection &conn) { conn.send(handshake.hello(1)); };
        client.on_message = [&](Connection &conn, Message &&msg) {
            if (auto *hello = std::get_if<Hello>(&msg)) {
                std::string error;
                if (!handshake.reply(conn, *hello, 3, error)) {
                    fprintf(stderr, "kilnctl: dispatcher %s: %s\n", address.c_str(),
                            error.c_str());
                    poll.said_why = true;
                    uv_stop(&poll.loop);
                    return;
                }
                // One request at a time: one waiting for its pause is sent then.
                if (!uv_is_active(reinterpret_cast<uv_handle_t *>(&poll.pause)))
                    conn.send(poll.request);
            } else if (auto *reply = std::get_if<Reply>(&msg)) {
                restart_deadline(poll);
                if (!next(reply->body, poll.request, poll.exit_status)) {
                    uv_stop(&poll.loop);
                    return;
                }
                uv_timer_start(
                    &poll.pause,
                    [](uv_timer_t *t) noexcept {
                        auto *p = static_cast<Poll *>(t->data);
                        p->client->send(p->request); // not connected: sent after the hello
                    },
                    pause_ms, 0);
            } else if (auto *error = std::get_if<Error>(&msg)) {
                fprintf(stderr, "kilnctl: %s\n", error->message.c_str());
                poll.exit_status = 1;
                uv_stop(&poll.loop);
            }
        };
        client.on_disconnected = [&](const std::string &why) {
            log_info("dispatcher %s: %s; connecting again", address.c_str(), why.c_str());
        };
        for (uv_timer_t *t : {&poll.deadline, &poll.pause}) {
            uv_timer_init(&poll.loop, t);
            t->data = &poll;
        }
        restart_deadline(poll);
        client.start();
        uv_run(&poll.loop, UV_RUN_DEFAULT);
        for (uv_timer_t *t : {&poll.deadline, &poll.pause})
            uv_close(reinterpret_cast<uv_handle_t *>(t), nullptr);
        client.stop();
        uv_run(&poll.loop, UV_RUN_NOWAIT);
    }
    drain_and_close_loop(&poll.loop);
    return poll.exit_status;
}

} // namespace kiln
