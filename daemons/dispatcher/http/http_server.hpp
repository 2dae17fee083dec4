#pragma once
// The dispatcher's HTTP server: H2O (Debian's libh2o, built with libuv) on
// the dispatcher's own loop — no second loop, no thread per connection, no
// hand-written parser.  Handlers answer at once (send) or open a stream
// whose body is written over time (server-sent events, a log being
// followed).  Every request is bounded: header bytes (431), body bytes
// (413, from H2O), open connections (one more is closed at once), and the
// time to receive a request (H2O closes the connection).  A handler that
// throws costs its request a 500, never the daemon.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <uv.h>

namespace kiln {

// dispatcher.toml [http]; see kiln.toml(5).
struct HttpConfig {
    std::string listen = "127.0.0.1:8080"; // "" = off
    std::string auth_file;                 // HTTP basic accounts "user:$argon2id$...", mode 600
    bool is_public = false; // key `public`: a non-loopback listen needs auth_file or public = true
    size_t max_header_bytes = 16384, max_body_bytes = 1 << 20, max_connections = 1024;
    uint64_t request_timeout_ms = 10000;
    size_t max_stream_buffer = 1 << 20; // bytes queued to one stream before it is dropped
    // How people reach the pages ("https://ci.example.com", no trailing '/'):
    // report events link a commit's page from it.  "": no links.
    std::string base_url;

    bool operator==(const HttpConfig &o) const
    {
        return listen == o.listen && auth_file == o.auth_file && is_public == o.is_public &&
               max_header_bytes == o.max_header_bytes && max_body_bytes == o.max_body_bytes &&
               max_connections == o.max_connections &&
               request_timeout_ms == o.request_timeout_ms &&
               max_stream_buffer == o.max_stream_buffer && base_url == o.base_url;
    }
};

struct HttpRequest {
    // path: the raw request path (not percent-decoded, no query); query: what
    // followed '?', raw.  peer: "127.0.0.1:50312".
    std::string method, path, query, body, peer;
    std::vector<std::pair<std::string, std::string>> headers; // names lower-case
    // The first header of that (lower-case) name, or nullptr.
    const std::string *header(const std::string &lower_name) const;
    // The first query parameter of that name, percent-decoded ('+' is a
    // space); "" when absent.
    std::string param(const std::string &name) const;
};

// A response whose body is written over time (SSE, log follow).  Its bytes
// wait in memory only while the client is slower than the writer, up to
// HttpConfig::max_stream_buffer; past that the client is dropped.
class HttpStream {
  public:
    virtual ~HttpStream() = default;
    // Queue `chunk`; false once closed or over its buffer bound (then closed).
    virtual bool write(std::string chunk) = 0;
    // End the response (what was queued is still sent); idempotent.
    virtual void close() = 0;
    virtual bool closed() const = 0;
    // Runs once, on the loop, when the stream becomes closed: the client
    // went away, it fell behind its bound, or close() was called.
    std::function<void()> on_close;
};

// An answer given after the handler has returned, once a read off the
// loop is done: one send(), later, on the loop.  gone() once the client has
// left meanwhile (send() is then a no-op).
class HttpLater {
  public:
    virtual ~HttpLater() = default;
    virtual void send(int status, const std::string &content_type, std::string body,
                      std::vector<std::pair<std::string, std::string>> headers = {}) = 0;
    virtual bool gone() const = 0;
};

// How a handler answers: exactly one send(), stream() or later(), during the call.
class HttpResponder {
  public:
    virtual ~HttpResponder() = default;
    virtual void send(int status, const std::string &content_type, std::string body,
                      std::vector<std::pair<std::string, std::string>> headers = {}) = 0;
    virtual std::shared_ptr<HttpStream> stream(int status, const std::string &content_type) = 0;
    virtual std::shared_ptr<HttpLater> later() = 0;
};

using HttpHandler = std::function<void(const HttpRequest &, HttpResponder &)>;

class HttpServer {
  public:
    // Touches neither network nor disk: start() does.
    HttpServer(uv_loop_t *loop, HttpConfig config);
    ~HttpServer();
    HttpServer(const HttpServer &) = delete;
    HttpServer &operator=(const HttpServer &) = delete;

    // Longest matching prefix wins; "GET" routes also answer HEAD.  Unknown
    // path: 404; wrong method: 405.  A handler that throws: 500 (logged).
    void route(const std::string &method, const std::string &path_prefix, HttpHandler handler);
    // Read auth_file, listen; false with the reason in `error`.
    bool start(std::string &error);
    // Stop accepting, end every stream, close idle connections (those still
    // sending are cut after a second); the loop can then end.
    void stop();
    // The bound port (listen may say 0), 0 before start().
    int port() const;
    // Open connections now, for status lines and tests.
    size_t connections() const;

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

} // namespace kiln
