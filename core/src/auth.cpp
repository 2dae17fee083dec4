// Shared-secret challenge-response over libsodium's HMAC-SHA-256.
#include "kiln/auth.hpp"

#include <sodium.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "kiln/config.hpp"
#include "kiln/net.hpp"

namespace kiln {

namespace {

constexpr size_t kMinSecretBytes = 16;
constexpr size_t kNonceBytes = 32;

void init_sodium()
{
    // Idempotent and thread-safe; needed before randombytes.
    if (sodium_init() < 0)
        throw std::runtime_error("libsodium could not be initialised");
}

std::string to_hex(const unsigned char *bytes, size_t n)
{
    std::string hex(2 * n + 1, '\0');
    sodium_bin2hex(hex.data(), hex.size(), bytes, n);
    hex.pop_back();
    return hex;
}

// Each field is length-prefixed, so ("ab", "c") and ("a", "bc") differ.
void mac_field(crypto_auth_hmacsha256_state &st, const std::string &field)
{
    unsigned char len[4];
    for (int i = 0; i < 4; ++i)
        len[i] = static_cast<unsigned char>(field.size() >> (24 - 8 * i));
    crypto_auth_hmacsha256_update(&st, len, sizeof len);
    crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char *>(field.data()),
                                  field.size());
}

std::string proof(const std::string &key, const char *direction, const std::string &role,
                  const std::string &name, const std::string &peer_nonce,
                  const std::string &dispatcher_nonce)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char *>(key.data()),
                                key.size());
    for (const std::string &field :
         {std::string("kiln-auth-v1"), std::string(direction), role, name, peer_nonce,
          dispatcher_nonce})
        mac_field(st, field);
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
    return to_hex(mac, sizeof mac);
}

bool from_hex(const std::string &hex, unsigned char (&out)[32])
{
    size_t len = 0;
    return valid_auth_token(hex) &&
           sodium_hex2bin(out, sizeof out, hex.data(), hex.size(), nullptr, &len, nullptr) == 0 &&
           len == sizeof out;
}

} // namespace

std::string read_secret_file(const std::string &path)
{
    struct stat st;
    if (stat(path.c_str(), &st) != 0)
        throw ConfigError(path + ": cannot read the secret file: " + std::strerror(errno));
    if (!S_ISREG(st.st_mode))
        throw ConfigError(path + ": the secret file is not a regular file");
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw ConfigError(path + ": the secret file may be read or written by group or others (mode " +
                          mode + "); chmod 600 it");
    }
    std::ifstream in(path, std::ios::binary);
    std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad() || !in.is_open())
        throw ConfigError(path + ": cannot read the secret file");
    // A trailing newline from `echo` or an editor is not part of the secret.
    while (!key.empty() && std::strchr(" \t\r\n", key.back()))
        key.pop_back();
    if (key.size() < kMinSecretBytes)
        throw ConfigError(path + ": the secret is shorter than " + std::to_string(kMinSecretBytes) +
                          " bytes (make one with: head -c 32 /dev/urandom | base64)");
    return key;
}

std::string secret_from_config(const ConfigTable &table, const std::string &key)
{
    std::optional<std::string> path = table.optional_string(key);
    if (!path)
        return "";
    try {
        return read_secret_file(*path);
    } catch (const ConfigError &e) {
        throw ConfigError(table.error_at(key, e.what()));
    }
}

std::string make_nonce()
{
    init_sodium();
    unsigned char bytes[kNonceBytes];
    randombytes_buf(bytes, sizeof bytes);
    return to_hex(bytes, sizeof bytes);
}

std::string dispatcher_proof(const std::string &key, const std::string &role,
                             const std::string &name, const std::string &peer_nonce,
                             const std::string &dispatcher_nonce)
{
    return proof(key, "dispatcher", role, name, peer_nonce, dispatcher_nonce);
}

std::string peer_proof(const std::string &key, const std::string &role, const std::string &name,
                       const std::string &peer_nonce, const std::string &dispatcher_nonce)
{
    return proof(key, "peer", role, name, peer_nonce, dispatcher_nonce);
}

bool proofs_equal(const std::string &expected, const std::string &got)
{
    unsigned char a[32], b[32];
    // The lengths are public (always 64 when well-formed); the bytes are
    // compared in constant time.
    return from_hex(expected, a) && from_hex(got, b) && crypto_verify_32(a, b) == 0;
}

Hello ClientHandshake::hello(uint64_t id)
{
    if (next_key_)
        key_ = std::move(*next_key_), next_key_.reset();
    nonce_ = make_nonce();
    return Hello{id, kProtocolVersion, role_, name_, nonce_, ""};
}

bool ClientHandshake::answer(const Hello &dispatcher, uint64_t auth_id, std::optional<Auth> &auth,
                             std::string &error) const
{
    auth.reset();
    if (dispatcher.nonce.empty()) {
        if (!key_.empty()) {
            error = "the dispatcher did not authenticate itself (it has no secret for " + role_ +
                    "s); refusing to talk to it with a secret configured";
            return false;
        }
        return true;
    }
    if (key_.empty()) {
        error = "the dispatcher requires authentication: set secret_file";
        return false;
    }
    if (!proofs_equal(dispatcher_proof(key_, role_, name_, nonce_, dispatcher.nonce),
                      dispatcher.proof)) {
        error = "the dispatcher's proof does not match our secret (a different secret, or not "
                "the dispatcher)";
        return false;
    }
    auth = Auth{auth_id, peer_proof(key_, role_, name_, nonce_, dispatcher.nonce)};
    return true;
}

bool ClientHandshake::reply(Connection &conn, const Hello &dispatcher, uint64_t auth_id,
                            std::string &error) const
{
    std::optional<Auth> auth;
    if (!answer(dispatcher, auth_id, auth, error)) {
        conn.close(error);
        return false;
    }
    if (auth) {
        conn.send(*auth); // what the peer sends next is read after it
        conn.handshake_done_on_ack(auth->id);
    } else {
        conn.handshake_done(); // no secret either side: the hello was all
    }
    return true;
}

} // namespace kiln
