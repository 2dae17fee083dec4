// The curl multi interface on a uv loop (see http_client.hpp).  The shape
// is curl's own multi-uv example: curl tells us which sockets to watch
// (on_socket) and when to wake it (on_timer); libuv tells curl what
// happened (curl_multi_socket_action); curl_multi_info_read says which
// transfers are done.
#include "http_client.hpp"

#include <strings.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include <curl/curl.h>

namespace kiln_http {

struct Client::Transfer {
    Client *client = nullptr;
    CURL *easy = nullptr;
    curl_slist *headers = nullptr;
    Done done;
    Response resp;
    char errbuf[CURL_ERROR_SIZE] = {};
    bool answered = false; // made by answer_later(): resp is the answer
};

struct Client::Socket {
    uv_poll_t poll;
    curl_socket_t fd;
};

namespace {

CURLM *multi_of(void *m) { return static_cast<CURLM *>(m); }

size_t on_body(char *data, size_t size, size_t n, void *arg) noexcept
{
    Response &r = static_cast<Client::Transfer *>(arg)->resp;
    size_t len = size * n;
    if (r.body_start.size() < kBodyKept)
        r.body_start.append(data, std::min(len, kBodyKept - r.body_start.size()));
    return len; // the rest is read and dropped: the time limit bounds it
}

size_t on_header(char *data, size_t size, size_t n, void *arg) noexcept
{
    Response &r = static_cast<Client::Transfer *>(arg)->resp;
    size_t len = size * n;
    static const char kName[] = "retry-after:";
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        r.retry_after.clear(); // a new response (after a 100 Continue)
    } else if (len > sizeof kName - 1 && strncasecmp(data, kName, sizeof kName - 1) == 0) {
        size_t b = sizeof kName - 1, e = len;
        while (b < e && (data[b] == ' ' || data[b] == '\t'))
            b++;
        while (e > b && (data[e - 1] == '\r' || data[e - 1] == '\n' || data[e - 1] == ' '))
            e--;
        r.retry_after.assign(data + b, std::min<size_t>(e - b, 100));
    }
    return len;
}

// Loopback never goes through a proxy the environment names (http_proxy):
// the operator's own no_proxy list is kept and loopback added to it.
std::string no_proxy_list()
{
    const char *env = getenv("no_proxy");
    if (!env || !*env)
        env = getenv("NO_PROXY");
    std::string list = env && *env ? std::string(env) + "," : "";
    return list + "127.0.0.1,::1,localhost";
}

} // namespace

Client *Client::create(uv_loop_t *loop, std::string &error) noexcept
{
    static std::once_flag once; // libcurl's process-wide set-up, refcounted by curl
    static CURLcode global = CURLE_OK;
    std::call_once(once, [] { global = curl_global_init(CURL_GLOBAL_DEFAULT); });
    if (global != CURLE_OK) {
        error = std::string("curl_global_init: ") + curl_easy_strerror(global);
        return nullptr;
    }
    Client *c = new (std::nothrow) Client(loop);
    if (!c || !(c->multi_ = curl_multi_init())) {
        error = "curl_multi_init failed";
        delete c;
        return nullptr;
    }
    CURLM *m = multi_of(c->multi_);
    curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, &Client::on_socket);
    curl_multi_setopt(m, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, &Client::on_timer);
    curl_multi_setopt(m, CURLMOPT_TIMERDATA, c);
    uv_timer_init(loop, &c->timer_);
    uv_timer_init(loop, &c->deferred_);
    c->timer_.data = c->deferred_.data = c;
    c->open_handles_ = 2;
    return c;
}

Client::~Client() = default;

void Client::destroy() noexcept
{
    closing_ = true; // curl's callbacks from here on are ignored
    for (Transfer *t : transfers_) { // none, by contract; never leak one
        curl_multi_remove_handle(multi_of(multi_), t->easy);
        curl_easy_cleanup(t->easy);
        curl_slist_free_all(t->headers);
        delete t;
    }
    transfers_.clear();
    for (Transfer *t : cancelled_)
        delete t;
    cancelled_.clear();
    // Watched sockets stop being watched before curl closes them.
    for (Socket *s : sockets_) {
        uv_poll_stop(&s->poll);
        open_handles_++;
        uv_close(reinterpret_cast<uv_handle_t *>(&s->poll), on_closed);
    }
    sockets_.clear();
    curl_multi_cleanup(multi_of(multi_));
    multi_ = nullptr;
    uv_close(reinterpret_cast<uv_handle_t *>(&timer_), on_closed);
    uv_close(reinterpret_cast<uv_handle_t *>(&deferred_), on_closed);
}

