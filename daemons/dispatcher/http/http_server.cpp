// HttpServer: H2O's context on the dispatcher's loop, the listening socket,
// the connection bound, and stop().
#include "http_impl.hpp"

#include <sys/socket.h>

#include <kiln/log.hpp>
#include <kiln/net.hpp>

#include "http_stream.hpp"

namespace kiln {

namespace {

// The handles H2O's context opened (its timers, its cross-thread queue's
// uv_async_t): unreferenced, so they never keep the loop running on their
// own — only connections and the listener do.
void collect_handles(uv_handle_t *handle, void *arg)
{
    static_cast<std::set<uv_handle_t *> *>(arg)->insert(handle);
}

std::set<uv_handle_t *> loop_handles(uv_loop_t *loop)
{
    std::set<uv_handle_t *> handles;
    uv_walk(loop, collect_handles, &handles);
    return handles;
}

} // namespace

HttpServer::HttpServer(uv_loop_t *loop, HttpConfig config)
    : impl_(std::make_unique<Impl>(loop, std::move(config)))
{
}

HttpServer::~HttpServer()
{
    Impl &s = *impl_;
    // The dispatcher is destroyed once its loop has ended, so every
    // connection is closed by now; should one not be, leak H2O's context
    // rather than free what that connection still points to.
    for (HttpSocket *sock : s.sockets)
        sock->server = nullptr;
    if (s.context_ready && s.sockets.empty())
        h2o_context_dispose(&s.context); // closes its handles and runs the loop once (not nested)
    if (s.configured)
        h2o_config_dispose(&s.globalconf);
}

void HttpServer::route(const std::string &method, const std::string &path_prefix,
                       HttpHandler handler)
{
    impl_->routes.push_back({method, path_prefix, std::move(handler)});
}

int HttpServer::port() const { return impl_->port; }

size_t HttpServer::connections() const { return impl_->sockets.size(); }

bool HttpServer::start(std::string &error)
{
    Impl &s = *impl_;
    if (!s.config.auth_file.empty() && !s.auth.load(s.config.auth_file, error))
        return false;

    sockaddr_storage ss{};
    if (numeric_sockaddr(s.config.listen, ss, error) != 0) {
        error = "http: listen " + s.config.listen + ": " + error;
        return false;
    }
    s.listener = new uv_tcp_t;
    uv_tcp_init(s.loop, s.listener);
    s.listener->data = &s;
    int rc = uv_tcp_bind(s.listener, reinterpret_cast<const sockaddr *>(&ss), 0);
    if (rc == 0)
        rc = uv_listen(reinterpret_cast<uv_stream_t *>(s.listener), 511, Impl::on_connection);
    if (rc != 0) {
        error = "http: listen " + s.config.listen + ": " + uv_strerror(rc);
        uv_close(reinterpret_cast<uv_handle_t *>(s.listener),
                 [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_tcp_t *>(h); });
        s.listener = nullptr;
        return false;
    }
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(s.listener, reinterpret_cast<sockaddr *>(&bound), &len);
    s.port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6 *>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in *>(&bound)->sin_port);

