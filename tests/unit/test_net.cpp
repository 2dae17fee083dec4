// Connections over real loopback TCP: frames split into single bytes and
// packed together arrive whole; a malformed frame gets an error frame and
// the close of that connection only; a client reconnects after a refusal.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <kiln/net.hpp>

#include "test.hpp"

using namespace kiln;

namespace {

struct Harness {
    uv_loop_t loop;
    std::unique_ptr<Server> server;
    std::vector<Message> received;
    std::vector<std::string> closes;
    uv_timer_t guard;
    bool guard_fired = false;
};

int setup(void **state)
{
    auto *h = new Harness;
    uv_loop_init(&h->loop);
    h->server = std::make_unique<Server>(&h->loop, 4096);
    std::string error;
    if (h->server->listen("127.0.0.1:0",
                          [h](std::shared_ptr<Connection> conn) {
                              conn->start(
                                  [h](Connection &, Message &&m) { h->received.push_back(std::move(m)); },
                                  [h](Connection &, const std::string &why) { h->closes.push_back(why); });
                          },
                          error) != 0)
        return -1;
    // Every test ends within 10 s whatever happens.
    uv_timer_init(&h->loop, &h->guard);
    h->guard.data = h;
    uv_timer_start(&h->guard, [](uv_timer_t *t) {
        static_cast<Harness *>(t->data)->guard_fired = true;
        uv_stop(t->loop);
    }, 10000, 0);
    uv_unref(reinterpret_cast<uv_handle_t *>(&h->guard));
    *state = h;
    return 0;
}

int teardown(void **state)
{
    auto *h = static_cast<Harness *>(*state);
    h->server.reset();
    uv_close(reinterpret_cast<uv_handle_t *>(&h->guard), nullptr);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&h->loop);
    delete h;
    return rc == 0 ? 0 : -1;
}

// A blocking peer on its own thread: sends `chunks` one by one, then reads
// until the server closes (or 5 s pass); returns what it read.
std::string talk(int port, std::vector<std::string> chunks, bool wait_for_close)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string got;
    if (connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0) {
        for (const auto &c : chunks) {
            send(fd, c.data(), c.size(), MSG_NOSIGNAL);
            usleep(1000); // separate TCP segments, separate reads
        }
        if (wait_for_close) {
            char buf[4096];
            ssize_t n;
            while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
                got.append(buf, static_cast<size_t>(n));
        } else {
            shutdown(fd, SHUT_WR);
            char buf[16];
            while (recv(fd, buf, sizeof buf, 0) > 0) {
            }
        }
    }
    close(fd);
    return got;
}

void run_with_peer(Harness *h, std::vector<std::string> chunks, bool wait_for_close, std::string *got)
{
    std::string result;
    int port = h->server->port();
    std::thread peer([&] { result = talk(port, chunks, wait_for_close); });
    // Run until the server side has closed the connection.
    while (h->closes.empty() && !h->guard_fired)
        uv_run(&h->loop, UV_RUN_ONCE);
    peer.join();
    if (got)
        *got = result;
}

std::string commit_frame(char fill)
{
    Commit c;
    c.id = 7;
    c.spec.repo = "example";
    c.spec.url = "/srv/git/example";
    c.spec.branch = "main";
    c.spec.commit = std::string(40, fill);
    return encode_message(c);
}

void test_split_and_packed_frames(void **state)
{
    auto *h = static_cast<Harness *>(*state);
    std::vector<std::string> chunks;
    for (char c : commit_frame('a')) // one byte a read
        chunks.emplace_back(1, c);
    chunks.push_back(commit_frame('b') + commit_frame('c')); // two in one read
    run_with_peer(h, chunks, false, nullptr);
    assert_false(h->guard_fired);
    assert_int_equal(h->received.size(), 3);
    const char expect[] = {'a', 'b', 'c'};
    for (int i = 0; i < 3; i++) {
        auto *c = std::get_if<Commit>(&h->received[i]);
        assert_non_null(c);
        assert_string_equal(c->spec.commit.c_str(), std::string(40, expect[i]).c_str());
    }
    assert_string_equal(h->closes[0].c_str(), "peer closed the connection");
}

