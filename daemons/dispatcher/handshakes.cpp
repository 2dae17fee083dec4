// kiln-dispatcher: the hello exchange, and authentication when the peer's
// role has a secret (see core's auth.hpp for the protocol).
#include "handshakes.hpp"

#include <kiln/auth.hpp>
#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

namespace kiln {

void Handshakes::begin(Connection &conn)
{
    pending_[&conn].deadline_ms = unix_ms() + static_cast<int64_t>(settings_.handshake_timeout_ms);
    // Until it says hello, a peer gets only the handshake deadline.
    conn.set_idle_timeout(settings_.handshake_timeout_ms);
}

bool Handshakes::said_hello(const Connection &conn) const
{
    auto hs = pending_.find(&conn);
    return hs != pending_.end() && !hs->second.nonce.empty();
}

void Handshakes::on_hello(Connection &conn, const Hello &hello)
{
    auto hs = pending_.find(&conn);
    if (!conn.role.empty() || hs == pending_.end() || !hs->second.nonce.empty()) {
        conn.fail(hello.id, "hello sent twice");
        return;
    }
    if (hello.version != kProtocolVersion) {
        conn.fail(hello.id, "protocol version " + std::to_string(hello.version) +
                                " not supported (this dispatcher speaks " +
                                std::to_string(kProtocolVersion) + ")");
        return;
    }
    if (hello.role != "observer" && hello.role != "runner" && hello.role != "ctl") {
        conn.fail(hello.id, "unknown role '" + hello.role + "'");
        return;
    }
    const std::string &key = settings_.secret_for(hello.role);
    if (key.empty()) {
        conn.send(Hello{hello.id, kProtocolVersion, "dispatcher", "kiln-dispatcher", "", ""});
        authenticated(conn, hello.role, hello.name);
        return;
    }
    if (hello.nonce.empty()) {
        conn.fail(hello.id, "authentication required: hello without a nonce");
        return;
    }
    Pending &h = hs->second;
    h.role = hello.role;
    h.name = hello.name;
    h.peer_nonce = hello.nonce;
    h.nonce = make_nonce();
    conn.send(Hello{hello.id, kProtocolVersion, "dispatcher", "kiln-dispatcher", h.nonce,
                    dispatcher_proof(key, h.role, h.name, h.peer_nonce, h.nonce)});
}

void Handshakes::on_auth(Connection &conn, const Auth &auth)
{
    auto hs = pending_.find(&conn);
    if (!conn.role.empty() || hs == pending_.end() || hs->second.nonce.empty()) {
        conn.fail(auth.id, "unexpected auth");
        return;
    }
    const Pending &h = hs->second;
    const std::string &key = settings_.secret_for(h.role);
    // The secret may have changed (SIGHUP) since our hello: then this fails,
    // and the peer reconnects.
    if (key.empty() || !proofs_equal(peer_proof(key, h.role, h.name, h.peer_nonce, h.nonce),
                                     auth.proof)) {
        log_warning("peer %s: %s %s: authentication failed (wrong secret)", conn.peer().c_str(),
                    h.role.c_str(), h.name.c_str());
        conn.fail(auth.id, "authentication failed");
        return;
    }
    std::string role = h.role, name = h.name;
    conn.send(Ack{auth.id, 0});
    authenticated(conn, role, name);
}

void Handshakes::authenticated(Connection &conn, const std::string &role, const std::string &name)
{
    bool proved = !pending_[&conn].nonce.empty();
    pending_.erase(&conn);
    conn.role = role;
    // A runner must heartbeat; observers and kilnctl may stay quiet.
    conn.set_idle_timeout(role == "runner" ? settings_.runner_timeout_ms
                          : role == "ctl"  ? settings_.handshake_timeout_ms
                                           : 0);
    log_info("peer %s: hello from %s %s%s", conn.peer().c_str(), role.c_str(), name.c_str(),
             proved ? " (authenticated)" : "");
}

void Handshakes::expire(const std::set<std::shared_ptr<Connection>> &connections)
{
    const int64_t now = unix_ms();
    for (const auto &conn : connections) {
        auto hs = pending_.find(conn.get());
        if (hs != pending_.end() && hs->second.deadline_ms <= now && !conn->closing())
            conn->close("no " + std::string(hs->second.nonce.empty() ? "hello" : "auth") +
                        " within handshake_timeout (" +
                        std::to_string(settings_.handshake_timeout_ms) + " ms)");
    }
}

} // namespace kiln
