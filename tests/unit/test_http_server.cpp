// HttpServer on a real loop, with a blocking client in a thread of its own:
// routing (longest prefix, 404, 405, HEAD), a throwing handler costs its
// request a 500 and nothing more, query parameters, a stream whose client
// does not read is dropped at max_stream_buffer (on_close runs), and stop()
// lets the loop end with a stream open.
#include "test.hpp"

#include <atomic>
#include <stdexcept>
#include <thread>

#include <csignal>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "http/http_server.hpp"

using namespace kiln;

namespace {

struct State {
    uv_loop_t loop;
    uv_async_t stop_async;
    HttpServer *server = nullptr;
    int port = 0;
    // The stream test.
    std::shared_ptr<HttpStream> stream;
    uv_timer_t writer;
    size_t written = 0;
    std::atomic<bool> stream_closed{false};
    bool write_refused = false;
};

// One request on a fresh connection; the whole response (the server closes:
// Connection: close).  `rcvbuf` > 0: a small receive buffer, and do not read.
std::string request(int port, const std::string &text)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string got;
    if (connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0 &&
        send(fd, text.data(), text.size(), MSG_NOSIGNAL) == ssize_t(text.size())) {
        char buf[4096];
        ssize_t n;
        while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
            got.append(buf, n);
    }
    close(fd);
    return got;
}

