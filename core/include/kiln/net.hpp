#pragma once
// TCP connections carrying Kiln frames, on libuv.  A Connection owns its
// uv_tcp_t, decodes frames into Messages, queues writes, and closes itself
// on a malformed frame (after an `error` frame to the peer), an idle timeout
// or a peer that went away.  A Server accepts many; a Client keeps one up,
// reconnecting with exponential backoff and jitter (client.cpp).
//
// The exception boundary: every callback libuv makes here is noexcept, and
// the owner's handlers run through caught()/guarded() (log.hpp).  A message
// handler that throws costs its own connection (logged as "peer P (role
// name): handling TYPE: why", an error frame, a close), never the daemon.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <sys/socket.h>
#include <uv.h>

#include <kiln/frame_codec.hpp>
#include <kiln/messages.hpp>

namespace kiln {

// "127.0.0.1:8888", "[::1]:8888", "localhost:8888" → host and port; false
// with `error` set when malformed.
bool split_host_port(const std::string &text, std::string &host, int &port, std::string &error);
// 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 or "localhost": reachable from this host only.
bool is_loopback_host(const std::string &host);
// A numeric "host:port" (or "localhost:port") as a socket address: a daemon
// never waits on DNS.  0, or UV_EINVAL with `error` saying why.
int numeric_sockaddr(const std::string &address, sockaddr_storage &ss, std::string &error);

class Connection : public std::enable_shared_from_this<Connection> {
  public:
    using MessageHandler = std::function<void(Connection &, Message &&)>;
    using CloseHandler = std::function<void(Connection &, const std::string &why)>;

    // Takes an initialised uv_tcp_t (connected or accepted) allocated with new.
    static std::shared_ptr<Connection> adopt(uv_tcp_t *tcp, size_t max_frame);

    // Start reading; handlers run on the loop.  on_close runs exactly once.
    // A message handler that throws closes this connection (see above).
    void start(MessageHandler on_message, CloseHandler on_close);

    // Queue a message; ignored once closing.
    void send(const Message &msg);
    // Send an `error` frame, then close once it is written.
    void fail(uint64_t id, const std::string &message);
    // Close now (queued writes are dropped); idempotent.
    void close(const std::string &why);

    // Close the connection when nothing arrives for `ms` (0: never).
    void set_idle_timeout(uint64_t ms);
    // Close it when more than `bytes` wait to be written (0: no bound): a
    // peer that reads none of its replies must not grow our memory.
    void set_max_queued_bytes(size_t bytes) { max_queued_ = bytes; }

    // The hello/auth exchange, seen from the peer that opened the
    // connection (ClientHandshake::reply marks it): done now, or done when
    // the Ack of request `auth_id` arrives.  A Client resets its backoff
    // only then, so a peer refused at every attempt keeps backing off.
    void handshake_done();
    void handshake_done_on_ack(uint64_t auth_id);
    bool handshake_completed() const { return handshake_completed_; }
    std::function<void()> on_handshake_done; // for the Client

    bool closing() const { return closing_; }
    // Closed because nothing arrived for the idle timeout (a silent peer),
    // rather than by either side or an error.
    bool idled_out() const { return idled_out_; }
    // "peer 127.0.0.1:4242 (runner r1)", for log lines.
    std::string describe() const;
    const std::string &peer() const { return peer_; }
    size_t queued_bytes() const { return queued_bytes_; }

    // Free for the owner: what this peer is (a runner, an observer, ...).
    std::string role;
    std::string name;
    uint64_t tag = 0;

    ~Connection();

  private:
    Connection() = default;
    static void on_alloc(uv_handle_t *, size_t, uv_buf_t *) noexcept;
    static void on_read(uv_stream_t *, ssize_t, const uv_buf_t *) noexcept;
    static void on_written(uv_write_t *, int) noexcept;
    static void on_idle(uv_timer_t *) noexcept;
    static void on_closed(uv_handle_t *) noexcept;
    void handle_bytes(const char *data, size_t len);
    void dispatch(Message &&msg);
    void send_error_and_close(uint64_t id, const std::string &message);
    void finish_close();