// A socket's handle and the client's two timers all close through here; the
// client goes with the last of them once destroy() has run.
void Client::on_closed(uv_handle_t *handle) noexcept
{
    if (handle->type == UV_POLL) {
        Socket *s = reinterpret_cast<Socket *>(handle); // poll is its first member
        Client *c = static_cast<Client *>(handle->data);
        delete s;
        c->handle_closed();
    } else {
        static_cast<Client *>(handle->data)->handle_closed();
    }
}

void Client::handle_closed() noexcept
{
    if (--open_handles_ == 0 && closing_)
        delete this;
}

int Client::start(const Request &req, Done done, void **handle) noexcept
{
    if (closing_ || req.url.empty())
        return -EINVAL;
    Transfer *t = new (std::nothrow) Transfer();
    if (!t)
        return -ENOMEM;
    try {
        t->client = this;
        t->done = std::move(done);
        CURL *e = t->easy = curl_easy_init();
        if (!e)
            throw std::bad_alloc();
        for (const std::string &h : req.headers)
            t->headers = curl_slist_append(t->headers, h.c_str());
        // No "Expect: 100-continue" round trip before the body.
        t->headers = curl_slist_append(t->headers, "Expect:");
        uint64_t timeout = req.timeout_ms == 0 || req.timeout_ms > kMaxTimeoutMs
                               ? kMaxTimeoutMs : req.timeout_ms;
        bool ok = curl_easy_setopt(e, CURLOPT_URL, req.url.c_str()) == CURLE_OK &&
                  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
                  curl_easy_setopt(e, CURLOPT_NOPROXY, no_proxy_list().c_str()) == CURLE_OK &&
                  (req.ca_file.empty() ||
                   curl_easy_setopt(e, CURLOPT_CAINFO, req.ca_file.c_str()) == CURLE_OK);
        if (!ok) {
            curl_easy_cleanup(e);
            curl_slist_free_all(t->headers);
            delete t;
            return -EINVAL;
        }
        curl_easy_setopt(e, CURLOPT_PRIVATE, t);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout));
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
        if (req.method == "POST") {
            curl_easy_setopt(e, CURLOPT_POST, 1L);
        } else if (req.method != "GET") {
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req.method.c_str());
        }
        if (req.method != "GET") {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
            curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req.body.c_str());
        }
        transfers_.insert(t);
    } catch (...) {
        if (t->easy)
            curl_easy_cleanup(t->easy);
        curl_slist_free_all(t->headers);
        delete t;
        return -ENOMEM;
    }
    // curl only asks for a timer here (on_timer): nothing completes inside start.
    if (curl_multi_add_handle(multi_of(multi_), t->easy) != CURLM_OK) {
        transfers_.erase(t);
        curl_easy_cleanup(t->easy);
        curl_slist_free_all(t->headers);
        delete t;
        return -ENOMEM;
    }
    if (handle)
        *handle = t;
    return 0;
}

void Client::cancel(void *handle) noexcept
{
    Transfer *t = static_cast<Transfer *>(handle);
    auto it = transfers_.find(t);
    if (it == transfers_.end())
        return;
    transfers_.erase(it);
    curl_multi_remove_handle(multi_of(multi_), t->easy); // curl forgets it now
    curl_easy_cleanup(t->easy);
    t->easy = nullptr;
    try {
        cancelled_.push_back(t);
    } catch (...) { // no memory to defer it: its callback would be lost
        t->resp.cancelled = true;
        complete(t, true);
        return;
    }
    uv_timer_start(&deferred_, on_deferred, 0, 0);
}