// The server answers garbage with an error frame naming the problem, then closes.
void expect_refusal(Harness *h, const std::string &bytes, const char *reason)
{
    std::string got;
    run_with_peer(h, {bytes}, true, &got);
    assert_false(h->guard_fired);
    assert_true(h->received.empty());
    assert_non_null(strstr(h->closes[0].c_str(), reason));
    FrameDecoder d;
    assert_true(d.feed(got.data(), got.size()));
    std::string payload;
    assert_true(d.next(payload));
    Message msg;
    std::string error;
    assert_true(decode_message(payload, msg, error));
    auto *e = std::get_if<Error>(&msg);
    assert_non_null(e);
    assert_non_null(strstr(e->message.c_str(), reason));
}

void test_oversized_length_refused(void **state)
{
    expect_refusal(static_cast<Harness *>(*state), std::string("\x80\x00\x00\x00", 4),
                   "exceeds max_frame 4096");
}

void test_unknown_type_refused(void **state)
{
    expect_refusal(static_cast<Harness *>(*state),
                   std::string("\x00\x00\x00\x0c\x81\xa4type\xa5" "bogus", 16),
                   "unknown message type 'bogus'");
}

void test_garbage_refused(void **state)
{
    expect_refusal(static_cast<Harness *>(*state), std::string("\x00\x00\x00\x03\xc1\xc1\xc1", 7),
                   "invalid msgpack");
}

void test_peer_that_does_not_read_is_closed(void **state)
{
    auto *h = static_cast<Harness *>(*state);
    // Accepted connections here get a 1 MiB bound on what waits to be written.
    std::shared_ptr<Connection> server_side;
    h->server = std::make_unique<Server>(&h->loop, 4096);
    std::string error;
    assert_int_equal(h->server->listen("127.0.0.1:0",
                                       [&](std::shared_ptr<Connection> conn) {
                                           conn->set_max_queued_bytes(1u << 20);
                                           conn->start([](Connection &, Message &&) {},
                                                       [h](Connection &, const std::string &why) {
                                                           h->closes.push_back(why);
                                                       });
                                           server_side = conn;
                                       },
                                       error),
                     0);
    // A peer that connects and then reads nothing, ever.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(h->server->port()));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa), 0);
    while (!server_side && !h->guard_fired)
        uv_run(&h->loop, UV_RUN_ONCE);
    assert_non_null(server_side.get());
    // 64 MiB of replies: far more than the socket buffers and the bound.
    size_t peak = 0;
    for (int i = 0; i < 1024 && !server_side->closing(); i++) {
        server_side->send(Error{0, std::string(64 * 1024, 'x')});
        peak = std::max(peak, server_side->queued_bytes());
        uv_run(&h->loop, UV_RUN_NOWAIT);
    }
    while (h->closes.empty() && !h->guard_fired)
        uv_run(&h->loop, UV_RUN_ONCE);
    close(fd);
    assert_false(h->guard_fired);
    assert_true(peak <= (1u << 20));
    assert_non_null(strstr(h->closes[0].c_str(), "peer reads none of its replies"));
    server_side.reset();
}

void test_client_reconnects_until_the_server_is_up(void **state)
{
    auto *h = static_cast<Harness *>(*state);
    int port = h->server->port();
    h->server.reset(); // nobody listens on the port for now
    uv_run(&h->loop, UV_RUN_NOWAIT);
    int refusals = 0;
    bool connected = false;
    Client client(&h->loop, "127.0.0.1:" + std::to_string(port), 4096);
    client.on_disconnected = [&](const std::string &) {
        if (++refusals == 2) { // listen again after two refused attempts
            h->server = std::make_unique<Server>(&h->loop, 4096);
            std::string error;
            h->server->listen("127.0.0.1:" + std::to_string(port),
                              [](std::shared_ptr<Connection> conn) {
                                  conn->start([](Connection &, Message &&) {},
                                              [](Connection &, const std::string &) {});
                              },
                              error);
        }
    };
    client.on_connected = [&](Connection &) {
        connected = true;
        uv_stop(&h->loop);
    };
    client.start();
    uv_run(&h->loop, UV_RUN_DEFAULT);
    assert_false(h->guard_fired);
    assert_true(connected);
    assert_true(refusals >= 2);
    client.stop();
}

