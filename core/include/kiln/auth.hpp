#pragma once
// Shared-secret authentication in the hello exchange: an HMAC-SHA-256
// challenge-response (libsodium), both ways, so the dispatcher knows its
// peer holds the secret and the peer knows it talks to the real dispatcher
// (a runner runs whatever a dispatcher assigns).  The secret never crosses
// the wire, and every connection uses fresh nonces, so a recorded exchange
// cannot be replayed.
//
//   peer → dispatcher   hello {role, name, nonce: Nc}
//   dispatcher → peer   hello {nonce: Nd, proof: HMAC(K, "dispatcher" role name Nc Nd)}
//   peer → dispatcher   auth  {proof: HMAC(K, "peer" role name Nc Nd)}
//   dispatcher → peer   ack   (or an error and a close)
//
// A dispatcher hello without a nonce means "no secret for this role": a
// peer without a secret carries on, a peer with one refuses to (it cannot
// tell the dispatcher from an impostor).  Nonces and proofs travel as 64
// lowercase hex digits; see kiln-dispatcher(8) for the operator's view.
#include <cstdint>
#include <optional>
#include <string>

#include <kiln/messages.hpp>

namespace kiln {

class ConfigTable;
class Connection;

// The key from a secret file: its contents without trailing whitespace.
// Throws ConfigError ("<path>: why") unless the file is a regular file that
// neither group nor others may read or write, holding at least 16 bytes.
std::string read_secret_file(const std::string &path);

// read_secret_file() of the path under `key` in `table` ("" when the key is
// absent); errors read "file:line:col: table.key: <path>: why".
std::string secret_from_config(const ConfigTable &table, const std::string &key);

// 32 random bytes as 64 hex digits (libsodium's randombytes).
std::string make_nonce();

// The proofs above, as 64 hex digits.  `nonce`s are hex as sent.
std::string dispatcher_proof(const std::string &key, const std::string &role,
                             const std::string &name, const std::string &peer_nonce,
                             const std::string &dispatcher_nonce);
std::string peer_proof(const std::string &key, const std::string &role, const std::string &name,
                       const std::string &peer_nonce, const std::string &dispatcher_nonce);

// Constant-time comparison of two proofs (hex); false unless both are
// well-formed and equal.
bool proofs_equal(const std::string &expected, const std::string &got);

// The peer's side of the exchange: make the hello, then check the
// dispatcher's answer and say what to send next.
class ClientHandshake {
  public:
    ClientHandshake() = default;
    // `key` empty: this peer has no secret.
    ClientHandshake(std::string role, std::string name, std::string key)
        : role_(std::move(role)), name_(std::move(name)), key_(std::move(key)) {}

    // A new secret (SIGHUP): used from the next connection on.
    void set_key(std::string key) { next_key_ = std::move(key); }

    // A hello with a fresh nonce (one per connection).
    Hello hello(uint64_t id);
    // The dispatcher's hello: false with `error` set when the dispatcher
    // failed to prove it holds our secret, or wants one we do not have.  On
    // success `auth` holds the auth message to send, if one is wanted.
    bool answer(const Hello &dispatcher, uint64_t auth_id, std::optional<Auth> &auth,
                std::string &error) const;
    // answer() on a live connection, as every peer does it: the auth message
    // sent when one is wanted, or, when the peer must not go on, `conn`
    // closed with `error` as the reason (the caller logs it; a reconnecting
    // client tries again after its backoff) and false.  Marks the
    // connection's handshake done (now, or on the Ack of the auth), which
    // is when a Client's backoff starts over (net.hpp).
    bool reply(Connection &conn, const Hello &dispatcher, uint64_t auth_id,
               std::string &error) const;

  private:
    std::string role_, name_, key_, nonce_;
    std::optional<std::string> next_key_;
};

} // namespace kiln