int Client::answer_later(const Response &resp, Done done) noexcept
{
    if (closing_)
        return -EINVAL;
    Transfer *t = new (std::nothrow) Transfer();
    if (!t)
        return -ENOMEM;
    try {
        t->resp = resp;
        t->answered = true;
        t->done = std::move(done);
        cancelled_.push_back(t);
    } catch (...) {
        delete t;
        return -ENOMEM;
    }
    uv_timer_start(&deferred_, on_deferred, 0, 0);
    return 0;
}

void Client::on_deferred(uv_timer_t *timer) noexcept
{
    Client *c = static_cast<Client *>(timer->data);
    std::vector<Transfer *> done;
    done.swap(c->cancelled_);
    for (Transfer *t : done)
        c->complete(t, !t->answered);
}

int Client::on_socket(void *, int fd, int what, void *client, void *socket) noexcept
{
    Client *c = static_cast<Client *>(client);
    if (c->closing_)
        return 0;
    Socket *s = static_cast<Socket *>(socket);
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(multi_of(c->multi_), fd, nullptr);
            c->sockets_.erase(s);
            uv_poll_stop(&s->poll);
            uv_close(reinterpret_cast<uv_handle_t *>(&s->poll), on_closed);
        }
        return 0;
    }
    if (!s) {
        s = new (std::nothrow) Socket();
        if (!s)
            return -1;
        if (uv_poll_init_socket(c->loop_, &s->poll, fd) < 0) {
            delete s;
            return -1;
        }
        try {
            c->sockets_.insert(s);
        } catch (...) {
            uv_close(reinterpret_cast<uv_handle_t *>(&s->poll), [](uv_handle_t *h) noexcept {
                delete reinterpret_cast<Socket *>(h);
            });
            return -1;
        }
        s->fd = fd;
        s->poll.data = c;
        c->open_handles_++;
        curl_multi_assign(multi_of(c->multi_), fd, s);
    }
    int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    return uv_poll_start(&s->poll, events, on_poll) < 0 ? -1 : 0;
}

void Client::on_poll(uv_poll_t *poll, int status, int events) noexcept
{
    Client *c = static_cast<Client *>(poll->data);
    int flags = status < 0 ? CURL_CSELECT_ERR
                           : (events & UV_READABLE ? CURL_CSELECT_IN : 0) |
                                 (events & UV_WRITABLE ? CURL_CSELECT_OUT : 0);
    c->act(reinterpret_cast<Socket *>(poll)->fd, flags);
}

int Client::on_timer(void *, long timeout_ms, void *client) noexcept
{
    Client *c = static_cast<Client *>(client);
    if (c->closing_)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer_);
    else // 0 too: on the next turn, never from inside curl's call
        uv_timer_start(&c->timer_, on_timeout, static_cast<uint64_t>(timeout_ms), 0);
    return 0;
}

void Client::on_timeout(uv_timer_t *timer) noexcept
{
    static_cast<Client *>(timer->data)->act(CURL_SOCKET_TIMEOUT, 0);
}

void Client::act(int fd, int events) noexcept
{
    int running = 0;
    curl_multi_socket_action(multi_of(multi_), fd, events, &running);
    finish_done();
}

void Client::finish_done() noexcept
{
    int left = 0;
    while (CURLMsg *msg = curl_multi_info_read(multi_of(multi_), &left)) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode code = msg->data.result;
        void *priv = nullptr;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        Transfer *t = static_cast<Transfer *>(priv);
        if (!t || !transfers_.erase(t))
            continue;
        t->resp.curl_code = code;
        if (code != CURLE_OK)
            t->resp.curl_error = t->errbuf[0] ? t->errbuf : curl_easy_strerror(code);
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->resp.status);
        curl_multi_remove_handle(multi_of(multi_), t->easy);
        curl_easy_cleanup(t->easy);
        t->easy = nullptr;
        complete(t, false);
        if (closing_)
            return; // a callback ended the client (it may not, but never touch curl then)
    }
}

// The transfer has left curl: hand over its response and forget it.
void Client::complete(Transfer *t, bool cancelled) noexcept
{
    curl_slist_free_all(t->headers);
    Done done = std::move(t->done);
    Response resp = std::move(t->resp);
    delete t;
    if (cancelled) {
        resp = Response();
        resp.cancelled = true;
    }
    if (done)
        done(resp);
}

} // namespace kiln_http