// A handler that throws costs its own connection (an error frame naming the
// message, then a close), never the server: the next connection is served.
void test_throwing_handler_closes_only_its_connection(void **state)
{
    auto *h = static_cast<Harness *>(*state);
    h->server = std::make_unique<Server>(&h->loop, 4096);
    std::string error;
    assert_int_equal(h->server->listen("127.0.0.1:0",
                                       [h](std::shared_ptr<Connection> conn) {
                                           conn->start(
                                               [h](Connection &, Message &&m) {
                                                   auto *c = std::get_if<Commit>(&m);
                                                   if (c && c->spec.commit[0] == 'f')
                                                       throw std::runtime_error("no such thing");
                                                   h->received.push_back(std::move(m));
                                               },
                                               [h](Connection &, const std::string &why) {
                                                   h->closes.push_back(why);
                                               });
                                       },
                                       error),
                     0);
    std::string got;
    run_with_peer(h, {commit_frame('f')}, true, &got);
    assert_false(h->guard_fired);
    assert_true(h->received.empty());
    FrameDecoder d;
    assert_true(d.feed(got.data(), got.size()));
    std::string payload;
    assert_true(d.next(payload));
    Message msg;
    assert_true(decode_message(payload, msg, error));
    auto *e = std::get_if<Error>(&msg);
    assert_non_null(e);
    assert_int_equal(e->id, 7); // answers the commit that failed
    assert_string_equal(e->message.c_str(), "internal error handling commit");

    h->closes.clear();
    run_with_peer(h, {commit_frame('a'), commit_frame('b')}, false, nullptr);
    assert_false(h->guard_fired);
    assert_int_equal(h->received.size(), 2);
    assert_string_equal(h->closes[0].c_str(), "peer closed the connection");
}

// Gaps between the connections a Client makes to a server that closes each
// at once; `accepted`: the client marks each handshake done, as
// ClientHandshake::reply does when the dispatcher lets it in.
std::vector<uint64_t> reconnect_gaps(Harness *h, bool accepted, size_t connections)
{
    std::vector<uint64_t> at;
    h->server = std::make_unique<Server>(&h->loop, 4096);
    std::string error;
    h->server->listen("127.0.0.1:0",
                      [&](std::shared_ptr<Connection> conn) {
                          uv_update_time(&h->loop);
                          at.push_back(uv_now(&h->loop));
                          conn->start([](Connection &, Message &&) {},
                                      [](Connection &, const std::string &) {});
                          conn->close("go away");
                      },
                      error);
    Client client(&h->loop, "127.0.0.1:" + std::to_string(h->server->port()), 4096);
    client.set_reconnect_max(600);
    client.on_connected = [&](Connection &conn) {
        if (accepted)
            conn.handshake_done();
    };
    client.start();
    while (at.size() < connections && !h->guard_fired)
        uv_run(&h->loop, UV_RUN_ONCE);
    client.stop();
    std::vector<uint64_t> gaps;
    for (size_t i = 1; i < at.size(); i++)
        gaps.push_back(at[i] - at[i - 1]);
    return gaps;
}

// After a drop of an accepted connection the first retry comes within
// 250 ms, every time; a peer never accepted backs off towards reconnect_max.
void test_backoff_starts_over_only_after_a_handshake(void **state)
{
    auto *h = static_cast<Harness *>(*state);
    std::vector<uint64_t> gaps = reconnect_gaps(h, true, 5);
    assert_false(h->guard_fired);
    assert_int_equal(gaps.size(), 4);
    for (uint64_t g : gaps)
        assert_in_range(g, 100, 300);

    gaps = reconnect_gaps(h, false, 5);
    assert_false(h->guard_fired);
    assert_int_equal(gaps.size(), 4);
    assert_in_range(gaps[0], 100, 300);
    assert_in_range(gaps[2], 280, 700); // 250-500, then capped at 600
    assert_in_range(gaps[3], 280, 700);
}

// First retry within 250 ms (and not at once), then doubling up to the cap;
// reset() starts over; a cap below the base is the base.
void test_backoff_bounds(void **)
{
    Backoff b;
    uint64_t ceiling = 250;
    for (int i = 0; i < 12; i++) {
        uint64_t d = b.next_delay_ms();
        assert_in_range(d, ceiling / 2, ceiling);
        ceiling = std::min<uint64_t>(ceiling * 2, 5000);
    }
    b.reset();
    assert_in_range(b.next_delay_ms(), 125, 250);
    b.set_cap(1000);
    for (int i = 0; i < 10; i++)
        assert_true(b.next_delay_ms() <= 1000);
    assert_in_range(b.next_delay_ms(), 500, 1000);
    Backoff tiny(250, 10);
    assert_int_equal(tiny.cap_ms(), 250);
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_split_and_packed_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_length_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_type_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_that_does_not_read_is_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_reconnects_until_the_server_is_up, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_throwing_handler_closes_only_its_connection, setup,
                                        teardown),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test_setup_teardown(test_backoff_starts_over_only_after_a_handshake, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
