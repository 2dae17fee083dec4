// Connections and a listening server on uv_tcp_t; the reconnecting client
// is in client.cpp.
#include <kiln/net.hpp>

#include <cstring>
#include <arpa/inet.h>
#include <optional>
#include <type_traits>

#include <kiln/log.hpp>

#include "close_handle.hpp"

namespace kiln {
namespace {

struct WriteRequest {
    uv_write_t req;
    std::string data;
};

std::string address_text(const sockaddr_storage &ss)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
        auto *sin = reinterpret_cast<const sockaddr_in *>(&ss);
        uv_ip4_name(sin, ip, sizeof ip);
        port = ntohs(sin->sin_port);
        return std::string(ip) + ":" + std::to_string(port);
    }
    if (ss.ss_family == AF_INET6) {
        auto *sin6 = reinterpret_cast<const sockaddr_in6 *>(&ss);
        uv_ip6_name(sin6, ip, sizeof ip);
        port = ntohs(sin6->sin6_port);
        return "[" + std::string(ip) + "]:" + std::to_string(port);
    }
    return "?";
}

} // namespace

int numeric_sockaddr(const std::string &address, sockaddr_storage &ss, std::string &error)
{
    std::string host;
    int port = 0;
    if (!split_host_port(address, host, port, error))
        return UV_EINVAL;
    if (host == "localhost")
        host = "127.0.0.1";
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in *>(&ss)) == 0)
        return 0;
    if (uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6 *>(&ss)) == 0)
        return 0;
    error = address + ": not a numeric IPv4 or IPv6 address";
    return UV_EINVAL;
}

namespace {

// Whether a message kind carries a request id (Assign and Cancel do not).
template <typename T, typename = void> struct has_request_id : std::false_type {};
template <typename T>
struct has_request_id<T, std::void_t<decltype(std::declval<T>().id)>> : std::true_type {};

thread_local char read_buffer[64 * 1024];

} // namespace

bool split_host_port(const std::string &text, std::string &host, int &port, std::string &error)
{
    size_t colon;
    if (!text.empty() && text[0] == '[') {
        size_t close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            error = "'" + text + "': expected [IPV6]:PORT";
            return false;
        }
        host = text.substr(1, close - 1);
        colon = close + 1;
    } else {
        colon = text.rfind(':');
        if (colon == std::string::npos || colon == 0) {
            error = "'" + text + "': expected HOST:PORT";
            return false;
        }
        host = text.substr(0, colon);
    }
    std::string digits = text.substr(colon + 1);
    if (digits.empty() || digits.size() > 5 ||
        digits.find_first_not_of("0123456789") != std::string::npos || std::stoi(digits) > 65535) {
        error = "'" + text + "': port must be a number from 0 to 65535";
        return false;
    }
    port = std::stoi(digits);
    return true;
}

bool is_loopback_host(const std::string &host)
{
    if (host == "localhost")
        return true;
    in_addr v4;
    if (inet_pton(AF_INET, host.c_str(), &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    in6_addr v6;
    if (inet_pton(AF_INET6, host.c_str(), &v6) != 1)
        return false; // a name: it could resolve anywhere
    if (IN6_IS_ADDR_LOOPBACK(&v6))
        return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

// ---- Connection ----

std::shared_ptr<Connection> Connection::adopt(uv_tcp_t *tcp, size_t max_frame)
{
    std::shared_ptr<Connection> conn(new Connection);
    conn->tcp_ = tcp;
    conn->decoder_ = FrameDecoder(max_frame);
    conn->keep_alive_ = conn;
    tcp->data = conn.get();
    uv_tcp_nodelay(tcp, 1);
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr *>(&ss), &len) == 0)
        conn->peer_ = address_text(ss);
    else
        conn->peer_ = "?";
    return conn;
}

Connection::~Connection() = default;

void Connection::start(MessageHandler on_message, CloseHandler on_close)
{
    on_message_ = std::move(on_message);
    on_close_ = std::move(on_close);
    int rc = uv_read_start(reinterpret_cast<uv_stream_t *>(tcp_), on_alloc, on_read);
    if (rc != 0)
        close(std::string("read: ") + uv_strerror(rc));
}

std::string Connection::describe() const
{
    std::string who = "peer " + peer_;
    if (!role.empty() || !name.empty())
        who += " (" + role + (role.empty() || name.empty() ? "" : " ") + name + ")";
    return who;
}

void Connection::on_alloc(uv_handle_t *, size_t, uv_buf_t *buf) noexcept
{
    *buf = uv_buf_init(read_buffer, sizeof read_buffer);
}

void Connection::on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) noexcept
{
    auto *conn = static_cast<Connection *>(stream->data);
    // Our own work here can throw only bad_alloc; a handler's exceptions are
    // caught in dispatch().  Either way, this connection is what gives.
    std::optional<std::string> error = caught([&] {
        if (nread > 0)
            conn->handle_bytes(buf->base, static_cast<size_t>(nread));
        else if (nread == UV_EOF)
            conn->close("peer closed the connection");
        else if (nread < 0)
            conn->close(std::string("read: ") + uv_strerror(static_cast<int>(nread)));
    });
    if (error) {
        log_err("%s: reading: %s", conn->describe().c_str(), error->c_str());
        guarded("closing", [&] { conn->close("reading: " + *error); });
    }
}

