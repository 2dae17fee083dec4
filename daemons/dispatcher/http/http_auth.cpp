// BasicAuth: HTTP basic accounts, verified off the loop (see http_auth.hpp).
#include "http_auth.hpp"

#include <stdexcept>

#include <strings.h>

#include <sodium.h>

#include <kiln/auth.hpp>
#include <kiln/log.hpp>

namespace kiln {

std::map<std::string, std::string> parse_auth_accounts(const std::string &text)
{
    std::map<std::string, std::string> accounts;
    size_t start = 0, line_no = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos)
            end = text.size();
        std::string line = text.substr(start, end - start);
        start = end + 1;
        line_no++;
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
            line.pop_back();
        if (line.empty() || line[0] == '#')
            continue;
        size_t colon = line.find(':');
        std::string where = "line " + std::to_string(line_no) + ": ";
        if (colon == std::string::npos || colon == 0)
            throw std::runtime_error(where + "expected user:hash");
        std::string user = line.substr(0, colon), hash = line.substr(colon + 1);
        if (hash.compare(0, 9, "$argon2id") != 0 && hash.compare(0, 8, "$argon2i") != 0)
            throw std::runtime_error(where + "user " + user +
                                     ": the hash is not a crypto_pwhash_str (argon2) string");
        if (hash.size() >= crypto_pwhash_STRBYTES)
            throw std::runtime_error(where + "user " + user + ": hash too long");
        if (!accounts.emplace(user, hash).second)
            throw std::runtime_error(where + "user " + user + " twice");
    }
    if (accounts.empty())
        throw std::runtime_error("no accounts");
    return accounts;
}

bool BasicAuth::load(const std::string &path, std::string &error)
{
    try {
        if (sodium_init() < 0)
            throw std::runtime_error("libsodium failed to initialise");
        std::string text = read_secret_file(path); // "PATH: why"
        try {
            accounts_ = parse_auth_accounts(text);
        } catch (const std::exception &e) {
            throw std::runtime_error(path + ": " + e.what());
        }
    } catch (const std::exception &e) {
        error = std::string("http: auth_file: ") + e.what();
        return false;
    }
    path_ = path;
    key_.resize(crypto_generichash_KEYBYTES);
    randombytes_buf(key_.data(), key_.size());
    loaded_ = true;
    return true;
}

struct BasicAuth::Work {
    uv_work_t req;
    BasicAuth *auth;
    std::string user, password, hash, digest, peer;
    bool ok = false;
};

void BasicAuth::check(uv_loop_t *loop, const std::string &authorization, const std::string &peer,
                      std::function<void(Verdict)> done)
{
    static const std::string scheme = "Basic ";
    if (authorization.size() <= scheme.size() || authorization.size() > 1024 ||
        strncasecmp(authorization.c_str(), scheme.c_str(), scheme.size()) != 0) {
        done(Verdict::denied);
        return;
    }
    std::string encoded = authorization.substr(scheme.size());
    std::string decoded(encoded.size(), '\0');
    size_t len = 0;
    if (sodium_base642bin(reinterpret_cast<unsigned char *>(decoded.data()), decoded.size(),
                          encoded.data(), encoded.size(), " ", &len, nullptr,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        done(Verdict::denied);
        return;
    }
    decoded.resize(len);
    size_t colon = decoded.find(':');
    auto account = colon == std::string::npos ? accounts_.end()
                                              : accounts_.find(decoded.substr(0, colon));
    if (account == accounts_.end()) {
        log_warning("http: peer %s: login refused: no such user", peer.c_str());
        done(Verdict::denied);
        return;
    }
    std::string digest(crypto_generichash_BYTES, '\0');
    crypto_generichash(reinterpret_cast<unsigned char *>(digest.data()), digest.size(),
                       reinterpret_cast<const unsigned char *>(decoded.data()), decoded.size(),
                       reinterpret_cast<const unsigned char *>(key_.data()), key_.size());
    if (remembered_.count(digest)) {
        done(Verdict::allowed);
        return;
    }
    // The same password already being checked: wait for that answer.
    if (auto it = waiting_.find(digest); it != waiting_.end()) {
        if (waiters_ >= kMaxWaiting) {
            done(Verdict::busy);
            return;
        }
        it->second.push_back(std::move(done));
        waiters_++;
        return;
    }
    if (verifying_ >= kMaxVerifying) {
        done(Verdict::busy);
        return;
    }
    auto *work = new Work;
    work->req.data = work;
    work->auth = this;
    work->user = account->first;
    work->password = decoded.substr(colon + 1);
    work->hash = account->second;
    work->digest = digest;
    work->peer = peer;
    waiting_[digest].push_back(std::move(done));
    waiters_++;
    verifying_++;
    uv_queue_work(loop, &work->req, verify, verified);
}

void BasicAuth::verify(uv_work_t *req) noexcept
{
    auto *work = static_cast<Work *>(req->data);
    work->ok = crypto_pwhash_str_verify(work->hash.c_str(), work->password.data(),
                                        work->password.size()) == 0;
    sodium_memzero(work->password.data(), work->password.size());
}

void BasicAuth::verified(uv_work_t *req, int) noexcept
{
    auto *work = static_cast<Work *>(req->data);
    BasicAuth &auth = *work->auth;
    auth.verifying_--;
    if (work->ok) {
        if (auth.remembered_.size() >= kMaxRemembered)
            auth.remembered_.clear();
        auth.remembered_.insert(work->digest);
    } else {
        log_warning("http: peer %s: login refused: wrong password for user %s",
                    work->peer.c_str(), work->user.c_str());
    }
    auto callbacks = std::move(auth.waiting_[work->digest]);
    auth.waiting_.erase(work->digest);
    auth.waiters_ -= callbacks.size();
    for (auto &done : callbacks)
        guarded("http: answering after the password check",
                [&] { done(work->ok ? Verdict::allowed : Verdict::denied); });
    delete work;
}

} // namespace kiln