std::string get(int port, const std::string &path, const std::string &method = "GET")
{
    return request(port, method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
}

int setup(void **state)
{
    auto *s = new State;
    uv_loop_init(&s->loop);
    *state = s;
    return 0;
}

int teardown(void **state)
{
    auto *s = static_cast<State *>(*state);
    delete s->server;
    s->stream.reset();
    uv_run(&s->loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(&s->loop);
    delete s;
    return rc == 0 ? 0 : -1;
}

// Start the server on port 0, run `client` in a thread, stop the server
// when it is done, run the loop until it ends.
void serve(State *s, HttpConfig config, const std::function<void(State *)> &routes,
           const std::function<void(State *)> &client)
{
    config.listen = "127.0.0.1:0";
    s->server = new HttpServer(&s->loop, config);
    routes(s);
    std::string error;
    assert_true(s->server->start(error));
    s->port = s->server->port();
    s->stop_async.data = s;
    uv_async_init(&s->loop, &s->stop_async, [](uv_async_t *a) {
        auto *st = static_cast<State *>(a->data);
        st->server->stop();
        uv_close(reinterpret_cast<uv_handle_t *>(a), nullptr);
    });
    std::thread t([s, &client] {
        client(s);
        uv_async_send(&s->stop_async);
    });
    uv_run(&s->loop, UV_RUN_DEFAULT);
    t.join();
}

void text_route(State *s, const std::string &method, const std::string &prefix,
                const std::string &body)
{
    s->server->route(method, prefix, [body](const HttpRequest &req, HttpResponder &r) {
        r.send(200, "text/plain", body + " " + req.path + " q=" + req.param("q"));
    });
}

void test_routing(void **state)
{
    auto *s = static_cast<State *>(*state);
    std::string root, deep, other, head, missing, wrong, thrown, after, silent;
    serve(s, {},
          [](State *st) {
              text_route(st, "GET", "/", "root");
              text_route(st, "GET", "/api/v1/", "api");
              text_route(st, "GET", "/api/v1/commits/", "commits");
              text_route(st, "POST", "/hooks/", "hooks");
              st->server->route("GET", "/boom", [](const HttpRequest &, HttpResponder &) {
                  throw std::runtime_error("a handler's bug");
              });
              st->server->route("GET", "/silent", [](const HttpRequest &, HttpResponder &) {});
          },
          [&](State *st) {
              root = get(st->port, "/x?q=a%20b+c");
              deep = get(st->port, "/api/v1/commits/abc");
              other = get(st->port, "/api/v1/status");
              head = get(st->port, "/api/v1/status", "HEAD");
              wrong = get(st->port, "/hooks/github/x");
              missing = request(st->port, "POST /hooks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                          "Content-Length: 0\r\n\r\n");
              thrown = get(st->port, "/boom");
              silent = get(st->port, "/silent");
              after = get(st->port, "/api/v1/x");
          });
    assert_non_null(strstr(root.c_str(), "HTTP/1.1 200"));
    assert_non_null(strstr(root.c_str(), "root /x q=a b c"));
    assert_non_null(strstr(deep.c_str(), "commits /api/v1/commits/abc"));
    assert_non_null(strstr(other.c_str(), "api /api/v1/status"));
    assert_non_null(strstr(head.c_str(), "HTTP/1.1 200"));
    assert_null(strstr(head.c_str(), "api /api")); // HEAD: no body
    assert_non_null(strstr(wrong.c_str(), "HTTP/1.1 405"));
    // "/hooks" is not under "/hooks/": the longest match is "/", GET only.
    assert_non_null(strstr(missing.c_str(), "HTTP/1.1 405"));
    assert_non_null(strstr(thrown.c_str(), "HTTP/1.1 500"));
    assert_non_null(strstr(silent.c_str(), "HTTP/1.1 500"));
    assert_non_null(strstr(after.c_str(), "HTTP/1.1 200"));
}

void test_unknown_path_is_404(void **state)
{
    auto *s = static_cast<State *>(*state);
    std::string api, page;
    serve(s, {}, [](State *st) { text_route(st, "GET", "/api/v1/status", "status"); },
          [&](State *st) {
              api = get(st->port, "/api/v1/nothing");
              page = get(st->port, "/nothing");
          });
    assert_non_null(strstr(api.c_str(), "HTTP/1.1 404"));
    assert_non_null(strstr(api.c_str(), "{\"error\":\"not found: /api/v1/nothing\"}"));
    assert_non_null(strstr(page.c_str(), "HTTP/1.1 404"));
    assert_non_null(strstr(page.c_str(), "text/plain"));
}

// The writer outruns a client that never reads: past max_stream_buffer the
// stream is closed (write() false, on_close run) and the client cut off.
void test_stream_to_a_client_that_does_not_read(void **state)
{
    auto *s = static_cast<State *>(*state);
    HttpConfig config;
    config.max_stream_buffer = 64 * 1024;
    std::string head;
    serve(s, config,
          [](State *st) {
              st->server->route("GET", "/s", [st](const HttpRequest &, HttpResponder &r) {
                  st->stream = r.stream(200, "text/event-stream");
                  st->stream->on_close = [st] { st->stream_closed = true; };
                  uv_timer_init(&st->loop, &st->writer);
                  st->writer.data = st;
                  uv_timer_start(&st->writer, [](uv_timer_t *t) {
                      auto *x = static_cast<State *>(t->data);
                      for (int i = 0; i < 16 && !x->write_refused; i++) {
                          if (x->stream->write(std::string(16384, 'x')))
                              x->written += 16384;
                          else
                              x->write_refused = true;
                      }
                      if (x->write_refused || x->written > (256u << 20))
                          uv_close(reinterpret_cast<uv_handle_t *>(t), nullptr);
                  }, 1, 1);
              });
          },
          [&](State *st) {
              int fd = socket(AF_INET, SOCK_STREAM, 0);
              int small = 4096;
              setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
              sockaddr_in sa{};
              sa.sin_family = AF_INET;
              sa.sin_port = htons(st->port);
              sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
              if (connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0) {
                  std::string req = "GET /s HTTP/1.1\r\nHost: x\r\n\r\n";
                  send(fd, req.data(), req.size(), MSG_NOSIGNAL);
                  for (int i = 0; i < 1000 && !st->stream_closed; i++)
                      usleep(10000); // never reads, for up to 10 s
                  char buf[256];
                  ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
                  if (n > 0)
                      head.assign(buf, n);
              }
              close(fd);
          });
    assert_true(s->stream_closed);
    assert_true(s->write_refused);
    assert_true(s->stream->closed());
    assert_false(s->stream->write("more"));
    // What the kernel buffers took, plus our bound: far from 256 MiB.
    assert_true(s->written < (32u << 20));
    assert_non_null(strstr(head.c_str(), "HTTP/1.1 200"));
    assert_non_null(strstr(head.c_str(), "text/event-stream"));
}

// stop() with a stream open and a client reading it: the stream ends
// (on_close), the connection closes, the loop ends.
void test_stop_ends_open_streams(void **state)
{
    auto *s = static_cast<State *>(*state);
    std::string got;
    serve(s, {},
          [](State *st) {
              st->server->route("GET", "/s", [st](const HttpRequest &, HttpResponder &r) {
                  st->stream = r.stream(200, "text/event-stream");
                  st->stream->on_close = [st] { st->stream_closed = true; };
                  st->stream->write("data: hello\n\n");
              });
          },
          [&](State *st) {
              int fd = socket(AF_INET, SOCK_STREAM, 0);
              sockaddr_in sa{};
              sa.sin_family = AF_INET;
              sa.sin_port = htons(st->port);
              sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
              timeval tv{5, 0};
              setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
              if (connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0) {
                  std::string req = "GET /s HTTP/1.1\r\nHost: x\r\n\r\n";
                  send(fd, req.data(), req.size(), MSG_NOSIGNAL);
                  char buf[4096];
                  ssize_t n = recv(fd, buf, sizeof buf, 0);
                  if (n > 0)
                      got.assign(buf, n);
              }
              uv_async_send(&st->stop_async); // stop with the stream open
              char buf[4096];
              ssize_t n;
              while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
                  got.append(buf, n);
              close(fd);
          });
    assert_true(s->stream_closed);
    assert_non_null(strstr(got.c_str(), "data: hello"));
    assert_non_null(strstr(got.c_str(), "\r\n0\r\n\r\n")); // the chunked body's end
}

void test_param(void **)
{
    HttpRequest r;
    r.query = "follow=1&name=a%2Fb+c&empty=&flag&bad=%zz";
    assert_string_equal(S(r.param("follow")), "1");
    assert_string_equal(S(r.param("name")), "a/b c");
    assert_string_equal(S(r.param("empty")), "");
    assert_string_equal(S(r.param("flag")), "");
    assert_string_equal(S(r.param("bad")), "%zz");
    assert_string_equal(S(r.param("missing")), "");
    r.headers = {{"authorization", "Basic x"}};
    assert_non_null(r.header("authorization"));
    assert_null(r.header("Authorization"));
}

} // namespace

int main()
{
    signal(SIGPIPE, SIG_IGN); // as the daemons do (StopSignals): H2O writes to cut sockets
    const CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_path_is_404, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_to_a_client_that_does_not_read, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop_ends_open_streams, setup, teardown),
        cmocka_unit_test(test_param),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
