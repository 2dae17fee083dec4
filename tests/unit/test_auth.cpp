// Shared-secret authentication: secret files refused unless private and long
// enough, the challenge-response both ways (right secret, wrong secret,
// missing secret on either side, replayed proofs), fresh nonces, and which
// listen addresses count as loopback.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <string>

#include <kiln/auth.hpp>
#include <kiln/config.hpp>
#include <kiln/net.hpp>

#include "test.hpp"

using namespace kiln;

namespace {

const std::string kKey = "correct horse battery staple 42";

std::string write_secret(const std::string &contents, mode_t mode)
{
    char path[] = "/tmp/kiln-test-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    std::ofstream(path, std::ios::binary) << contents;
    chmod(path, mode);
    return path;
}

// read_secret_file's error for `path`, or "OK: <key>".
std::string secret_error(const std::string &path)
{
    try {
        return "OK: " + read_secret_file(path);
    } catch (const ConfigError &e) {
        return e.what();
    }
}

// The dispatcher's side, as kiln-dispatcher runs it (handshake.cpp).
struct FakeDispatcher {
    explicit FakeDispatcher(std::string k) : key(std::move(k)) {}
    std::string key, nonce, peer_nonce, role, name;
    Hello answer(const Hello &hello)
    {
        role = hello.role, name = hello.name, peer_nonce = hello.nonce;
        if (key.empty())
            return Hello{hello.id, kProtocolVersion, "dispatcher", "d", "", ""};
        nonce = make_nonce();
        return Hello{hello.id, kProtocolVersion, "dispatcher", "d", nonce,
                     dispatcher_proof(key, role, name, peer_nonce, nonce)};
    }
    bool accepts(const Auth &auth) const
    {
        return proofs_equal(peer_proof(key, role, name, peer_nonce, nonce), auth.proof);
    }
};

} // namespace

static void test_secret_file_checks(void **)
{
    std::string ok = write_secret(kKey + "\n\n", 0600);
    assert_string_equal(S(secret_error(ok)), S("OK: " + kKey)); // trailing newline dropped

    std::string open_to_group = write_secret(kKey, 0640);
    assert_string_equal(S(secret_error(open_to_group)),
                        S(open_to_group + ": the secret file may be read or written by group or "
                                          "others (mode 0640); chmod 600 it"));
    std::string writable = write_secret(kKey, 0602);
    assert_non_null(strstr(secret_error(writable).c_str(), "(mode 0602)"));

    std::string short_one = write_secret("hunter2\n", 0600);
    assert_non_null(strstr(secret_error(short_one).c_str(), "shorter than 16 bytes"));

    assert_string_equal(S(secret_error("/nonexistent/kiln-secret")),
                        "/nonexistent/kiln-secret: cannot read the secret file: No such file or "
                        "directory");
    assert_string_equal(S(secret_error("/tmp")), "/tmp: the secret file is not a regular file");
    for (const std::string &p : {ok, open_to_group, writable, short_one})
        unlink(p.c_str());
}

static void test_secret_from_config(void **)
{
    std::string loose = write_secret(kKey, 0644);
    ConfigTable root = parse_config_string("[runner]\nsecret_file = \"" + loose + "\"\n",
                                           "runner.toml");
    try {
        secret_from_config(root.table("runner"), "secret_file");
        fail_msg("a world-readable secret file was accepted");
    } catch (const ConfigError &e) {
        // Names the config file, line and key, then the secret file and why.
        assert_non_null(strstr(e.what(), "runner.toml:2:"));
        assert_non_null(strstr(e.what(), "runner.secret_file: "));
        assert_non_null(strstr(e.what(), "(mode 0644)"));
    }
    assert_string_equal(S(secret_from_config(root.table("nothing"), "secret_file")), "");
    unlink(loose.c_str());
}

static void test_handshake_with_the_right_secret(void **)
{
    FakeDispatcher d{kKey};
    ClientHandshake client("runner", "r1", kKey);
    Hello hello = client.hello(1);
    assert_int_equal(hello.nonce.size(), 64);
    assert_true(hello.proof.empty());
    std::optional<Auth> auth;
    std::string error;
    assert_true(client.answer(d.answer(hello), 2, auth, error));
    assert_true(auth.has_value());
    assert_int_equal(auth->id, 2);
    assert_true(d.accepts(*auth));
    // The secret itself never appears in what is sent.
    assert_null(strstr(auth->proof.c_str(), kKey.c_str()));
}

