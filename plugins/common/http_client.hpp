#pragma once
// An HTTP client for plugins, on the plugin's uv loop: libcurl's multi
// interface driven by libuv (curl's sockets watched with one uv_poll each,
// curl's one timer with one uv_timer), so a request never blocks the loop
// and needs no thread of ours.  (curl resolves host names in a thread of its
// own; numeric addresses need none.)
//
// A request completes exactly once, later, from the loop — also when
// cancelled.  TLS peers are verified (CURLOPT_SSL_VERIFYPEER/HOST); each
// request has a bounded total time; redirects are not followed; only http
// and https are spoken.  Built into a static library that the forge and
// webhook plugins link: each .so gets its own copy, state lives in the
// Client its plugin instance owns.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include <uv.h>

namespace kiln_http {

// The longest a request may take, whatever a config asks for.
constexpr uint64_t kMaxTimeoutMs = 10 * 60 * 1000;
constexpr uint64_t kDefaultTimeoutMs = 10 * 1000;
// Bytes of a response body kept (for an error message).
constexpr size_t kBodyKept = 512;

struct Request {
    std::string method = "POST";
    std::string url;
    std::vector<std::string> headers; // "Name: value"
    std::string body;
    uint64_t timeout_ms = kDefaultTimeoutMs; // 0 or above kMaxTimeoutMs: kMaxTimeoutMs
    std::string ca_file;                     // "": the system's CA store
};

struct Response {
    bool cancelled = false;
    int curl_code = 0;        // CURLcode: 0 when an HTTP response arrived
    std::string curl_error;   // curl's text for curl_code (names no URL path)
    long status = 0;          // HTTP status, 0 without a response
    std::string retry_after;  // the Retry-After header's value, "" when absent
    std::string body_start;   // the body's first kBodyKept bytes
};

// Called once per request, from the loop.  Must not throw.
using Done = std::function<void(const Response &)>;

class Client {
  public:
    // Returns nullptr (and says why in `error`) when curl cannot be set up.
    static Client *create(uv_loop_t *loop, std::string &error) noexcept;
    // Ends the client: no request may be running.  Its handles are closed
    // and the object deleted from their close callbacks, on a later turn of
    // the loop (the plugin's code stays mapped: the loader never dlcloses).
    void destroy() noexcept;

    // Starts a request: 0 with *handle naming it (for cancel), or a
    // negative errno (then `done` is never called).
    int start(const Request &req, Done done, void **handle) noexcept;
    // `done` then runs once, later, with cancelled = true; an unknown or
    // finished handle is ignored.
    void cancel(void *handle) noexcept;
    // No request: `done` gets `resp` later, from the loop, as if a request
    // had been answered (a plugin with nothing to send still calls back
    // later, as the ABI asks).  0 or -ENOMEM.
    int answer_later(const Response &resp, Done done) noexcept;

    struct Transfer;
    struct Socket;

  private:
    explicit Client(uv_loop_t *loop) : loop_(loop) {}
    ~Client();
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    static int on_socket(void *easy, int fd, int what, void *client, void *socket) noexcept;
    static int on_timer(void *multi, long timeout_ms, void *client) noexcept;
    static void on_poll(uv_poll_t *poll, int status, int events) noexcept;
    static void on_timeout(uv_timer_t *timer) noexcept;
    static void on_deferred(uv_timer_t *timer) noexcept;
    static void on_closed(uv_handle_t *handle) noexcept;

    void act(int fd, int events) noexcept; // curl_multi_socket_action, then completions
    void finish_done() noexcept;           // every transfer curl says is done
    void complete(Transfer *t, bool cancelled) noexcept;
    void handle_closed() noexcept;

    uv_loop_t *loop_;
    void *multi_ = nullptr; // CURLM
    uv_timer_t timer_;      // curl's timeout
    uv_timer_t deferred_;   // completes cancelled transfers on a later turn
    std::unordered_set<Transfer *> transfers_;
    std::unordered_set<Socket *> sockets_; // watched for curl
    std::vector<Transfer *> cancelled_; // and those answer_later() made
    int open_handles_ = 0;
    bool closing_ = false;
};

} // namespace kiln_http
