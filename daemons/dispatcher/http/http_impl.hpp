#pragma once
// HttpServer's insides, shared by http_server.cpp (listening, connections,
// stop), http_requests.cpp (routing, answers) and http_stream.cpp (bodies
// written over time).  Only these files see H2O's headers.
#ifndef H2O_USE_LIBUV
#define H2O_USE_LIBUV 1
#endif
#include <h2o.h>
#include <h2o/socket/uv-binding.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "http_auth.hpp"
#include "http_server.hpp"

namespace kiln {

class H2oStream;

// An accepted connection's handle: the libuv close callback finds the
// server through it (H2O owns the handle's `data`).
struct HttpSocket {
    uv_tcp_t tcp; // first: the close callback gets &tcp
    HttpServer::Impl *server = nullptr;
    h2o_socket_t *sock = nullptr;
};

struct HttpServer::Impl {
    struct Route {
        std::string method, prefix;
        HttpHandler handler;
    };
    // The one H2O handler, under "/": it hands every request to dispatch().
    struct RootHandler {
        h2o_handler_t super;
        Impl *server;
    };

    Impl(uv_loop_t *l, HttpConfig c) : loop(l), config(std::move(c)) {}

    // http_requests.cpp
    static int on_request(h2o_handler_t *self, h2o_req_t *req) noexcept;
    void dispatch(h2o_req_t *req);
    void run_route(h2o_req_t *req);
    const Route *find_route(const std::string &method, const std::string &path,
                            bool &path_known) const;

    // http_server.cpp
    static void on_connection(uv_stream_t *listener, int status) noexcept;
    static void on_socket_closed(uv_handle_t *handle) noexcept;
    static void on_stop_grace(uv_timer_t *timer) noexcept;

    uv_loop_t *loop;
    HttpConfig config;
    std::vector<Route> routes;
    BasicAuth auth;

    h2o_globalconf_t globalconf{};
    h2o_context_t context{};
    h2o_accept_ctx_t accept_ctx{};
    bool configured = false, context_ready = false, stopping = false;
    uv_tcp_t *listener = nullptr;
    uv_timer_t *stop_timer = nullptr;
    int port = 0;
    std::set<HttpSocket *> sockets;            // open connections
    std::set<std::shared_ptr<H2oStream>> streams; // open streams, ended by stop()
    size_t refused = 0;                        // connections closed at max_connections
};

} // namespace kiln