static void test_handshake_with_a_wrong_secret(void **)
{
    FakeDispatcher d{kKey};
    // The dispatcher's proof does not match: the peer refuses to go on.
    ClientHandshake client("runner", "r1", "not the secret at all, sorry");
    std::optional<Auth> auth;
    std::string error;
    assert_false(client.answer(d.answer(client.hello(1)), 2, auth, error));
    assert_false(auth.has_value());
    assert_non_null(strstr(error.c_str(), "does not match our secret"));

    // A peer that answers anyway (an attacker) cannot make a proof the
    // dispatcher accepts without the key.
    Hello dh = d.answer(client.hello(1));
    Auth forged{2, peer_proof("not the secret at all, sorry", "runner", "r1", d.peer_nonce,
                              dh.nonce)};
    assert_false(d.accepts(forged));
    // Nor by replaying the proof of an earlier, genuine exchange: the
    // dispatcher's nonce is new each time.
    ClientHandshake genuine("runner", "r1", kKey);
    std::optional<Auth> recorded;
    assert_true(genuine.answer(d.answer(genuine.hello(1)), 2, recorded, error));
    assert_true(d.accepts(*recorded));
    d.answer(genuine.hello(1));
    assert_false(d.accepts(*recorded));
}

static void test_handshake_missing_secrets(void **)
{
    std::optional<Auth> auth;
    std::string error;
    // Neither side has a secret: no auth message at all.
    FakeDispatcher open{""};
    ClientHandshake plain("observer", "o", "");
    assert_true(plain.answer(open.answer(plain.hello(1)), 2, auth, error));
    assert_false(auth.has_value());
    // The dispatcher wants a secret the peer does not have.
    FakeDispatcher strict{kKey};
    assert_false(plain.answer(strict.answer(plain.hello(1)), 2, auth, error));
    assert_string_equal(S(error), "the dispatcher requires authentication: set secret_file");
    // The peer has a secret, the dispatcher proves nothing: maybe an impostor.
    ClientHandshake careful("runner", "r1", kKey);
    assert_false(careful.answer(open.answer(careful.hello(1)), 2, auth, error));
    assert_non_null(strstr(error.c_str(), "did not authenticate itself"));
}

static void test_proofs_bind_role_and_name(void **)
{
    const std::string n1 = make_nonce(), n2 = make_nonce();
    const std::string p = peer_proof(kKey, "runner", "r1", n1, n2);
    assert_true(proofs_equal(p, peer_proof(kKey, "runner", "r1", n1, n2)));
    assert_false(proofs_equal(p, peer_proof(kKey, "observer", "r1", n1, n2)));
    assert_false(proofs_equal(p, peer_proof(kKey, "runner", "r2", n1, n2)));
    assert_false(proofs_equal(p, peer_proof(kKey, "runner", "r1", n2, n1)));
    // The two directions differ, so the dispatcher's proof is no peer proof.
    assert_false(proofs_equal(p, dispatcher_proof(kKey, "runner", "r1", n1, n2)));
    // Malformed proofs never match, not even themselves.
    assert_false(proofs_equal("", ""));
    assert_false(proofs_equal(std::string(64, 'g'), std::string(64, 'g')));
    assert_false(proofs_equal(p, p.substr(0, 62)));
}

static void test_nonces_are_fresh(void **)
{
    std::set<std::string> seen;
    for (int i = 0; i < 1000; i++) {
        std::string n = make_nonce();
        assert_true(valid_auth_token(n));
        assert_true(seen.insert(n).second);
    }
}

static void test_loopback_hosts(void **)
{
    for (const char *yes : {"127.0.0.1", "127.1.2.3", "::1", "localhost", "::ffff:127.0.0.1"})
        assert_true(is_loopback_host(yes));
    for (const char *no : {"0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "example.com", "",
                           "::ffff:10.0.0.1", "127.0.0.1.example.com"})
        assert_false(is_loopback_host(no));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_file_checks),
        cmocka_unit_test(test_secret_from_config),
        cmocka_unit_test(test_handshake_with_the_right_secret),
        cmocka_unit_test(test_handshake_with_a_wrong_secret),
        cmocka_unit_test(test_handshake_missing_secrets),
        cmocka_unit_test(test_proofs_bind_role_and_name),
        cmocka_unit_test(test_nonces_are_fresh),
        cmocka_unit_test(test_loopback_hosts),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