    uv_tcp_t *tcp_ = nullptr;
    uv_timer_t *idle_timer_ = nullptr;
    uint64_t idle_ms_ = 0;
    FrameDecoder decoder_;
    MessageHandler on_message_;
    CloseHandler on_close_;
    std::shared_ptr<Connection> keep_alive_; // held while the handle is open
    std::string peer_;
    std::string close_reason_;
    bool closing_ = false;
    bool idled_out_ = false;
    bool close_after_write_ = false;
    size_t queued_bytes_ = 0;
    size_t max_queued_ = 0;
    int writes_in_flight_ = 0;
    bool handshake_completed_ = false;
    bool awaiting_auth_ack_ = false;
    uint64_t auth_id_ = 0;
};

class Server {
  public:
    using AcceptHandler = std::function<void(std::shared_ptr<Connection>)>;

    Server(uv_loop_t *loop, size_t max_frame) : loop_(loop), max_frame_(max_frame) {}
    ~Server();

    // Bind and listen on "host:port".  0, or a negative libuv error with
    // `error` saying what failed.
    int listen(const std::string &address, AcceptHandler on_accept, std::string &error);
    // The port actually bound (useful with port 0).
    int port() const;
    void close();

  private:
    static void on_connection(uv_stream_t *, int) noexcept;
    uv_loop_t *loop_;
    size_t max_frame_;
    uv_tcp_t *listener_ = nullptr;
    AcceptHandler on_accept_;
};

// Exponential backoff with jitter: with c = min(cap, base * 2^n), the n-th
// retry (from 0) waits a random time in [c/2, c].  The defaults are a
// Client's: a peer that lost its dispatcher retries within 250 ms, then
// 0.5, 1, 2, 4, 5, 5 ... s.
class Backoff {
  public:
    static constexpr uint64_t kDefaultBaseMs = 250;
    static constexpr uint64_t kDefaultCapMs = 5000; // reconnect_max's default
    Backoff(uint64_t base_ms = kDefaultBaseMs, uint64_t cap_ms = kDefaultCapMs)
        : base_(base_ms), cap_(cap_ms < base_ms ? base_ms : cap_ms) {}
    uint64_t next_delay_ms();
    void reset() { attempt_ = 0; }
    void set_cap(uint64_t cap_ms) { cap_ = cap_ms < base_ ? base_ : cap_ms; }
    unsigned attempt() const { return attempt_; }
    uint64_t cap_ms() const { return cap_; }

  private:
    uint64_t base_, cap_;
    unsigned attempt_ = 0;
};

// The dispatcher connection of a runner, an observer or kilnctl.  After a
// drop it tries again after Backoff's waits (the first within 250 ms); the
// waits start over only once the connection's hello/auth exchange has
// succeeded (Connection::handshake_done, marked by ClientHandshake::reply),
// so a peer the dispatcher refuses backs off up to reconnect_max and logs
// "authentication failed: WHY; retrying in N s" once per attempt.  The
// handlers below run inside the exception boundary: a throw closes the
// connection (and a reconnect follows), never the daemon.
class Client {
  public:
    using ConnectedHandler = std::function<void(Connection &)>;
    using MessageHandler = Connection::MessageHandler;
    using DisconnectedHandler = std::function<void(const std::string &why)>;

    // `reconnect` false: one attempt, then on_disconnected (for kilnctl).
    Client(uv_loop_t *loop, std::string address, size_t max_frame, bool reconnect = true);
    ~Client();

    ConnectedHandler on_connected;
    MessageHandler on_message;
    DisconnectedHandler on_disconnected;

    void start();
    void stop();
    // The longest wait between two attempts (reconnect_max; default 5 s).
    void set_reconnect_max(uint64_t ms) { backoff_.set_cap(ms); }
    // The live connection, or nullptr.
    Connection *connection() const { return conn_.get(); }
    // Send if connected; false otherwise.
    bool send(const Message &msg);
    const std::string &address() const { return address_; }

  private:
    static void on_connect(uv_connect_t *, int) noexcept;
    static void on_retry(uv_timer_t *) noexcept;
    void attempt();
    void adopt(uv_tcp_t *tcp);
    void on_connection_message(Connection &conn, Message &&msg);
    void on_connection_closed(const std::string &why);
    void schedule_retry(const std::string &why, bool refused);

    uv_loop_t *loop_;
    std::string address_;
    size_t max_frame_;
    bool reconnect_;
    bool stopped_ = true;
    bool connecting_ = false;
    Backoff backoff_;
    std::string refusal_; // an error frame that answered our hello or auth
    uv_timer_t *retry_timer_ = nullptr;
    std::shared_ptr<Connection> conn_;
    // Shared with in-flight callbacks so they can tell the Client is gone.
    std::shared_ptr<Client *> alive_;
};

} // namespace kiln
