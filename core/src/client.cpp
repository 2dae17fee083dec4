// The reconnecting client every peer of the dispatcher uses, and its
// backoff.  The backoff starts over only once the dispatcher accepted our
// hello/auth exchange: a peer it refuses (a wrong secret) backs off to
// reconnect_max instead of knocking ten times a second, and says why once
// per attempt.
#include <kiln/net.hpp>

#include <optional>
#include <random>

#include <kiln/log.hpp>

#include "close_handle.hpp"

namespace kiln {

// ---- Backoff ----

uint64_t Backoff::next_delay_ms()
{
    thread_local std::mt19937_64 rng{std::random_device{}()};
    uint64_t ceiling = base_;
    for (unsigned i = 0; i < attempt_ && ceiling < cap_; i++)
        ceiling *= 2;
    if (ceiling > cap_)
        ceiling = cap_;
    if (attempt_ < 64)
        attempt_++;
    std::uniform_int_distribution<uint64_t> pick(ceiling / 2, ceiling);
    return pick(rng);
}

// ---- Client ----

namespace {
struct ConnectRequest {
    uv_connect_t req;
    std::weak_ptr<Client *> client;
    uv_tcp_t *tcp;
};

std::string seconds_text(uint64_t ms)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms) / 1000.0);
    return buf;
}
} // namespace

Client::Client(uv_loop_t *loop, std::string address, size_t max_frame, bool reconnect)
    : loop_(loop), address_(std::move(address)), max_frame_(max_frame), reconnect_(reconnect),
      alive_(std::make_shared<Client *>(this))
{
}

Client::~Client()
{
    stop();
    *alive_ = nullptr;
    if (retry_timer_)
        close_and_delete(retry_timer_);
}

void Client::start()
{
    stopped_ = false;
    if (!conn_ && !connecting_)
        attempt();
}

void Client::stop()
{
    stopped_ = true;
    if (retry_timer_)
        uv_timer_stop(retry_timer_);
    if (conn_)
        conn_->close("client stopped");
}

bool Client::send(const Message &msg)
{
    if (!conn_ || conn_->closing())
        return false;
    conn_->send(msg);
    return true;
}

void Client::attempt()
{
    sockaddr_storage ss;
    std::string error;
    if (numeric_sockaddr(address_, ss, error) != 0) {
        schedule_retry(error, false);
        return;
    }
    auto *cr = new ConnectRequest;
    cr->client = alive_;
    cr->tcp = new uv_tcp_t;
    uv_tcp_init(loop_, cr->tcp);
    connecting_ = true;
    int rc = uv_tcp_connect(&cr->req, cr->tcp, reinterpret_cast<sockaddr *>(&ss), on_connect);
    if (rc != 0) {
        connecting_ = false;
        close_and_delete(cr->tcp);
        delete cr;
        schedule_retry(std::string("connect: ") + uv_strerror(rc), false);
    }
}

void Client::on_connect(uv_connect_t *req, int status) noexcept
{
    std::unique_ptr<ConnectRequest> cr(reinterpret_cast<ConnectRequest *>(req));
    auto alive = cr->client.lock();
    Client *client = alive ? *alive : nullptr;
    if (!client || client->stopped_ || status < 0) {
        close_and_delete(cr->tcp);
        if (client) {
            client->connecting_ = false;
            if (!client->stopped_)
                guarded("reconnect", [&] {
                    client->schedule_retry(std::string("connect to ") + client->address_ + ": " +
                                               uv_strerror(status),
                                           false);
                });
        }
        return;
    }
    client->connecting_ = false;
    if (guarded("connected", [&] { client->adopt(cr->tcp); }))
        return;
    // Out of memory half-way: drop what there is and try again later.
    if (client->conn_)
        guarded("connected", [&] { client->conn_->close("could not set up the connection"); });
    else
        close_and_delete(cr->tcp); // not adopted: nothing else owns the handle
    client->conn_.reset();
    guarded("reconnect", [&] { client->schedule_retry("could not set up the connection", false); });
}

void Client::adopt(uv_tcp_t *tcp)
{
    conn_ = Connection::adopt(tcp, max_frame_);
    refusal_.clear();
    std::weak_ptr<Client *> weak = alive_;
    conn_->on_handshake_done = [weak] {
        if (auto alive = weak.lock(); alive && *alive)
            (*alive)->backoff_.reset(); // accepted: the next drop retries fast again
    };
    conn_->start(
        [weak](Connection &conn, Message &&msg) {
            if (auto alive = weak.lock(); alive && *alive)
                (*alive)->on_connection_message(conn, std::move(msg));
        },
        [weak](Connection &, const std::string &why) {
            if (auto alive = weak.lock(); alive && *alive)
                (*alive)->on_connection_closed(why);
        });
    if (!on_connected)
        return;
    std::shared_ptr<Connection> conn = conn_;
    if (auto error = caught([&] { on_connected(*conn); })) {
        log_err("%s: connected: %s", conn->describe().c_str(), error->c_str());
        conn->close("connected: " + *error);
    }
}

void Client::on_connection_message(Connection &conn, Message &&msg)
{
    // An error frame before the exchange completed is the dispatcher
    // refusing us: remembered, so the retry says why.
    if (!conn.handshake_completed())
        if (auto *error = std::get_if<Error>(&msg))
            refusal_ = error->message;
    if (on_message)
        on_message(conn, std::move(msg)); // a throw here closes conn (Connection::dispatch)
}

void Client::on_connection_closed(const std::string &why)
{
    bool refused = conn_ && !conn_->handshake_completed();
    conn_.reset();
    std::string reason = refusal_.empty() ? why : "refused: " + refusal_;
    refusal_.clear();
    schedule_retry(reason, refused);
}

void Client::schedule_retry(const std::string &why, bool refused)
{
    if (on_disconnected)
        guarded("disconnected", [&] { on_disconnected(why); });
    if (stopped_ || !reconnect_)
        return;
    if (!retry_timer_) {
        retry_timer_ = new uv_timer_t;
        uv_timer_init(loop_, retry_timer_);
        retry_timer_->data = this;
    }
    uint64_t delay = backoff_.next_delay_ms();
    // Connected but not accepted (a wrong secret, a refused hello): worth a
    // warning, once per attempt, and the attempts grow apart.  A dispatcher
    // that is down is the daemon's to report.
    if (refused)
        log_warning("dispatcher %s: authentication failed: %s; retrying in %s", address_.c_str(),
                    why.c_str(), seconds_text(delay).c_str());
    else
        log_debug("dispatcher %s: %s; retrying in %s", address_.c_str(), why.c_str(),
                  seconds_text(delay).c_str());
    uv_timer_start(retry_timer_, on_retry, delay, 0);
}

void Client::on_retry(uv_timer_t *timer) noexcept
{
    auto *client = static_cast<Client *>(timer->data);
    if (!client->stopped_)
        guarded("reconnect", [&] { client->attempt(); });
}

} // namespace kiln