void Connection::handle_bytes(const char *data, size_t len)
{
    if (closing_ || close_after_write_)
        return;
    // uv_timer_again would restart a stopped timer that has a repeat: re-arm
    // only while an idle timeout is set.
    if (idle_timer_ && idle_ms_)
        uv_timer_again(idle_timer_);
    if (!decoder_.feed(data, len)) {
        fail(0, decoder_.error());
        return;
    }
    std::string payload;
    while (!closing_ && !close_after_write_ && decoder_.next(payload)) {
        Message msg;
        std::string error;
        if (!decode_message(payload, msg, error)) {
            fail(0, error);
            return;
        }
        dispatch(std::move(msg));
    }
}

void Connection::dispatch(Message &&msg)
{
    if (awaiting_auth_ack_) {
        auto *ack = std::get_if<Ack>(&msg);
        if (ack && ack->id == auth_id_)
            handshake_done();
    }
    const char *type = message_type(msg);
    uint64_t id = std::visit(
        [](const auto &m) -> uint64_t {
            if constexpr (has_request_id<std::decay_t<decltype(m)>>::value)
                return m.id;
            else
                return 0;
        },
        msg);
    std::optional<std::string> error = caught([&] { on_message_(*this, std::move(msg)); });
    if (!error)
        return;
    // One bad message costs its connection, never the daemon: the peer is
    // told, and its protocol (resend after reconnecting) does the rest.
    log_err("%s: handling %s: %s", describe().c_str(), type, error->c_str());
    send_error_and_close(id, std::string("internal error handling ") + type);
}

void Connection::send(const Message &msg)
{
    if (closing_ || close_after_write_)
        return;
    auto *wr = new WriteRequest;
    wr->data = encode_message(msg);
    if (max_queued_ && queued_bytes_ + wr->data.size() > max_queued_) {
        size_t queued = queued_bytes_;
        delete wr;
        close("peer reads none of its replies: " + std::to_string(queued) +
              " bytes queued, limit " + std::to_string(max_queued_));
        return;
    }
    wr->req.data = this;
    uv_buf_t buf = uv_buf_init(wr->data.data(), static_cast<unsigned>(wr->data.size()));
    queued_bytes_ += wr->data.size();
    writes_in_flight_++;
    int rc = uv_write(&wr->req, reinterpret_cast<uv_stream_t *>(tcp_), &buf, 1, on_written);
    if (rc != 0) {
        writes_in_flight_--;
        queued_bytes_ -= wr->data.size();
        delete wr;
        close(std::string("write: ") + uv_strerror(rc));
    }
}

void Connection::on_written(uv_write_t *req, int status) noexcept
{
    auto *wr = reinterpret_cast<WriteRequest *>(req);
    auto *conn = static_cast<Connection *>(req->data);
    conn->writes_in_flight_--;
    conn->queued_bytes_ -= wr->data.size();
    delete wr;
    guarded("write", [&] {
        if (status < 0 && status != UV_ECANCELED)
            conn->close(std::string("write: ") + uv_strerror(status));
        else if (conn->close_after_write_ && conn->writes_in_flight_ == 0)
            conn->close(conn->close_reason_);
    });
}

void Connection::fail(uint64_t id, const std::string &message)
{
    if (closing_ || close_after_write_)
        return;
    log_warning("%s: %s; closing the connection", describe().c_str(), message.c_str());
    send_error_and_close(id, message);
}

void Connection::send_error_and_close(uint64_t id, const std::string &message)
{
    if (closing_ || close_after_write_)
        return;
    send(Error{id, message});
    if (closing_) // the send itself failed
        return;
    close_after_write_ = true;
    close_reason_ = message;
    uv_read_stop(reinterpret_cast<uv_stream_t *>(tcp_));
    if (writes_in_flight_ == 0)
        close(message);
}

