#pragma once
// The hello exchange of every new peer, and authentication when its role
// has a secret (see core's auth.hpp for the protocol).  Owns the peers that
// have not finished it: their deadline (absolute from the accept, so
// trickling bytes cannot hold a connection open without authenticating)
// and the nonces of the exchange.  A peer that finishes gets its role, name
// and idle timeout on its Connection.
#include <map>
#include <memory>
#include <set>
#include <string>

#include <kiln/net.hpp>

#include "dispatcher_config.hpp"

namespace kiln {

class Handshakes {
  public:
    // `settings` is the dispatcher's, read at each step (a reload rotates secrets).
    explicit Handshakes(const DispatcherSettings &settings) : settings_(settings) {}

    // A new connection: it has handshake_timeout to finish.
    void begin(Connection &conn);
    void on_hello(Connection &conn, const Hello &hello);
    void on_auth(Connection &conn, const Auth &auth);
    // The peer sent hello and owes us its auth.
    bool said_hello(const Connection &conn) const;
    void forget(const Connection &conn) { pending_.erase(&conn); }
    // Close the peers whose exchange is not done within handshake_timeout.
    void expire(const std::set<std::shared_ptr<Connection>> &connections);

  private:
    void authenticated(Connection &conn, const std::string &role, const std::string &name);

    struct Pending {
        int64_t deadline_ms = 0;
        std::string role, name;  // from its hello, once received
        std::string peer_nonce;  // its challenge to us
        std::string nonce;       // ours to it (empty: no hello yet)
    };
    const DispatcherSettings &settings_;
    std::map<const Connection *, Pending> pending_;
};

} // namespace kiln