    h2o_config_init(&s.globalconf);
    s.configured = true;
    s.globalconf.server_name = h2o_iovec_init(H2O_STRLIT("kiln-dispatcher"));
    s.globalconf.max_request_entity_size = s.config.max_body_bytes;
    s.globalconf.http1.req_timeout = s.config.request_timeout_ms;
    s.globalconf.http1.upgrade_to_http2 = 0; // HTTP/1.1 only: SSE and plain pages need no more
    h2o_hostconf_t *host =
        h2o_config_register_host(&s.globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    auto *root = reinterpret_cast<Impl::RootHandler *>(
        h2o_create_handler(path, sizeof(Impl::RootHandler)));
    root->super.on_req = Impl::on_request;
    root->server = &s;

    std::set<uv_handle_t *> before = loop_handles(s.loop);
    h2o_context_init(&s.context, s.loop, &s.globalconf);
    for (uv_handle_t *h : loop_handles(s.loop))
        if (!before.count(h))
            uv_unref(h);
    s.context_ready = true;
    s.accept_ctx.ctx = &s.context;
    s.accept_ctx.hosts = s.globalconf.hosts;
    log_notice("http: listening on %s (port %d)%s", s.config.listen.c_str(), s.port,
               s.auth.enabled() ? ", basic auth" : "");
    return true;
}

void HttpServer::Impl::on_connection(uv_stream_t *listener, int status) noexcept
{
    auto &s = *static_cast<Impl *>(listener->data);
    if (status < 0) {
        log_warning("http: accept: %s", uv_strerror(status));
        return;
    }
    auto *conn = new HttpSocket;
    conn->server = &s;
    uv_tcp_init(s.loop, &conn->tcp);
    if (uv_accept(listener, reinterpret_cast<uv_stream_t *>(&conn->tcp)) != 0 || s.stopping ||
        s.sockets.size() >= s.config.max_connections) {
        // Over the bound: closed before it costs more than its handle.  Logged
        // on the first of a run, then every 1000th, not once per connection.
        if (!s.stopping && s.refused++ % 1000 == 0)
            log_warning("http: too many connections: %zu open (max_connections = %zu); "
                        "closing new ones (%zu so far)",
                        s.sockets.size(), s.config.max_connections, s.refused);
        uv_close(reinterpret_cast<uv_handle_t *>(&conn->tcp),
                 [](uv_handle_t *h) noexcept { delete reinterpret_cast<HttpSocket *>(h); });
        return;
    }
    if (s.sockets.empty() || s.sockets.size() < s.config.max_connections / 2)
        s.refused = 0;
    uv_tcp_nodelay(&conn->tcp, 1);
    s.sockets.insert(conn);
    conn->sock = h2o_uv_socket_create(reinterpret_cast<uv_stream_t *>(&conn->tcp), on_socket_closed);
    h2o_accept(&s.accept_ctx, conn->sock);
}

void HttpServer::Impl::on_socket_closed(uv_handle_t *handle) noexcept
{
    auto *conn = reinterpret_cast<HttpSocket *>(handle);
    Impl *s = conn->server;
    if (s)
        s->sockets.erase(conn);
    delete conn;
    if (!s)
        return;
    // Stopping, and the last one gone: the grace timer need not hold the loop.
    if (s->stop_timer && s->sockets.empty()) {
        uv_close(reinterpret_cast<uv_handle_t *>(s->stop_timer),
                 [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_timer_t *>(h); });
        s->stop_timer = nullptr;
    }
}

void HttpServer::stop()
{
    Impl &s = *impl_;
    if (s.stopping)
        return;
    s.stopping = true;
    if (s.listener) {
        uv_close(reinterpret_cast<uv_handle_t *>(s.listener),
                 [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_tcp_t *>(h); });
        s.listener = nullptr;
    }
    if (!s.context_ready)
        return;
    // No more keep-alive; end the streams (what they queued is still sent).
    // (The flag alone: h2o_context_request_shutdown would also start HTTP/2's
    // graceful shutdown timer, which this server, HTTP/1.1 only, never needs.)
    s.context.shutdown_requested = 1;
    auto streams = s.streams;
    for (const auto &stream : streams)
        stream->close();
    // Connections waiting for a request: their request timeout, now.
    s.context.http1.req_timeout.timeout = 0;
    h2o_timeout_run(s.loop, &s.context.http1.req_timeout, h2o_now(s.loop));
    if (s.sockets.empty())
        return;
    // Those still sending get a second to finish, then are cut.
    s.stop_timer = new uv_timer_t;
    uv_timer_init(s.loop, s.stop_timer);
    s.stop_timer->data = &s;
    uv_timer_start(s.stop_timer, Impl::on_stop_grace, 1000, 0);
}

void HttpServer::Impl::on_stop_grace(uv_timer_t *timer) noexcept
{
    auto &s = *static_cast<Impl *>(timer->data);
    for (HttpSocket *conn : s.sockets) {
        uv_os_fd_t fd;
        if (uv_fileno(reinterpret_cast<uv_handle_t *>(&conn->tcp), &fd) == 0)
            shutdown(fd, SHUT_RDWR); // the pending write fails; H2O closes the connection
    }
    uv_close(reinterpret_cast<uv_handle_t *>(timer),
             [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_timer_t *>(h); });
    s.stop_timer = nullptr;
}

} // namespace kiln