void Connection::set_idle_timeout(uint64_t ms)
{
    if (closing_)
        return;
    if (!idle_timer_) {
        idle_timer_ = new uv_timer_t;
        uv_timer_init(tcp_->loop, idle_timer_);
        idle_timer_->data = this;
    }
    idle_ms_ = ms;
    if (ms == 0)
        uv_timer_stop(idle_timer_);
    else
        uv_timer_start(idle_timer_, on_idle, ms, ms);
}

void Connection::on_idle(uv_timer_t *timer) noexcept
{
    auto *conn = static_cast<Connection *>(timer->data);
    guarded("idle timeout", [&] {
        conn->idled_out_ = !conn->closing_;
        conn->close("idle for " + std::to_string(conn->idle_ms_) + " ms");
    });
}

void Connection::handshake_done()
{
    awaiting_auth_ack_ = false;
    if (handshake_completed_)
        return;
    handshake_completed_ = true;
    if (on_handshake_done)
        on_handshake_done();
}

void Connection::handshake_done_on_ack(uint64_t auth_id)
{
    awaiting_auth_ack_ = true;
    auth_id_ = auth_id;
}

void Connection::close(const std::string &why)
{
    if (closing_)
        return;
    closing_ = true;
    close_reason_ = why;
    if (idle_timer_) {
        close_and_delete(idle_timer_);
        idle_timer_ = nullptr;
    }
    uv_close(reinterpret_cast<uv_handle_t *>(tcp_), on_closed);
}

void Connection::on_closed(uv_handle_t *handle) noexcept
{
    auto *conn = static_cast<Connection *>(handle->data);
    delete reinterpret_cast<uv_tcp_t *>(handle);
    conn->tcp_ = nullptr;
    conn->finish_close();
}

void Connection::finish_close()
{
    // Hold ourselves until the handler is done: it may drop the last owner.
    auto self = std::move(keep_alive_);
    if (on_close_) {
        auto handler = std::move(on_close_);
        std::optional<std::string> error = caught([&] { handler(*this, close_reason_); });
        if (error)
            log_err("%s: after closing (%s): %s", describe().c_str(), close_reason_.c_str(),
                    error->c_str());
    }
    on_message_ = nullptr;
    on_handshake_done = nullptr;
}

// ---- Server ----

Server::~Server() { close(); }

int Server::listen(const std::string &address, AcceptHandler on_accept, std::string &error)
{
    sockaddr_storage ss;
    int rc = numeric_sockaddr(address, ss, error);
    if (rc != 0)
        return rc;
    on_accept_ = std::move(on_accept);
    listener_ = new uv_tcp_t;
    uv_tcp_init(loop_, listener_);
    listener_->data = this;
    rc = uv_tcp_bind(listener_, reinterpret_cast<sockaddr *>(&ss), 0);
    if (rc == 0)
        rc = uv_listen(reinterpret_cast<uv_stream_t *>(listener_), 128, on_connection);
    if (rc != 0) {
        error = "listen on " + address + ": " + uv_strerror(rc);
        close();
    }
    return rc;
}

int Server::port() const
{
    if (!listener_)
        return 0;
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr *>(&ss), &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(reinterpret_cast<sockaddr_in *>(&ss)->sin_port);
    return ntohs(reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port);
}

void Server::close()
{
    if (listener_) {
        close_and_delete(listener_);
        listener_ = nullptr;
    }
}

void Server::on_connection(uv_stream_t *stream, int status) noexcept
{
    auto *server = static_cast<Server *>(stream->data);
    if (status < 0) {
        log_warning("accept: %s", uv_strerror(status));
        return;
    }
    auto *tcp = new uv_tcp_t;
    uv_tcp_init(server->loop_, tcp);
    if (uv_accept(stream, reinterpret_cast<uv_stream_t *>(tcp)) != 0) {
        close_and_delete(tcp);
        return;
    }
    std::shared_ptr<Connection> conn;
    std::optional<std::string> error = caught([&] {
        conn = Connection::adopt(tcp, server->max_frame_);
        server->on_accept_(conn);
    });
    if (error) { // the connection goes; the server keeps accepting
        log_err("accept: %s", error->c_str());
        if (conn)
            guarded("accept: closing", [&] { conn->close("accept: " + *error); });
        else
            close_and_delete(tcp);
    }
}

} // namespace kiln
